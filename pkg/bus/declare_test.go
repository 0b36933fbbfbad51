package bus_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
)

// startServer starts an embedded JetStream server in a temporary directory
// and returns a connection to it.
func startServer(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// snapshot is every stream's and consumer's config on the server.
func snapshot(t *testing.T, js jetstream.JetStream) map[string]any {
	t.Helper()
	ctx := testContext(t)
	out := map[string]any{}
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		out["stream "+si.Config.Name] = si.Config
		st, err := js.Stream(ctx, si.Config.Name)
		if err != nil {
			t.Fatal(err)
		}
		consumers := st.ListConsumers(ctx)
		for ci := range consumers.Info() {
			out["consumer "+si.Config.Name+"/"+ci.Name] = ci.Config
		}
		if err := consumers.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := streams.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// What Open creates is what it declares: a second Open (another role, a
// restart) finds nothing to change, whatever the server filled in.
func TestOpenTwiceFindsNothingToChange(t *testing.T) {
	nc, js := startServer(t)
	ctx := testContext(t)
	o := bus.Options{Partitions: 4}
	if _, err := bus.Open(ctx, nc, o); err != nil {
		t.Fatal(err)
	}
	changes, err := bus.Inspect(ctx, js, bus.Topology(o))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		t.Errorf("after Open: %s", c)
	}
	before := snapshot(t, js)
	if want := 5 + 9 + 4 + 2*o.Partitions; len(before) != want { // streams, buckets, consumers (3 scanners, notifier, 2 per partition)
		t.Fatalf("%d streams and consumers on the server, want %d", len(before), want)
	}
	if _, err := bus.Open(ctx, nc, o); err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if after := snapshot(t, js); !reflect.DeepEqual(before, after) {
		t.Errorf("a second Open changed the server")
	}
}

// An asset that differs from its declaration, whoever changed it (another
// configuration, an operator, an older release), stops Open with a message
// naming the asset and each field, and nothing on the server changes.
func TestOpenRefusesDrift(t *testing.T) {
	updateStream := func(name string, fn func(*jetstream.StreamConfig)) func(*testing.T, jetstream.JetStream) {
		return func(t *testing.T, js jetstream.JetStream) {
			ctx := testContext(t)
			s, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			fn(&cfg)
			if _, err := js.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	updateConsumer := func(stream, name string, fn func(*jetstream.ConsumerConfig)) func(*testing.T, jetstream.JetStream) {
		return func(t *testing.T, js jetstream.JetStream) {
			ctx := testContext(t)
			c, err := js.Consumer(ctx, stream, name)
			if err != nil {
				t.Fatal(err)
			}
			cfg := c.CachedInfo().Config
			fn(&cfg)
			if _, err := js.UpdateConsumer(ctx, stream, cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*testing.T, jetstream.JetStream) // on the server, between the two Opens
		opts   bus.Options                           // of the second Open
		want   []string
	}{
		{
			name: "replicas in the configuration",
			opts: bus.Options{Replicas: 3},
			want: []string{
				"stream UPLOADS: replicas: want 3, have 1",
				"stream FILES: replicas: want 3, have 1",
				"bucket results (stream KV_results): replicas: want 3, have 1",
				"bucket hashes (stream KV_hashes): replicas: want 3, have 1",
			},
		},
		{
			name:   "stream max age",
			change: updateStream(events.StreamResults, func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour }),
			want:   []string{"stream RESULTS: max_age: want 168h0m0s, have 1h0m0s"},
		},
		{
			name: "stream limits",
			change: updateStream(events.StreamFiles, func(c *jetstream.StreamConfig) {
				c.MaxBytes, c.Discard = 1<<30, jetstream.DiscardNew
			}),
			want: []string{
				"stream FILES: max_bytes: want unlimited, have 1073741824",
				"stream FILES: discard: want DiscardOld, have DiscardNew",
			},
		},
		{
			name:   "bucket history",
			change: updateStream("KV_"+events.BucketResults, func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 5 }),
			want:   []string{"bucket results (stream KV_results): history: want 1, have 5"},
		},
		{
			// A bucket's TTL is applied at start (TestOpenAppliesRetention),
			// but not beside a difference that is not.
			name: "bucket ttl and history",
			change: updateStream("KV_"+events.BucketWebhooks, func(c *jetstream.StreamConfig) {
				c.MaxAge, c.MaxMsgsPerSubject = time.Hour, 3
			}),
			want: []string{
				"bucket webhooks (stream KV_webhooks): ttl: want 168h0m0s, have 1h0m0s",
				"bucket webhooks (stream KV_webhooks): history: want 1, have 3",
			},
		},
		{
			name:   "consumer ack wait",
			change: updateConsumer(events.StreamFiles, events.ConsumerScanners, func(c *jetstream.ConsumerConfig) { c.AckWait = time.Minute }),
			want:   []string{"consumer FILES/scanners: ack_wait: want " + bus.ScanAckWait.String() + ", have 1m0s"},
		},
		{
			// A safe difference beside an unsafe one is not applied
			// either: a refused start changes nothing.
			name: "consumer description and max ack pending",
			change: updateConsumer(events.StreamScans, events.ConsumerNotifier, func(c *jetstream.ConsumerConfig) {
				c.Description, c.MaxAckPending = "old", 10
			}),
			want: []string{
				`consumer SCANS/notifier: description: want "webhook deliveries; retries are parked as delayed redeliveries", have "old"`,
				"consumer SCANS/notifier: max_ack_pending: want 100000, have 10",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, js := startServer(t)
			ctx := testContext(t)
			if _, err := bus.Open(ctx, nc, bus.Options{Replicas: 1}); err != nil {
				t.Fatal(err)
			}
			if tc.change != nil {
				tc.change(t, js)
			}
			before := snapshot(t, js)
			_, err := bus.Open(ctx, nc, tc.opts)
			var drift *bus.DriftError
			if !errors.As(err, &drift) {
				t.Fatalf("second Open: %v, want a DriftError", err)
			}
			for _, w := range append(tc.want, "scangate migrate") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if after := snapshot(t, js); !reflect.DeepEqual(before, after) {
				t.Errorf("a refused Open changed the server")
			}
		})
	}
}

// A difference that only describes is applied at start: two releases
// wording a description differently must not stop each other.
func TestOpenAppliesDescription(t *testing.T) {
	nc, js := startServer(t)
	ctx := testContext(t)
	if _, err := bus.Open(ctx, nc, bus.Options{}); err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, events.StreamFiles, events.ConsumerScanners)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	want := cfg.Description
	cfg.Description = "old words"
	if _, err := js.UpdateConsumer(ctx, events.StreamFiles, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Open(ctx, nc, bus.Options{}); err != nil {
		t.Fatalf("Open with a different description: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Description != want {
		t.Errorf("description %q, want %q", info.Config.Description, want)
	}
}

// Applying the changes Inspect finds (what `scangate migrate` does) brings
// the server in line, keeping what scangate does not own.
func TestApplyMigrates(t *testing.T) {
	nc, js := startServer(t)
	ctx := testContext(t)
	if _, err := bus.Open(ctx, nc, bus.Options{}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, events.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxAge, cfg.Compression = time.Hour, jetstream.S2Compression // the operator's choice
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	topo := bus.Topology(bus.Options{})
	changes, err := bus.Inspect(ctx, js, topo)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].String() != "update stream RESULTS: max_age: want 168h0m0s, have 1h0m0s" {
		t.Fatalf("changes: %v", changes)
	}
	if err := changes[0].Apply(ctx, js); err != nil {
		t.Fatal(err)
	}
	if changes, err = bus.Inspect(ctx, js, topo); err != nil || len(changes) > 0 {
		t.Fatalf("after Apply: %v %v", changes, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Compression != jetstream.S2Compression {
		t.Errorf("Apply reset the compression the operator chose")
	}
}

// lateView is a cluster server that has not yet applied an assignment it
// acknowledged: right after a bucket is created, the next look at its
// stream finds nothing.
type lateView struct {
	jetstream.JetStream
	created, missed bool
}

func (l *lateView) CreateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	l.created = true
	return l.JetStream.CreateKeyValue(ctx, cfg)
}

func (l *lateView) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if l.created && !l.missed {
		l.missed = true
		return nil, jetstream.ErrStreamNotFound
	}
	return l.JetStream.Stream(ctx, name)
}

// A bucket another server has just created and this one cannot see yet is
// waited for, not reported as a failure: roles starting with their cluster
// met this.
func TestDeclareWaitsForBucketJustCreated(t *testing.T) {
	_, js := startServer(t)
	ctx := testContext(t)
	view := &lateView{JetStream: js}
	asset := bus.BucketAsset(jetstream.KeyValueConfig{Bucket: "late"}, true)
	err := bus.Wait(ctx, zerolog.Nop(), func(ctx context.Context) error {
		return bus.Declare(ctx, view, []bus.Asset{asset})
	})
	if err != nil {
		t.Fatalf("Declare: %v", err)
	}
	if !view.missed {
		t.Fatal("the late view was never consulted")
	}
	s, err := js.Stream(ctx, "KV_late")
	if err != nil {
		t.Fatal(err)
	}
	if !s.CachedInfo().Config.AllowAtomicPublish {
		t.Error("the bucket was created without atomic batches")
	}
}

// A changed retention is applied at start, with no migration: every
// bucket's TTL follows the configuration, entries already stored expire by
// the new one, and what scangate does not configure (the nodes bucket's
// liveness window) stays.
func TestOpenAppliesRetention(t *testing.T) {
	nc, js := startServer(t)
	ctx := testContext(t)
	ttls := func() map[string]time.Duration {
		t.Helper()
		out := map[string]time.Duration{}
		for _, b := range []string{events.BucketResults, events.BucketHashes, events.BucketSessions, events.BucketWebhooks, events.BucketNodes,
			events.BucketBatches, events.BucketBatchFiles, events.BucketOriginals} {
			s, err := js.Stream(ctx, "KV_"+b)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			if cfg.Duplicates > cfg.MaxAge {
				t.Errorf("bucket %s: duplicate window %v longer than its ttl %v", b, cfg.Duplicates, cfg.MaxAge)
			}
			out[b] = cfg.MaxAge
		}
		return out
	}
	b, err := bus.Open(ctx, nc, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	week := bus.DefaultRetention
	want := map[string]time.Duration{events.BucketResults: week, events.BucketHashes: week, events.BucketSessions: week,
		events.BucketWebhooks: week, events.BucketNodes: bus.NodeTTL, events.BucketBatches: week, events.BucketBatchFiles: week, events.BucketOriginals: bus.DefaultOriginalsRetention}
	if got := ttls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("TTLs by default: %v, want %v", got, want)
	}
	if _, err := b.Webhooks.Put(ctx, "0123456789abcdef0123456789abcdef", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}

	short := bus.Options{Retention: bus.Retention{Results: time.Hour, Webhooks: time.Second, Originals: time.Minute}}
	b, err = bus.Open(ctx, nc, short)
	if err != nil {
		t.Fatalf("Open with a shorter retention: %v", err)
	}
	want = map[string]time.Duration{events.BucketResults: time.Hour, events.BucketHashes: time.Hour, events.BucketSessions: time.Hour,
		events.BucketWebhooks: time.Second, events.BucketNodes: bus.NodeTTL, events.BucketBatches: time.Hour, events.BucketBatchFiles: time.Hour, events.BucketOriginals: time.Minute}
	if got := ttls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("TTLs after Open with a shorter retention: %v, want %v", got, want)
	}
	if changes, err := bus.Inspect(ctx, js, bus.Topology(short)); err != nil || len(changes) > 0 {
		t.Fatalf("after Open: %v %v", changes, err)
	}
	// The entry written under the old TTL expires by the new one. Polled:
	// the server expires entries on its own timer.
	var left uint64
	if !testwait.Until(10*time.Second, func() bool {
		st, err := b.Webhooks.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		left = st.Values()
		return left == 0
	}) {
		t.Fatalf("webhooks bucket still holds %d entries after its TTL of 1s", left)
	}
}
