package notifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/result"
)

// kind is what a target receives. Each kind of a file has its own delivery
// state and webhook-id; they share the scan-done message.
type kind string

const (
	// kindCallback receives the public result JSON (callbackurl).
	kindCallback kind = "callback"
	// kindSanitized receives the sanitized bytes (sanitizedurl), with
	// headers dataid, sanitization-result, sanitized-file-hash and
	// Content-Disposition.
	kindSanitized kind = "sanitized"
)

// target is one place to deliver one file's outcome to.
type target struct {
	kind kind
	url  string
	// minRev is the results revision the final record was written at: a
	// read that finds less came from a replica behind the write.
	minRev uint64
}

// targetsOf lists what a scan-done asks to deliver.
func targetsOf(ev *events.ScanDone) []target {
	var ts []target
	if ev.CallbackURL != "" {
		ts = append(ts, target{kind: kindCallback, url: ev.CallbackURL, minRev: ev.Revision})
	}
	if ev.SanitizedURL != "" {
		ts = append(ts, target{kind: kindSanitized, url: ev.SanitizedURL, minRev: ev.Revision})
	}
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

// errStale marks a read that came from a replica behind the write: read
// again shortly.
var errStale = errors.New("stale read")

// errPermanent marks a payload that can never be produced: retrying is
// pointless.
var errPermanent = errors.New("permanent")

// payload is what one delivery sends: a body that can be read more than
// once (a first pass signs and hashes it, the second sends it, so even a
// large sanitized file is never held in memory) and its headers.
type payload struct {
	open   func() (io.ReadCloser, error)
	size   int64
	header http.Header
}

// payload is the body and content headers t receives for dataID.
func (n *Notifier) payload(ctx context.Context, t target, dataID string) (*payload, error) {
	raw, rev, err := n.results.GetRaw(ctx, dataID)
	if errors.Is(err, result.ErrNotFound) && t.minRev == 0 {
		return nil, fmt.Errorf("%w: no result stored for %s", errPermanent, dataID)
	}
	if err != nil {
		return nil, err
	}
	if rev < t.minRev {
		// What every reader will see is the record at minRev: never deliver
		// an older one (an in-progress 255) from a lagging replica.
		return nil, fmt.Errorf("result of %s read at revision %d, written at %d: %w", dataID, rev, t.minRev, errStale)
	}
	body, err := result.ResultJSON(raw)
	if err != nil || len(body) == 0 {
		return nil, fmt.Errorf("%w: stored result of %s is unreadable: %v", errPermanent, dataID, err)
	}
	switch t.kind {
	case kindCallback:
		return &payload{
			open:   func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
			size:   int64(len(body)),
			header: http.Header{"Content-Type": {"application/json"}},
		}, nil
	case kindSanitized:
		var res result.Result
		if err := json.Unmarshal(body, &res); err != nil {
			return nil, fmt.Errorf("%w: stored result of %s is unreadable: %v", errPermanent, dataID, err)
		}
		pp := res.ProcessInfo.PostProcessing
		if n.blobs == nil || !strings.HasPrefix(pp.ActionsRan, "Sanitized") {
			return nil, fmt.Errorf("%w: no sanitized file for %s (sanitization %q)", errPermanent, dataID, pp.ActionsRan)
		}
		obj, err := n.blobs.Open(ctx, blob.SanitizedKey(dataID))
		if errors.Is(err, blob.ErrNotFound) {
			return nil, fmt.Errorf("%w: sanitized file of %s is gone", errPermanent, dataID)
		}
		if err != nil {
			return nil, err
		}
		size := obj.Size()
		obj.Close()
		name := pp.ConvertedDestination
		if name == "" {
			name = dataID
		}
		return &payload{
			open: func() (io.ReadCloser, error) { return n.blobs.Open(ctx, blob.SanitizedKey(dataID)) },
			size: size,
			header: http.Header{
				"Content-Type":        {"application/octet-stream"},
				"Content-Disposition": {mime.FormatMediaType("attachment", map[string]string{"filename": name})},
				"Dataid":              {dataID},
				"Sanitization-Result": {pp.ActionsRan},
			},
		}, nil
	}
	return nil, fmt.Errorf("%w: target kind %q cannot be delivered", errPermanent, t.kind)
}
