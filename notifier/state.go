package notifier

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/kvjson"
	"github.com/scangate/scangate/pkg/result"
)

// Delivery states.
const (
	StatePending   = "pending"   // attempted or about to be; more attempts may follow
	StateDelivered = "delivered" // the receiver answered 2xx
	StateGone      = "gone"      // the receiver answered 410: it wants no more
	StateFailed    = "failed"    // retry budget spent, or the target can never be called
)

// ErrNoState: no delivery has been recorded for that data_id.
var ErrNoState = errors.New("no webhook delivery state")

// State is one target's delivery record in the webhooks bucket. Its JSON is
// served as is by GET /file/webhook/{data_id}, so the first six fields are
// exactly the documented ones; the rest are scangate extras.
type State struct {
	DataID      string `json:"data_id"`
	URL         string `json:"url"`
	RequestTime string `json:"request_time"` // start of the latest attempt, "" before the first
	StatusCode  int    `json:"status_code"`  // latest HTTP status, 0 when there was no response
	Attempts    int    `json:"attempts"`
	NextAttempt string `json:"next_attempt"` // when the next retry is due, "" when none is planned

	State     string `json:"state"`
	Kind      string `json:"kind"`
	WebhookID string `json:"webhook_id"`
	LastError string `json:"last_error"`
}

// Final reports whether no more attempts will be made.
func (s *State) Final() bool {
	return s.State == StateDelivered || s.State == StateGone || s.State == StateFailed
}

// dueIn is how long until the planned retry; zero or less means now. A
// message can come back before its retry is due (redelivered after a
// crash between writing the state and parking the message), and must not
// jump the queue.
func (s *State) dueIn(now time.Time) time.Duration {
	if s.NextAttempt == "" {
		return 0
	}
	t, err := time.Parse(result.TimeFormat, s.NextAttempt)
	if err != nil {
		return 0
	}
	return t.Sub(now)
}

// begin records that an attempt starts now. It is written before the
// request goes out, so an attempt cut short by a crash still counts.
func (s *State) begin(now time.Time) {
	s.Attempts++
	s.State = StatePending
	s.RequestTime = result.FormatTime(now)
	s.StatusCode = 0
	s.NextAttempt = ""
	s.LastError = ""
}

// retryAt plans the next attempt.
func (s *State) retryAt(t time.Time, why string) {
	s.State = StatePending
	s.NextAttempt = result.FormatTime(t)
	s.LastError = why
}

// finish closes the delivery.
func (s *State) finish(state, why string) {
	s.State = state
	s.NextAttempt = ""
	s.LastError = why
}

// states is the webhooks bucket as a store of delivery states.
func states(kv jetstream.KeyValue) kvjson.Store[State] {
	return kvjson.Store[State]{KV: kv, Name: "webhooks"}
}

// LoadState returns the stored delivery state JSON of dataID's callback,
// ready to serve, or ErrNoState.
func LoadState(ctx context.Context, kv jetstream.KeyValue, dataID string) ([]byte, error) {
	raw, _, err := states(kv).GetRaw(ctx, callbackKey(dataID))
	if errors.Is(err, kvjson.ErrNotFound) {
		return nil, ErrNoState
	}
	return raw, err
}

// loadState reads and decodes the state under key with its revision.
func loadState(ctx context.Context, kv jetstream.KeyValue, key string) (*State, uint64, error) {
	s, rev, err := states(kv).Get(ctx, key)
	if errors.Is(err, kvjson.ErrNotFound) {
		return nil, 0, ErrNoState
	}
	return s, rev, err
}

// saveState writes s under key, replacing exactly revision rev (0: creating
// it), so two notifiers handling the same message at once cannot both
// count an attempt as theirs. It returns the new revision.
func saveState(ctx context.Context, kv jetstream.KeyValue, key string, s *State, rev uint64) (uint64, error) {
	return states(kv).Put(ctx, key, s, rev)
}
