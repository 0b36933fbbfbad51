// Package notifier is the webhook role: it consumes scan-done events and
// POSTs each file's result to its callbackurl, signed with Standard Webhooks
// headers, retrying with backoff until the receiver takes it, says 410, or
// the retry budget is spent. Each delivery's state lives in KV webhooks.
//
// A retry is never a sleep in this process: the attempt is recorded in KV
// and the scan-done message is handed back to JetStream with a delay, so a
// pending retry survives the notifier and may be made by any of its peers.
package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/metrics"
	"github.com/scangate/scangate/pkg/netguard"
	"github.com/scangate/scangate/pkg/result"
)

// MaxInFlight bounds the deliveries one notifier works on at once. Each
// attempt is bounded by the configured timeout, so a slow receiver holds one
// slot for at most that long and never blocks the others.
const MaxInFlight = 64

// resubscribeDelay is the pause before consuming again after the consumer
// subscription broke (consumer deleted and re-declared, and the like).
const resubscribeDelay = time.Second

// Notifier delivers webhooks. Run it on as many hosts as needed: they share
// one durable consumer, and the KV state makes every attempt count once.
type Notifier struct {
	b       *bus.Bus
	cfg     config.WebhooksConfig
	log     zerolog.Logger
	results result.Store
	client  *http.Client
	key     []byte // webhooks.secret decoded; nil: deliveries are not signed
	blobs   blob.Store
	hosts   hostSlots
	metrics *metrics.Metrics // nil: none
}

// Option configures a Notifier.
type Option func(*Notifier)

// WithBlobs gives the notifier the blob store, so it can deliver sanitized
// files to sanitizedurl targets.
func WithBlobs(s blob.Store) Option { return func(n *Notifier) { n.blobs = s } }

// WithMetrics has the notifier count delivery outcomes in m.
func WithMetrics(m *metrics.Metrics) Option { return func(n *Notifier) { n.metrics = m } }

// New checks cfg and prepares a notifier on b.
func New(b *bus.Bus, cfg config.WebhooksConfig, log zerolog.Logger, opts ...Option) (*Notifier, error) {
	if cfg.MaxAttempts < 1 {
		return nil, errors.New("webhooks.max_attempts: must be at least 1")
	}
	if cfg.Timeout <= 0 {
		return nil, errors.New("webhooks.timeout: must be positive")
	}
	if r := cfg.Retry; r.InitialInterval <= 0 || r.MaxInterval < r.InitialInterval {
		return nil, errors.New("webhooks.retry: want 0 < initial_interval <= max_interval")
	}
	n := &Notifier{
		b:       b,
		cfg:     cfg,
		log:     log.With().Str("role", "notifier").Logger(),
		results: result.Store{KV: b.Results},
		client:  netguard.NewClient(cfg.AllowPrivateTargets, cfg.Timeout),
	}
	if cfg.Secret != "" {
		key, err := config.WebhookKey(cfg.Secret)
		if err != nil {
			return nil, fmt.Errorf("webhooks.secret: %w", err)
		}
		n.key = key
	}
	for _, o := range opts {
		o(n)
	}
	return n, nil
}

// Run consumes scan-done events until ctx is done. On the way out it stops
// pulling, hands messages it had pulled but not started back to JetStream
// (a peer gets them at once instead of after the ack wait), and waits for
// the attempts under way — each bounded by the configured timeout — so
// their outcome is recorded rather than lost.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, MaxInFlight)
	for {
		err := n.consume(ctx, slots, &wg)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("notifier: %w", err) // closed for good; nothing to wait for
		}
		n.log.Warn().Err(err).Msg("scan-done consumer stopped; subscribing again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(resubscribeDelay):
		}
	}
}

// consume pulls from the durable consumer and starts a handler per message,
// at most cap(slots) at a time, until ctx is done or the subscription breaks.
func (n *Notifier) consume(ctx context.Context, slots chan struct{}, wg *sync.WaitGroup) error {
	cons, err := n.b.JS.Consumer(ctx, events.StreamScans, events.ConsumerNotifier)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", events.ConsumerNotifier, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(MaxInFlight))
	if err != nil {
		return fmt.Errorf("consume %s: %w", events.ConsumerNotifier, err)
	}
	defer handBack(it)
	// Handlers outlive a cancelled ctx on purpose (see Run); each bounds
	// its own work.
	work := context.WithoutCancel(ctx)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			<-slots
			return err
		}
		wg.Go(func() {
			defer func() { <-slots }()
			n.handle(work, msg)
		})
	}
}

// handBack stops the subscription and returns what it had buffered.
func handBack(it jetstream.MessagesContext) {
	it.Drain()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(5 * time.Second))
		if err != nil {
			return
		}
		_ = msg.Nak()
	}
}

// handle processes one scan-done: every target is delivered or given up on
// (ack), or the message is parked until the earliest retry is due.
func (n *Notifier) handle(ctx context.Context, msg jetstream.Msg) {
	// Keep the message ours while an attempt runs, so a timeout close to
	// the ack wait does not get the same delivery started by a peer.
	defer bus.KeepAlive(msg, bus.NotifyAckWait/4)()
	defer func() {
		// A bug met while delivering one file's webhook must not take the
		// process (and every other delivery) down; the delivery is retried
		// later, when the cause may be gone.
		if v := recover(); v != nil {
			n.log.Error().Any("panic", v).Str("stack", string(debug.Stack())).Str("subject", msg.Subject()).
				Msg("webhook delivery panicked; retrying later")
			_ = msg.NakWithDelay(time.Minute)
		}
	}()
	var ev events.ScanDone
	if err := json.Unmarshal(msg.Data(), &ev); err != nil || !ids.Valid(ev.DataID) {
		// Nothing can ever be done with it; redelivering would loop.
		n.log.Error().Err(err).Str("subject", msg.Subject()).Msg("malformed scan-done event dropped")
		_ = msg.Term()
		return
	}
	pending, wait := false, time.Duration(0)
	for _, t := range targetsOf(&ev) {
		st, retryIn, err := n.deliver(ctx, ev.DataID, t)
		if err != nil {
			// KV trouble, not the receiver's: no attempt was lost or
			// counted twice; look again after a backoff.
			if st == nil {
				st = newState(ev.DataID, t)
			}
			delay := n.retryDelay(numDelivered(msg))
			n.logFor(st).Error().Err(err).Dur("retry_in", delay).Msg("webhook bookkeeping failed")
			_ = msg.NakWithDelay(delay)
			return
		}
		if !st.Final() && (!pending || retryIn < wait) {
			pending, wait = true, retryIn
		}
	}
	if pending {
		_ = msg.NakWithDelay(wait)
		return
	}
	_ = msg.Ack()
}

func numDelivered(msg jetstream.Msg) int {
	md, err := msg.Metadata()
	if err != nil || md.NumDelivered < 1 {
		return 1
	}
	return int(min(md.NumDelivered, 1<<16))
}
