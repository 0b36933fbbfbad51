package scanner

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
)

// Of every fairEvery turns, one starts with normal and one with low; the
// rest take high first.
func TestOrderKeepsShares(t *testing.T) {
	firsts := map[events.Priority]int{}
	for turn := range uint64(10 * fairEvery) {
		firsts[events.Priorities[order(turn)[0]]]++
	}
	want := map[events.Priority]int{events.PriorityHigh: 80, events.PriorityNormal: 10, events.PriorityLow: 10}
	for p, n := range want {
		if firsts[p] != n {
			t.Errorf("%s first on %d of 100 turns, want %d", p, firsts[p], n)
		}
	}
}

func publishWork(t *testing.T, b *bus.Bus, p events.Priority, n int) map[string]events.Priority {
	t.Helper()
	out := map[string]events.Priority{}
	for range n {
		id := ids.New()
		if err := b.PublishFileComplete(context.Background(), &events.FileComplete{DataID: id, Priority: p}); err != nil {
			t.Fatal(err)
		}
		out[events.FileSubject(p, id)] = p
	}
	return out
}

// With every queue full, high work is taken first, normal work next, and
// low work keeps its share: one file in fairEvery while normal work waits,
// never none. Every file is taken once.
func TestQueuesTakeByPriority(t *testing.T) {
	b, _ := testBus(t)
	ctx := testContext(t)
	// Rescans queued first, then uploads, then an admin's files.
	work := publishWork(t, b, events.PriorityLow, 20)
	for s, p := range publishWork(t, b, events.PriorityNormal, 20) {
		work[s] = p
	}
	for s, p := range publishWork(t, b, events.PriorityHigh, 2) {
		work[s] = p
	}
	q, err := bindQueues(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	waitCounted(t, q, 2, 20, 20)
	var taken []events.Priority
	seen := map[string]bool{}
	for range len(work) {
		msg, err := q.next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if seen[msg.Subject()] {
			t.Fatalf("%s taken twice", msg.Subject())
		}
		seen[msg.Subject()] = true
		taken = append(taken, work[msg.Subject()])
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if taken[0] != events.PriorityHigh || taken[1] != events.PriorityHigh {
		t.Errorf("first taken %v, want the two high files first", taken[:2])
	}
	lows := 0
	for _, p := range taken[:22] {
		if p == events.PriorityLow {
			lows++
		}
	}
	if lows != 2 {
		t.Errorf("%d low files among the first 22 taken (%v), want 2: one per %d turns while normal work waits", lows, taken[:22], fairEvery)
	}
	if n := len(seen); n != len(work) {
		t.Errorf("%d files taken, want %d", n, len(work))
	}
}

// Fetchers polling side by side each take a turn of their own: with low
// and normal work waiting, exactly one take in fairEvery is low however
// many fetchers poll at once (turns shared or skipped would make it more
// or none).
func TestQueuesShareHoldsWithConcurrentFetchers(t *testing.T) {
	b, _ := testBus(t)
	ctx := testContext(t)
	work := publishWork(t, b, events.PriorityLow, 100)
	for s, p := range publishWork(t, b, events.PriorityNormal, 200) {
		work[s] = p
	}
	q, err := bindQueues(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	waitCounted(t, q, 0, 200, 100)
	const fetchers, takes = 8, 100
	var lows, taken atomic.Int32
	var wg sync.WaitGroup
	for range fetchers {
		wg.Go(func() {
			for taken.Add(1) <= takes {
				msg, err := q.next(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if work[msg.Subject()] == events.PriorityLow {
					lows.Add(1)
				}
				if err := msg.DoubleAck(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := lows.Load(); got != takes/fairEvery {
		t.Errorf("%d low files among %d taken by %d fetchers at once, want %d", got, takes, fetchers, takes/fairEvery)
	}
}

// waitCounted waits until each consumer counts the files published to it:
// a consumer counts a stored file a moment after the publish is
// acknowledged, and a no-wait pull answers from that count.
func waitCounted(t *testing.T, q *queues, counts ...uint64) {
	t.Helper()
	for i, want := range counts {
		var pending uint64
		if !testwait.Until(10*time.Second, func() bool {
			info, err := q.cons[i].Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			pending = info.NumPending
			return pending == want
		}) {
			t.Fatalf("consumer %s counts %d files, want %d", events.Priorities[i], pending, want)
		}
	}
}

// A scanner with nothing to do waits on every queue at once: a file of any
// priority wakes it at once (not after a poll interval), and the waits it
// gave up deliver nothing behind its back.
func TestQueuesWakeOnAnyPriority(t *testing.T) {
	b, _ := testBus(t)
	ctx := testContext(t)
	q, err := bindQueues(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []events.Priority{events.PriorityLow, events.PriorityHigh, events.PriorityNormal} {
		got := make(chan jetstream.Msg, 1)
		go func() {
			msg, err := q.next(ctx)
			if err != nil {
				t.Error(err)
			}
			got <- msg
		}()
		// Waiting: a pull open on every queue.
		if !testwait.Until(10*time.Second, func() bool { return allWaiting(t, q) }) {
			t.Fatal("the scanner never waited on every queue")
		}
		started := time.Now()
		want := publishWork(t, b, p, 1)
		var msg jetstream.Msg
		select {
		case msg = <-got:
		case <-time.After(watchFor / 2):
			t.Fatalf("a %s file did not wake the waiting scanner", p)
		}
		if _, ok := want[msg.Subject()]; !ok {
			t.Fatalf("woke with %s, want the %s file", msg.Subject(), p)
		}
		t.Logf("%s file taken %v after it was queued", p, time.Since(started))
		for i, c := range q.cons {
			info, err := c.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if held := info.NumAckPending; held != 0 && events.Priorities[i] != p {
				t.Errorf("consumer %s holds %d files after the wait on it was given up", events.Priorities[i], held)
			}
		}
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// Idle fetchers of one scanner share one wait: one pull open per queue
// however many fetchers are idle, and files arriving together wake them
// one after another, each file to one fetcher.
func TestQueuesIdleFetchersShareOneWait(t *testing.T) {
	b, _ := testBus(t)
	ctx := testContext(t)
	q, err := bindQueues(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	const fetchers = 4
	got := make(chan jetstream.Msg, fetchers)
	for range fetchers {
		go func() {
			msg, err := q.next(ctx)
			if err != nil {
				t.Error(err)
			}
			got <- msg
		}()
	}
	if !testwait.Until(10*time.Second, func() bool { return allWaiting(t, q) }) {
		t.Fatal("the fetchers never waited")
	}
	for i, c := range q.cons {
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumWaiting != 1 {
			t.Errorf("consumer %s has %d pulls open for %d idle fetchers, want 1", events.Priorities[i], info.NumWaiting, fetchers)
		}
	}
	want := publishWork(t, b, events.PriorityNormal, fetchers)
	for range fetchers {
		select {
		case msg := <-got:
			if _, ok := want[msg.Subject()]; !ok {
				t.Fatalf("a fetcher woke with %s", msg.Subject())
			}
			delete(want, msg.Subject())
			if err := msg.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		case <-time.After(watchFor / 2):
			t.Fatalf("%d files never reached the idle fetchers", len(want))
		}
	}
}

func allWaiting(t *testing.T, q *queues) bool {
	t.Helper()
	for _, c := range q.cons {
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumWaiting == 0 {
			return false
		}
	}
	return true
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
