package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
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
	}
	rule := header(c, "rule")
	if rule == "" {
		rule = header(c, "workflow") // deprecated alias
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
	if v := header(c, "batch"); v != "" {
		if !ids.Valid(v) {
			return m, apiError(fiber.StatusBadRequest, "Invalid batch id.")
		}
		m.Batch = v
	}
	if v := c.Get("metadata"); v != "" {
		if m.Metadata, err = parseMetadata(v); err != nil {
			return m, apiError(fiber.StatusBadRequest, "Invalid metadata header: want a JSON object.")
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

// parseMetadata accepts a JSON object, raw or percent-encoded.
func parseMetadata(v string) (json.RawMessage, error) {
	for _, cand := range []string{v, percentDecode(v)} {
		var obj map[string]json.RawMessage
		if cand != "" && json.Unmarshal([]byte(cand), &obj) == nil && obj != nil {
			return json.RawMessage(compactJSON(cand)), nil
		}
	}
	return nil, fmt.Errorf("not a JSON object")
}

// compactJSON strips insignificant space, keeping numbers and key order as sent.
func compactJSON(s string) []byte {
	var b bytes.Buffer
	if json.Compact(&b, []byte(s)) != nil {
		return []byte(s)
	}
	return b.Bytes()
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
