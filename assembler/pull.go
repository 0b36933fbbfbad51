package assembler

import (
	"context"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/bus"
)

// pull consumes one partition's durable consumer as a member of group.
// While another process holds the partition the pulls simply wait; they
// take over when it stops.
//
// With inFlight 1 events are applied one at a time, in stream order. With
// more, events of different files (the last token of the subject) run
// concurrently and those of one file one after another in stream order:
// records of different files are independent, so only each file's own
// order matters, and running many at once lets their writes share group
// commits instead of each waiting for its own fsync. handle acknowledges
// each event once applied; after a crash the unacknowledged ones come
// again, in order, and whatever was applied already is a no-op.
func pull(ctx context.Context, b *bus.Bus, stream, consumer, group string, inFlight int, log zerolog.Logger, handle func(jetstream.Msg)) {
	for ctx.Err() == nil {
		cons, err := b.JS.Consumer(ctx, stream, consumer)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Warn().Err(err).Str("consumer", consumer).Msg("partition consumer unavailable; retrying")
			sleep(ctx, time.Second)
			continue
		}
		it, err := cons.Messages(jetstream.PullPriorityGroup(group), jetstream.PullMaxMessages(inFlight))
		if err != nil {
			log.Warn().Err(err).Str("consumer", consumer).Msg("partition subscription failed; retrying")
			sleep(ctx, time.Second)
			continue
		}
		stop := context.AfterFunc(ctx, it.Stop)
		apply := handle
		var lanes *fileLanes
		if inFlight > 1 {
			lanes = newFileLanes(inFlight, handle)
			apply = lanes.add
		}
		for {
			msg, err := it.Next()
			if err != nil {
				break
			}
			apply(msg)
		}
		stop()
		it.Stop()
		if lanes != nil {
			lanes.wait()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// recoverEvent turns a panic while applying an event into an error log, a
// call to fail (which gives the file a Failed verdict, where there is one to
// give) and a terminated message: one bad event must not take the process
// (and every partition it owns) down, nor be redelivered for ever. Use it
// deferred.
func recoverEvent(msg jetstream.Msg, log zerolog.Logger, fail func()) {
	v := recover()
	if v == nil {
		return
	}
	log.Error().Any("panic", v).Str("stack", string(debug.Stack())).Str("subject", msg.Subject()).
		Msg("applying an event panicked; event dropped")
	if fail != nil {
		func() {
			defer func() { _ = recover() }()
			fail()
		}()
	}
	_ = msg.TermWithReason("handler panicked")
}

// fileLanes runs one goroutine per file with events pending, each applying
// its file's events in the order they arrived.
type fileLanes struct {
	handle func(jetstream.Msg)
	slots  chan struct{} // bounds the events held at once
	mu     sync.Mutex
	lanes  map[string][]jetstream.Msg // file → events not yet applied; present while its goroutine runs
	wg     sync.WaitGroup
}

func newFileLanes(inFlight int, handle func(jetstream.Msg)) *fileLanes {
	return &fileLanes{handle: handle, slots: make(chan struct{}, inFlight), lanes: map[string][]jetstream.Msg{}}
}

func (l *fileLanes) add(msg jetstream.Msg) {
	l.slots <- struct{}{}
	subj := msg.Subject()
	key := subj[strings.LastIndexByte(subj, '.')+1:]
	l.mu.Lock()
	defer l.mu.Unlock()
	if q, running := l.lanes[key]; running {
		l.lanes[key] = append(q, msg)
		return
	}
	l.lanes[key] = []jetstream.Msg{msg}
	l.wg.Go(func() { l.run(key) })
}

func (l *fileLanes) run(key string) {
	for {
		l.mu.Lock()
		q := l.lanes[key]
		if len(q) == 0 {
			delete(l.lanes, key)
			l.mu.Unlock()
			return
		}
		msg := q[0]
		l.lanes[key] = q[1:]
		l.mu.Unlock()
		l.handle(msg)
		<-l.slots
	}
}

// wait returns once every event handed over has been applied.
func (l *fileLanes) wait() { l.wg.Wait() }
