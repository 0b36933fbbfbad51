package ingest

import (
	"errors"
	"io"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// clientBody is a request body as a handler reads it. It tells a client
// that stopped sending (its connection failed or timed out, or the body
// ended before Content-Length) from a failure of ours while storing.
type clientBody struct {
	r    io.Reader
	want int64 // Content-Length
	got  int64
	err  error // why the client side failed, nil while it has not
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.got += int64(n)
	switch {
	case err == io.EOF && b.got < b.want:
		b.err = io.ErrUnexpectedEOF
	case err != nil && err != io.EOF:
		b.err = err
	}
	return n, err
}

// retryAfter is the Retry-After, in seconds, of answers that ask the
// client to try again.
const retryAfter = "30"

// storeError maps a failed write of an upload's body to its answer. Only a
// client that stopped sending is told its body was short; a full disk, a
// failing disk, a store that timed out are ours, and worth a retry.
func (s *Server) storeError(err error, body *clientBody, log zerolog.Logger) error {
	switch {
	case body.err != nil:
		log.Info().Err(body.err).Int64("received", body.got).Int64("size", body.want).Msg("upload cut short by the client")
		return apiError(fiber.StatusBadRequest, "Request body is shorter than Content-Length.")
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		log.Error().Err(err).Msg("storing upload failed: disk full")
		return apiError(fiber.StatusServiceUnavailable, "Not enough disk space") // 503s carry Retry-After (errorHandler)
	default:
		log.Error().Err(err).Msg("storing upload failed")
		return apiError(fiber.StatusServiceUnavailable, "Failed to upload - could not store the file.")
	}
}

// drainLimit is how much of a body a handler left unread is read and
// discarded after its answer, so that the connection can carry the next
// request; a longer body closes the connection instead.
const drainLimit = 1 << 20

// drainTimeout bounds the whole drain.
const drainTimeout = 5 * time.Second

// finishBody runs after every handler, before the answer is written. The
// bytes of a body are never parsed as requests: either the body has been
// read to its end (by the handler, or drained here when short), or the
// connection closes after the answer.
func finishBody(ctx *fasthttp.RequestCtx) {
	r := ctx.RequestBodyStream()
	if r == nil {
		return // no body
	}
	left := int64(ctx.Request.Header.ContentLength()) // -1: chunked
	if b, ok := ctx.UserValue(bodyKey).(*clientBody); ok {
		if b.err != nil {
			closeAfter(ctx) // the rest is not coming, or not worth waiting for
			return
		}
		left = b.want - b.got
	}
	if left == 0 {
		return
	}
	if left < 0 || left > drainLimit {
		closeAfter(ctx)
		return
	}
	_ = ctx.Conn().SetReadDeadline(time.Now().Add(drainTimeout))
	if n, _ := io.Copy(io.Discard, io.LimitReader(r, left)); n != left {
		closeAfter(ctx)
	}
}

// closeAfter closes the connection once the answer is written, giving the
// client a moment to read it (see clientConn.lingerOnClose).
func closeAfter(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose()
	if c, ok := ctx.Conn().(*clientConn); ok {
		c.lingerOnClose()
	}
}
