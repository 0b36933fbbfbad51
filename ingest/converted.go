package ingest

import (
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

var errNoConverted = apiError(fiber.StatusNotFound, "Not found")

// getConverted is GET /file/converted/{data_id}: the sanitized file, as an
// attachment, with single-range requests answered 206.
func (s *Server) getConverted(c *fiber.Ctx) error {
	id := c.Params("id")
	if !ids.Valid(id) {
		return errNoConverted
	}
	rec, _, err := s.getOwn(c, id)
	if errors.Is(err, result.ErrNotFound) {
		return errNoConverted
	}
	if err != nil {
		return err
	}
	pp := rec.Result.ProcessInfo.PostProcessing
	if !rec.Final() || !strings.HasPrefix(pp.ActionsRan, "Sanitized") {
		return errNoConverted
	}
	obj, err := s.blobs.Open(c.UserContext(), blob.SanitizedKey(id))
	if errors.Is(err, blob.ErrNotFound) {
		return errNoConverted
	}
	if err != nil {
		return err
	}
	size := obj.Size()
	start, end, partial, err := parseRange(c.Get(fiber.HeaderRange), size)
	if err != nil {
		obj.Close()
		c.Set(fiber.HeaderContentRange, "bytes */"+strconv.FormatInt(size, 10))
		return apiError(fiber.StatusRequestedRangeNotSatisfiable, "Range not satisfiable.")
	}
	name := pp.ConvertedDestination
	if name == "" {
		name = id
	}
	c.Set(fiber.HeaderContentDisposition, mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	c.Set(fiber.HeaderContentType, fiber.MIMEOctetStream)
	c.Set(fiber.HeaderAcceptRanges, "bytes")
	if partial {
		c.Status(fiber.StatusPartialContent)
		c.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
	}
	// fasthttp closes the reader once the body is sent.
	return c.SendStream(readCloser{blob.Section(obj, start, end-start), obj}, int(end-start))
}

type readCloser struct {
	io.Reader
	io.Closer
}

// parseRange reads a single "bytes=a-b", "bytes=a-" or "bytes=-n" range
// (RFC 9110 14.1.2); no header (or a multi-range one, served whole) is the
// full body. Positions too large for an int64 are as good as infinite: a
// last position or suffix length past the end reaches the end, a first
// position past the end is unsatisfiable.
func parseRange(h string, size int64) (start, end int64, partial bool, err error) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	errRange := errors.New("bad range")
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, false, errRange
	}
	if first == "" { // suffix: the last n bytes
		n, ok := rangePos(last)
		if !ok || n == 0 || size == 0 {
			return 0, 0, false, errRange
		}
		return size - min(n, size), size, true, nil
	}
	start, ok = rangePos(first)
	if !ok || start >= size {
		return 0, 0, false, errRange
	}
	end = size
	if last != "" {
		l, ok := rangePos(last)
		if !ok || l < start {
			return 0, 0, false, errRange
		}
		end = min(l, size-1) + 1
	}
	return start, end, true, nil
}

// rangePos parses a range position: digits only, saturating at MaxInt64.
func rangePos(s string) (int64, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return math.MaxInt64, true // only a range error is left
	}
	return n, true
}
