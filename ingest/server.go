// Package ingest is scangate's HTTP tier: the MetaDefender REST API on
// fiber. It is stateless — any node answers any request — and thin: it
// streams uploaded bytes to the blob store, publishes events, and reads
// state back from the KV buckets.
package ingest

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
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
}

// Server is one ingest node.
type Server struct {
	app      *fiber.App
	b        *bus.Bus
	blobs    blob.Store
	results  result.Store
	opts     Options
	log      zerolog.Logger
	ctx      context.Context // ends at shutdown; uploads in progress stop
	stop     context.CancelFunc
	conns    connTracker
	sessions session.Store
	parts    inflight // parts being received, for abort cut-off
	queue    queueDepth
}

// New builds the API. Serve starts answering.
func New(b *bus.Bus, blobs blob.Store, opts Options, log zerolog.Logger) *Server {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	s := &Server{b: b, blobs: blobs, results: result.Store{KV: b.Results}, sessions: session.Store{KV: b.Sessions},
		opts: opts, log: log.With().Str("role", "ingest").Logger()}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.app = fiber.New(fiber.Config{
		AppName:                      "scangate",
		DisableStartupMessage:        true,
		StreamRequestBody:            true, // bodies reach handlers as streams, never whole in memory
		DisablePreParseMultipartForm: true, // a multipart/form-data body is a file like any other
		BodyLimit:                    1 << 20,
		ReadBufferSize:               16 << 10, // room for long metadata / filename headers
		ReadTimeout:                  opts.IdleTimeout,
		WriteTimeout:                 opts.IdleTimeout,
		IdleTimeout:                  opts.IdleTimeout,
		ErrorHandler:                 s.errorHandler,
	})
	s.app.Server().ConnState = s.conns.state
	s.app.Use(s.conns.middleware)
	s.routes(s.app)
	s.routes(s.app.Group("/v4")) // MetaDefender Cloud style base URL
	s.app.Use(func(c *fiber.Ctx) error { return fiber.NewError(fiber.StatusNotFound, "Not found") })
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
	r.Get("/file/rules", s.getRules)
	r.Get("/file/webhook/:id", s.getWebhook)
	r.Post("/file/webhook/:id/replay", s.replayWebhook)
	r.Get("/file/converted/:id", s.getConverted)
	r.Get("/file/:id", s.getFile)
	r.Post("/file/:id/cancel", s.cancelFile)
	r.Get("/file/:id/extraction-errors", s.getExtractionErrors)
	r.Get("/stat/engines", s.getEngines)
	r.Get("/hash/:hash", s.getHash)
	r.Get("/readyz", s.readyz)
	r.Get("/livez", s.livez)
	r.Get("/version", s.version)
}

// App exposes the fiber app (tests drive it with app.Test).
func (s *Server) App() *fiber.App { return s.app }

// Serve answers on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info().Str("listen", ln.Addr().String()).Msg("ingest listening")
	return s.app.Listener(ln)
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
	} else {
		s.log.Error().Err(err).Str("path", c.Path()).Msg("request failed")
	}
	s.drainBody(c)
	return c.Status(status).JSON(fiber.Map{"err": msg})
}

// drainLimit is how much of an unread request body is read and discarded
// before an error answer. A client still sending its body would otherwise
// see its connection reset instead of the answer; beyond this the
// connection is simply closed.
const drainLimit = 1 << 20

func (s *Server) drainBody(c *fiber.Ctx) {
	r := c.Context().RequestBodyStream()
	// A body the handler started on was refused mid-way (cut off by an
	// abort, a stalled client): no point waiting for the rest.
	if r == nil || c.Locals(bodyStarted) != nil || c.Request().Header.ContentLength() > drainLimit {
		return
	}
	if conn := c.Context().Conn(); conn != nil {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r, drainLimit))
}
