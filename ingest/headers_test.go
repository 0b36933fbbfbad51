package ingest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/workflow"
)

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

// A display name carries no invisible characters: a right-to-left override
// turns "invoice‮fdp.exe" into what reads as "invoiceexe.pdf".
func TestDisplayNameCleaned(t *testing.T) {
	cases := map[string]string{
		"invoice\u202efdp.exe":    "invoicefdp.exe",
		"report.pdf":              "report.pdf",
		"../../etc/passwd":        "....etcpasswd", // separators stripped, as API.md says
		"..":                      "",
		"résumé 履歴書.docx":         "résumé 履歴書.docx",
		"  spaced\u00a0name.txt ": "spaced\u00a0name.txt",
	}
	for _, r := range []rune{0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069,
		0x061c, 0x200b, 0x200d, 0x2060, 0xfeff, 0x00ad, 0xe0041} {
		cases["a"+string(r)+"b.txt"] = "ab.txt"
	}
	for in, want := range cases {
		code, out := fileMetaOf(t, Options{}, map[string]string{"filename": url.PathEscape(in)})
		if code != http.StatusOK || out["display_name"] != want {
			t.Errorf("filename %q: %d display_name %q, want %q", in, code, out["display_name"], want)
		}
	}
}

// nested is an object with objects and, innermost, an array: depth levels.
func nested(depth int) string {
	return strings.Repeat(`{"a":`, depth-1) + `[1,"x",true,null]` + strings.Repeat("}", depth-1)
}

func TestMetadataLimits(t *testing.T) {
	ok := map[string]string{
		`{"a": 1e308, "b": -1e-999}`:    `{"a":1e308,"b":-1e-999}`,
		`{"big": 12345678901234567890}`: `{"big":12345678901234567890}`, // kept as sent
		nested(maxMetadataDepth):        nested(maxMetadataDepth),
		`%7B%22p%22%3A%2250%25%22%7D`:   `{"p":"50%"}`,
		`{"p": "50%", "q": "%7B"}`:      `{"p":"50%","q":"%7B"}`,
	}
	for in, want := range ok {
		code, out := fileMetaOf(t, Options{}, map[string]string{"metadata": in})
		if code != http.StatusOK || !bytes.Equal(canonical(t, out["metadata"]), canonical(t, json.RawMessage(want))) {
			t.Errorf("metadata %.60q: %d %v, want it accepted as %.60s", in, code, out["err"], want)
		}
	}
	for _, bad := range []string{
		`{"a":1e999}`,
		`{"a":[1,{"b":-1e400}]}`,
		`{"a":1e309}`,
		nested(maxMetadataDepth + 1),
		nested(2000),
		`{"a":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`,
		`{"a":` + strings.Repeat("[", 2000),
		`[1]`, `"x"`, `null`, `1`, `{`, `%7B`, `{nope`, `{"a":1} {"b":2}`, `{"a":1}]`,
	} {
		code, out := fileMetaOf(t, Options{}, map[string]string{"metadata": bad})
		if code != http.StatusBadRequest || out["err"] != "Invalid metadata." {
			t.Errorf("metadata %.60q: %d %.100v, want 400 Invalid metadata.", bad, code, out)
		}
	}
}

// canonical is v as JSON with object keys sorted and numbers as sent.
func canonical(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	out, _ := json.Marshal(x)
	return out
}
