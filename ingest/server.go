// Package ingest is scangate's HTTP tier: the MetaDefender REST API on
// fiber. It is stateless — any node answers any request — and thin: it
// streams uploaded bytes to the blob store, publishes events, and reads
// state back from the KV buckets.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/batch"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/health"
	"github.com/scangate/scangate/pkg/localfile"
	"github.com/scangate/scangate/pkg/metrics"
	"github.com/scangate/scangate/pkg/presign"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/session"
	"github.com/scangate/scangate/pkg/workflow"
)

// Options configure the HTTP tier.
type Options struct {
	Workflows             *workflow.Set
	DiskReserve           int64 // refuse uploads that would leave less free disk than this
	AllowPrivateCallbacks bool  // accept callback URLs that point at private addresses
	Version               string
	// MaxQueued: uploads are refused (503) while this many files wait for
	// a scanner. 0: no limit.
	MaxQueued int64
	// MaxQueueWait: uploads are refused (503) while the oldest waiting file
	// has waited longer than this, or the queue holds more than scanners
	// are seen to finish in this time. 0: depth (MaxQueued) only.
	MaxQueueWait time.Duration
	// MinPartSize: a multipart part (or chunk) smaller than this is refused
	// unless it ends the file. Tiny parts cost one event each.
	MinPartSize int64
	// MaxRanges caps the separate byte ranges a session may hold, so its
	// view stays small.
	MaxRanges int
	// IdleTimeout cuts off a client that sends nothing for this long,
	// mid-body or between requests. Uploads of any length are fine as long
	// as bytes keep coming.
	IdleTimeout time.Duration
	// MaxConnections caps open HTTP connections; more are answered 503
	// and closed.
	MaxConnections int
	// MaxConnectionsPerClient caps the open connections of one client
	// address; more are answered 403 and closed.
	MaxConnectionsPerClient int
	// Auth is the configured accounts; nil: anonymous only.
	Auth *auth.Directory
	// SessionTTL is how long a login session lives unused.
	SessionTTL time.Duration
	// ScanLimitWindow is what a user's scan limit counts files in: a
	// minute (the default) in production, less in tests.
	ScanLimitWindow time.Duration
	// Metrics records this node's series and serves GET /metrics (nil: none).
	Metrics *metrics.Metrics
	// ReadyChecks are the other roles' readiness checks in this process
	// (a scanner's clamd), added to /readyz.
	ReadyChecks []health.Check
	// BatchSigner signs batch reports (nil: a key pair that lives as long
	// as the process).
	BatchSigner *batch.Signer

	// LocalFiles are the directories whose files POST /file may scan in
	// place (header filepath); nil: filepath is refused.
	LocalFiles *localfile.Dirs
	// DownloadFrom: POST /file may name a URL for a scanner to fetch
	// (header downloadfrom); AllowPrivateDownloads lets it name loopback,
	// private and link-local addresses.
	DownloadFrom, AllowPrivateDownloads bool
	// Presigned configures pre-signed part uploads (presigned.go).
	Presigned PresignedOptions
}

// sessionCacheFor is how long a node trusts a login session it resolved
// without reading KV again; a logout reaches it sooner, through a watch.
const sessionCacheFor = 10 * time.Second

// Server is one ingest node.
type Server struct {
	app       *fiber.App
	b         *bus.Bus
	blobs     blob.Store
	results   result.Store
	opts      Options
	log       zerolog.Logger
	ctx       context.Context // ends at shutdown; uploads in progress stop
	stop      context.CancelFunc
	conns     connTracker
	sessions  session.Store
	parts     inflight // parts being received, for abort cut-off
	admission admission
	inline    byteBudget // small files held in memory while committed (upload.go)
	dir       *auth.Directory
	logins    *auth.Sessions
	// metricsHandler serves GET /metrics from opts.Metrics.
	metricsHandler fiber.Handler
	signer         *batch.Signer // signs batch reports (batch.go)
	// Pre-signed part uploads: their settings and the URL signer.
	presign    PresignedOptions
	partSigner *presign.Signer
}

// New builds the API. Serve starts answering.
func New(b *bus.Bus, blobs blob.Store, opts Options, log zerolog.Logger) *Server {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.MaxConnectionsPerClient <= 0 {
		opts.MaxConnectionsPerClient = opts.MaxConnections
	}
	if opts.Auth == nil {
		opts.Auth = auth.NewDirectory(config.AuthConfig{Anonymous: true})
	}
	if opts.ScanLimitWindow < time.Millisecond {
		opts.ScanLimitWindow = time.Minute
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = bus.DefaultSessionTTL
	}
	s := &Server{b: b, blobs: blobs, results: result.Store{KV: b.Results}, sessions: session.Store{KV: b.Sessions},
		opts: opts, log: log.With().Str("role", "ingest").Logger(),
		dir: opts.Auth, logins: &auth.Sessions{KV: b.Logins, TTL: opts.SessionTTL, CacheFor: sessionCacheFor}}
	s.admission.lim = admissionLimits{MaxQueued: opts.MaxQueued, MaxQueueWait: opts.MaxQueueWait}
	if s.signer = opts.BatchSigner; s.signer == nil {
		var err error
		if s.signer, err = batch.NewEphemeralSigner(); err != nil {
			panic(err) // crypto/rand failing: nothing would work
		}
	}
	s.presign = opts.Presigned.withDefaults()
	s.partSigner = newSigner(s.presign.Key, s.log)
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.app = fiber.New(fiber.Config{
		AppName:                      "scangate",
		DisableStartupMessage:        true,
		StreamRequestBody:            true, // bodies reach handlers as streams, never whole in memory
		DisablePreParseMultipartForm: true, // a multipart/form-data body is a file like any other
		BodyLimit:                    1 << 20,
		ReadBufferSize:               16 << 10, // room for long metadata / filename headers
		// No ReadTimeout: it would bound the headers and the first 8 KiB of
		// a body as a whole. Every read has the idle timeout instead (clientConn).
		WriteTimeout: opts.IdleTimeout,
		IdleTimeout:  opts.IdleTimeout,
		ErrorHandler: s.errorHandler,
	})
	srv := s.app.Server()
	srv.ConnState = s.conns.state
	srv.ErrorHandler = s.malformedRequest
	route := srv.Handler
	srv.Handler = func(ctx *fasthttp.RequestCtx) {
		if slices.Contains(fiber.DefaultMethods, string(ctx.Method())) {
			route(ctx)
		} else {
			writeError(ctx, fiber.StatusNotImplemented, "Method not implemented.")
		}
		finishBody(ctx)
	}
	s.app.Use(s.accessLog()) // outermost: request id, metrics and access log see every answer (accesslog.go)
	s.app.Use(recover.New(recover.Config{EnableStackTrace: true, StackTraceHandler: func(c *fiber.Ctx, _ any) {
		c.Locals(panicStack, string(debug.Stack())) // logged with the error by errorHandler
	}}))
	s.app.Use(s.conns.middleware)
	s.app.Use(s.authenticate)
	s.metricsHandler = adaptor.HTTPHandler(opts.Metrics.Handler())
	s.routes(s.app)
	s.routes(s.app.Group("/v4")) // MetaDefender Cloud style base URL
	s.app.Use(func(c *fiber.Ctx) error {
		// No route took the request. Past the last handler fiber reports
		// 405, with an Allow header, when the path has routes for other
		// methods.
		if errors.Is(c.Next(), fiber.ErrMethodNotAllowed) {
			return apiError(fiber.StatusMethodNotAllowed, "Method not allowed.")
		}
		return apiError(fiber.StatusNotFound, "Not found")
	})
	go s.logins.Watch(s.ctx, s.log)
	if err := s.listenAborts(); err != nil {
		// Parts in flight then run to their end and are refused after.
		s.log.Error().Err(err).Msg("subscribing to upload aborts failed")
	}
	return s
}

func (s *Server) routes(r fiber.Router) {
	r.Post("/file", s.postFile)
	r.Post("/file/multipart", s.postMultipart)
	r.Post("/file/multipart/:id", s.postPart)
	r.Get("/file/multipart/:id", s.getMultipart)
	r.Delete("/file/multipart/:id", s.deleteMultipart)
	// Batches (batch.go).
	r.Post("/file/batch", s.postBatch)
	r.Get("/file/batch/:id", s.getBatch)
	r.Post("/file/batch/:id/close", s.closeBatch)
	r.Post("/file/batch/:id/cancel", s.cancelBatch)
	r.Get("/file/batch/:id/certificate", s.getBatchCertificate)
	r.Get("/file/rules", s.getRules)
	r.Get("/file/webhook/:id", s.getWebhook)
	r.Post("/file/webhook/:id/replay", s.replayWebhook)
	r.Get("/file/converted/:id", s.getConverted)
	r.Get("/file/:id", s.getFile)
	r.Post("/file/:id/cancel", s.cancelFile)
	r.Get("/file/:id/extraction-errors", s.getExtractionErrors)
	// Rescans (rescan.go). No POST /file/:id route exists for "rescan" to
	// be taken for an id; GET /file/:id matches one path segment only, so
	// GET /file/{id}/rescan reaches its own handler.
	r.Post("/file/rescan", s.postRescan)
	r.Get("/file/:id/rescan", s.getRescan)
	r.Get("/stat/engines", s.getEngines)
	r.Get("/stat/nodes", s.getNodes)
	r.Get("/hash/:hash", s.getHash)
	r.Get("/readyz", s.readyz)
	r.Get("/livez", s.livez)
	r.Get("/version", s.version)
	r.Post("/login", s.postLogin)
	r.Post("/logout", s.postLogout)
	r.Get("/admin/license", s.getLicense)
	r.Get("/openapi.json", s.getOpenAPI)
	r.Get("/metrics", s.metricsHandler)
	s.presignedRoutes(r)
}

// App exposes the fiber app (tests drive it with app.Test).
func (s *Server) App() *fiber.App { return s.app }

// Serve answers on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info().Str("listen", ln.Addr().String()).Int("max_connections", s.opts.MaxConnections).Msg("ingest listening")
	return s.app.Listener(newListener(ln, s.opts.MaxConnections, s.opts.MaxConnectionsPerClient, s.opts.IdleTimeout, s.log))
}

// Shutdown stops accepting requests and waits for those in flight, up to ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.app.ShutdownWithContext(ctx) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.conns.closeWaiting()
		select {
		case err := <-done:
			s.stop() // uploads still streaming after the grace period end here
			return err
		case <-tick.C:
		}
	}
}

// connTracker knows every open connection and whether a request handler
// is running on it. fasthttp's graceful shutdown closes keep-alive
// connections only once they have served a request; one that is still
// waiting for its first request (HTTP clients open spares) would hold
// shutdown for the whole read timeout.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]int // handlers in progress
}

func (t *connTracker) state(c net.Conn, st fasthttp.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch st {
	case fasthttp.StateNew:
		if t.conns == nil {
			t.conns = map[net.Conn]int{}
		}
		t.conns[c] = 0
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		delete(t.conns, c)
	}
}

// middleware marks a connection busy while a handler runs on it.
func (t *connTracker) middleware(c *fiber.Ctx) error {
	conn := c.Context().Conn()
	t.mu.Lock()
	if _, ok := t.conns[conn]; ok {
		t.conns[conn]++
	}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if n, ok := t.conns[conn]; ok {
			t.conns[conn] = n - 1
		}
		t.mu.Unlock()
	}()
	return c.Next()
}

// closeWaiting closes connections with no request in progress.
func (t *connTracker) closeWaiting() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, busy := range t.conns {
		if busy == 0 {
			_ = c.Close()
			delete(t.conns, c)
		}
	}
}

// apiError is an error with the status and {"err": ...} text API.md gives.
func apiError(status int, msg string) error { return fiber.NewError(status, msg) }

func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	status := fiber.StatusInternalServerError
	msg := "Internal error"
	var fe *fiber.Error
	if errors.As(err, &fe) {
		status, msg = fe.Code, fe.Message
	} else if unavailable(err) {
		// JetStream is between leaders, or a node is gone: a pause, not a
		// failure; the client tries again.
		s.log.Warn().Err(err).Str("method", c.Method()).Str("path", c.Path()).Msg("JetStream unavailable; answered 503")
		status, msg = fiber.StatusServiceUnavailable, "Service temporarily unavailable. Try again later."
	} else {
		ev := s.log.Error().Err(err).Str("method", c.Method()).Str("path", c.Path())
		if stack, ok := c.Locals(panicStack).(string); ok {
			ev = ev.Str("stack", stack)
		}
		ev.Msg("request failed")
	}
	if status == fiber.StatusServiceUnavailable && len(c.Response().Header.Peek(fiber.HeaderRetryAfter)) == 0 {
		c.Set(fiber.HeaderRetryAfter, retryAfter)
	}
	return c.Status(status).JSON(fiber.Map{"err": msg})
}

// unavailable reports errors that mean JetStream could not answer just
// now (no quorum, a leader election, a lost connection) rather than a fault.
func unavailable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.As(err, &apiErr) && apiErr.Code == 503
}

// panicStack keys (in the request's locals) the stack of a handler that
// panicked.
const panicStack = "scangate.panic-stack"

// malformedRequest answers a request fasthttp could not read. fasthttp's
// own error text quotes the request it failed on: never echo it.
func (s *Server) malformedRequest(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var timeout interface{ Timeout() bool }
	switch {
	case errors.As(err, &small):
		writeError(ctx, fiber.StatusRequestHeaderFieldsTooLarge, "Request header fields too large.")
	case errors.As(err, &timeout) && timeout.Timeout():
		writeError(ctx, fiber.StatusRequestTimeout, "Request timeout.")
	default:
		writeError(ctx, fiber.StatusBadRequest, "Malformed request.")
	}
}

// writeError answers {"err": msg} where no fiber context exists.
func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	body, _ := json.Marshal(map[string]string{"err": msg})
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.SetContentType(fiber.MIMEApplicationJSON)
	ctx.SetBody(body)
}
