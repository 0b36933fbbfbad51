package scanner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
)

// Priority. Work waits in one consumer per priority (bus.Consumers).
// Scanners take high before normal before low, so an admin's file jumps
// the queue and a rescan of thousands of files never delays an upload. A
// strict order would let a steady stream of uploads starve rescans for
// good, so some turns start with a lower priority instead: of every
// fairEvery files a scanner takes while every queue has work, at least one
// is normal and one is low (8 high, 1 normal, 1 low; with only normal and
// low waiting, 9 and 1). A turn whose preferred queue is empty goes to the
// next one, so nothing idles while anything waits.
const fairEvery = 10

// Turns (of fairEvery) that start with a lower priority.
const (
	normalTurn = fairEvery/2 - 1 // 4, 14, 24, ...
	lowTurn    = fairEvery - 1   // 9, 19, 29, ...
)

// order is the order in which the queues are tried on turn t, as indexes
// into events.Priorities.
func order(t uint64) [3]int {
	const high, normal, low = 0, 1, 2
	switch t % fairEvery {
	case lowTurn:
		return [3]int{low, high, normal}
	case normalTurn:
		return [3]int{normal, high, low}
	}
	return [3]int{high, normal, low}
}

// watchFor bounds one wait for work while every queue is empty; it ends
// early as soon as a file arrives.
const watchFor = 30 * time.Second

// queues is how one scanner takes work from the priority consumers.
//
// A fetcher that needs a file asks each queue, in the turn's order, for a
// file that is there now (a no-wait pull); fetchers do that side by side.
// When every queue is empty the fetcher waits for the watch token, so that
// one fetcher at a time waits on all three queues at once (one pull each)
// and keeps the first file that comes, while the scanner's other idle
// fetchers wait for the token: an idle scanner has three pulls open, not
// three per fetcher, and a file that arrives wakes exactly one fetcher,
// which hands the token on for the next to look. Every fetcher still holds
// at most one file, as before: at most one file per worker waits for a
// slot.
type queues struct {
	cons  [3]jetstream.Consumer // by index into events.Priorities
	turns atomic.Uint64         // polls so far: each poll takes the next turn
	watch chan struct{}         // the watch token

	// spare holds files that arrived together on different queues while
	// waiting on all three: the first is taken, the others wait here,
	// kept ours, for the next fetcher.
	mu    sync.Mutex
	spare []spareMsg
}

type spareMsg struct {
	msg  jetstream.Msg
	stop func() // ends its keep-alive
}

// bindQueues looks up the consumers of every priority.
func bindQueues(ctx context.Context, js jetstream.JetStream) (*queues, error) {
	q := &queues{watch: make(chan struct{}, 1)}
	q.watch <- struct{}{}
	for i, p := range events.Priorities {
		c, err := js.Consumer(ctx, events.StreamFiles, events.ScannerConsumer(p))
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", events.ScannerConsumer(p), err)
		}
		q.cons[i] = c
	}
	return q, nil
}

// next returns the next file to scan, blocking until there is one or ctx
// ends.
func (q *queues) next(ctx context.Context) (jetstream.Msg, error) {
	for ctx.Err() == nil {
		if msg := q.takeSpare(); msg != nil {
			return msg, nil
		}
		if msg, err := q.poll(); msg != nil || err != nil {
			return msg, err
		}
		select {
		case <-q.watch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		msg, err := q.waitForWork(ctx)
		q.watch <- struct{}{}
		if msg != nil || err != nil {
			return msg, err
		}
	}
	return nil, ctx.Err()
}

// waitForWork, with the watch token held, looks once more (a file may
// have come while the token was elsewhere), then waits on every queue. It
// returns nil when the wait ended with nothing.
func (q *queues) waitForWork(ctx context.Context) (jetstream.Msg, error) {
	if msg := q.takeSpare(); msg != nil {
		return msg, nil
	}
	if msg, err := q.poll(); msg != nil || err != nil {
		return msg, err
	}
	got, err := q.wait(ctx)
	if err != nil || len(got) == 0 {
		return nil, err
	}
	q.mu.Lock()
	for _, m := range got[1:] {
		q.spare = append(q.spare, spareMsg{msg: m, stop: bus.KeepAlive(m, bus.ScanKeepAlive)})
	}
	q.mu.Unlock()
	return got[0], nil
}

// takeSpare returns a spare file, if any.
func (q *queues) takeSpare() jetstream.Msg {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.spare) == 0 {
		return nil
	}
	s := q.spare[0]
	q.spare = q.spare[1:]
	s.stop()
	return s.msg
}

// poll asks each queue, in the order of the next turn, for a file that is
// there now; nil when every queue is empty. Each poll takes a turn of its
// own, so fetchers polling side by side never share one, and every tenth
// poll of a scanner starts with low work (turns taken while every queue is
// empty change nothing: there is no share to keep).
func (q *queues) poll() (jetstream.Msg, error) {
	for _, i := range order(q.turns.Add(1) - 1) {
		batch, err := q.cons[i].FetchNoWait(1)
		if err != nil {
			return nil, err
		}
		var msg jetstream.Msg
		for m := range batch.Messages() {
			msg = m
		}
		if err := batch.Error(); err != nil && msg == nil {
			return nil, err
		}
		if msg != nil {
			return msg, nil
		}
	}
	return nil, nil
}

// wait waits on every queue at once for up to watchFor, and returns what
// came, highest priority first: usually one file, and nothing when the
// wait ended empty. The first file ends the other waits; a file another
// queue delivered in that same moment is returned too rather than lost to
// a redelivery.
func (q *queues) wait(ctx context.Context) ([]jetstream.Msg, error) {
	wctx, cancel := context.WithTimeout(ctx, watchFor)
	defer cancel()
	got := make([]jetstream.Msg, len(q.cons))
	errs := make([]error, len(q.cons))
	var wg sync.WaitGroup
	for i, c := range q.cons {
		wg.Go(func() {
			if wctx.Err() != nil {
				return // a file came before this wait began: never open it
			}
			msg, err := c.Next(jetstream.FetchContext(wctx))
			if msg != nil {
				cancel() // a file came: stop waiting on the others
			}
			got[i], errs[i] = msg, err
		})
	}
	wg.Wait()
	var msgs []jetstream.Msg
	for _, m := range got {
		if m != nil {
			msgs = append(msgs, m)
		}
	}
	if len(msgs) > 0 || ctx.Err() != nil {
		return msgs, nil
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) &&
			!errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
	}
	return nil, nil
}

// release gives back the spare files at shutdown: a peer, or our next
// start, takes them at once rather than after the ack wait.
func (q *queues) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range q.spare {
		s.stop()
		_ = s.msg.Nak()
	}
	q.spare = nil
}
