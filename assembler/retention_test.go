package assembler

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/session"
)

// stores runs fn against each blob store, on the same bus.
func stores(t *testing.T, fn func(t *testing.T, b *bus.Bus, blobs blob.Store, dir string)) {
	t.Run("fs", func(t *testing.T) {
		b := testBus(t)
		dir := filepath.Join(t.TempDir(), "blobs")
		blobs, err := blob.NewFS(dir)
		if err != nil {
			t.Fatal(err)
		}
		fn(t, b, blobs, dir)
	})
	t.Run("jetstream", func(t *testing.T) {
		b := testBus(t)
		blobs, err := blob.NewJetStream(context.Background(), b.JS, blob.JetStreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fn(t, b, blobs, "")
	})
}

const testRetention = time.Hour

// testSweeper sweeps with a clock `ahead` in the future: every blob and
// record written by the test is that much older.
func testSweeper(t *testing.T, b *bus.Bus, blobs blob.Store, ahead time.Duration) *sweeper {
	t.Helper()
	s := newSweeper(b, blobs, BlobRetention{Originals: testRetention, Sanitized: testRetention}, zerolog.New(zerolog.NewTestWriter(t)))
	if s == nil {
		t.Fatalf("no sweeper for %T", blobs)
	}
	s.now = func() time.Time { return time.Now().Add(ahead) }
	return s
}

func putBlob(t *testing.T, blobs blob.Store, key, data string) {
	t.Helper()
	if err := blobs.WriteAt(context.Background(), key, 0, strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func exists(t *testing.T, blobs blob.Store, key string) bool {
	t.Helper()
	obj, err := blobs.Open(context.Background(), key)
	if errors.Is(err, blob.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	obj.Close()
	return true
}

func putRecord(t *testing.T, b *bus.Bus, rec *result.Record) {
	t.Helper()
	if _, err := (result.Store{KV: b.Results}).Put(context.Background(), rec, 0); err != nil {
		t.Fatal(err)
	}
}

// A sweep deletes a file's bytes only once they are past their retention
// and the file is done with: never while its upload is open, its result
// events are unrecorded, it waits for or is in a scan, it has no verdict,
// or a webhook is still to be delivered. Bytes of a file nothing knows of
// any more (no record, no event: a crash left them) go too.
func TestSweepKeepsWorkUnderWay(t *testing.T) {
	stores(t, func(t *testing.T, b *bus.Bus, blobs blob.Store, _ string) {
		ctx := context.Background()
		uploading, recording, queued, scanning, notifying, done, orphan :=
			ids.New(), ids.New(), ids.New(), ids.New(), ids.New(), ids.New(), ids.New()
		staged := func(id string) string { return id + ".c" + ids.New()[:15] }
		keep := []string{uploading, staged(uploading), recording, queued, scanning, notifying, blob.SanitizedKey(notifying)}
		gone := []string{done, blob.SanitizedKey(done), orphan, staged(orphan)}
		for _, k := range append(append([]string{}, keep...), gone...) {
			putBlob(t, blobs, k, "bytes of "+k)
		}

		// An upload session still open: its log is in UPLOADS.
		if _, err := b.PublishUpload(ctx, events.Partition(uploading, b.Opts.Partitions),
			&events.UploadEvent{Kind: events.UploadOpen, DataID: uploading, Total: 100, Meta: &events.FileMeta{}}, "open-"+uploading); err != nil {
			t.Fatal(err)
		}
		// Accepted, its event not yet recorded (no assembler runs here).
		fc := &events.FileComplete{DataID: recording, Size: 10, Priority: events.PriorityNormal, UploadedAt: time.Now()}
		if err := b.PublishResult(ctx, &result.Event{Kind: result.EventQueued, DataID: recording, File: fc}, "queued-"+recording); err != nil {
			t.Fatal(err)
		}
		// Waiting for a scanner, whose record may well be gone by now.
		if err := b.PublishFileComplete(ctx, &events.FileComplete{DataID: queued, Priority: events.PriorityHigh}); err != nil {
			t.Fatal(err)
		}
		// A record without a verdict.
		putRecord(t, b, result.New(scanning, 10, events.Hashes{}, events.FileMeta{}, time.Now(), result.InProgress))
		// A verdict whose webhooks (a sanitizedurl among them) are pending.
		putRecord(t, b, finalRecord(notifying))
		if err := b.PublishScanDone(ctx, &events.ScanDone{DataID: notifying, SanitizedURL: "http://hook.example/s"}); err != nil {
			t.Fatal(err)
		}
		putRecord(t, b, finalRecord(done))

		// Within their retention, nothing goes, whatever the state.
		if st := testSweeper(t, b, blobs, 0).sweep(ctx); st.Listed != len(keep)+len(gone) || st.Freed != 0 || st.Failed != 0 {
			t.Fatalf("sweep within the retention: %+v, want %d listed and nothing deleted", st, len(keep)+len(gone))
		}

		// Past it, twice at once: concurrent sweeps (several assemblers)
		// do no harm, deletes being idempotent.
		var wg sync.WaitGroup
		stats := make([]sweepStats, 2)
		for i := range stats {
			wg.Go(func() { stats[i] = testSweeper(t, b, blobs, 2*testRetention).sweep(ctx) })
		}
		wg.Wait()
		for _, st := range stats {
			if st.Failed != 0 || st.InUse != len(keep) {
				t.Errorf("sweep past the retention: %+v (%v), want %d kept in use and no failure", st, st.err, len(keep))
			}
		}
		for _, k := range keep {
			if !exists(t, blobs, k) {
				t.Errorf("%s deleted while its file is in use", k)
			}
		}
		for _, k := range gone {
			if exists(t, blobs, k) {
				t.Errorf("%s kept past its retention", k)
			}
		}
		// One sweep alone counts what it deleted, by kind.
		putBlob(t, blobs, done, "0123456789")
		putBlob(t, blobs, blob.SanitizedKey(done), "clean")
		st := testSweeper(t, b, blobs, 2*testRetention).sweep(ctx)
		if st.Deleted[kindOriginal] != 1 || st.Deleted[kindSanitized] != 1 || st.Deleted[kindOther] != 0 || st.Freed != 15 {
			t.Errorf("sweep: deleted %v, %d bytes; want an original and a sanitized file, 15 bytes", st.Deleted, st.Freed)
		}
	})
}

// The retention of a scanned file counts from its verdict, not from its
// upload: a file that waited a day for a scanner keeps its bytes for the
// retention after its scan.
func TestSweepCountsFromTheVerdict(t *testing.T) {
	b := testBus(t)
	dir := filepath.Join(t.TempDir(), "blobs")
	blobs, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := ids.New()
	putBlob(t, blobs, id, "uploaded long ago")
	past := time.Now().Add(-2 * testRetention)
	if err := os.Chtimes(filepath.Join(dir, id[:2], id), past, past); err != nil {
		t.Fatal(err)
	}
	putRecord(t, b, finalRecord(id))
	ctx := context.Background()
	if testSweeper(t, b, blobs, 0).sweep(ctx); !exists(t, blobs, id) {
		t.Fatal("bytes uploaded past the retention deleted right after their verdict")
	}
	if testSweeper(t, b, blobs, 2*testRetention).sweep(ctx); exists(t, blobs, id) {
		t.Fatal("bytes kept past the retention after their verdict")
	}
}

// A file followed through its life with a real assembler: its bytes stay
// while the upload is open, while it waits for a scanner and until its
// verdict is recorded, however old they are, and go once it is done with.
func TestSweepFollowsAFile(t *testing.T) {
	stores(t, func(t *testing.T, b *bus.Bus, blobs blob.Store, _ string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, err := New(b, blobs, filepath.Join(t.TempDir(), "assembler.db"), Options{}, zerolog.New(zerolog.NewTestWriter(t)))
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = a.Run(runCtx) }()
		t.Cleanup(func() { stop(); <-done })
		// Every sweep below runs a day ahead: only the file's state keeps
		// its bytes.
		sw := testSweeper(t, b, blobs, 24*time.Hour)
		sessions := session.Store{KV: b.Sessions}
		id := ids.New()
		p := events.Partition(id, b.Opts.Partitions)
		now := time.Now()
		if _, err := b.PublishUpload(ctx, p, &events.UploadEvent{Kind: events.UploadOpen, DataID: id, Total: 20,
			Meta: &events.FileMeta{DisplayName: "f"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, "open-"+id); err != nil {
			t.Fatal(err)
		}
		sendPart := func(off int64, data string) {
			t.Helper()
			if err := blobs.WriteAt(ctx, id, off, strings.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if _, err := b.PublishUpload(ctx, p, &events.UploadEvent{Kind: events.UploadPart, DataID: id, Off: off, Len: int64(len(data))},
				"part-"+ids.New()); err != nil {
				t.Fatal(err)
			}
		}
		sweepKeeps := func(stage string) {
			t.Helper()
			if st := sw.sweep(ctx); st.InUse != 1 || !exists(t, blobs, id) {
				t.Fatalf("%s: sweep %+v (%v); the file's bytes must be kept in use", stage, st, st.err)
			}
		}

		sendPart(0, "0123456789")
		if _, err := sessions.Wait(ctx, id, func(s *session.Session) bool { return s.ReceivedLength == 10 }); err != nil {
			t.Fatal(err)
		}
		sweepKeeps("upload in progress")

		sendPart(10, "abcdefghij")
		if _, err := (result.Store{KV: b.Results}).Wait(ctx, id, func(r *result.Record) bool {
			return r.Result.ScanResults.ScanAllResultI == result.InProgress
		}); err != nil {
			t.Fatal(err)
		}
		sweepKeeps("waiting for a scanner")

		// A scanner takes the file and publishes its verdict before it
		// acknowledges the work item, as scanners do.
		cons, err := b.JS.Consumer(ctx, events.StreamFiles, events.ConsumerScanners)
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var work jetstream.Msg
		for m := range batch.Messages() {
			work = m
		}
		if work == nil || !strings.HasSuffix(work.Subject(), id) {
			t.Fatalf("no work item for %s", id)
		}
		sweepKeeps("being scanned")
		final := finalRecord(id)
		final.Meta.CallbackURL = ""
		if err := b.PublishResult(ctx, &result.Event{Kind: result.EventFinal, DataID: id, Record: final}, "final-"+id); err != nil {
			t.Fatal(err)
		}
		if err := work.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := (result.Store{KV: b.Results}).Wait(ctx, id, (*result.Record).Final); err != nil {
			t.Fatal(err)
		}
		// Its verdict recorded, the file is done with: the recorder's
		// event is compacted within about a second, then the bytes go.
		// Sweeps run until the recorder's event is compacted and they may.
		if !testwait.Until(30*time.Second, func() bool { sw.sweep(ctx); return !exists(t, blobs, id) }) {
			t.Fatal("a scanned file's bytes kept past their retention")
		}
	})
}

func TestSweepEvery(t *testing.T) {
	for _, tc := range []struct {
		ret  BlobRetention
		want time.Duration
	}{
		{BlobRetention{Originals: 24 * time.Hour, Sanitized: 24 * time.Hour}, time.Minute},
		{BlobRetention{Originals: 24 * time.Hour, Sanitized: 2 * time.Minute}, 30 * time.Second},
		{BlobRetention{Originals: 3 * time.Second, Sanitized: time.Hour}, 750 * time.Millisecond},
		{BlobRetention{Sanitized: time.Second}, 250 * time.Millisecond},
	} {
		if got := tc.ret.sweepEvery(); got != tc.want {
			t.Errorf("%+v: every %v, want %v", tc.ret, got, tc.want)
		}
	}
	for range 1000 {
		if d := jittered(time.Minute); d < 45*time.Second || d > 75*time.Second {
			t.Fatalf("jittered(1m) = %v, want within 25%%", d)
		}
	}
}

// No retention, or a store that cannot list, is no sweeper (and no loop).
func TestNoSweeper(t *testing.T) {
	b := testBus(t)
	fs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if newSweeper(b, fs, BlobRetention{}, zerolog.Nop()) != nil {
		t.Error("a sweeper without a retention")
	}
	if newSweeper(b, struct{ blob.Store }{fs}, BlobRetention{Originals: time.Hour}, zerolog.Nop()) != nil {
		t.Error("a sweeper on a store that cannot list")
	}
}

// A pre-signed upload's file is a concatenation of its part blobs: past
// its retention the sweep deletes the file and every part with it, and
// nothing of it while its verdict is recent.
func TestSweepDeletesConcatenatedParts(t *testing.T) {
	stores(t, func(t *testing.T, b *bus.Bus, blobs blob.Store, _ string) {
		ctx := context.Background()
		id := ids.New()
		var parts []string
		for n := 1; n <= 3; n++ {
			k := blob.PartKey(id, n, "0000000"+string(rune('0'+n)))
			putBlob(t, blobs, k, strings.Repeat("x", n*10))
			parts = append(parts, k)
		}
		if err := blobs.(blob.Concatenator).Concat(ctx, id, parts); err != nil {
			t.Fatal(err)
		}
		putRecord(t, b, finalRecord(id))
		if st := testSweeper(t, b, blobs, 0).sweep(ctx); st.Freed != 0 || !exists(t, blobs, id) {
			t.Fatalf("within the retention: %+v", st)
		}
		st := testSweeper(t, b, blobs, 2*testRetention).sweep(ctx)
		if st.Failed != 0 {
			t.Fatalf("sweep: %+v (%v)", st, st.err)
		}
		for _, k := range append(parts, id) {
			if exists(t, blobs, k) {
				t.Errorf("%s kept past its retention", k)
			}
		}
		if left := list(t, blobs); len(left) != 0 {
			t.Errorf("the store still lists %v", left)
		}
	})
}

func list(t *testing.T, blobs blob.Store) []string {
	t.Helper()
	var keys []string
	if err := blobs.(blob.Lister).List(context.Background(), func(i blob.Info) error {
		keys = append(keys, i.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}
