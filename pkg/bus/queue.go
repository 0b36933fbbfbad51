package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/events"
)

// ScanQueue is the FILES work queue as the scanners' shared consumer sees
// it at one moment.
type ScanQueue struct {
	At       time.Time
	Waiting  uint64 // files no scanner has taken yet
	Scanning uint64 // files a scanner holds: being scanned, or due for redelivery
	// Finished counts files that have left the queue (their scanner acked
	// them). It is a running total with an arbitrary origin: only the
	// difference between two readings means anything, and it may go back
	// when the consumer is declared again.
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
}

// Depth is every accepted file a verdict is still owed for: those in the
// work queue, taken or not, or still on their way to it.
func (q ScanQueue) Depth() uint64 { return max(q.Waiting+q.Scanning, q.Unfinished) }

// Pending is the files of Depth no scanner holds yet.
func (q ScanQueue) Pending() uint64 { return q.Depth() - min(q.Scanning, q.Depth()) }

// ScanQueueState reads the scan queue: one consumer-info request, one
// stream-info request on RESULTS, and one message read for the age of the
// oldest waiting file while any waits.
//
// The consumer delivers in stream order, so every message up to its
// delivered stream sequence has been handed to a scanner at least once and
// the ones still present are exactly those it holds (NumAckPending); the
// rest have been acked, and, the stream being a work queue, removed. That
// makes delivered-minus-held a completion counter without reading the
// stream's own state. The oldest waiting file is the first message after
// the delivered sequence.
func (b *Bus) ScanQueueState(ctx context.Context) (ScanQueue, error) {
	cons, err := b.JS.Consumer(ctx, events.StreamFiles, events.ConsumerScanners)
	if err != nil {
		return ScanQueue{}, err
	}
	ci := cons.CachedInfo()
	q := ScanQueue{At: time.Now(), Waiting: ci.NumPending, Scanning: uint64(max(ci.NumAckPending, 0))}
	if d := ci.Delivered.Stream; d > q.Scanning {
		q.Finished = d - q.Scanning
	}
	results, err := b.JS.Stream(ctx, events.StreamResults)
	if err != nil {
		return ScanQueue{}, err
	}
	q.Unfinished = results.CachedInfo().State.NumSubjects
	if q.Waiting == 0 {
		return q, nil
	}
	st, err := b.stream(ctx, events.StreamFiles)
	if err != nil {
		return ScanQueue{}, err
	}
	msg, err := st.GetMsg(ctx, ci.Delivered.Stream+1, jetstream.WithGetMsgSubject(events.FilesSubjects))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Taken between the two requests: nothing waits any more.
		q.Waiting = 0
	case err != nil:
		return ScanQueue{}, err
	default:
		q.OldestWaiting = msg.Time
	}
	return q, nil
}
