package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Error is an answer other than 200: its status and the server's "err"
// text.
type Error struct {
	Method     string
	URL        string
	StatusCode int
	Message    string        // the "err" field, or the start of a body that is not scangate's JSON
	RetryAfter time.Duration // the Retry-After header, 0 when absent
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("scangate: %s %s: %d %s", e.Method, e.URL, e.StatusCode, msg)
}

// StatusCode returns the HTTP status of err's *Error, or 0 when err has none.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

func newError(req *request, resp *response) *Error {
	e := &Error{Method: req.method, StatusCode: resp.status, RetryAfter: retryAfter(resp.header)}
	e.URL = req.path
	if req.abs != "" {
		e.URL = redactQuery(req.abs) // a signed URL's query is a credential
	}
	var body struct {
		Err string `json:"err"`
	}
	if json.Unmarshal(resp.body, &body) == nil && body.Err != "" {
		e.Message = body.Err
	} else {
		e.Message = strings.TrimSpace(string(resp.body[:min(len(resp.body), 200)]))
	}
	return e
}

func redactQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

// ErrNotFound is what a lookup of an unknown data_id or hash returns
// (scangate answers those 200 {"<id>": "Not Found"}, as MetaDefender does).
// Test with errors.Is; the error is a *NotFoundError.
var ErrNotFound = errors.New("scangate: not found")

// NotFoundError names what was not found.
type NotFoundError struct {
	ID string // the data_id or hash looked up
}

func (e *NotFoundError) Error() string        { return fmt.Sprintf("scangate: %s: not found", e.ID) }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// ErrOutcomeUnknown marks a failed request that created something (a
// whole-file upload, a sequential chunk, a new multipart session) after it
// was sent whole: the server may have accepted it. The client does not
// repeat such requests by itself, since a repeat could scan a file twice or
// append a chunk twice. Test with errors.Is.
var ErrOutcomeUnknown = errors.New("the server may have accepted the request")

type outcomeUnknownError struct{ err error }

func (e *outcomeUnknownError) Error() string {
	return fmt.Sprintf("scangate: %v (%v)", e.err, ErrOutcomeUnknown)
}
func (e *outcomeUnknownError) Unwrap() error        { return e.err }
func (e *outcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }
