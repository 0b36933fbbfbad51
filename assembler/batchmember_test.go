package assembler

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/batch"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

// waitMember waits for the summary of dataID in batchID to satisfy cond.
func waitMember(t *testing.T, kv jetstream.KeyValue, batchID, dataID string, cond func(*batch.Member) bool) *batch.Member {
	t.Helper()
	var m batch.Member
	if !testwait.Until(30*time.Second, func() bool {
		e, err := kv.Get(context.Background(), events.BatchMemberKey(batchID, dataID))
		return err == nil && json.Unmarshal(e.Value(), &m) == nil && cond(&m)
	}) {
		t.Fatalf("no summary of %s in batch %s", dataID, batchID)
	}
	return &m
}

// A file of a batch gets its summary with its record, and the summary
// follows the record to the verdict. A file outside batches gets none.
func TestRecorderWritesBatchMembers(t *testing.T) {
	b := testBus(t)
	runAssembler(t, b)
	bid, id, other := ids.New(), ids.New(), ids.New()
	meta := events.FileMeta{DisplayName: "in.txt", Batch: bid}
	fc := &events.FileComplete{DataID: id, Size: 3, Meta: meta, Priority: events.PriorityNormal, UploadedAt: time.Now()}
	publishEvent(t, b, &result.Event{Kind: result.EventQueued, DataID: id, File: fc})
	m := waitMember(t, b.BatchFiles, bid, id, func(*batch.Member) bool { return true })
	if m.ScanAllResultI != result.InProgress || m.DisplayName != "in.txt" || m.Final() {
		t.Errorf("summary of a queued file: %+v", m)
	}
	rec := finalRecord(id)
	rec.Meta = meta
	rec.Finish(result.Infected, nil, time.Now(), time.Now())
	publishEvent(t, b, &result.Event{Kind: result.EventFinal, DataID: id, Record: rec})
	m = waitMember(t, b.BatchFiles, bid, id, (*batch.Member).Final)
	if m.ScanAllResultI != result.Infected || m.Result != result.Blocked {
		t.Errorf("summary of the final file: %+v", m)
	}

	publishEvent(t, b, &result.Event{Kind: result.EventQueued, DataID: other,
		File: &events.FileComplete{DataID: other, Size: 1, Priority: events.PriorityNormal, UploadedAt: time.Now()}})
	if _, err := (result.Store{KV: b.Results}).Wait(context.Background(), other, func(*result.Record) bool { return true }); err != nil {
		t.Fatal(err)
	}
	keys, err := b.BatchFiles.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	if n != 1 {
		t.Errorf("%d summaries, want 1 (a file outside batches has none)", n)
	}
}

// A recorder killed after writing a batch file's record but before its
// summary leaves the event unacknowledged: the redelivery finds the record
// at that event's sequence and writes the summary.
func TestRecorderKilledBeforeSummaryWritesItOnRedelivery(t *testing.T) {
	b := testBus(t)
	bid, id := ids.New(), ids.New()
	rec := finalRecord(id)
	rec.Meta.Batch = bid
	seq := publishEvent(t, b, &result.Event{Kind: result.EventFinal, DataID: id, Record: rec})
	rec.Seq = seq // the record the recorder that died wrote; the summary it did not
	if _, err := (result.Store{KV: b.Results}).Put(context.Background(), rec, 0); err != nil {
		t.Fatal(err)
	}
	runAssembler(t, b)
	if m := waitMember(t, b.BatchFiles, bid, id, (*batch.Member).Final); m.Seq != seq || m.ScanAllResultI != result.NoThreat {
		t.Errorf("summary after the redelivery: %+v", m)
	}
}
