package ingest

import (
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scangate/scangate/pkg/ids"
)

// HeaderRequestID carries a request's id: taken from the client when it
// sends a sane one (so its logs and ours line up), made up otherwise, and
// returned on every answer.
const HeaderRequestID = "X-Request-ID"

// maxRequestID bounds a client's request id; a longer or odd one is
// replaced, so a client cannot stuff the access log through it.
const maxRequestID = 128

// maxLoggedPath bounds the path written to the access log.
const maxLoggedPath = 512

// Keys of the request's locals.
const (
	localRequestID = "scangate.request-id"
	localDataID    = "scangate.data-id"
)

// routeUnmatched is the route label of requests no route took (404, 405):
// their raw paths would make the label set unbounded.
const routeUnmatched = "unmatched"

// setDataID tells the access log which file a request was about, for
// handlers whose data_id is not in the route (it is new, or a session's).
func setDataID(c *fiber.Ctx, id string) { c.Locals(localDataID, id) }

// accessLog is the outermost middleware. It gives the request its id,
// then, once the answer is decided, counts it in the HTTP metrics and
// writes one access-log line. Header values (apikey among them), query
// strings and bodies are never logged: they may hold secrets or personal
// data.
func (s *Server) accessLog() fiber.Handler {
	var once sync.Once
	var routes map[string]bool // "METHOD pattern" of every real route
	return func(c *fiber.Ctx) error {
		start := time.Now()
		id := requestID(c.Get(HeaderRequestID))
		c.Set(HeaderRequestID, id)
		c.Locals(localRequestID, id)

		if err := c.Next(); err != nil {
			// Answer the error here rather than after us, so that the
			// status counted and logged is the one the client gets.
			if err := s.errorHandler(c, err); err != nil {
				_ = c.SendStatus(fiber.StatusInternalServerError)
			}
		}

		once.Do(func() {
			// Every route is registered by the time a request is served.
			routes = map[string]bool{}
			for _, r := range s.app.GetRoutes(true) {
				routes[r.Method+" "+r.Path] = true
			}
		})
		method := methodLabel(c.Method())
		route := c.Route().Path
		if !routes[method+" "+route] {
			// The fallback middleware answered: no route matched.
			route = routeUnmatched
		}
		status := c.Response().StatusCode()
		took := time.Since(start)
		s.opts.Metrics.HTTPRequest(method, route, status, took)

		ev := s.log.Info().
			Str("method", method).
			Str("route", route).
			Str("path", truncate(c.Path(), maxLoggedPath)).
			Int("status", status).
			Int64("bytes_in", int64(max(c.Request().Header.ContentLength(), 0))).
			Int64("bytes_out", responseBytes(c)).
			Float64("duration_ms", float64(took.Microseconds())/1000).
			Str("remote_addr", c.Context().RemoteAddr().String()).
			Str("request_id", id)
		if dataID := requestDataID(c); dataID != "" {
			ev = ev.Str("data_id", dataID)
		}
		ev.Msg("request")
		return nil
	}
}

// requestID is the client's id when it is 1 to maxRequestID visible ASCII
// characters, else a new random one. The result never aliases fasthttp's
// buffers, which are reused once the request ends.
func requestID(in string) string {
	if len(in) == 0 || len(in) > maxRequestID {
		return ids.New()
	}
	for i := 0; i < len(in); i++ {
		if in[i] <= ' ' || in[i] > '~' {
			return ids.New()
		}
	}
	return strings.Clone(in)
}

// requestDataID is the file the request was about: what the handler said,
// or a data_id in the route's :id.
func requestDataID(c *fiber.Ctx) string {
	if id, ok := c.Locals(localDataID).(string); ok {
		return id
	}
	if id := c.Params("id"); ids.Valid(id) {
		return id
	}
	return ""
}

// methodLabel returns fiber's own constant for method: label values are
// kept by the metrics, and the request's string points into a buffer that
// is reused.
func methodLabel(method string) string {
	for _, m := range fiber.DefaultMethods {
		if m == method {
			return m
		}
	}
	return "OTHER"
}

// responseBytes is the answer's body size, without reading a streamed
// body (a file download) into memory to measure it.
func responseBytes(c *fiber.Ctx) int64 {
	resp := c.Response()
	if resp.IsBodyStream() {
		return int64(max(resp.Header.ContentLength(), 0))
	}
	return int64(len(resp.Body()))
}
