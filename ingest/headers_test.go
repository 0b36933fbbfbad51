package ingest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/workflow"
)

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"report.pdf":          "report.pdf",
		"../../etc/passwd":    "....etcpasswd",
		`C:\Users\x\evil.exe`: "C:Usersxevil.exe",
		"<script>a.html":      "scripta.html",
		"  spaced name.txt  ": "spaced name.txt",
		"nul\x00byte\r\n.txt": "nulbyte.txt",
		"bad\xffutf8.txt":     "badutf8.txt",
		"résumé 履歴書.docx":     "résumé 履歴書.docx",
		"":                    "",
	} {
		if got := sanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("é", 200) // 400 bytes
	got := sanitizeName(long)
	if len(got) > maxNameBytes || !utf8.ValidString(got) {
		t.Errorf("long name cut to %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
}

func TestSanitizePathKeepsSeparators(t *testing.T) {
	if got := sanitizePath(`C:\in\<x>.doc`); got != `C:\in\x.doc` {
		t.Errorf("sanitizePath = %q", got)
	}
}

func TestParseMetadata(t *testing.T) {
	ok := map[string]string{
		`{"a": 1, "b": [1, 2]}`:                `{"a":1,"b":[1,2]}`,
		`%7B%22a%22%3A12345678901234567890%7D`: `{"a":12345678901234567890}`, // percent-encoded; big number kept exactly
	}
	for in, want := range ok {
		got, err := parseMetadata(in)
		if err != nil || string(got) != want {
			t.Errorf("parseMetadata(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{`[1]`, `"x"`, `null`, `{`, `%7B`, `1`} {
		if _, err := parseMetadata(bad); err == nil {
			t.Errorf("parseMetadata(%q) accepted", bad)
		}
	}
}

// fileMetaOf sends headers to a handler that answers with what fileMeta
// reads from them, or with its error as POST /file does.
func fileMetaOf(t *testing.T, opts Options, headers map[string]string) (int, map[string]any) {
	t.Helper()
	if opts.Workflows == nil {
		opts.Workflows = workflow.NewSet([]config.Workflow{{Name: "File process", Default: true}})
	}
	s := &Server{opts: opts}
	app := fiber.New(fiber.Config{ErrorHandler: s.errorHandler, ReadBufferSize: 16 << 10})
	app.Post("/file", func(c *fiber.Ctx) error {
		m, err := s.fileMeta(c)
		if err != nil {
			return err
		}
		return c.JSON(m)
	})
	req := httptest.NewRequest(http.MethodPost, "/file", nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber() // numbers as sent
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("%v: answer is not JSON: %v", headers, err)
	}
	return resp.StatusCode, out
}

// An IPv4 address is accepted only as a dotted quad; the legacy forms a
// resolver or browser still reads (fewer parts, octal, hex, one number, a
// trailing dot) are refused even where private targets are allowed.
func TestCallbackURLForms(t *testing.T) {
	const (
		badCallback  = "Callback url is invalid."
		badSanitized = "Sanitized url is invalid."
	)
	for _, tc := range []struct {
		header, url  string
		allowPrivate bool
		err          string // "" when accepted
	}{
		{"callbackurl", "https://hooks.example.com/scan?x=1", false, ""},
		{"callbackurl", "http://8.8.8.8:8080/hook", false, ""},
		{"callbackurl", "http://127.0.0.1/hook", false, badCallback},
		{"callbackurl", "http://127.0.0.1/hook", true, ""},
		{"callbackurl", "http://10.0.0.1/hook", true, ""},
		{"callbackurl", "http://127.1/", false, badCallback},
		{"callbackurl", "http://127.1/", true, badCallback},
		{"callbackurl", "http://0x7f.1/", true, badCallback},
		{"callbackurl", "http://0X7F000001/", true, badCallback},
		{"callbackurl", "http://2130706433/", true, badCallback},
		{"callbackurl", "http://0177.0.0.1/", true, badCallback},
		{"callbackurl", "http://127.0.0.1./", true, badCallback},
		{"callbackurl", "http://0x7f.0.00.1/", true, badCallback},
		{"callbackurl", "http://0xa9.254.169.254/latest", false, badCallback},
		{"callbackurl", "http://8.8.8.010/", false, badCallback}, // 8.8.8.8, public, but not written as such
		{"callbackurl", "http%3A%2F%2F0x7f.1%3A8080%2F", false, badCallback},
		{"sanitizedurl", "http://0x7f.1/", false, badSanitized},
		{"sanitizedurl", "http://2130706433/", true, badSanitized},
		{"sanitizedurl", "https://hooks.example.com/clean", false, ""},
	} {
		code, out := fileMetaOf(t, Options{AllowPrivateCallbacks: tc.allowPrivate}, map[string]string{tc.header: tc.url})
		switch {
		case tc.err == "" && (code != http.StatusOK || out[tc.header] == nil):
			t.Errorf("%s %s (private allowed %v): %d %v, want accepted", tc.header, tc.url, tc.allowPrivate, code, out)
		case tc.err != "" && (code != http.StatusBadRequest || out["err"] != tc.err):
			t.Errorf("%s %s (private allowed %v): %d %v, want 400 %q", tc.header, tc.url, tc.allowPrivate, code, out, tc.err)
		}
	}
}
