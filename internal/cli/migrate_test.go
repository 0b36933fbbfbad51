package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/internal/cli"
	"github.com/scangate/scangate/internal/clustertest"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Run(testContext(t), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// tamper changes, on the server, settings scangate owns: what an older
// release or an operator might have left behind.
func tamper(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := testContext(t)
	s, err := js.Stream(ctx, events.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	sc.MaxAge = time.Hour
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, events.StreamFiles, events.ConsumerScanners)
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	cc.AckWait = time.Minute
	if _, err := js.UpdateConsumer(ctx, events.StreamFiles, cc); err != nil {
		t.Fatal(err)
	}
}

var tampered = []string{
	"update stream RESULTS: max_age: want 168h0m0s, have 1h0m0s",
	"update consumer FILES/scanners: ack_wait: want " + bus.ScanAckWait.String() + ", have 1m0s",
}

func contains(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

func openErr(t *testing.T, nc *nats.Conn) error {
	t.Helper()
	_, err := bus.Open(testContext(t), nc, bus.Options{})
	return err
}

func TestMigrate(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", clustertest.FreePorts(t, 1)[0])
	srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := "nats://" + addr
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := openErr(t, nc); err != nil {
		t.Fatal(err)
	}
	tamper(t, js)

	code, out, errOut := run(t, "migrate", "--nats", url, "--dry-run")
	if code != 0 {
		t.Fatalf("migrate --dry-run: exit %d\n%s%s", code, out, errOut)
	}
	contains(t, "migrate --dry-run", out, append(tampered, "2 changes, none applied (--dry-run)")...)
	var drift *bus.DriftError
	if err := openErr(t, nc); !errors.As(err, &drift) {
		t.Fatalf("Open after a dry run: %v, want the drift still there", err)
	}

	code, out, errOut = run(t, "migrate", "--nats", url)
	if code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	contains(t, "migrate", out, append(tampered, "applied 2 changes")...)
	if err := openErr(t, nc); err != nil {
		t.Fatalf("Open after migrate: %v", err)
	}
	if code, out, _ = run(t, "migrate", "--nats", url); code != 0 || !strings.Contains(out, "nothing to change") {
		t.Errorf("migrate on a migrated server: exit %d\n%s", code, out)
	}

	// A single server cannot hold three replicas: the server says so, and
	// migrate fails naming the change and the reason.
	cfgFile := filepath.Join(t.TempDir(), "r3.yaml")
	if err := os.WriteFile(cfgFile, []byte("nats:\n  replicas: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run(t, "migrate", "--config", cfgFile, "--nats", url)
	if code != 1 {
		t.Errorf("migrate to replicas 3 on one server: exit %d, want 1", code)
	}
	contains(t, "migrate to replicas 3", out,
		"update stream UPLOADS: replicas: want 3, have 1",
		"update bucket results (stream KV_results): replicas: want 3, have 1",
		"failed: nats: API error: code=500 err_code=10074 description=replicas > 1 not supported in non-clustered mode")
	contains(t, "migrate to replicas 3 (stderr)", errOut, "changes failed")
	if err := openErr(t, nc); err != nil {
		t.Errorf("Open with replicas 1 after the refused migration: %v", err)
	}
}

// Without --nats, migrate works on the embedded store of `serve`: a node
// that refused to start can be migrated, then started.
func TestMigrateEmbeddedStore(t *testing.T) {
	dir := t.TempDir()
	open := func() (*bus.Embedded, *nats.Conn) {
		srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := srv.Connect(t.Name())
		if err != nil {
			t.Fatal(err)
		}
		return srv, nc
	}
	srv, nc := open()
	if err := openErr(t, nc); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	tamper(t, js)
	nc.Close()
	srv.Shutdown()

	code, out, errOut := run(t, "migrate", "--data", dir)
	if code != 0 {
		t.Fatalf("migrate --data: exit %d\n%s%s", code, out, errOut)
	}
	// LIMITS keeps its counters in memory: a restarted server has lost it,
	// and migrate (like any role) creates it again.
	contains(t, "migrate --data", out, append(tampered, "embedded JetStream in "+dir, "create stream LIMITS", "applied 3 changes")...)

	srv, nc = open()
	defer srv.Shutdown()
	defer nc.Close()
	if err := openErr(t, nc); err != nil {
		t.Fatalf("Open after migrate: %v", err)
	}
}

func TestUsageListsMigrate(t *testing.T) {
	_, out, _ := run(t, "help")
	contains(t, "usage", out, "migrate", "--dry-run")
}

// A deployment of an earlier release has one scanners consumer over every
// priority (file.>), which a work-queue stream lets no other consumer
// overlap. Roles of this release refuse to start on it; migrate narrows it
// to the normal queue in place and adds the high and low ones. The files
// it held stay with it: one being scanned when migrate ran is acknowledged
// by its scanner and never delivered again, the waiting ones are delivered
// next, and nothing is lost or doubled.
func TestMigrateFromSingleScannerConsumer(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", clustertest.FreePorts(t, 1)[0])
	srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := "nats://" + addr
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	b, err := bus.Open(ctx, nc, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The earlier release's topology: no high or low consumer, and the
	// one consumer filtered on every priority.
	for _, p := range []events.Priority{events.PriorityHigh, events.PriorityLow} {
		if err := js.DeleteConsumer(ctx, events.StreamFiles, events.ScannerConsumer(p)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := js.Consumer(ctx, events.StreamFiles, events.ConsumerScanners)
	if err != nil {
		t.Fatal(err)
	}
	old := c.CachedInfo().Config
	old.FilterSubject, old.Description = events.FilesSubjects, "shared by every scanner; one file to one scanner at a time"
	if _, err := js.UpdateConsumer(ctx, events.StreamFiles, old); err != nil {
		t.Fatal(err)
	}
	// Its work: three uploads queued, one of them taken by a scanner.
	var queued []string
	for range 3 {
		id := ids.New()
		if err := b.PublishFileComplete(ctx, &events.FileComplete{DataID: id, Priority: events.PriorityNormal}); err != nil {
			t.Fatal(err)
		}
		queued = append(queued, id)
	}
	inScan, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}

	var drift *bus.DriftError
	if err := openErr(t, nc); !errors.As(err, &drift) ||
		!strings.Contains(err.Error(), `consumer FILES/scanners: filter_subject: want "file.normal.>", have "file.>"`) {
		t.Fatalf("Open on the earlier topology: %v, want the scanners consumer's filter named", err)
	}
	code, out, errOut := run(t, "migrate", "--nats", url)
	if code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	contains(t, "migrate", out,
		`update consumer FILES/scanners: description:`,
		`filter_subject: want "file.normal.>", have "file.>"`,
		"create consumer FILES/scanners-high",
		"create consumer FILES/scanners-low")
	if err := openErr(t, nc); err != nil {
		t.Fatalf("Open after migrate: %v", err)
	}

	// The file in its scan is finished by its scanner; the two others
	// come next, once each.
	if err := inScan.DoubleAck(ctx); err != nil {
		t.Fatalf("acknowledging the file taken before migrate: %v", err)
	}
	normal, err := js.Consumer(ctx, events.StreamFiles, events.ConsumerScanners)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := normal.Fetch(3, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, m.Subject())
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for _, id := range queued {
		if !strings.HasSuffix(inScan.Subject(), id) {
			want = append(want, events.FileSubject(events.PriorityNormal, id))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("after migrate the normal queue delivered %v, want the two waiting files %v", got, want)
	}
	// New priorities have their own queues.
	low := ids.New()
	if err := b.PublishFileComplete(ctx, &events.FileComplete{DataID: low, Priority: events.PriorityLow}); err != nil {
		t.Fatal(err)
	}
	lc, err := js.Consumer(ctx, events.StreamFiles, events.ScannerConsumer(events.PriorityLow))
	if err != nil {
		t.Fatal(err)
	}
	m, err := lc.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil || m.Subject() != events.FileSubject(events.PriorityLow, low) {
		t.Fatalf("the low queue: %v %v", m, err)
	}
	st, err := js.Stream(ctx, events.StreamFiles)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("FILES holds %d messages after the normal files were acknowledged, want only the low one", n)
	}
}
