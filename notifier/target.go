package notifier

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/result"
)

// kind is what a target receives. Each kind of a file has its own delivery
// state and webhook-id; they share the scan-done message.
type kind string

const (
	// kindCallback receives the public result JSON (callbackurl).
	kindCallback kind = "callback"
	// kindSanitized will receive the sanitized bytes (sanitizedurl), with
	// headers dataid, sanitization-result, sanitized-file-hash and
	// Content-Disposition. Not delivered yet: it needs the blob store here.
	// kindSanitized kind = "sanitized"
)

// target is one place to deliver one file's outcome to.
type target struct {
	kind kind
	url  string
}

// targetsOf lists what a scan-done asks to deliver.
func targetsOf(ev *events.ScanDone) []target {
	var ts []target
	if ev.CallbackURL != "" {
		ts = append(ts, target{kind: kindCallback, url: ev.CallbackURL})
	}
	// sanitizedurl: append target{kind: kindSanitized, url: ev.SanitizedURL}
	// here once payload below can produce its body.
	return ts
}

// callbackKey is the webhooks-bucket key of dataID's callback state. It is
// the bare data_id because that is what GET /file/webhook/{data_id} serves.
func callbackKey(dataID string) string { return dataID }

// key is where t's delivery state for dataID lives; other kinds get a
// suffix so they never collide with the callback state.
func (t target) key(dataID string) string {
	if t.kind == kindCallback {
		return callbackKey(dataID)
	}
	return dataID + "." + string(t.kind)
}

// webhookID is the Standard Webhooks message id: the same on every attempt
// of one delivery, so receivers can de-duplicate redeliveries.
func (t target) webhookID(dataID string) string {
	if t.kind == kindCallback {
		return "msg_" + dataID
	}
	return "msg_" + dataID + "_" + string(t.kind)
}

// errPermanent marks a payload that can never be produced: retrying is
// pointless.
var errPermanent = errors.New("permanent")

// payload is the body and content headers t receives for dataID.
func (n *Notifier) payload(ctx context.Context, t target, dataID string) ([]byte, http.Header, error) {
	switch t.kind {
	case kindCallback:
		raw, err := n.results.GetRaw(ctx, dataID)
		if errors.Is(err, result.ErrNotFound) {
			return nil, nil, fmt.Errorf("%w: no result stored for %s", errPermanent, dataID)
		}
		if err != nil {
			return nil, nil, err
		}
		body, err := result.ResultJSON(raw)
		if err != nil || len(body) == 0 {
			return nil, nil, fmt.Errorf("%w: stored result of %s is unreadable: %v", errPermanent, dataID, err)
		}
		return body, http.Header{"Content-Type": {"application/json"}}, nil
	}
	return nil, nil, fmt.Errorf("%w: target kind %q cannot be delivered", errPermanent, t.kind)
}
