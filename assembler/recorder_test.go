package assembler

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/rs/zerolog"

	"github.com/scangate/scangate/internal/bustest"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

func testBus(t *testing.T) *bus.Bus {
	return bustest.Open(t, bus.Options{MaxQueued: 100, Partitions: 2})
}

// publishEvent appends ev to its file's result log and returns its sequence.
func publishEvent(t *testing.T, b *bus.Bus, ev *result.Event) uint64 {
	t.Helper()
	data, _ := json.Marshal(ev)
	ack, err := b.JS.Publish(context.Background(), events.ResultSubject(events.Partition(ev.DataID, b.Opts.Partitions), ev.DataID), data)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func runAssembler(t *testing.T, b *bus.Bus) {
	t.Helper()
	blobs, err := blob.NewFS(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(b, blobs, filepath.Join(t.TempDir(), "assembler.db"), Options{}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func finalRecord(id string) *result.Record {
	now := time.Now()
	rec := result.New(id, 3, events.Hashes{}, events.FileMeta{DisplayName: "f", CallbackURL: "http://hook.example/x"}, now, result.InProgress)
	rec.Finish(result.NoThreat, nil, now, now)
	return rec
}

// A recorder killed after writing a final result but before announcing it
// leaves the event unacknowledged: the next recorder finds the record at
// that event's sequence and announces it (the webhook is not lost).
func TestRecorderKilledAfterWriteAnnouncesOnRedelivery(t *testing.T) {
	b := testBus(t)
	id := ids.New()
	done, err := b.NC.SubscribeSync(events.ScanDoneSubject(id))
	if err != nil {
		t.Fatal(err)
	}
	rec := finalRecord(id)
	seq := publishEvent(t, b, &result.Event{Kind: result.EventFinal, DataID: id, Record: rec})
	rec.Seq = seq // written by the recorder that died
	rev, err := result.Store{KV: b.Results}.Put(context.Background(), rec, 0)
	if err != nil {
		t.Fatal(err)
	}
	runAssembler(t, b)
	m, err := done.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no scan-done after the recorder's restart: %v", err)
	}
	var ev events.ScanDone
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Revision != rev || ev.CallbackURL == "" {
		t.Errorf("scan-done %s, want revision %d and the callback", m.Data, rev)
	}
}

// A recorder whose view is behind (another recorder owned the partition
// and applied later events) changes nothing for an event the record has
// moved past: a late "queued" neither reopens a final file nor queues it
// for a second scan.
func TestRecorderSkipsEventsTheRecordMovedPast(t *testing.T) {
	b := testBus(t)
	ctx := context.Background()
	id := ids.New()
	fc := &events.FileComplete{DataID: id, Size: 3, Priority: events.PriorityNormal, UploadedAt: time.Now()}
	publishEvent(t, b, &result.Event{Kind: result.EventQueued, DataID: id, File: fc})
	rec := finalRecord(id)
	final := publishEvent(t, b, &result.Event{Kind: result.EventFinal, DataID: id, Record: rec})
	rec.Seq = final // the other recorder applied both
	store := result.Store{KV: b.Results}
	rev, err := store.Put(ctx, rec, 0)
	if err != nil {
		t.Fatal(err)
	}
	done, err := b.NC.SubscribeSync(events.ScanDoneSubject(id))
	if err != nil {
		t.Fatal(err)
	}
	runAssembler(t, b)
	// The final event is redone (announced); by then the queued one, before
	// it in the stream, has been handled.
	if _, err := done.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("no scan-done: %v", err)
	}
	got, gotRev, err := store.Get(ctx, id)
	if err != nil || gotRev != rev || !got.Final() {
		t.Errorf("record after the late events: revision %d (want %d), final %v, %v", gotRev, rev, got != nil && got.Final(), err)
	}
	st, err := b.JS.Stream(ctx, events.StreamFiles)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("a file already final was queued for scanning again (%d in FILES)", n)
	}
}

// Only webhooks listen for scan-done: a final result is announced when the
// file has a callbackurl or sanitizedurl and not otherwise. Either way the
// events are applied and removed from RESULTS.
func TestRecorderAnnouncesOnlyFilesWithWebhooks(t *testing.T) {
	b := testBus(t)
	ctx := context.Background()
	quiet, hooked := finalRecord(ids.New()), finalRecord(ids.New())
	quiet.Meta.CallbackURL = ""
	for _, rec := range []*result.Record{quiet, hooked} {
		fc := &events.FileComplete{DataID: rec.Result.DataID, Size: 3, Meta: rec.Meta, Priority: events.PriorityNormal, UploadedAt: time.Now()}
		publishEvent(t, b, &result.Event{Kind: result.EventQueued, DataID: fc.DataID, File: fc})
		publishEvent(t, b, &result.Event{Kind: result.EventFinal, DataID: fc.DataID, Record: rec})
	}
	done, err := b.NC.SubscribeSync(events.ScanDoneSubject(hooked.Result.DataID))
	if err != nil {
		t.Fatal(err)
	}
	runAssembler(t, b)
	if _, err := done.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("no scan-done for the file with a callback: %v", err)
	}
	waitUntil(t, "every event applied and compacted", func() bool {
		st, err := b.JS.Stream(ctx, events.StreamResults)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	// Every event is acknowledged, so every effect has happened.
	if rec, _, err := (result.Store{KV: b.Results}).Get(ctx, quiet.Result.DataID); err != nil || !rec.Final() {
		t.Fatalf("the file without webhooks has no final record: %v", err)
	}
	scans, err := b.JS.Stream(ctx, events.StreamScans)
	if err != nil {
		t.Fatal(err)
	}
	info, err := scans.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The notifier's consumer is declared but not running: only the hooked
	// file's announcement waits there.
	if info.State.Msgs != 1 {
		t.Errorf("SCANS holds %d announcements, want 1 (only the file with a callback)", info.State.Msgs)
	}
}

// A recorder whose own copy of a record is stale (another recorder wrote it
// while it held the partition, e.g. A→B→A) never writes over the newer
// record: its compare-and-set fails, it reads the record again, and the
// sequence check and first-final-wins decide. Here the other recorder
// cancelled the file; the verdict that comes later changes nothing.
func TestRecorderStaleCopyRereads(t *testing.T) {
	b := testBus(t)
	ctx := context.Background()
	store := result.Store{KV: b.Results}
	id := ids.New()
	fc := &events.FileComplete{DataID: id, Size: 3, Priority: events.PriorityNormal, UploadedAt: time.Now()}
	publishEvent(t, b, &result.Event{Kind: result.EventQueued, DataID: id, File: fc})
	runAssembler(t, b)
	var rec *result.Record
	var rev uint64
	waitUntil(t, "the queued record", func() bool {
		var err error
		rec, rev, err = store.Get(ctx, id)
		return err == nil
	})

	// The other recorder: it applied a cancel (at a later sequence) and
	// wrote over the record this recorder keeps a copy of.
	other := publishEvent(t, b, &result.Event{Kind: result.EventProgress, DataID: ids.New()}) // takes a sequence
	cancelled := *rec
	cancelled.Finish(result.Cancelled, nil, time.Now(), time.Now())
	cancelled.Seq = other
	if _, err := store.Put(ctx, &cancelled, rev); err != nil {
		t.Fatal(err)
	}

	final := finalRecord(id)
	publishEvent(t, b, &result.Event{Kind: result.EventFinal, DataID: id, Record: final})
	waitUntil(t, "every event applied", func() bool {
		st, err := b.JS.Stream(ctx, events.StreamResults)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	got, _, err := store.Get(ctx, id)
	if err != nil || got.Result.ScanResults.ScanAllResultI != result.Cancelled {
		t.Fatalf("record after the late verdict: %+v %v, want the other recorder's cancel kept", got.Result.ScanResults, err)
	}
}

// waitUntil polls cond until it holds, for at most 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !testwait.Until(30*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}
