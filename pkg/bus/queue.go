package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/events"
)

// ScanQueue is the FILES work queue as the scanners' consumers (one per
// priority) see it at one moment.
type ScanQueue struct {
	At       time.Time
	Waiting  uint64 // files no scanner has taken yet
	Scanning uint64 // files a scanner holds: being scanned, or due for redelivery
	// Finished counts files that have left the queue (their scanner acked
	// them). It is a running total with an arbitrary origin: only the
	// difference between two readings means anything, and it may go back
	// when the stream is purged or declared again.
	Finished uint64
	// OldestWaiting is when the oldest file no scanner has taken was
	// queued; zero when none waits.
	OldestWaiting time.Time
	// Unfinished counts the files with result events in RESULTS (one
	// subject per file; events are compacted about a second after the
	// recorder applied them). It covers files accepted but not queued for
	// the scanners yet (the recorder queues each after applying its first
	// event), which the work queue does not show.
	Unfinished uint64
	// Priorities is the part of Waiting, Scanning and OldestWaiting of
	// each priority.
	Priorities map[events.Priority]PriorityQueue
}

// PriorityQueue is one priority's share of a ScanQueue.
type PriorityQueue struct {
	Waiting, Scanning uint64
	OldestWaiting     time.Time
}

// Depth is every accepted file a verdict is still owed for: those in the
// work queue, taken or not, or still on their way to it.
func (q ScanQueue) Depth() uint64 { return max(q.Waiting+q.Scanning, q.Unfinished) }

// Pending is the files of Depth no scanner holds yet.
func (q ScanQueue) Pending() uint64 { return q.Depth() - min(q.Scanning, q.Depth()) }

// Ahead is the queue as a new file of priority p meets it: the files that
// are scanned before it, or beside it. Scanners take high and normal work
// before low work (keeping low only a small share while they do), so a
// backlog of low work (rescans) never makes an upload wait, and is left out
// of what an upload (or a high-priority file) waits for; a low file waits
// for everything. Scanning and Finished stay whole: every scanner that is
// busy is busy for everyone, and the drain rate is all scanners'.
// Unfinished stays whole too (result events do not say their priority): a
// large rescan request shows in it for the second or so until its files are
// queued.
func (q ScanQueue) Ahead(p events.Priority) ScanQueue {
	if p == events.PriorityLow || q.Priorities == nil {
		return q
	}
	low := q.Priorities[events.PriorityLow]
	q.Waiting -= min(low.Waiting, q.Waiting)
	q.OldestWaiting = time.Time{}
	for _, other := range []events.Priority{events.PriorityHigh, events.PriorityNormal} {
		if t := q.Priorities[other].OldestWaiting; !t.IsZero() && (q.OldestWaiting.IsZero() || t.Before(q.OldestWaiting)) {
			q.OldestWaiting = t
		}
	}
	return q
}

// ScanQueueState reads the scan queue: a stream-info request on FILES, one
// consumer-list request, a stream-info request on RESULTS, and one message
// read per priority for the age of its oldest waiting file while any waits.
//
// Each consumer delivers its priority's files in stream order, so its
// oldest waiting file is the first of its subjects after the stream
// sequence it last delivered. Files leave the stream when their scanner
// acknowledges them (a work queue), so the stream's last sequence minus
// the messages it still holds counts every file that has left: a
// completion counter over every priority without reading any state of its
// own.
func (b *Bus) ScanQueueState(ctx context.Context) (ScanQueue, error) {
	files, err := b.JS.Stream(ctx, events.StreamFiles)
	if err != nil {
		return ScanQueue{}, err
	}
	q := ScanQueue{At: time.Now(), Priorities: map[events.Priority]PriorityQueue{}}
	st := files.CachedInfo().State
	q.Finished = st.LastSeq - min(st.Msgs, st.LastSeq)
	delivered := map[events.Priority]uint64{}
	list := files.ListConsumers(ctx)
	for ci := range list.Info() {
		for _, p := range events.Priorities {
			if ci.Name != events.ScannerConsumer(p) {
				continue
			}
			pq := PriorityQueue{Waiting: ci.NumPending, Scanning: uint64(max(ci.NumAckPending, 0))}
			q.Priorities[p] = pq
			q.Waiting += pq.Waiting
			q.Scanning += pq.Scanning
			delivered[p] = ci.Delivered.Stream
		}
	}
	if err := list.Err(); err != nil {
		return ScanQueue{}, err
	}
	results, err := b.JS.Stream(ctx, events.StreamResults)
	if err != nil {
		return ScanQueue{}, err
	}
	q.Unfinished = results.CachedInfo().State.NumSubjects
	for _, p := range events.Priorities {
		pq := q.Priorities[p]
		if pq.Waiting == 0 {
			continue
		}
		msg, err := files.GetMsg(ctx, delivered[p]+1, jetstream.WithGetMsgSubject(events.PrioritySubjects(p)))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			// Taken between the two requests: nothing of it waits any more.
			q.Waiting -= pq.Waiting
			pq.Waiting = 0
		case err != nil:
			return ScanQueue{}, err
		default:
			pq.OldestWaiting = msg.Time
			if q.OldestWaiting.IsZero() || msg.Time.Before(q.OldestWaiting) {
				q.OldestWaiting = msg.Time
			}
		}
		q.Priorities[p] = pq
	}
	return q, nil
}
