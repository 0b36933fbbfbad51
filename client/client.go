package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// DefaultServer is the address `scangate serve` listens on out of the box.
const DefaultServer = "http://127.0.0.1:8008"

// Client talks to one or more scangate nodes. It is safe for concurrent
// use; create one and share it.
type Client struct {
	servers   []*url.URL
	hc        *http.Client
	apikey    atomic.Pointer[string]
	retry     Retry
	idle      time.Duration
	answer    time.Duration
	userAgent string
	next      atomic.Uint64 // round robin over servers
}

// Retry says how requests that are safe to repeat are retried. Waits grow
// exponentially from InitialInterval to MaxInterval with ±50% jitter; a
// Retry-After from the server replaces the computed wait (capped at
// MaxRetryAfter).
type Retry struct {
	MaxAttempts     int           // attempts per request, the first included; 1 turns retries off
	InitialInterval time.Duration // first wait
	MaxInterval     time.Duration // longest computed wait
	MaxElapsed      time.Duration // give up on a request after this long (0: no limit but MaxAttempts)
	MaxRetryAfter   time.Duration // longest Retry-After honoured
}

// DefaultRetry is the policy New uses: about two minutes of attempts, long
// enough to ride out a node restart or an admission refusal.
var DefaultRetry = Retry{
	MaxAttempts:     10,
	InitialInterval: 250 * time.Millisecond,
	MaxInterval:     15 * time.Second,
	MaxElapsed:      5 * time.Minute,
	MaxRetryAfter:   2 * time.Minute,
}

// Default timeouts; see WithTimeouts.
const (
	DefaultIdleTimeout   = 60 * time.Second
	DefaultAnswerTimeout = 5 * time.Minute
)

// Option configures a Client.
type Option func(*Client)

// WithAPIKey sends key in the apikey header of every request: a static API
// key, or a session id from POST /login (see Client.Login).
func WithAPIKey(key string) Option {
	return func(c *Client) { c.SetAPIKey(key) }
}

// WithHTTPClient makes the client use hc. Its Timeout should be zero: an
// overall deadline would cut large uploads short (the client's own idle
// and answer timeouts apply whatever hc is).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// WithRetry replaces DefaultRetry.
func WithRetry(r Retry) Option {
	return func(c *Client) { c.retry = r }
}

// WithTimeouts sets how long a request may make no progress: idle while
// sending its body or reading its answer, answer between the last byte
// sent and the first byte of the answer (scangate answers a part once it
// is durable, and the last chunk of a sequential upload once the whole
// file is hashed). Zero keeps the default.
func WithTimeouts(idle, answer time.Duration) Option {
	return func(c *Client) {
		if idle > 0 {
			c.idle = idle
		}
		if answer > 0 {
			c.answer = answer
		}
	}
}

// WithUserAgent sets the HTTP User-Agent header. (The MetaDefender
// user_agent header, which picks a workflow, is FileOptions.UserAgent.)
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client for the given servers (base URLs such as
// "http://127.0.0.1:8008"; a missing scheme means http). No server means
// DefaultServer.
func New(servers []string, opts ...Option) (*Client, error) {
	if len(servers) == 0 {
		servers = []string{DefaultServer}
	}
	c := &Client{retry: DefaultRetry, idle: DefaultIdleTimeout, answer: DefaultAnswerTimeout, userAgent: "scangate-client"}
	for _, s := range servers {
		u, err := parseServer(s)
		if err != nil {
			return nil, err
		}
		c.servers = append(c.servers, u)
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: defaultTransport()}
	}
	return c, nil
}

// defaultTransport keeps enough idle connections per node for parallel
// parts, and bounds the connection set-up; it sets no overall timeout.
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.MaxIdleConnsPerHost = 32
	t.ExpectContinueTimeout = time.Second
	return t
}

func parseServer(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil {
		return nil, fmt.Errorf("scangate: server %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("scangate: server %q: want http(s)://host[:port]", s)
	}
	return u, nil
}

// Servers returns the base URLs the client spreads its requests over.
func (c *Client) Servers() []string {
	out := make([]string, len(c.servers))
	for i, u := range c.servers {
		out[i] = u.String()
	}
	return out
}

// SetAPIKey changes the apikey sent from now on ("" sends none).
func (c *Client) SetAPIKey(key string) { c.apikey.Store(&key) }

func (c *Client) key() string {
	if k := c.apikey.Load(); k != nil {
		return *k
	}
	return ""
}

// pick returns the next server in turn: successive requests, and the
// retries of one request, go to different nodes.
func (c *Client) pick() *url.URL {
	return c.servers[(c.next.Add(1)-1)%uint64(len(c.servers))]
}

// request is one logical request; exchange may send it several times.
type request struct {
	method string
	path   string // under the server's base URL, unless abs is set
	abs    string // an absolute URL (pre-signed): not spread over servers
	header http.Header
	// body returns a fresh body for each attempt (nil: no body). An error
	// from it is final: the bytes cannot be read again.
	body       func() (io.Reader, error)
	size       int64
	progress   func(int64) // bytes sent; a failed attempt takes its bytes back
	idempotent bool        // safe to repeat whatever happened to an earlier attempt
	noKey      bool        // send no apikey (login)
}

// response is a whole answer; bodies are small JSON documents.
type response struct {
	base   *url.URL // the server that answered (nil for an absolute URL)
	status int
	header http.Header
	body   []byte
}

// maxAnswer bounds the answer body read into memory.
const maxAnswer = 64 << 20

var errIdle = errors.New("no progress within the idle timeout")

// exchange sends req with retries as the policy and req.idempotent allow,
// and returns the 200 answer or an error (*Error for any other status).
func (c *Client) exchange(ctx context.Context, req *request) (*response, error) {
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = c.retry.InitialInterval
	eb.MaxInterval = c.retry.MaxInterval
	eb.RandomizationFactor = 0.5
	eb.Multiplier = 2
	attempts := c.retry.MaxAttempts
	if attempts < 1 {
		attempts = 1
	}
	op := func() (*response, error) {
		resp, wrote, err := c.once(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, backoff.Permanent(context.Cause(ctx))
			}
			if req.idempotent || !wrote {
				return nil, err
			}
			return nil, backoff.Permanent(&outcomeUnknownError{err: err})
		}
		if resp.status == http.StatusOK {
			return resp, nil
		}
		e := newError(req, resp)
		switch {
		case resp.status == http.StatusServiceUnavailable || resp.status == http.StatusTooManyRequests ||
			resp.status == http.StatusForbidden && e.RetryAfter > 0:
			// scangate refuses these before reading the body and keeps
			// nothing of them: repeating is safe for every request.
			if e.RetryAfter > 0 {
				return nil, &retryAfterError{err: e, ra: &backoff.RetryAfterError{Duration: min(e.RetryAfter, c.retry.MaxRetryAfter)}}
			}
			return nil, e
		case req.idempotent && resp.status >= 500:
			return nil, e
		}
		return nil, backoff.Permanent(e)
	}
	opts := []backoff.RetryOption{backoff.WithBackOff(eb), backoff.WithMaxTries(uint(attempts)), backoff.WithMaxElapsedTime(c.retry.MaxElapsed)}
	if c.retry.MaxElapsed <= 0 {
		opts[2] = backoff.WithMaxElapsedTime(0)
	}
	resp, err := backoff.Retry(ctx, op, opts...)
	var ra *retryAfterError
	if errors.As(err, &ra) {
		err = ra.err
	}
	return resp, err
}

// once sends req to one server. wrote tells whether the whole request
// (headers and body) was handed to the connection: until it was, the
// server cannot have acted on it.
func (c *Client) once(ctx context.Context, req *request) (resp *response, wrote bool, err error) {
	target := req.abs
	var base *url.URL
	if target == "" {
		base = c.pick()
		target = base.String() + req.path
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The watchdog cancels the attempt when nothing moves: no body byte
	// read for idle, no answer for answer after the last one.
	dog := time.AfterFunc(c.idle, func() { cancel(errIdle) })
	defer dog.Stop()
	var body *watchedReader
	if req.body != nil {
		b, berr := req.body()
		if berr != nil {
			return nil, false, backoff.Permanent(berr)
		}
		body = &watchedReader{r: b, dog: dog, idle: c.idle, answer: c.answer, size: req.size, progress: req.progress}
		// Bytes of an attempt that failed count for nothing. The
		// transport may still be reading the body on its own goroutine
		// after Do returned: end stops the count before taking it back.
		defer func() { body.end(err != nil || resp.status != http.StatusOK) }()
	} else {
		dog.Reset(c.answer)
	}
	var wroteAll atomic.Bool
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { wroteAll.Store(i.Err == nil) },
	})
	var rbody io.Reader
	if body != nil {
		rbody = body
	}
	hr, err := http.NewRequestWithContext(actx, req.method, target, rbody)
	if err != nil {
		return nil, false, backoff.Permanent(err)
	}
	if body != nil {
		hr.ContentLength = req.size
		if req.size == 0 {
			hr.Body = http.NoBody
		}
	}
	for k, v := range req.header {
		hr.Header[k] = v
	}
	if k := c.key(); k != "" && !req.noKey {
		hr.Header.Set("apikey", headerValue(k))
	}
	hr.Header.Set("User-Agent", c.userAgent)
	hres, err := c.hc.Do(hr)
	if err != nil {
		return nil, wroteAll.Load() && (body == nil || body.all()), attemptError(actx, err)
	}
	defer hres.Body.Close()
	dog.Reset(c.idle)
	raw, err := io.ReadAll(io.LimitReader(&kickReader{r: hres.Body, dog: dog, idle: c.idle}, maxAnswer))
	if err != nil {
		// The server answered; what it said is lost. For a request that
		// creates something, it may have been a 200.
		return nil, true, attemptError(actx, err)
	}
	return &response{base: base, status: hres.StatusCode, header: hres.Header, body: raw}, true, nil
}

// attemptError names the idle watchdog as the cause when it fired.
func attemptError(actx context.Context, err error) error {
	if errors.Is(context.Cause(actx), errIdle) {
		return fmt.Errorf("%w: %w", errIdle, err)
	}
	return err
}

// watchedReader is a request body: it counts what was sent, reports
// progress, and keeps the watchdog from firing while bytes move.
type watchedReader struct {
	r            io.Reader
	dog          *time.Timer
	idle, answer time.Duration
	size         int64
	progress     func(int64)

	mu    sync.Mutex // the transport reads on a goroutine of its own
	sent  int64
	ended bool
}

var errAttemptEnded = errors.New("attempt ended")

func (w *watchedReader) Read(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return 0, errAttemptEnded
	}
	if rest := w.size - w.sent; int64(len(p)) > rest {
		p = p[:rest] // never send more than Content-Length
	}
	if len(p) == 0 {
		w.dog.Reset(w.answer)
		return 0, io.EOF
	}
	n, err := w.r.Read(p)
	if n > 0 {
		w.sent += int64(n)
		if w.progress != nil {
			w.progress(int64(n))
		}
		if w.sent == w.size {
			w.dog.Reset(w.answer) // all sent: now the server works
		} else {
			w.dog.Reset(w.idle)
		}
	}
	if err == io.EOF && w.sent < w.size {
		err = io.ErrUnexpectedEOF // the source is shorter than announced
	}
	return n, err
}

// all reports whether every byte of the body was read.
func (w *watchedReader) all() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent == w.size
}

// end stops the body; failed takes its bytes back from the progress.
func (w *watchedReader) end(failed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	if failed && w.progress != nil && w.sent > 0 {
		w.progress(-w.sent)
	}
}

// kickReader keeps the watchdog from firing while an answer arrives.
type kickReader struct {
	r    io.Reader
	dog  *time.Timer
	idle time.Duration
}

func (k *kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.dog.Reset(k.idle)
	}
	return n, err
}

// retryAfterError carries the server's Retry-After to the backoff loop
// without losing the error it came with.
type retryAfterError struct {
	err error
	ra  *backoff.RetryAfterError
}

func (e *retryAfterError) Error() string   { return e.err.Error() }
func (e *retryAfterError) Unwrap() []error { return []error{e.err, e.ra} }

// getJSON GETs path and decodes the 200 answer into out, with retries.
func (c *Client) getJSON(ctx context.Context, path string, header http.Header, out any) error {
	resp, err := c.exchange(ctx, &request{method: http.MethodGet, path: path, header: header, idempotent: true})
	if err != nil {
		return err
	}
	return decode(resp, out)
}

// sendJSON sends in as a JSON body and returns the 200 answer.
func (c *Client) sendJSON(ctx context.Context, method, path string, in any, idempotent bool) (*response, error) {
	raw, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	return c.exchange(ctx, &request{method: method, path: path, header: h, idempotent: idempotent,
		size: int64(len(raw)), body: func() (io.Reader, error) { return bytes.NewReader(raw), nil }})
}

func decode(resp *response, out any) error {
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp.body, out); err != nil {
		return fmt.Errorf("scangate: unexpected answer %.200q: %w", resp.body, err)
	}
	return nil
}

// headerValue percent-encodes a header value when it has to: scangate
// (like MetaDefender) percent-decodes every header, so a '%' or a byte
// outside printable ASCII must be encoded; anything else goes as it is, so
// servers that do not decode see the plain value.
func headerValue(v string) string {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b == '%' || b < 0x20 || b > 0x7e {
			return url.PathEscape(v)
		}
	}
	return v
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(max(s, 1)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), time.Second)
	}
	return 0
}
