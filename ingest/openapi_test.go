package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/gofiber/fiber/v2"
	"go.yaml.in/yaml/v3"

	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/ids"
)

// openRoutes are the routes that need no apikey in any configuration
// (API.md): the document must say exactly these are open.
var openRoutes = []string{
	"GET /livez",
	"GET /openapi.json",
	"GET /readyz",
	"GET /version",
	"POST /login",
}

// loadOpenAPI parses and validates the served document as OpenAPI 3.1.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIJSON)
	if err != nil {
		t.Fatalf("openapi.json does not load: %v", err)
	}
	if !regexp.MustCompile(`^3\.1\.\d+$`).MatchString(doc.OpenAPI) || !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	// The document's own version turns on the 3.1 rules (JSON Schema
	// 2020-12 for schemas and examples). Formats are checked too: a
	// misspelt one would otherwise pass as an annotation.
	if err := doc.Validate(loader.Context, openapi3.EnableMultiError(), openapi3.EnableSchemaFormatValidation()); err != nil {
		t.Fatalf("openapi.json is not valid OpenAPI 3.1:\n%v", err)
	}
	return doc
}

// operations lists the document's operations as "METHOD /path".
func operations(doc *openapi3.T) map[string]*openapi3.Operation {
	ops := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops[method+" "+path] = op
		}
	}
	return ops
}

// TestOpenAPIValid: the document is valid OpenAPI 3.1 and states the rules
// API.md sets for every operation.
func TestOpenAPIValid(t *testing.T) {
	doc := loadOpenAPI(t)

	scheme := doc.Components.SecuritySchemes["apikey"]
	if scheme == nil || scheme.Value.Type != "apiKey" || scheme.Value.In != "header" || scheme.Value.Name != "apikey" {
		t.Fatalf("security scheme apikey is not an API key in header apikey: %+v", scheme)
	}
	if len(doc.Security) != 1 || doc.Security[0]["apikey"] == nil {
		t.Errorf("the document's default security is %v, want apikey", doc.Security)
	}
	var servedV4 bool
	for _, s := range doc.Servers {
		servedV4 = servedV4 || s.URL == "/v4"
	}
	if !servedV4 {
		t.Error("no server entry for the /v4 base URL")
	}

	var open []string
	seenIDs := map[string]string{}
	for name, op := range operations(doc) {
		if op.OperationID == "" {
			t.Errorf("%s has no operationId", name)
		} else if other, dup := seenIDs[op.OperationID]; dup {
			t.Errorf("%s and %s share operationId %s", name, other, op.OperationID)
		}
		seenIDs[op.OperationID] = name
		if op.Responses.Status(http.StatusOK) == nil {
			t.Errorf("%s documents no 200", name)
		}
		if op.Responses.Default() == nil {
			t.Errorf("%s has no default (error) response", name)
		}
		if op.Security != nil && len(*op.Security) == 0 {
			open = append(open, name)
		} else if op.Security != nil && len(*op.Security) == 1 && (*op.Security)[0]["signedUrl"] != nil {
			// A signed part URL is its own credential: no apikey, no 401.
		} else if op.Responses.Status(http.StatusUnauthorized) == nil {
			t.Errorf("%s needs an apikey but documents no 401", name)
		}
		for code, resp := range op.Responses.Map() {
			if code == "200" || code == "206" || resp.Value.Content == nil {
				continue
			}
			if mt := resp.Value.Content.Get("application/json"); mt == nil || mt.Schema == nil || mt.Schema.Ref != "#/components/schemas/Error" {
				if !(name == "GET /readyz" && code == "503") && // readiness reports its checks instead
					!(mt != nil && isErrorLike(mt.Schema)) { // an error with more to say (a rescan's 404007)
					t.Errorf("%s answers %s with something other than the error schema", name, code)
				}
			}
		}
		if r := op.Responses.Status(http.StatusServiceUnavailable); r != nil && name != "GET /readyz" && r.Value.Headers["Retry-After"] == nil {
			t.Errorf("%s: 503 without Retry-After", name)
		}
	}
	sort.Strings(open)
	if !slices.Equal(open, openRoutes) {
		t.Errorf("open operations %v, want %v", open, openRoutes)
	}
}

// isErrorLike reports a schema that is the error answer with more fields:
// it requires a string err.
func isErrorLike(s *openapi3.SchemaRef) bool {
	if s == nil || s.Value == nil || !slices.Contains(s.Value.Required, "err") {
		return false
	}
	p := s.Value.Properties["err"]
	return p != nil && p.Value != nil && p.Value.Type.Is("string")
}

// TestOpenAPIJSONIsTheYAML: the served JSON is the YAML source, value for
// value, with its keys in the order they are written.
func TestOpenAPIJSONIsTheYAML(t *testing.T) {
	var fromYAML any
	if err := yaml.Unmarshal(openAPIYAML, &fromYAML); err != nil {
		t.Fatal(err)
	}
	// Through JSON once, so that numbers are float64 on both sides.
	b, err := json.Marshal(fromYAML)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(openAPIJSON, &got); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("openapi.json differs from openapi.yaml")
	}
	keys := topLevelKeys(t, openAPIJSON)
	if len(keys) < 2 || keys[0] != "openapi" || keys[1] != "info" {
		t.Errorf("top-level keys %v: the source order (openapi, info, ...) is lost", keys)
	}

	for _, bad := range []string{"a: 1\na: 2\n", "a: .inf\n", "a: [1\n"} {
		if _, err := yamlToJSON([]byte(bad)); err == nil {
			t.Errorf("yamlToJSON(%q) succeeded", bad)
		}
	}
	for src, want := range map[string]string{
		"a: 2024-05-01\nb: '200'\nc: 1\nd: true\ne: null\nf: <x> & y\n": `{"a":"2024-05-01","b":"200","c":1,"d":true,"e":null,"f":"<x> & y"}`,
		"z: 1\ny: [x, {w: 2}]\n": `{"z":1,"y":["x",{"w":2}]}`,
	} {
		if got, err := yamlToJSON([]byte(src)); err != nil || string(got) != want {
			t.Errorf("yamlToJSON(%q) = %s, %v; want %s", src, got, err, want)
		}
	}
}

func topLevelKeys(t *testing.T, doc []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// fiberParam is a path parameter as fiber writes it.
var fiberParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// servedRoutes lists what the app routes, as "METHOD /path" with OpenAPI
// path templates, split into the root routes and those under /v4. HEAD
// routes (fiber adds one to every GET) and middleware are left out.
func servedRoutes(app *fiber.App) (root, v4 map[string]bool) {
	root, v4 = map[string]bool{}, map[string]bool{}
	for _, r := range app.GetRoutes(true) {
		if r.Method == fiber.MethodHead {
			continue
		}
		path := fiberParam.ReplaceAllString(r.Path, "{$1}")
		if rest, ok := strings.CutPrefix(path, "/v4/"); ok {
			v4[r.Method+" /"+rest] = true
		} else {
			root[r.Method+" "+path] = true
		}
	}
	return root, v4
}

// TestOpenAPIMatchesRoutes: every route ingest serves is documented with
// its method and path, and every documented operation is served; the /v4
// routes mirror the root ones, as the document says.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	ts := startServer(t, Options{}, nil)
	// One answer first: the node must be serving before the test ends,
	// or its shutdown can run ahead of Serve and leave Serve running.
	if resp, err := http.Get(ts.url("/livez")); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	root, v4 := servedRoutes(ts.App())
	if len(root) == 0 {
		t.Fatal("the app lists no routes")
	}
	for r := range root {
		if !v4[r] {
			t.Errorf("%s is not served under /v4", r)
		}
	}
	for r := range v4 {
		if !root[r] {
			t.Errorf("/v4 serves %s, which the root does not", r)
		}
	}
	documented := operations(doc)
	for _, r := range sortedKeys(root) {
		if documented[r] == nil {
			t.Errorf("%s is served but not in openapi.yaml", r)
		}
	}
	for _, r := range sortedKeys(documented) {
		if !root[r] {
			t.Errorf("%s is in openapi.yaml but not served", r)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestOpenAPIServed: GET /openapi.json (and /v4/openapi.json) answers the
// document as JSON.
func TestOpenAPIServed(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	for _, path := range []string{"/openapi.json", "/v4/openapi.json"} {
		resp, err := http.Get(ts.url(path))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			t.Errorf("GET %s: Content-Type %q, want application/json", path, resp.Header.Get("Content-Type"))
		}
		var doc struct {
			OpenAPI string         `json:"openapi"`
			Paths   map[string]any `json:"paths"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("GET %s: not JSON: %v", path, err)
		}
		if !regexp.MustCompile(`^3\.1\.\d+$`).MatchString(doc.OpenAPI) || len(doc.Paths) == 0 {
			t.Errorf("GET %s: openapi %q with %d paths, want 3.1.x with paths", path, doc.OpenAPI, len(doc.Paths))
		}
	}
}

// TestOpenAPIResponsesConform sends requests a node answers without a
// scanner and checks each answer against the document: the status is one
// the operation lists (not just its default), the body matches the
// schema, and the body has no field the schema does not name. This is
// what keeps the document a description of the handlers rather than of
// what they were meant to do.
func TestOpenAPIResponsesConform(t *testing.T) {
	doc := loadOpenAPI(t)
	hash, err := auth.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	const userKey, adminKey = "conform-user-key-0123", "conform-admin-key-012"
	// Both sources are on, so that their answers are checked too (the
	// answers of a server without them are checked against plain, below).
	scanDir, localFiles := sourceDir(t)
	ts := startServer(t, Options{Auth: auth.NewDirectory(config.AuthConfig{Anonymous: true, Users: []config.User{
		{Name: "u", Role: config.RoleUser, PasswordHash: hash, APIKeys: []string{userKey}},
		{Name: "a", Role: config.RoleAdmin, APIKeys: []string{adminKey}},
	}}), LocalFiles: localFiles, DownloadFrom: true}, withAssemblerBlobs(t)) // a pre-signed upload is completed: its parts must be where the assembler reads
	plain := startServer(t, Options{}, nil)
	ctx := context.Background()

	type exchange struct {
		method, template, path string
		header                 map[string]string
		body                   string
		// outside: the document itself rules the request out (a
		// malformed hash, a missing required header); the answer is
		// still checked.
		outside bool
		// server answers instead of ts, when set.
		server *testServer
	}
	check := func(ex exchange) map[string]any {
		t.Helper()
		item := doc.Paths.Value(ex.template)
		if item == nil || item.GetOperation(ex.method) == nil {
			t.Fatalf("%s %s is not in the document", ex.method, ex.template)
		}
		op := item.GetOperation(ex.method)
		server := ts
		if ex.server != nil {
			server = ex.server
		}
		req, err := http.NewRequest(ex.method, server.url(ex.path), strings.NewReader(ex.body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range ex.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The requests a client builds from the document must be ones
		// it accepts: a document stricter than scangate turns clients
		// away that scangate serves. Bodies are raw bytes, and the apikey
		// is not needed while nothing is configured.
		route := &routers.Route{Spec: doc, Path: ex.template, PathItem: item, Method: ex.method, Operation: op}
		reqInput := &openapi3filter.RequestValidationInput{Request: req, PathParams: pathParams(ex.template, req.URL.Path), Route: route,
			Options: &openapi3filter.Options{ExcludeRequestBody: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if err := openapi3filter.ValidateRequest(ctx, reqInput); err != nil && !ex.outside {
			t.Errorf("%s %s: the document refuses the request: %v", ex.method, ex.path, err)
		}
		shown := body
		if len(shown) > 200 {
			shown = append(shown[:200:200], "..."...)
		}
		name := fmt.Sprintf("%s %s → %d %s", ex.method, ex.path, resp.StatusCode, shown)
		t.Log(name)
		if op.Responses.Status(resp.StatusCode) == nil {
			t.Errorf("%s: status not documented for %s %s", name, ex.method, ex.template)
			return nil
		}
		input := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: reqInput,
			Status:                 resp.StatusCode,
			Header:                 resp.Header,
			Body:                   io.NopCloser(bytes.NewReader(body)),
		}
		if err := openapi3filter.ValidateResponse(ctx, input); err != nil {
			t.Errorf("%s: %v", name, err)
			return nil
		}
		var v map[string]any
		if mt := op.Responses.Status(resp.StatusCode).Value.Content.Get("application/json"); mt != nil {
			var decoded any
			if err := json.Unmarshal(body, &decoded); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, extra := range undocumented(doc, mt.Schema.Value, decoded, "") {
				t.Errorf("%s: field %s is not in the document", name, extra)
			}
			v, _ = decoded.(map[string]any)
		}
		return v
	}

	unknown := ids.New()
	for _, ex := range []exchange{
		{method: "GET", template: "/version", path: "/version"},
		{method: "GET", template: "/livez", path: "/livez"},
		{method: "GET", template: "/readyz", path: "/readyz?verbose=true"},
		{method: "GET", template: "/file/rules", path: "/file/rules"},
		{method: "GET", template: "/stat/engines", path: "/stat/engines"},
		{method: "GET", template: "/stat/nodes", path: "/stat/nodes"},
		{method: "GET", template: "/openapi.json", path: "/openapi.json"},
		{method: "GET", template: "/file/{id}", path: "/file/" + unknown},
		{method: "GET", template: "/hash/{hash}", path: "/hash/" + strings.Repeat("ab", 32)},
		{method: "GET", template: "/hash/{hash}", path: "/hash/xyz", outside: true},
		{method: "GET", template: "/file/multipart/{id}", path: "/file/multipart/" + unknown},
		{method: "DELETE", template: "/file/multipart/{id}", path: "/file/multipart/" + unknown},
		{method: "GET", template: "/file/converted/{id}", path: "/file/converted/" + unknown},
		{method: "GET", template: "/file/webhook/{id}", path: "/file/webhook/" + unknown},
		{method: "POST", template: "/file/webhook/{id}/replay", path: "/file/webhook/" + unknown + "/replay"},
		{method: "POST", template: "/file/{id}/cancel", path: "/file/" + unknown + "/cancel"},
		{method: "GET", template: "/file/{id}/extraction-errors", path: "/file/" + unknown + "/extraction-errors"},
		{method: "POST", template: "/file", path: "/file"},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"rule": "no such rule"}, body: "x"},
		{method: "POST", template: "/file/multipart", path: "/file/multipart", outside: true},
		// Files on the server's disk, and URLs.
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"filepath": scanDir + "/in/report.pdf"}},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"filepath": scanDir + "/../etc/passwd"}},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"filepath": scanDir + "/in/missing.pdf"}},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"filepath": scanDir + "/in"}},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"filepath": scanDir + "/in/empty"}},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"filepath": scanDir + "/in/report.pdf"}, body: "x"},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"filepath": scanDir + "/in/report.pdf", "downloadfrom": "https://example.com/f"}},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"downloadfrom": "https://example.com/files/report.pdf?sig=1"}},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"downloadfrom": "http://127.0.0.1/x"}},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"downloadfrom": "ftp://example.com/x"}},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"downloadfrom": "https://example.com/x"}, body: "x"},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"filepath": "/etc/passwd"}, server: plain},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"downloadfrom": "https://example.com/x"}, server: plain},
	} {
		check(ex)
	}

	// A file, from upload to its in-progress result and webhook state.
	up := check(exchange{method: "POST", template: "/file", path: "/file", body: "hello, scangate",
		header: map[string]string{"filename": "hello.txt", "metadata": `{"ticket":42}`,
			"callbackurl": "https://hooks.example.com/scan"}})
	if id, _ := up["data_id"].(string); id != "" {
		check(exchange{method: "GET", template: "/file/{id}", path: "/file/" + id})
		check(exchange{method: "GET", template: "/file/webhook/{id}", path: "/file/webhook/" + id})
		check(exchange{method: "GET", template: "/file/{id}/extraction-errors", path: "/file/" + id + "/extraction-errors"})
		// A rescan of it while it waits for a scanner (its bytes are in
		// its events), next to an unknown id and itself again.
		check(exchange{method: "POST", template: "/file/rescan", path: "/file/rescan",
			body: `{"file_ids":["` + id + `","` + unknown + `","` + id + `"]}`})
		check(exchange{method: "GET", template: "/file/{id}/rescan", path: "/file/" + id + "/rescan"})
		check(exchange{method: "GET", template: "/file/{id}/rescan", path: "/file/" + id + "/rescan",
			header: map[string]string{"apikey": adminKey, "priority": "high"}})
	}

	// Rescans of nothing, and requests that are not a rescan request.
	check(exchange{method: "GET", template: "/file/{id}/rescan", path: "/file/" + unknown + "/rescan"})
	check(exchange{method: "POST", template: "/file/rescan", path: "/file/rescan", body: `{"file_ids":["` + unknown + `","not an id"]}`})
	check(exchange{method: "POST", template: "/file/rescan", path: "/file/rescan", body: `{"file_ids":[]}`})
	check(exchange{method: "POST", template: "/file/rescan", path: "/file/rescan", body: `{"file_ids":"` + unknown + `"}`})
	check(exchange{method: "POST", template: "/file/rescan", path: "/file/rescan", body: `{"file_ids":[` +
		strings.TrimSuffix(strings.Repeat(`"`+unknown+`",`, 1001), ",") + `]}`})
	check(exchange{method: "POST", template: "/file/rescan", path: "/file/rescan", body: strings.Repeat(" ", 300<<10)})

	// Accounts: login (JSON sent as a form, as real clients do), a wrong
	// password, a bad key, the license for an admin and for a user,
	// logout with a session and with a static key.
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	login := check(exchange{method: "POST", template: "/login", path: "/login", header: form, body: `{"user":"u","password":"pw"}`})
	check(exchange{method: "POST", template: "/login", path: "/login", header: form, body: `{"user":"u","password":"no"}`})
	check(exchange{method: "GET", template: "/stat/engines", path: "/stat/engines", header: map[string]string{"apikey": "wrong"}})
	check(exchange{method: "GET", template: "/admin/license", path: "/admin/license", header: map[string]string{"apikey": adminKey}})
	check(exchange{method: "GET", template: "/admin/license", path: "/admin/license", header: map[string]string{"apikey": userKey}})
	check(exchange{method: "GET", template: "/metrics", path: "/metrics"})
	if sid, _ := login["session_id"].(string); sid != "" {
		check(exchange{method: "POST", template: "/logout", path: "/logout", header: map[string]string{"apikey": sid}})
	}
	check(exchange{method: "POST", template: "/logout", path: "/logout", header: map[string]string{"apikey": userKey}})

	// A multipart upload: open, one part, status, abort, a part too late.
	open := check(exchange{method: "POST", template: "/file/multipart", path: "/file/multipart",
		header: map[string]string{"total-length": "10", "filename": "parts.bin"}})
	if id, _ := open["data_id"].(string); id != "" {
		part := func() {
			check(exchange{method: "POST", template: "/file/multipart/{id}", path: "/file/multipart/" + id, body: "0123",
				header: map[string]string{"Content-Type": "application/octet-stream", "content-range": "0-4/10"}})
		}
		part()
		check(exchange{method: "GET", template: "/file/multipart/{id}", path: "/file/multipart/" + id})
		check(exchange{method: "GET", template: "/file/{id}", path: "/file/" + id})
		check(exchange{method: "DELETE", template: "/file/multipart/{id}", path: "/file/multipart/" + id})
		part()
		check(exchange{method: "GET", template: "/file/multipart/{id}", path: "/file/multipart/" + id})
	}

	// Batches: open one, a file and a multipart upload join it, its
	// status, a close refused while the upload is incomplete, then the
	// upload aborted, the close, a file refused by the closed batch, the
	// signed report and the cancel; unknown batches everywhere.
	check(exchange{method: "POST", template: "/file/batch", path: "/file/batch", header: map[string]string{"rule": "no such rule"}})
	for _, ex := range []exchange{
		{method: "GET", template: "/file/batch/{id}", path: "/file/batch/" + unknown},
		{method: "POST", template: "/file/batch/{id}/close", path: "/file/batch/" + unknown + "/close"},
		{method: "POST", template: "/file/batch/{id}/cancel", path: "/file/batch/" + unknown + "/cancel"},
		{method: "GET", template: "/file/batch/{id}/certificate", path: "/file/batch/" + unknown + "/certificate"},
		{method: "POST", template: "/file", path: "/file", header: map[string]string{"batch": unknown}, body: "x"},
		{method: "POST", template: "/file/multipart", path: "/file/multipart", header: map[string]string{"batch": unknown, "total-length": "5"}},
	} {
		check(ex)
	}
	opened := check(exchange{method: "POST", template: "/file/batch", path: "/file/batch",
		header: map[string]string{"user-data": "ticket%2042", "user_agent": "tester"}})
	if bid, _ := opened["batch_id"].(string); bid != "" {
		inBatch := map[string]string{"batch": bid, "filename": "one.txt"}
		check(exchange{method: "GET", template: "/file/batch/{id}", path: "/file/batch/" + bid})
		check(exchange{method: "POST", template: "/file", path: "/file", header: inBatch, body: "in a batch"})
		mp := check(exchange{method: "POST", template: "/file/multipart", path: "/file/multipart",
			header: map[string]string{"batch": bid, "total-length": "10"}})
		check(exchange{method: "GET", template: "/file/batch/{id}", path: "/file/batch/" + bid + "?first=0&size=1"})
		check(exchange{method: "GET", template: "/file/batch/{id}", path: "/file/batch/" + bid + "?first=-1", outside: true})
		check(exchange{method: "POST", template: "/file/batch/{id}/close", path: "/file/batch/" + bid + "/close"})
		if id, _ := mp["data_id"].(string); id != "" {
			check(exchange{method: "DELETE", template: "/file/multipart/{id}", path: "/file/multipart/" + id})
		}
		check(exchange{method: "POST", template: "/file/batch/{id}/close", path: "/file/batch/" + bid + "/close"})
		check(exchange{method: "POST", template: "/file", path: "/file", header: inBatch, body: "too late"})
		check(exchange{method: "GET", template: "/file/batch/{id}/certificate", path: "/file/batch/" + bid + "/certificate"})
		check(exchange{method: "POST", template: "/file/batch/{id}/cancel", path: "/file/batch/" + bid + "/cancel"})
		check(exchange{method: "GET", template: "/file/batch/{id}", path: "/file/batch/" + bid,
			header: map[string]string{"apikey": userKey}}) // another user's: as unknown
	}

	// A pre-signed part upload: open, URLs again, parts, a tampered URL, a
	// report, a wrong and a right complete, a cancel too late and one in
	// time, and a part after the end.
	const root = "/file/v1/files/upload/parts"
	const one, part = root + "/{id}", root + "/{id}/{partNumber}"
	const done, cancel = root + "/{id}/complete", root + "/{id}/cancel"
	for _, ex := range []exchange{
		{method: "POST", template: root, path: root, body: `{"parts":0}`},
		{method: "POST", template: root, path: root, body: `not json`},
		{method: "GET", template: one, path: root + "/" + unknown},
		{method: "POST", template: done, path: root + "/" + unknown + "/complete", body: `{"parts":[{"partNumber":1,"etag":"x"}]}`},
		{method: "DELETE", template: cancel, path: root + "/" + unknown + "/cancel"},
	} {
		check(ex)
	}
	presigned := check(exchange{method: "POST", template: root, path: root,
		body:   `{"name":"parts.bin","mimeType":"application/octet-stream","parts":2}`,
		header: map[string]string{"rule": "File process", "metadata": `{"ticket":7}`}})
	id, _ := presigned["id"].(string)
	urls, _ := presigned["signedUrls"].([]any)
	if id == "" || len(urls) != 2 {
		t.Fatalf("no pre-signed upload to go on with: %v", presigned)
	}
	first, _ := urls[0].(map[string]any)["signedUrl"].(string)
	u, err := url.Parse(first)
	if err != nil {
		t.Fatal(err)
	}
	signed := u.RequestURI()
	for _, ex := range []exchange{
		{method: "POST", template: one, path: root + "/" + id, body: `{"parts":3}`},
		{method: "PUT", template: part, path: signed, body: "0123456789", header: map[string]string{"Content-Type": "application/octet-stream"}},
		{method: "PUT", template: part, path: strings.Replace(signed, "/1?", "/2?", 1), body: "0123456789"},
		{method: "GET", template: one, path: root + "/" + id},
		{method: "PUT", template: one, path: root + "/" + id, body: `{"parts":[{"partNumber":1,"etag":"781e5e245d69b566979b86e28d23f2c7"}]}`},
		{method: "PUT", template: one, path: root + "/" + id, body: `{"parts":[{"partNumber":1}]}`},
		{method: "POST", template: done, path: root + "/" + id + "/complete", body: `{"parts":[{"partNumber":1,"etag":"0cc175b9c0f1b6a831c399e269772661"}]}`},
		{method: "POST", template: done, path: root + "/" + id + "/complete", body: `{"parts":[{"partNumber":1,"etag":"\"781e5e245d69b566979b86e28d23f2c7\""}]}`},
		{method: "DELETE", template: cancel, path: root + "/" + id + "/cancel"},
		{method: "PUT", template: part, path: signed, body: "0123456789"},
	} {
		check(ex)
	}
	other := check(exchange{method: "POST", template: root, path: root, body: `{"name":"gone.bin","parts":1}`})
	if oid, _ := other["id"].(string); oid != "" {
		check(exchange{method: "DELETE", template: cancel, path: root + "/" + oid + "/cancel"})
		check(exchange{method: "POST", template: one, path: root + "/" + oid, body: `{"parts":1}`})
	}
}

// pathParams reads the values of template's {params} from path.
func pathParams(template, path string) map[string]string {
	params := map[string]string{}
	tseg, pseg := strings.Split(template, "/"), strings.Split(path, "/")
	for i, seg := range tseg {
		if name, ok := strings.CutPrefix(seg, "{"); ok && i < len(pseg) {
			params[strings.TrimSuffix(name, "}")] = pseg[i]
		}
	}
	return params
}

// undocumented lists the object fields in v that schema s does not name,
// as JSON paths. An object schema with properties and no
// additionalProperties names exactly those; of a oneOf, the branch v
// matches is followed.
func undocumented(doc *openapi3.T, s *openapi3.Schema, v any, at string) []string {
	if s == nil {
		return nil
	}
	for _, branch := range s.OneOf {
		if doc.ValidateSchemaJSON(branch.Value, v, openapi3.EnableJSONSchema2020()) == nil {
			return undocumented(doc, branch.Value, v, at)
		}
	}
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, fv := range v {
			switch p := s.Properties[k]; {
			case p != nil:
				out = append(out, undocumented(doc, p.Value, fv, at+"."+k)...)
			case s.AdditionalProperties.Schema != nil:
				out = append(out, undocumented(doc, s.AdditionalProperties.Schema.Value, fv, at+"."+k)...)
			case len(s.Properties) > 0 && s.AdditionalProperties.Has == nil:
				out = append(out, at+"."+k)
			}
		}
	case []any:
		if s.Items != nil {
			for i, item := range v {
				out = append(out, undocumented(doc, s.Items.Value, item, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	return out
}
