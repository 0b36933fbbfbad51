package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/names"
	"github.com/scangate/scangate/pkg/netguard"
)

// header returns a request header, percent-decoded: existing clients
// URL-encode filename, rule, user_agent, archivepwd and friends. A value
// that is not valid percent-encoding is taken as it is.
func header(c *fiber.Ctx, name string) string {
	return percentDecode(strings.TrimSpace(c.Get(name)))
}

// percentDecode undoes URL encoding; a value that is not valid
// percent-encoding is returned as it is.
func percentDecode(v string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	if d, err := url.PathUnescape(v); err == nil {
		return d
	}
	return v
}

// truncate cuts s to at most n bytes on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// fileMeta reads what a client says about a file from the headers that
// POST /file and POST /file/multipart share. Every check happens here,
// before any byte is stored.
func (s *Server) fileMeta(c *fiber.Ctx) (events.FileMeta, error) {
	m := events.FileMeta{
		DisplayName:      names.Display(header(c, "filename")),
		UserAgent:        truncate(header(c, "user_agent"), names.MaxBytes),
		Source:           truncate(header(c, "source"), names.MaxBytes),
		OriginalFilePath: names.ClientPath(header(c, "original_file_path")),
		Username:         identity(c).User, // the owner: only they (and admins) see the file
	}
	rule := header(c, "rule")
	if rule == "" {
		rule = header(c, "workflow") // deprecated alias
	}
	if v := header(c, "batch"); v != "" {
		// The caller's open batch, checked before any byte is stored
		// (batch.go). Its files take its rule when they name none.
		b, err := s.openBatch(c, v)
		if err != nil {
			return m, err
		}
		m.Batch = v
		if rule == "" && m.UserAgent == "" {
			rule, m.UserAgent = b.Workflow, b.UserAgent
		}
	}
	wf, err := s.opts.Workflows.Select(rule, m.UserAgent)
	if err != nil {
		return m, apiError(fiber.StatusBadRequest, "Unknown rule.")
	}
	m.Workflow = wf.Name

	if v := header(c, "callbackurl"); v != "" {
		if m.CallbackURL, err = s.checkTarget(v); err != nil {
			return m, apiError(fiber.StatusBadRequest, "Callback url is invalid.")
		}
	}
	if v := header(c, "sanitizedurl"); v != "" {
		if m.SanitizedURL, err = s.checkTarget(v); err != nil {
			return m, apiError(fiber.StatusBadRequest, "Sanitized url is invalid.")
		}
	}
	if v := c.Get("metadata"); v != "" {
		if m.Metadata, err = parseMetadata(v); err != nil {
			return m, apiError(fiber.StatusBadRequest, "Invalid metadata.")
		}
	}
	m.ArchivePasswords = archivePasswords(c)
	return m, nil
}

// checkTarget validates a webhook URL. Names are checked again when the
// notifier dials (the address actually used); here a literal private
// address is refused early so the client hears about it now.
func (s *Server) checkTarget(raw string) (string, error) {
	u, err := netguard.CheckURL(raw)
	if err != nil {
		return "", err
	}
	if !s.opts.AllowPrivateCallbacks && netguard.LiteralForbidden(u) {
		return "", fmt.Errorf("%w: %s", netguard.ErrForbidden, u.Hostname())
	}
	return u.String(), nil
}

// maxMetadataDepth bounds how deeply metadata may nest objects and arrays
// (the top-level object is depth 1). Whoever reads the echoed metadata back
// may decode it recursively.
const maxMetadataDepth = 32

// parseMetadata accepts a JSON object, raw or percent-encoded, that
// checkMetadata passes, and returns it without insignificant space,
// numbers and key order kept as sent. Its size is bounded by the request
// header buffer.
func parseMetadata(v string) (json.RawMessage, error) {
	var err error
	for _, cand := range []string{v, percentDecode(v)} {
		if err = checkMetadata(cand); err == nil {
			var b bytes.Buffer
			if err = json.Compact(&b, []byte(cand)); err == nil {
				return b.Bytes(), nil
			}
		}
	}
	return nil, fmt.Errorf("metadata: %w", err)
}

// checkMetadata walks s token by token, so hostile nesting costs no
// recursion: it must be one JSON object, nested at most maxMetadataDepth
// deep, whose numbers all fit a float64 (1e999 would be echoed as a number
// no client can decode).
func checkMetadata(s string) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("malformed JSON: %w", err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if depth++; depth > maxMetadataDepth {
				return fmt.Errorf("nested deeper than %d levels", maxMetadataDepth)
			}
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if n, ok := tok.(json.Number); ok {
			if _, err := strconv.ParseFloat(n.String(), 64); err != nil {
				return fmt.Errorf("number out of range: %w", err)
			}
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// archivePasswords collects archivepwd and archivepwd1..N (stopping at the
// first gap, and at 64: a bound on what a client can make us try).
func archivePasswords(c *fiber.Ctx) []string {
	var pw []string
	if v := header(c, "archivepwd"); v != "" {
		pw = append(pw, v)
	}
	for i := 1; i <= 64; i++ {
		v := header(c, "archivepwd"+strconv.Itoa(i))
		if v == "" {
			break
		}
		pw = append(pw, v)
	}
	return pw
}
