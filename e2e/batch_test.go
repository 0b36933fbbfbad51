package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/batch"
)

// openBatch opens a batch as key and returns its batch_id.
func openBatch(t testing.TB, base, key string, headers map[string]string) string {
	t.Helper()
	code, out, _ := call(t, "POST", base+"/file/batch", key, nil, headers)
	id := str(out["batch_id"])
	if code != 200 || len(id) != 32 {
		t.Fatalf("POST /file/batch: %d %v", code, out)
	}
	return id
}

// batchStatus is GET /file/batch/{id}<query>, which must answer 200.
func batchStatus(t testing.TB, base, key, id, query string) map[string]any {
	t.Helper()
	code, out, _ := call(t, "GET", base+"/file/batch/"+id+query, key, nil, nil)
	if code != 200 {
		t.Fatalf("GET /file/batch/%s%s: %d %v", id, query, code, out)
	}
	return out
}

// rawGet answers a GET's status, body and Content-Type.
func rawGet(t testing.TB, url, key string) (int, []byte, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("apikey", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header.Get("Content-Type")
}

// waitBatchFinal polls the batch until none of its files is running.
func waitBatchFinal(t testing.TB, base, key, id string) map[string]any {
	t.Helper()
	var st map[string]any
	waitFor(t, "every file of the batch to be final", func() bool {
		st = batchStatus(t, base, key, id, "?size=2000")
		return path(st, "process_info", "result") != "Processing"
	})
	return st
}

// checkClientFields asserts every field OPSWAT's C++ client parses from a
// batch answer, with the JSON type it reads it as: strings never null,
// integers never floats, booleans.
func checkClientFields(t testing.TB, st map[string]any) {
	t.Helper()
	isInt := func(v any) bool { f, ok := v.(float64); return ok && f == float64(int64(f)) }
	isStr := func(v any) bool { _, ok := v.(string); return ok }
	isBool := func(v any) bool { _, ok := v.(bool); return ok }
	want := func(ok bool, where string, v any) {
		t.Helper()
		if !ok {
			t.Errorf("%s = %#v: wrong JSON type or missing", where, v)
		}
	}
	want(isStr(st["batch_id"]), "batch_id", st["batch_id"])
	want(isBool(st["is_closed"]), "is_closed", st["is_closed"])
	want(isStr(st["user_data"]), "user_data", st["user_data"])
	for _, f := range []string{"batch_count", "first_index", "page_size"} {
		want(isInt(path(st, "batch_files", f)), "batch_files."+f, path(st, "batch_files", f))
	}
	files, ok := path(st, "batch_files", "files_in_batch").([]any)
	want(ok, "batch_files.files_in_batch", path(st, "batch_files", "files_in_batch"))
	for i, f := range files {
		at := fmt.Sprintf("files_in_batch[%d].", i)
		for _, k := range []string{"data_id", "display_name", "file_type", "file_type_description", "scan_all_result_a"} {
			want(isStr(path(f, k)), at+k, path(f, k))
		}
		for _, k := range []string{"detected_by", "file_size", "progress_percentage", "scan_all_result_i", "scanned_with"} {
			want(isInt(path(f, k)), at+k, path(f, k))
		}
		want(isStr(path(f, "process_info", "blocked_reason")), at+"process_info.blocked_reason", path(f, "process_info", "blocked_reason"))
		want(isInt(path(f, "process_info", "progress_percentage")), at+"process_info.progress_percentage", path(f, "process_info", "progress_percentage"))
		want(isStr(path(f, "process_info", "result")), at+"process_info.result", path(f, "process_info", "result"))
	}
	for _, k := range []string{"batch_id", "scan_all_result_a", "start_time"} {
		want(isStr(path(st, "scan_results", k)), "scan_results."+k, path(st, "scan_results", k))
	}
	for _, k := range []string{"scan_all_result_i", "total_avs", "total_time"} {
		want(isInt(path(st, "scan_results", k)), "scan_results."+k, path(st, "scan_results", k))
	}
	want(isBool(path(st, "process_info", "file_type_skipped_scan")), "process_info.file_type_skipped_scan", path(st, "process_info", "file_type_skipped_scan"))
	for _, k := range []string{"blocked_reason", "profile", "result", "user_agent"} {
		want(isStr(path(st, "process_info", k)), "process_info."+k, path(st, "process_info", k))
	}
}

// dataIDs lists the data_ids of a status's page, in order.
func dataIDs(st map[string]any) []string {
	var out []string
	files, _ := path(st, "batch_files", "files_in_batch").([]any)
	for _, f := range files {
		out = append(out, str(path(f, "data_id")))
	}
	return out
}

// A batch from start to signed report: files sent the way OPSWAT's client
// sends them (the batch header, no rule of their own), a multipart upload,
// the status with every field the client parses, paging, the close, a file
// the closed batch refuses, and the report verified with the certificate.
func TestBatchLifecycle(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	base := n.URL("")

	bid := openBatch(t, base, "", map[string]string{"user-data": "nightly%20run%20%2342", "user_agent": "mdcl", "rule": "File%20process"})
	st := batchStatus(t, base, "", bid, "")
	checkClientFields(t, st)
	if st["user_data"] != "nightly run #42" || st["is_closed"] != false || num(path(st, "batch_files", "batch_count")) != 0 ||
		path(st, "process_info", "profile") != "File process" || path(st, "process_info", "user_agent") != "mdcl" {
		t.Fatalf("a new batch: %v", st)
	}

	// Three whole files and a multipart upload join it.
	bodies := [][]byte{[]byte("first clean file"), eicar(), randomBytes(t, 200<<10)}
	var ids []string
	for i, b := range bodies {
		ids = append(ids, mustUpload(t, base, b, map[string]string{"batch": bid, "filename": []string{"clean.txt", "eicar.txt", "random.bin"}[i]}))
	}
	mpBody := randomBytes(t, 3000)
	mp := openMultipart(t, base, int64(len(mpBody)), map[string]string{"batch": bid, "filename": "parts.bin"})
	ids = append(ids, mp)
	for off := 0; off < len(mpBody); off += 1000 {
		if code, out := sendPart(t, base, mp, int64(off), mpBody[off:off+1000], int64(len(mpBody))); code != 200 {
			t.Fatalf("part at %d: %d %v", off, code, out)
		}
	}
	st = waitBatchFinal(t, base, "", bid)
	checkClientFields(t, st)
	if got := dataIDs(st); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("files_in_batch %v, want the files in the order they joined %v", got, ids)
	}
	if num(path(st, "batch_files", "batch_count")) != 4 || num(path(st, "scan_results", "scan_all_result_i")) != 1 ||
		path(st, "scan_results", "scan_all_result_a") != "Infected" || path(st, "process_info", "result") != "Blocked" ||
		path(st, "process_info", "blocked_reason") != "Infected" || path(st, "scan_results", "batch_id") != bid {
		t.Errorf("the batch with an infected file: %v", st)
	}
	if tt := num(path(st, "scan_results", "total_time")); tt < 0 {
		t.Errorf("total_time %d once every file is final", tt)
	}
	for _, id := range ids {
		// A file of the batch is an ordinary file too, with the batch's rule.
		r := waitResult(t, base, id)
		if path(r, "process_info", "profile") != "File process" || path(r, "process_info", "user_agent") != "mdcl" {
			t.Errorf("file %s in the batch: profile %v, user_agent %v", id, path(r, "process_info", "profile"), path(r, "process_info", "user_agent"))
		}
	}

	// Pages.
	page := batchStatus(t, base, "", bid, "?first=1&size=2")
	checkClientFields(t, page)
	if got := dataIDs(page); strings.Join(got, ",") != strings.Join(ids[1:3], ",") ||
		num(path(page, "batch_files", "first_index")) != 1 || num(path(page, "batch_files", "page_size")) != 2 ||
		num(path(page, "batch_files", "batch_count")) != 4 {
		t.Errorf("first=1&size=2: %v, want %v", path(page, "batch_files"), ids[1:3])
	}
	if got := dataIDs(batchStatus(t, base, "", bid, "?first=4")); len(got) != 0 {
		t.Errorf("a page past the end: %v", got)
	}
	if code, out, _ := call(t, "GET", base+"/file/batch/"+bid+"?size=-1", "", nil, nil); code != 400 {
		t.Errorf("size=-1: %d %v", code, out)
	}
	if got := dataIDs(batchStatus(t, base, "", bid, "")); len(got) != 4 {
		t.Errorf("the default page: %d files", len(got))
	}

	// Close; a closed batch takes no file, and nothing of it is stored.
	code, closed, _ := call(t, "POST", base+"/file/batch/"+bid+"/close", "", nil, nil)
	if code != 200 || closed["is_closed"] != true || num(path(closed, "batch_files", "batch_count")) != 4 {
		t.Fatalf("close: %d %v", code, closed)
	}
	checkClientFields(t, closed)
	if code, again, _ := call(t, "POST", base+"/file/batch/"+bid+"/close", "", nil, nil); code != 200 || again["is_closed"] != true {
		t.Errorf("a second close: %d %v", code, again)
	}
	assertRefusedUpload(t, n, bid, "Batch is closed.")

	// The signed report.
	code, body, ctype := rawGet(t, base+"/file/batch/"+bid+"/certificate", "")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("certificate: %d %s %s", code, ctype, body)
	}
	report, sig, certPEM, err := batch.Split(body)
	if err != nil {
		t.Fatalf("the signed report does not split: %v\n%s", err, body)
	}
	published, err := os.ReadFile(filepath.Join(cfg.DataDir, batch.GeneratedCertFile))
	if err != nil {
		t.Fatalf("the generated certificate is not in the data dir: %v", err)
	}
	if !bytes.Equal(certPEM, published) {
		t.Error("the report carries another certificate than the node's")
	}
	if err := batch.Verify(report, sig, published); err != nil {
		t.Fatalf("the report does not verify with the published certificate: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, batch.GeneratedKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the generated key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	var rep struct {
		BatchID     string `yaml:"batch_id"`
		UserData    string `yaml:"user_data"`
		IsClosed    bool   `yaml:"is_closed"`
		BatchCount  int    `yaml:"batch_count"`
		ScanResults struct {
			ScanAllResultI int `yaml:"scan_all_result_i"`
		} `yaml:"scan_results"`
		Files []struct {
			DataID string `yaml:"data_id"`
			SHA256 string `yaml:"sha256"`
		} `yaml:"files"`
	}
	if err := yaml.Unmarshal(report, &rep); err != nil {
		t.Fatalf("the report is not YAML: %v\n%s", err, report)
	}
	if rep.BatchID != bid || rep.UserData != "nightly run #42" || !rep.IsClosed || rep.BatchCount != 4 ||
		rep.ScanResults.ScanAllResultI != 1 || len(rep.Files) != 4 {
		t.Errorf("report: %+v", rep)
	}
	for i, b := range append(bodies, mpBody) {
		if i < len(rep.Files) && (rep.Files[i].DataID != ids[i] || rep.Files[i].SHA256 != digestsOf(b).sha256) {
			t.Errorf("report file %d: %+v, want %s with sha256 %s", i, rep.Files[i], ids[i], digestsOf(b).sha256)
		}
	}
	tampered := bytes.Replace(report, []byte("batch_count: 4"), []byte("batch_count: 3"), 1)
	if batch.Verify(tampered, sig, published) == nil {
		t.Error("a changed report verifies")
	}

	t.Run("openssl", func(t *testing.T) {
		verifyWithOpenSSL(t, body, published)
	})
}

// verifyWithOpenSSL runs the README's commands on a signed report.
func verifyWithOpenSSL(t *testing.T, signed, published []byte) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed: the README's openssl verification is not run")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "signed.yaml"), signed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scangate-batch.crt"), published, 0o600); err != nil {
		t.Fatal(err)
	}
	// As in README.md, section Batches.
	script := `set -e
sed '/^---$/,$d' signed.yaml > report.yaml
sed -n 's/^signature: //p' signed.yaml | openssl base64 -d -A > sig.bin
openssl x509 -in scangate-batch.crt -pubkey -noout > pub.pem
openssl dgst -sha256 -verify pub.pem -signature sig.bin report.yaml
sed -n '/^certificate: |$/,$p' signed.yaml | sed '1d; s/^  //' > cert.pem
openssl x509 -in cert.pem -noout -fingerprint -sha256
openssl x509 -in scangate-batch.crt -noout -fingerprint -sha256
`
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's openssl commands: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || lines[0] != "Verified OK" || lines[1] != lines[2] {
		t.Fatalf("openssl: %q; want Verified OK and the same fingerprint twice", out)
	}
	// And a changed report fails.
	tamper := exec.Command("sh", "-c", `sed 's/^batch_count: .*/batch_count: 0/' report.yaml > changed.yaml &&
openssl dgst -sha256 -verify pub.pem -signature sig.bin changed.yaml`)
	tamper.Dir = dir
	if out, err := tamper.CombinedOutput(); err == nil {
		t.Errorf("openssl verifies a changed report: %s", out)
	}
}

// assertRefusedUpload sends a file, a multipart upload and a first chunk
// into batch bid and expects each refused with 400 {"err": msg}, with
// nothing stored: no blob, no result, no member.
func assertRefusedUpload(t *testing.T, n *node.Node, bid, msg string, key ...string) {
	t.Helper()
	k := ""
	if len(key) > 0 {
		k = key[0]
	}
	base := n.URL("")
	blobsBefore, resultsBefore := storedFiles(t, n), resultKeys(t, n)
	big := randomBytes(t, 200<<10)
	for _, tc := range []struct {
		what    string
		path    string
		body    []byte
		headers map[string]string
	}{
		{"a whole file", "/file", big, map[string]string{"batch": bid}},
		{"a small file", "/file", []byte("small"), map[string]string{"batch": bid}},
		{"a multipart upload", "/file/multipart", nil, map[string]string{"batch": bid, "total-length": "100"}},
		{"a first chunk", "/file", big[:1000], map[string]string{"batch": bid, "X-File-Size": "5000"}},
	} {
		code, out, _ := call(t, "POST", base+tc.path, k, tc.body, tc.headers)
		if code != 400 || out["err"] != msg {
			t.Errorf("%s into batch %s: %d %v; want 400 %q", tc.what, bid[:8], code, out, msg)
		}
	}
	if after := storedFiles(t, n); after != blobsBefore {
		t.Errorf("refused uploads left %d blobs behind", after-blobsBefore)
	}
	if after := resultKeys(t, n); after != resultsBefore {
		t.Errorf("refused uploads left %d results behind", after-resultsBefore)
	}
}

// resultKeys counts the records in the results bucket.
func resultKeys(t testing.TB, n *node.Node) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := n.Bus().Results.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for range keys.Keys() {
		count++
	}
	return count
}

// A close is refused (409) while a multipart or chunked upload of the
// batch is incomplete, and goes through once it is complete.
func TestBatchCloseWaitsForUploads(t *testing.T) {
	n := startNode(t, testConfig(t))
	base := n.URL("")
	bid := openBatch(t, base, "", nil)
	whole := mustUpload(t, base, []byte("whole"), map[string]string{"batch": bid})
	body := randomBytes(t, 2000)
	mp := openMultipart(t, base, int64(len(body)), map[string]string{"batch": bid})
	if code, out := sendPart(t, base, mp, 0, body[:1000], int64(len(body))); code != 200 {
		t.Fatalf("first part: %d %v", code, out)
	}
	code, out, _ := call(t, "POST", base+"/file/batch/"+bid+"/close", "", nil, nil)
	if code != 409 || out["err"] != "A multipart upload in this batch is incomplete." {
		t.Fatalf("close with an incomplete multipart upload: %d %v", code, out)
	}
	// Still open: files join.
	late := mustUpload(t, base, []byte("joins after the refused close"), map[string]string{"batch": bid})
	if code, out := sendPart(t, base, mp, 1000, body[1000:], int64(len(body))); code != 200 {
		t.Fatalf("last part: %d %v", code, out)
	}

	// A sequential (chunked) upload holds the close too.
	code, out, _ = call(t, "POST", base+"/file", "", []byte("first half"), map[string]string{"batch": bid, "X-File-Size": "20"})
	chunked := str(out["data_id"])
	if code != 200 || chunked == "" {
		t.Fatalf("first chunk: %d %v", code, out)
	}
	waitFor(t, "the multipart file to leave 256", func() bool {
		var r map[string]any
		getJSON(t, base+"/file/"+mp, &r)
		return num(path(r, "scan_results", "scan_all_result_i")) != 256
	})
	if code, out, _ := call(t, "POST", base+"/file/batch/"+bid+"/close", "", nil, nil); code != 409 {
		t.Fatalf("close with an incomplete chunked upload: %d %v", code, out)
	}
	if code, out, _ := call(t, "POST", base+"/file", "", []byte("secondhalf"), map[string]string{"X-File-ID": chunked, "X-File-Size": "20"}); code != 200 {
		t.Fatalf("last chunk: %d %v", code, out)
	}
	var closed map[string]any
	waitFor(t, "the close to go through once the uploads are complete", func() bool {
		code, closed, _ = call(t, "POST", base+"/file/batch/"+bid+"/close", "", nil, nil)
		if code != 200 && code != 409 {
			t.Fatalf("close: %d %v", code, closed)
		}
		return code == 200
	})
	checkClientFields(t, closed)
	st := waitBatchFinal(t, base, "", bid)
	want := []string{whole, mp, late, chunked}
	if got := dataIDs(st); strings.Join(got, ",") != strings.Join(want, ",") || st["is_closed"] != true {
		t.Errorf("members %v, want %v; is_closed %v", got, want, st["is_closed"])
	}
	if num(path(st, "scan_results", "scan_all_result_i")) != 0 || path(st, "process_info", "result") != "Allowed" {
		t.Errorf("a clean batch: %v %v", path(st, "scan_results"), path(st, "process_info"))
	}
}

// Cancelling a batch closes it and cancels its files still running (19):
// one held in a slow scan and one queued behind it; a file already final
// keeps its verdict.
func TestBatchCancel(t *testing.T) {
	slow := selectiveBlocker{name: "slow.txt", started: make(chan string, 1), stopped: make(chan error, 1)}
	n := startWithEngine(t, slow)
	base := n.URL("")
	bid := openBatch(t, base, "", nil)

	done := mustUpload(t, base, []byte("finished before the cancel"), map[string]string{"batch": bid, "filename": "done.txt"})
	if r := waitResult(t, base, done); num(path(r, "scan_results", "scan_all_result_i")) != 0 {
		t.Fatalf("first file: %v", r["scan_results"])
	}
	running := mustUpload(t, base, []byte("held by the slow engine"), map[string]string{"batch": bid, "filename": "slow.txt"})
	select {
	case got := <-slow.started:
		if got != running {
			t.Fatalf("the slow engine holds %s, want %s", got, running)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the slow scan never started")
	}
	queued := mustUpload(t, base, []byte("queued behind it"), map[string]string{"batch": bid, "filename": "queued.txt"})
	if st := batchStatus(t, base, "", bid, ""); num(path(st, "scan_results", "scan_all_result_i")) != 255 ||
		path(st, "process_info", "result") != "Processing" || num(path(st, "scan_results", "total_time")) != -1 {
		t.Errorf("a batch with running files: %v %v", st["scan_results"], st["process_info"])
	}

	code, out, _ := call(t, "POST", base+"/file/batch/"+bid+"/cancel", "", nil, nil)
	if code != 200 || len(out) != 1 || out[bid] != "cancelled" {
		t.Fatalf("cancel: %d %v", code, out)
	}
	select {
	case err := <-slow.stopped:
		if err == nil {
			t.Error("the running scan ended without being stopped")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the running scan was not stopped by the batch cancel")
	}
	for id, want := range map[string]int64{done: 0, running: 19, queued: 19} {
		if r := waitResult(t, base, id); num(path(r, "scan_results", "scan_all_result_i")) != want {
			t.Errorf("file %s after the batch cancel: %v, want %d", id, path(r, "scan_results", "scan_all_result_i"), want)
		}
	}
	st := waitBatchFinal(t, base, "", bid)
	checkClientFields(t, st)
	if st["is_closed"] != true || num(path(st, "scan_results", "scan_all_result_i")) != 19 || path(st, "process_info", "result") != "Blocked" {
		t.Errorf("the cancelled batch: closed %v, %v %v", st["is_closed"], st["scan_results"], st["process_info"])
	}
	if code, out, _ := call(t, "POST", base+"/file/batch/"+bid+"/cancel", "", nil, nil); code != 200 || out[bid] != "cancelled" {
		t.Errorf("a second cancel: %d %v", code, out)
	}
	assertRefusedUpload(t, n, bid, "Batch is closed.")
}

// A batch is its owner's: every batch endpoint answers another user
// exactly as for an unknown batch, an upload into it is refused like one
// into an unknown batch (and stores nothing), and an admin sees it.
func TestBatchesAreTheirOwners(t *testing.T) {
	cfg := testConfig(t)
	withAccounts(t, cfg)
	n := startNode(t, cfg)
	base := n.URL("")
	bid := openBatch(t, base, aliceKey, map[string]string{"user-data": "alice's"})
	mustUploadAs(t, base, aliceKey, bid)

	unknown := "0123456789abcdef0123456789abcdef"
	for _, e := range []struct{ method, path string }{
		{"GET", "/file/batch/%s"},
		{"GET", "/file/batch/%s?first=0&size=10"},
		{"POST", "/file/batch/%s/close"},
		{"POST", "/file/batch/%s/cancel"},
		{"GET", "/file/batch/%s/certificate"},
	} {
		for _, key := range []string{bobKey, ""} { // anonymous is a user like any other
			wantCode, wantBody, _ := call(t, e.method, base+strings.ReplaceAll(e.path, "%s", unknown), key, nil, nil)
			code, body, _ := call(t, e.method, base+strings.ReplaceAll(e.path, "%s", bid), key, nil, nil)
			if wantCode != 404 || code != wantCode || !sameExceptID(body, wantBody, bid, unknown) {
				t.Errorf("%q %s %s: %d %v; an unknown batch gets %d %v", key, e.method, e.path, code, body, wantCode, wantBody)
			}
		}
	}
	assertRefusedUpload(t, n, unknown, "Batch not found.", bobKey)
	assertRefusedUpload(t, n, bid, "Batch not found.", bobKey)
	if code, out, _ := call(t, "POST", base+"/file", bobKey, []byte("x"), map[string]string{"batch": "not-an-id"}); code != 400 || out["err"] != "Invalid batch id." {
		t.Errorf("a malformed batch id: %d %v", code, out)
	}

	// Bob's attempts changed nothing; alice and an admin see the batch.
	for _, key := range []string{aliceKey, adminKey} {
		st := batchStatus(t, base, key, bid, "")
		if st["is_closed"] != false || num(path(st, "batch_files", "batch_count")) != 1 || st["user_data"] != "alice's" {
			t.Errorf("as %s: %v", key[:5], st)
		}
		if code, body, _ := rawGet(t, base+"/file/batch/"+bid+"/certificate", key); code != 200 {
			t.Errorf("certificate as %s: %d %s", key[:5], code, body)
		}
	}
	if code, out, _ := call(t, "POST", base+"/file/batch/"+bid+"/close", adminKey, nil, nil); code != 200 || out["is_closed"] != true {
		t.Errorf("an admin closes alice's batch: %d %v", code, out)
	}
}

func mustUploadAs(t *testing.T, base, key, bid string) string {
	t.Helper()
	code, out, _ := call(t, "POST", base+"/file", key, []byte("a file of "+key[:5]), map[string]string{"batch": bid})
	if code != 200 || str(out["data_id"]) == "" {
		t.Fatalf("upload into %s: %d %v", bid, code, out)
	}
	return str(out["data_id"])
}

// Files joining while the batch closes: whichever JetStream stores first
// wins. Every upload answered 200 is in the batch, every refused one left
// nothing, and the batch counts exactly the accepted files.
func TestBatchJoinRacesClose(t *testing.T) {
	n := startNode(t, testConfig(t))
	base := n.URL("")
	bid := openBatch(t, base, "", nil)
	resultsBefore := resultKeys(t, n)

	const uploaders, each = 8, 6
	var mu sync.Mutex
	var accepted []string
	refused := 0
	var wg sync.WaitGroup
	start := make(chan struct{})
	for u := range uploaders {
		wg.Go(func() {
			<-start
			for i := range each {
				body := []byte(fmt.Sprintf("uploader %d file %d %s", u, i, strconv.FormatInt(time.Now().UnixNano(), 36)))
				code, out := upload(t, base, body, map[string]string{"batch": bid})
				mu.Lock()
				switch {
				case code == 200:
					accepted = append(accepted, str(out["data_id"]))
				case code == 400 && out["err"] == "Batch is closed.":
					refused++
				default:
					t.Errorf("upload: %d %v", code, out)
				}
				mu.Unlock()
			}
		})
	}
	close(start)
	waitFor(t, "some files to join", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) >= uploaders
	})
	if code, out, _ := call(t, "POST", base+"/file/batch/"+bid+"/close", "", nil, nil); code != 200 {
		t.Fatalf("close: %d %v", code, out)
	}
	wg.Wait()
	t.Logf("%d files accepted, %d refused by the close", len(accepted), refused)
	if refused == 0 {
		t.Log("every upload joined before the close; the race was not exercised this run")
	}
	st := waitBatchFinal(t, base, "", bid)
	members := map[string]bool{}
	for _, id := range dataIDs(st) {
		members[id] = true
	}
	for _, id := range accepted {
		if !members[id] {
			t.Errorf("file %s was accepted into the batch but is not in it", id)
		}
	}
	if len(members) != len(accepted) || num(path(st, "batch_files", "batch_count")) != int64(len(accepted)) {
		t.Errorf("the batch has %d files (batch_count %v); %d were accepted", len(members), path(st, "batch_files", "batch_count"), len(accepted))
	}
	if got := resultKeys(t, n) - resultsBefore; got != len(accepted) {
		t.Errorf("%d new results for %d accepted files: refused uploads left results behind", got, len(accepted))
	}
}

// Batches on a three-node JetStream cluster with two ingests sharing one
// configured key pair: files join concurrently through both (a join that
// meets another in flight is tried again, never refused), the close on one
// ingest holds for the other, and either ingest's report verifies with the
// one certificate.
func TestClusterBatch(t *testing.T) {
	r := newClusterRig(t)
	pair := t.TempDir()
	if _, err := batch.LoadOrCreateSigner(pair); err != nil {
		t.Fatal(err)
	}
	keyPath, certPath := filepath.Join(pair, batch.GeneratedKeyFile), filepath.Join(pair, batch.GeneratedCertFile)
	startIngest := func(name string) *roleNode {
		cfg := r.config(t.TempDir())
		cfg.Batches.SigningKey, cfg.Batches.Certificate = keyPath, certPath
		n, err := node.Start(context.Background(), cfg, []node.Role{node.Ingest}, "test", nodeLog{t, name})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		rn := &roleNode{Node: n, name: name}
		t.Cleanup(rn.stop)
		return rn
	}
	ingests := []*roleNode{startIngest("ingest-1"), startIngest("ingest-2")}
	r.start("assembler", node.Assembler)
	r.start("scanner", node.Scanner)

	bid := openBatch(t, ingests[0].URL(""), "", nil)
	const clients, each = 6, 4
	var mu sync.Mutex
	var accepted []string
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				base := ingests[(c+i)%2].URL("")
				code, out := upload(t, base, []byte(fmt.Sprintf("client %d file %d", c, i)), map[string]string{"batch": bid})
				if code != 200 {
					t.Errorf("upload through %s: %d %v", base, code, out)
					continue
				}
				mu.Lock()
				accepted = append(accepted, str(out["data_id"]))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if code, out, _ := call(t, "POST", ingests[1].URL("/file/batch/"+bid+"/close"), "", nil, nil); code != 200 || out["is_closed"] != true {
		t.Fatalf("close through ingest-2: %d %v", code, out)
	}
	if code, out := upload(t, ingests[0].URL(""), []byte("late"), map[string]string{"batch": bid}); code != 400 || out["err"] != "Batch is closed." {
		t.Errorf("a file after the close, through ingest-1: %d %v", code, out)
	}
	st := waitBatchFinal(t, ingests[0].URL(""), "", bid)
	if num(path(st, "batch_files", "batch_count")) != int64(len(accepted)) || len(accepted) != clients*each {
		t.Errorf("batch_count %v, %d accepted of %d", path(st, "batch_files", "batch_count"), len(accepted), clients*each)
	}
	published, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ingests {
		code, body, _ := rawGet(t, in.URL("/file/batch/"+bid+"/certificate"), "")
		report, sig, _, err := batch.Split(body)
		if code != 200 || err != nil {
			t.Fatalf("certificate through %s: %d %v", in.name, code, err)
		}
		if err := batch.Verify(report, sig, published); err != nil {
			t.Errorf("the report of %s does not verify with the configured certificate: %v", in.name, err)
		}
	}
}
