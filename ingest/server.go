// Package ingest is scangate's HTTP tier: the MetaDefender REST API on
// fiber. It is stateless — any node answers any request — and thin: it
// streams uploaded bytes to the blob store, publishes events, and reads
// state back from the KV buckets.
package ingest

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/workflow"
)

// Options configure the HTTP tier.
type Options struct {
	Workflows             *workflow.Set
	DiskReserve           int64 // refuse uploads that would leave less free disk than this
	AllowPrivateCallbacks bool  // accept callback URLs that point at private addresses
	Version               string
	// IdleTimeout cuts off a client that sends nothing for this long,
	// mid-body or between requests. Uploads of any length are fine as long
	// as bytes keep coming.
	IdleTimeout time.Duration
}

// Server is one ingest node.
type Server struct {
	app     *fiber.App
	b       *bus.Bus
	blobs   blob.Store
	results result.Store
	opts    Options
	log     zerolog.Logger
	ctx     context.Context // ends at shutdown; uploads in progress stop
	stop    context.CancelFunc
}

// New builds the API. Serve starts answering.
func New(b *bus.Bus, blobs blob.Store, opts Options, log zerolog.Logger) *Server {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	s := &Server{b: b, blobs: blobs, results: result.Store{KV: b.Results}, opts: opts,
		log: log.With().Str("role", "ingest").Logger()}
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
	s.routes(s.app)
	s.routes(s.app.Group("/v4")) // MetaDefender Cloud style base URL
	s.app.Use(func(c *fiber.Ctx) error { return fiber.NewError(fiber.StatusNotFound, "Not found") })
	return s
}

func (s *Server) routes(r fiber.Router) {
	r.Post("/file", s.postFile)
	r.Get("/file/rules", s.getRules)
	r.Get("/file/webhook/:id", s.getWebhook)
	r.Get("/file/:id", s.getFile)
	r.Post("/file/:id/cancel", s.cancelFile)
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
	s.stop()
	return s.app.ShutdownWithContext(ctx)
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
	return c.Status(status).JSON(fiber.Map{"err": msg})
}
