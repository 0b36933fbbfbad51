package assembler

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/bus"
)

// pull consumes one partition's durable consumer in order, as a member of
// group. While another process holds the partition the pulls simply wait;
// they take over when it stops.
func pull(ctx context.Context, b *bus.Bus, stream, consumer, group string, log zerolog.Logger, handle func(jetstream.Msg)) {
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
		it, err := cons.Messages(jetstream.PullPriorityGroup(group), jetstream.PullMaxMessages(1))
		if err != nil {
			log.Warn().Err(err).Str("consumer", consumer).Msg("partition subscription failed; retrying")
			sleep(ctx, time.Second)
			continue
		}
		stop := context.AfterFunc(ctx, it.Stop)
		for {
			msg, err := it.Next()
			if err != nil {
				break
			}
			handle(msg)
		}
		stop()
		it.Stop()
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
