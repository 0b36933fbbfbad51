package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

// errConflict: another notifier wrote the state since we read it.
var errConflict = errors.New("webhook state changed concurrently")

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

// LoadState returns the stored delivery state JSON of dataID's callback,
// ready to serve, or ErrNoState.
func LoadState(ctx context.Context, kv jetstream.KeyValue, dataID string) ([]byte, error) {
	e, err := kv.Get(ctx, callbackKey(dataID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return nil, ErrNoState
	}
	if err != nil {
		return nil, fmt.Errorf("webhooks get %s: %w", dataID, err)
	}
	return e.Value(), nil
}

// loadState reads and decodes the state under key with its revision.
func loadState(ctx context.Context, kv jetstream.KeyValue, key string) (*State, uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNoState
	}
	if err != nil {
		return nil, 0, fmt.Errorf("webhooks get %s: %w", key, err)
	}
	var s State
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return nil, 0, fmt.Errorf("webhooks decode %s: %w", key, err)
	}
	return &s, e.Revision(), nil
}

// saveState writes s under key, replacing exactly revision rev (0: creating
// it), so two notifiers handling the same message at once cannot both
// count an attempt as theirs. It returns the new revision.
func saveState(ctx context.Context, kv jetstream.KeyValue, key string, s *State, rev uint64) (uint64, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return 0, fmt.Errorf("webhooks encode %s: %w", key, err)
	}
	var newRev uint64
	if rev == 0 {
		newRev, err = kv.Create(ctx, key, b)
	} else {
		newRev, err = kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || wrongSequence(err) {
		return 0, fmt.Errorf("webhooks put %s: %w", key, errConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("webhooks put %s: %w", key, err)
	}
	return newRev, nil
}

func wrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
