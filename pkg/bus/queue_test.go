package bus_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
)

// The scan queue is read across the three priority consumers: what waits
// and what is held, per priority and in all, the oldest waiting file of
// each, and a completion count that grows as files are acknowledged,
// whichever priority they had. An upload's view leaves the low backlog
// out; a rescan's is all of it.
func TestScanQueueStateAcrossPriorities(t *testing.T) {
	nc, js := startServer(t)
	ctx := testContext(t)
	b, err := bus.Open(ctx, nc, bus.Options{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	queue := func(p events.Priority, n int) {
		t.Helper()
		for range n {
			if err := b.PublishFileComplete(ctx, &events.FileComplete{DataID: ids.New(), Priority: p}); err != nil {
				t.Fatal(err)
			}
		}
	}
	queue(events.PriorityLow, 5) // the oldest files are rescans
	queue(events.PriorityNormal, 3)
	queue(events.PriorityHigh, 1)

	q, err := b.ScanQueueState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if q.Waiting != 9 || q.Scanning != 0 {
		t.Fatalf("waiting %d scanning %d, want 9 and 0", q.Waiting, q.Scanning)
	}
	for p, want := range map[events.Priority]uint64{events.PriorityHigh: 1, events.PriorityNormal: 3, events.PriorityLow: 5} {
		if got := q.Priorities[p]; got.Waiting != want || got.OldestWaiting.IsZero() {
			t.Errorf("%s: %+v, want %d waiting with an oldest", p, got, want)
		}
	}
	if !q.OldestWaiting.Equal(q.Priorities[events.PriorityLow].OldestWaiting) {
		t.Errorf("oldest waiting %v, want the oldest rescan's %v", q.OldestWaiting, q.Priorities[events.PriorityLow].OldestWaiting)
	}
	upload := q.Ahead(events.PriorityNormal)
	if upload.Waiting != 4 || !upload.OldestWaiting.Equal(q.Priorities[events.PriorityNormal].OldestWaiting) {
		t.Errorf("an upload's view: %d waiting since %v, want 4 since the oldest normal file", upload.Waiting, upload.OldestWaiting)
	}
	if rescan := q.Ahead(events.PriorityLow); rescan.Waiting != 9 || !rescan.OldestWaiting.Equal(q.OldestWaiting) {
		t.Errorf("a rescan's view: %d waiting, want all 9", rescan.Waiting)
	}

	// A scanner takes a low and a high file and finishes the high one.
	take := func(p events.Priority) jetstream.Msg {
		t.Helper()
		c, err := js.Consumer(ctx, events.StreamFiles, events.ScannerConsumer(p))
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	take(events.PriorityLow)
	if err := take(events.PriorityHigh).DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := b.ScanQueueState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next.Waiting != 7 || next.Scanning != 1 || next.Priorities[events.PriorityLow].Scanning != 1 {
		t.Errorf("after two taken, one finished: waiting %d scanning %d (low %+v), want 7 and 1",
			next.Waiting, next.Scanning, next.Priorities[events.PriorityLow])
	}
	if done := next.Finished - q.Finished; done != 1 {
		t.Errorf("finished went up by %d, want 1", done)
	}
	if !next.Priorities[events.PriorityHigh].OldestWaiting.IsZero() {
		t.Errorf("no high file waits, yet its oldest is %v", next.Priorities[events.PriorityHigh].OldestWaiting)
	}
}

// The bytes of the largest small file are kept and read back whole, also
// when many scanners keep theirs at once (their copies share group
// commits); a file never kept has nothing.
func TestKeepOriginalLargestSmallFiles(t *testing.T) {
	nc, _ := startServer(t)
	ctx := testContext(t)
	b, err := bus.Open(ctx, nc, bus.Options{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	const n = 48
	data := bytes.Repeat([]byte{0xa5}, events.InlineMax)
	keys := make([]string, n)
	errs := make(chan error, n)
	for i := range keys {
		keys[i] = ids.New()
		go func() { errs <- b.KeepOriginal(ctx, keys[i], data) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		got, err := b.Original(ctx, k)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Original(%s): %d bytes, %v; want the %d kept", k, len(got), err, len(data))
		}
	}
	if got, err := b.Original(ctx, ids.New()); got != nil || err != nil {
		t.Errorf("Original of a file never kept: %d bytes, %v", len(got), err)
	}
}
