package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
)

// The fields API.md promises in every result; clients index them blindly.
var resultFields = map[string][]string{
	"":             {"data_id", "file_id", "file_info", "process_info", "scan_results", "metadata"},
	"file_info":    {"display_name", "file_size", "file_type", "file_type_description", "file_type_extension", "md5", "sha1", "sha256", "sha512", "upload_timestamp"},
	"process_info": {"result", "blocked_reason", "blocked_reasons", "verdicts", "profile", "user_agent", "username", "progress_percentage", "file_type_skipped_scan", "queue_time", "processing_time", "post_processing"},
	"scan_results": {"data_id", "scan_all_result_i", "scan_all_result_a", "progress_percentage", "start_time", "total_time", "total_avs", "total_detected_avs", "scan_details"},
}

func checkShape(t *testing.T, r map[string]any) {
	t.Helper()
	for section, keys := range resultFields {
		obj := any(r)
		if section != "" {
			obj = r[section]
		}
		m, ok := obj.(map[string]any)
		if !ok {
			t.Fatalf("result has no %q object: %v", section, r)
		}
		for _, k := range keys {
			v, present := m[k]
			if !present || v == nil {
				t.Errorf("result %s.%s missing or null", section, k)
			}
		}
	}
	for name, d := range r["scan_results"].(map[string]any)["scan_details"].(map[string]any) {
		for _, k := range []string{"scan_result_i", "threat_found", "def_time", "scan_time", "wait_time", "eng_id"} {
			if _, ok := d.(map[string]any)[k]; !ok {
				t.Errorf("scan_details.%s.%s missing", name, k)
			}
		}
	}
}

func TestCleanFileEndToEnd(t *testing.T) {
	n := startNode(t, testConfig(t))
	body := append([]byte("%PDF-1.4\n"), randomBytes(t, 300_000)...)
	id := mustUpload(t, n.URL(""), body, map[string]string{
		"filename":   "report%20Q3%3Cx%3E.pdf", // percent-encoded, with < > to strip
		"metadata":   `{"ticket": 42, "tags": ["a","b"]}`,
		"user_agent": "acme-uploader",
		"source":     "10.1.2.3",
	})
	if !ids.Valid(id) {
		t.Fatalf("data_id %q is not 32 lowercase hex", id)
	}
	r := waitResult(t, n.URL(""), id)
	checkShape(t, r)
	want := digestsOf(body)
	for k, v := range map[string]string{"md5": want.md5, "sha1": want.sha1, "sha256": want.sha256, "sha512": want.sha512} {
		if got := path(r, "file_info", k); got != v {
			t.Errorf("file_info.%s = %v, want %s", k, got, v)
		}
	}
	checks := map[string]any{
		"data_id":                                            id,
		"file_info.display_name":                             "report Q3x.pdf",
		"file_info.file_size":                                float64(len(body)),
		"file_info.file_type":                                "application/pdf",
		"file_info.file_type_extension":                      "pdf",
		"process_info.result":                                "Allowed",
		"process_info.blocked_reason":                        "",
		"process_info.profile":                               "File process",
		"process_info.user_agent":                            "acme-uploader",
		"process_info.progress_percentage":                   float64(100),
		"scan_results.scan_all_result_i":                     float64(0),
		"scan_results.scan_all_result_a":                     "No Threat Detected",
		"scan_results.total_detected_avs":                    float64(0),
		"metadata.ticket":                                    float64(42),
		"scan_results.scan_details.Signatures.scan_result_i": float64(0),
	}
	for p, v := range checks {
		if got := path(r, strings.Split(p, ".")...); got != v {
			t.Errorf("%s = %#v, want %#v", p, got, v)
		}
	}
	if tt := num(path(r, "scan_results", "total_time")); tt < 0 {
		t.Errorf("total_time %d on a finished scan", tt)
	}
	if num(path(r, "scan_results", "total_avs")) < 1 {
		t.Errorf("total_avs: no engine ran")
	}
	// The same result under /v4.
	var v4 map[string]any
	getJSON(t, n.URL("/v4/file/"+id), &v4)
	if v4["data_id"] != id {
		t.Errorf("/v4/file/%s = %v", id, v4)
	}
}

func TestEICARIsBlocked(t *testing.T) {
	n := startNode(t, testConfig(t))
	id := mustUpload(t, n.URL(""), eicar(), map[string]string{"filename": "eicar.com"})
	r := waitResult(t, n.URL(""), id)
	checkShape(t, r)
	for p, v := range map[string]any{
		"scan_results.scan_all_result_i":                     float64(1),
		"scan_results.scan_all_result_a":                     "Infected",
		"scan_results.total_detected_avs":                    float64(1),
		"process_info.result":                                "Blocked",
		"process_info.blocked_reason":                        "Infected",
		"scan_results.scan_details.Signatures.threat_found":  "EICAR-Test-File",
		"scan_results.scan_details.Signatures.scan_result_i": float64(1),
	} {
		if got := path(r, strings.Split(p, ".")...); got != v {
			t.Errorf("%s = %#v, want %#v", p, got, v)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, n.URL("/file/"+id+"/cancel"), nil)
	if code, out := do(t, req); code != 409 || out["err"] != "Scan already finished." {
		t.Errorf("cancel of a finished scan: %d %v", code, out)
	}
}

func TestHashListEngine(t *testing.T) {
	cfg := testConfig(t)
	bad := randomBytes(t, 5000)
	list := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(list, []byte("# known bad\n"+digestsOf(bad).sha256+" Trojan.Test.Sample\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Engines.HashList.Path = list
	n := startNode(t, cfg)
	badID := mustUpload(t, n.URL(""), bad, nil)
	goodID := mustUpload(t, n.URL(""), randomBytes(t, 5000), nil)
	r := waitResult(t, n.URL(""), badID)
	if path(r, "scan_results", "scan_details", "HashList", "threat_found") != "Trojan.Test.Sample" ||
		path(r, "process_info", "result") != "Blocked" {
		t.Errorf("listed hash not reported: %v", r["scan_results"])
	}
	if r := waitResult(t, n.URL(""), goodID); path(r, "process_info", "result") != "Allowed" {
		t.Errorf("unlisted file blocked: %v", r["scan_results"])
	}
}

func TestHashLookups(t *testing.T) {
	n := startNode(t, testConfig(t))
	body := randomBytes(t, 10_000)
	id := mustUpload(t, n.URL(""), body, nil)
	waitResult(t, n.URL(""), id)
	d := digestsOf(body)
	for _, h := range []string{d.md5, d.sha1, d.sha256, d.sha512, strings.ToUpper(d.sha256)} {
		var r map[string]any
		if code := getJSON(t, n.URL("/hash/"+h), &r); code != 200 || r["data_id"] != id {
			t.Errorf("GET /hash/%s = %d %v, want data_id %s", h[:8], code, r["data_id"], id)
		}
	}
	unknown := strings.Repeat("ab", 32)
	var r map[string]any
	if code := getJSON(t, n.URL("/hash/"+unknown), &r); code != 200 || r[unknown] != "Not Found" {
		t.Errorf("unknown hash: %d %v", code, r)
	}
	for _, bad := range []string{"xyz", strings.Repeat("a", 33), strings.Repeat("g", 64)} {
		if code := getJSON(t, n.URL("/hash/"+bad), &r); code != 400 || r["err"] != "Invalid hash format" {
			t.Errorf("GET /hash/%s: %d %v, want 400 Invalid hash format", bad, code, r)
		}
	}
}

func TestUnknownIDs(t *testing.T) {
	n := startNode(t, testConfig(t))
	unknown := ids.New()
	for _, id := range []string{unknown, "not-an-id", strings.ToUpper(unknown)} {
		var r map[string]any
		if code := getJSON(t, n.URL("/file/"+url.PathEscape(id)), &r); code != 200 || r[id] != "Not Found" {
			t.Errorf("GET /file/%s = %d %v", id, code, r)
		}
	}
	var r map[string]any
	if code := getJSON(t, n.URL("/file/webhook/"+unknown), &r); code != 404 || r["err"] != "No callback url set." {
		t.Errorf("webhook state of unknown id: %d %v", code, r)
	}
	req, _ := http.NewRequest(http.MethodPost, n.URL("/file/"+unknown+"/cancel"), nil)
	if code, r := do(t, req); code != 404 || r["err"] == nil {
		t.Errorf("cancel unknown id: %d %v", code, r)
	}
}

// TestBadInputIsRefusedWithoutState sends every malformed upload API.md
// lists and checks each gets its status and {"err"}, and that none left a
// byte on disk, a queued file or a result behind.
func TestBadInputIsRefusedWithoutState(t *testing.T) {
	cfg := testConfig(t)
	cfg.Workflows[0].MaxFileSize = 1000
	cfg.Webhooks.AllowPrivateTargets = false
	n := startNode(t, cfg)
	small := []byte("hello")
	cases := []struct {
		name    string
		body    []byte
		headers map[string]string
		status  int
		err     string
	}{
		{"empty body", nil, nil, 422, "File is empty."},
		{"unknown rule", small, map[string]string{"rule": "nope"}, 400, "Unknown rule."},
		{"one unknown of several rules", small, map[string]string{"rule": "File process,nope"}, 400, "Unknown rule."},
		{"callback not a url", small, map[string]string{"callbackurl": "not a url"}, 400, "Callback url is invalid."},
		{"callback ftp", small, map[string]string{"callbackurl": "ftp://example.com/x"}, 400, "Callback url is invalid."},
		{"callback loopback", small, map[string]string{"callbackurl": "http://127.0.0.1:9/x"}, 400, "Callback url is invalid."},
		{"callback metadata service", small, map[string]string{"callbackurl": "http://169.254.169.254/latest"}, 400, "Callback url is invalid."},
		{"callback octal loopback", small, map[string]string{"callbackurl": "http://0177.0.0.1:9/x"}, 400, "Callback url is invalid."},
		{"callback address as one number", small, map[string]string{"callbackurl": "http://2130706433/x"}, 400, "Callback url is invalid."},
		{"sanitizedurl bad", small, map[string]string{"sanitizedurl": "javascript:alert(1)"}, 400, "Sanitized url is invalid."},
		{"metadata not json", small, map[string]string{"metadata": "{nope"}, 400, "Invalid metadata."},
		{"metadata array", small, map[string]string{"metadata": "[1,2]"}, 400, "Invalid metadata."},
		{"metadata number overflows", small, map[string]string{"metadata": `{"a":1e999}`}, 400, "Invalid metadata."},
		{"metadata nested too deep", small, map[string]string{"metadata": strings.Repeat(`{"a":`, 2000) + "1" + strings.Repeat("}", 2000)}, 400, "Invalid metadata."},
		{"batch not an id", small, map[string]string{"batch": "../../etc"}, 400, "Invalid batch id."},
		{"too large for rule", randomBytes(t, 1001), nil, 413, "File is too large for this rule."},
		{"body and downloadfrom", small, map[string]string{"downloadfrom": "https://example.com/x"}, 400, "Both body data and download link were given."},
		{"X-File-Size not a number", small, map[string]string{"X-File-Size": "five"}, 400, "Invalid X-File-Size header."},
		{"X-File-Size negative", small, map[string]string{"X-File-Size": "-5"}, 400, "Invalid X-File-Size header."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := upload(t, n.URL(""), tc.body, tc.headers)
			if code != tc.status || out["err"] != tc.err {
				t.Errorf("got %d %v, want %d %q", code, out, tc.status, tc.err)
			}
		})
	}

	t.Run("chunked transfer encoding", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, n.URL("/file"), io.MultiReader(strings.NewReader("abc"))) // unknown length → chunked
		code, out := do(t, req)
		if code != 411 || out["err"] != "Missing Content-Length header." {
			t.Errorf("got %d %v, want 411", code, out)
		}
	})
	t.Run("body shorter than Content-Length", func(t *testing.T) {
		conn, err := net.Dial("tcp", n.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /file HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("x", 5000))
		conn.(*net.TCPConn).CloseWrite() // the client goes away mid-body
		io.Copy(io.Discard, bufio.NewReader(conn))
		conn.Close()
	})

	// Nothing of the above may have left state behind.
	ctx := context.Background()
	waitFor(t, "the cut-off upload's bytes to be released", func() bool {
		blobs, _ := filepath.Glob(filepath.Join(n.Config().DataDir, "blobs", "*", "*"))
		return len(blobs) == 0
	})
	if st, err := n.Bus().JS.Stream(ctx, events.StreamFiles); err != nil || st.CachedInfo().State.Msgs != 0 {
		t.Errorf("FILES stream holds messages after refused uploads: %v", err)
	}
	if keys, err := n.Bus().Results.ListKeys(ctx); err == nil {
		for k := range keys.Keys() {
			t.Errorf("result %s exists after refused uploads", k)
		}
	}
}

func TestConcurrentUploads(t *testing.T) {
	n := startNode(t, testConfig(t))
	const clients = 64
	type sent struct {
		id     string
		sha256 string
	}
	results := make([]sent, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			body := randomBytes(t, 1000+i*997)
			results[i] = sent{mustUpload(t, n.URL(""), body, map[string]string{"filename": fmt.Sprintf("f%d.bin", i)}), digestsOf(body).sha256}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, s := range results {
		if seen[s.id] {
			t.Fatalf("data_id %s issued twice", s.id)
		}
		seen[s.id] = true
		r := waitResult(t, n.URL(""), s.id)
		if got := path(r, "file_info", "sha256"); got != s.sha256 {
			t.Errorf("file %d: sha256 %v, want %s", i, got, s.sha256)
		}
		if got := path(r, "file_info", "display_name"); got != fmt.Sprintf("f%d.bin", i) {
			t.Errorf("file %d: display_name %v", i, got)
		}
	}
}

func TestRulesHealthVersion(t *testing.T) {
	cfg := testConfig(t)
	cfg.Workflows = append(cfg.Workflows, cfg.Workflows[0])
	cfg.Workflows[1].Name, cfg.Workflows[1].Default, cfg.Workflows[1].UserAgents = "Partner", false, []string{"partner-app"}
	cfg.Workflows[1].Multipart.Enabled = false
	n := startNode(t, cfg)
	var rules []map[string]any
	getJSON(t, n.URL("/file/rules"), &rules)
	if len(rules) != 2 || rules[0]["name"] != "File process" || rules[1]["multipart"] != false {
		t.Errorf("GET /file/rules = %v", rules)
	}
	// A client mapped to the partner workflow runs it without naming it.
	id := mustUpload(t, n.URL(""), []byte("x"), map[string]string{"user_agent": "partner-app"})
	if r := waitResult(t, n.URL(""), id); path(r, "process_info", "profile") != "Partner" {
		t.Errorf("user_agent mapping: profile %v", path(r, "process_info", "profile"))
	}
	var m map[string]any
	if code := getJSON(t, n.URL("/readyz?verbose=true"), &m); code != 200 || path(m, "checks", "jetstream") != "ok" {
		t.Errorf("readyz: %d %v", code, m)
	}
	if code := getJSON(t, n.URL("/livez"), &m); code != 200 {
		t.Errorf("livez: %d", code)
	}
	if code := getJSON(t, n.URL("/version"), &m); code != 200 || m["product_id"] != "scangate" || m["version"] == "" {
		t.Errorf("version: %d %v", code, m)
	}
}

// A large whole-file upload reports the digests of its bytes whether ingest
// hashed all of it or, falling behind the disk, handed the rest to the
// scanner.
func TestLargeUploadDigests(t *testing.T) {
	n := startNode(t, testConfig(t))
	body := randomBytes(t, 48<<20)
	id := mustUpload(t, n.URL(""), body, nil)
	r := waitResult(t, n.URL(""), id)
	want := digestsOf(body)
	fi := r["file_info"]
	if path(fi, "md5") != want.md5 || path(fi, "sha1") != want.sha1 || path(fi, "sha256") != want.sha256 ||
		path(fi, "sha512") != want.sha512 || path(fi, "file_size") != float64(len(body)) {
		t.Errorf("file_info %v, want the digests of the 48 MiB uploaded", fi)
	}
	var byHash map[string]any
	getJSON(t, n.URL("/hash/"+want.sha512), &byHash)
	if byHash["data_id"] != id {
		t.Errorf("GET /hash/<sha512>: %v", byHash["data_id"])
	}
}
