package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/node"
)

// openMultipart starts a session and returns its data_id.
func openMultipart(t testing.TB, base string, total int64, headers map[string]string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/file/multipart", nil)
	req.Header.Set("total-length", strconv.FormatInt(total, 10))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	code, out := do(t, req)
	if code != 200 || str(out["data_id"]) == "" {
		t.Fatalf("open multipart: %d %v", code, out)
	}
	return str(out["data_id"])
}

// sendPart posts body as the part at off, with the seed's content-range form.
func sendPart(t testing.TB, base, id string, off int64, body []byte, total int64) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/file/multipart/"+id, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("content-range", fmt.Sprintf("%d-%d/%d", off, len(body), total))
	return do(t, req)
}

func sessionStatus(t testing.TB, base, id string) map[string]any {
	t.Helper()
	var st map[string]any
	if code := getJSON(t, base+"/file/multipart/"+id, &st); code != 200 {
		t.Fatalf("GET /file/multipart/%s: %d %v", id, code, st)
	}
	return st
}

// The seed document's own example: 10,485,760 bytes as three parts sent in
// parallel, out of order.
func TestMultipartSeedExample(t *testing.T) {
	n := startNode(t, testConfig(t))
	const total = 10485760
	file := randomBytes(t, total)
	id := openMultipart(t, n.URL(""), total, map[string]string{"filename": "big.bin"})

	var r map[string]any
	getJSON(t, n.URL("/file/"+id), &r)
	if path(r, "scan_results", "scan_all_result_i") != float64(256) || path(r, "process_info", "result") != "Processing" {
		t.Fatalf("while uploading: %v", r["scan_results"])
	}
	parts := []struct{ off, n int64 }{{4000000, 6485760}, {0, 2000000}, {2000000, 2000000}}
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() {
			if code, out := sendPart(t, n.URL(""), id, p.off, file[p.off:p.off+p.n], total); code != 200 || out["data_id"] != id {
				t.Errorf("part %d: %d %v", p.off, code, out)
			}
		})
	}
	wg.Wait()
	r = waitResult(t, n.URL(""), id)
	if got, want := path(r, "file_info", "sha256"), digestsOf(file).sha256; got != want {
		t.Errorf("sha256 %v, want %s", got, want)
	}
	if path(r, "file_info", "file_size") != float64(total) || path(r, "file_info", "display_name") != "big.bin" {
		t.Errorf("file_info: %v", r["file_info"])
	}
	st := sessionStatus(t, n.URL(""), id)
	if st["status"] != "complete" || st["received_length"] != float64(total) {
		t.Errorf("session after completion: %v", st)
	}
	// A retry after completion is answered and stores nothing.
	if code, out := sendPart(t, n.URL(""), id, 0, file[:10], total); code != 200 || out["status"] != "complete" {
		t.Errorf("part after completion: %d %v", code, out)
	}
}

// Retried and overlapping parts; the status lists exactly what is missing.
func TestMultipartRetriesOverlapsAndResume(t *testing.T) {
	n := startNode(t, testConfig(t))
	const total = 1_000_000
	file := randomBytes(t, total)
	id := openMultipart(t, n.URL(""), total, nil)
	for _, p := range []struct{ off, n int64 }{{0, 300_000}, {200_000, 200_000}, {0, 300_000}, {700_000, 300_000}} {
		if code, out := sendPart(t, n.URL(""), id, p.off, file[p.off:p.off+p.n], total); code != 200 {
			t.Fatalf("part %v: %d %v", p, code, out)
		}
	}
	var st map[string]any
	waitFor(t, "the assembler to merge the parts", func() bool {
		st = sessionStatus(t, n.URL(""), id)
		return st["received_length"] == float64(700_000)
	})
	if fmt.Sprint(st["ranges"]) != "[[0 400000] [700000 300000]]" || fmt.Sprint(st["missing"]) != "[[400000 300000]]" || st["status"] != "uploading" {
		t.Fatalf("status: %v", st)
	}
	// Resume: send exactly what is missing.
	for _, m := range st["missing"].([]any) {
		off, l := int64(m.([]any)[0].(float64)), int64(m.([]any)[1].(float64))
		if code, out := sendPart(t, n.URL(""), id, off, file[off:off+l], total); code != 200 || out["status"] != "complete" {
			t.Fatalf("missing part: %d %v", code, out)
		}
	}
	r := waitResult(t, n.URL(""), id)
	if path(r, "file_info", "sha256") != digestsOf(file).sha256 {
		t.Errorf("sha256 mismatch after resume")
	}
}

// Every malformed part is a 400 (or 404/411) that stores nothing.
func TestMultipartBadParts(t *testing.T) {
	cfg := testConfig(t)
	cfg.Workflows = append(cfg.Workflows, cfg.Workflows[0])
	cfg.Workflows[1].Name, cfg.Workflows[1].Default, cfg.Workflows[1].Multipart.Enabled = "NoParts", false, false
	cfg.Workflows[1].MaxFileSize = 100
	n := startNode(t, cfg)
	const total = 1000
	id := openMultipart(t, n.URL(""), total, nil)
	body := randomBytes(t, 100)
	post := func(path, ctype, crange string, body []byte, extra map[string]string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, n.URL(path), bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if crange != "" {
			req.Header.Set("content-range", crange)
		}
		for k, v := range extra {
			req.Header.Set(k, v)
		}
		return do(t, req)
	}
	part := "/file/multipart/" + id
	for _, tc := range []struct {
		name, path, ctype, crange string
		body                      []byte
		extra                     map[string]string
		status                    int
	}{
		{"wrong content type", part, "text/plain", "0-100/1000", body, nil, 400},
		{"no content-range", part, "application/octet-stream", "", body, nil, 400},
		{"negative offset", part, "application/octet-stream", "-1-100/1000", body, nil, 400},
		{"past the end", part, "application/octet-stream", "950-100/1000", body, nil, 400},
		{"total differs", part, "application/octet-stream", "0-100/2000", body, nil, 400},
		{"overflow", part, "application/octet-stream", "9223372036854775807-100/1000", body, nil, 400},
		{"garbage", part, "application/octet-stream", "bytes=abc", body, nil, 400},
		{"length differs from body", part, "application/octet-stream", "0-99/1000", body, nil, 400},
		{"unknown session", "/file/multipart/" + "0123456789abcdef0123456789abcdef", "application/octet-stream", "0-100/1000", body, nil, 404},
		{"malformed session id", "/file/multipart/xyz", "application/octet-stream", "0-100/1000", body, nil, 404},
		{"open without total-length", "/file/multipart", "", "", nil, nil, 400},
		{"open with negative total", "/file/multipart", "", "", nil, map[string]string{"total-length": "-5"}, 400},
		{"open disabled for rule", "/file/multipart", "", "", nil, map[string]string{"total-length": "50", "rule": "NoParts"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := post(tc.path, tc.ctype, tc.crange, tc.body, tc.extra)
			if code != tc.status || (code != 200 && str(out["err"]) == "") {
				t.Errorf("got %d %v, want %d with an err", code, out, tc.status)
			}
		})
	}
	if code, _ := post("/file/multipart", "", "", nil, map[string]string{"total-length": "101", "rule": "NoParts"}); code != 403 {
		t.Errorf("multipart on a rule without it: %d", code)
	}
	// A valid part last: its event follows any a refused part might have
	// sent, so once it is applied the count is final.
	if code, out := sendPart(t, n.URL(""), id, 0, body[:10], 1000); code != 200 {
		t.Fatalf("valid part: %d %v", code, out)
	}
	waitFor(t, "the valid part to be applied", func() bool {
		st := sessionStatus(t, n.URL(""), id)
		return st["received_length"] != float64(0)
	})
	if st := sessionStatus(t, n.URL(""), id); st["received_length"] != float64(10) {
		t.Errorf("refused parts were counted: %v", st)
	}
	if blobs, _ := filepath.Glob(filepath.Join(n.Config().DataDir, "blobs", "*", id)); len(blobs) != 1 {
		t.Errorf("blobs of the session: %v", blobs)
	} else if fi, err := os.Stat(blobs[0]); err != nil || fi.Size() != 10 {
		t.Errorf("refused parts left bytes: the file holds %v bytes, want only the valid part's 10", fi.Size())
	}
}

// Abort cuts off a part still streaming in, releases the bytes, refuses
// later parts and gives verdict 19.
func TestMultipartAbortWithPartInFlight(t *testing.T) {
	n := startNode(t, testConfig(t))
	const total = 4 << 20
	file := randomBytes(t, total)
	id := openMultipart(t, n.URL(""), total, nil)
	if code, _ := sendPart(t, n.URL(""), id, 0, file[:1<<20], total); code != 200 {
		t.Fatal("first part refused")
	}
	// A part that sends half its bytes, then stalls.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, n.URL("/file/multipart/"+id), pr)
	req.ContentLength = 1 << 20
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("content-range", fmt.Sprintf("%d-%d/%d", 1<<20, 1<<20, total))
	inFlight := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			inFlight <- 0
			return
		}
		resp.Body.Close()
		inFlight <- resp.StatusCode
	}()
	pw.Write(file[1<<20 : 1<<20+512<<10])
	waitFor(t, "the part to be written", func() bool {
		blobs, _ := filepath.Glob(filepath.Join(n.Config().DataDir, "blobs", "*", id))
		if len(blobs) != 1 {
			return false
		}
		fi, err := os.Stat(blobs[0])
		return err == nil && fi.Size() > 1<<20
	})

	del, _ := http.NewRequest(http.MethodDelete, n.URL("/file/multipart/"+id), nil)
	if code, out := do(t, del); code != 200 || out[id] != "cancelled" {
		t.Fatalf("abort: %d %v", code, out)
	}
	select {
	case code := <-inFlight:
		if code != 410 && code != 0 {
			t.Errorf("part in flight answered %d, want 410 (or the connection cut)", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("part in flight was not cut off")
	}
	pw.Close()
	if code, out := sendPart(t, n.URL(""), id, 2<<20, file[2<<20:3<<20], total); code != 410 || out["err"] != "Multipart uploading session cancelled" {
		t.Errorf("part after abort: %d %v", code, out)
	}
	r := waitResult(t, n.URL(""), id)
	if path(r, "scan_results", "scan_all_result_i") != float64(19) {
		t.Errorf("verdict after abort: %v", r["scan_results"])
	}
	if st := sessionStatus(t, n.URL(""), id); st["status"] != "cancelled" {
		t.Errorf("session after abort: %v", st)
	}
	waitFor(t, "the bytes to be released", func() bool {
		blobs, _ := filepath.Glob(filepath.Join(n.Config().DataDir, "blobs", "*", id))
		return len(blobs) == 0
	})
}

// A session past its time to live refuses parts and gets verdict 47.
func TestMultipartTimeToLive(t *testing.T) {
	cfg := testConfig(t)
	cfg.Workflows[0].Multipart.TTL = time.Second
	n := startNode(t, cfg)
	const total = 1000
	file := randomBytes(t, total)
	id := openMultipart(t, n.URL(""), total, nil)
	if code, _ := sendPart(t, n.URL(""), id, 0, file[:500], total); code != 200 {
		t.Fatal("part before expiry refused")
	}
	waitFor(t, "the session to time out", func() bool { return sessionStatus(t, n.URL(""), id)["status"] == "timed_out" })
	if code, out := sendPart(t, n.URL(""), id, 500, file[500:], total); code != 410 || out["err"] != "Multipart uploading session timed out" {
		t.Errorf("late part: %d %v", code, out)
	}
	r := waitResult(t, n.URL(""), id)
	if path(r, "scan_results", "scan_all_result_i") != float64(47) {
		t.Errorf("verdict after expiry: %v", r["scan_results"])
	}
	if st := sessionStatus(t, n.URL(""), id); st["status"] != "timed_out" {
		t.Errorf("session after expiry: %v", st)
	}
}

// Sequential chunks with X-File-Size / X-File-ID; the same bytes again are
// recognised by hash and answered with the earlier data_id.
func TestChunkedUploadAndDeduplication(t *testing.T) {
	n := startNode(t, testConfig(t))
	file := randomBytes(t, 300_000)
	send := func() (first, last string) {
		chunks := [][]byte{file[:100_000], file[100_000:250_000], file[250_000:]}
		first = mustUpload(t, n.URL(""), chunks[0], map[string]string{"X-File-Size": strconv.Itoa(len(file)), "filename": "c.bin"})
		for _, ch := range chunks[1:] {
			last = mustUpload(t, n.URL(""), ch, map[string]string{"X-File-ID": first})
		}
		return first, last
	}
	id1, last1 := send()
	if last1 != id1 {
		t.Fatalf("first upload's last chunk answered %s, want its own id %s", last1, id1)
	}
	r := waitResult(t, n.URL(""), id1)
	if path(r, "file_info", "sha256") != digestsOf(file).sha256 {
		t.Fatalf("chunked sha256: %v", path(r, "file_info", "sha256"))
	}
	id2, last2 := send()
	if id2 == id1 || last2 != id1 {
		t.Errorf("second upload of the same bytes: first chunk %s, last chunk %s; want the earlier id %s at the end", id2, last2, id1)
	}
	// A chunk past the declared size is refused and changes nothing.
	code, out := upload(t, n.URL(""), []byte("x"), map[string]string{"X-File-ID": id1})
	if code != 400 || out["err"] != "File size exceeded the declared X-File-Size." {
		t.Errorf("chunk past the size: %d %v", code, out)
	}
	if r := waitResult(t, n.URL(""), id1); path(r, "file_info", "sha256") != digestsOf(file).sha256 {
		t.Errorf("result changed by a refused chunk")
	}
}

// Concurrent chunks of one upload never overlap: each reserves its offset.
func TestChunkedConcurrentChunks(t *testing.T) {
	n := startNode(t, testConfig(t))
	const chunk, count = 10_000, 8
	first := mustUpload(t, n.URL(""), bytes.Repeat([]byte{'a'}, chunk), map[string]string{"X-File-Size": strconv.Itoa(chunk * count)})
	var wg sync.WaitGroup
	for range count - 1 {
		wg.Go(func() {
			mustUpload(t, n.URL(""), bytes.Repeat([]byte{'a'}, chunk), map[string]string{"X-File-ID": first})
		})
	}
	wg.Wait()
	r := waitResult(t, n.URL(""), first)
	if path(r, "file_info", "sha256") != digestsOf(bytes.Repeat([]byte{'a'}, chunk*count)).sha256 {
		t.Errorf("concurrent chunks assembled wrongly")
	}
}

// kill -9 mid-upload, lose the assembler's local state too (a new host),
// restart, resume from missing: the session is rebuilt from the stream and
// the file completes with the right hash.
func TestMultipartSurvivesHardStop(t *testing.T) {
	dir := t.TempDir()
	p := startServeProcess(t, dir)
	const total = 3_000_000
	file := randomBytes(t, total)
	id := openMultipart(t, p.addr, total, nil)
	for _, off := range []int64{0, 2_000_000} {
		if code, out := sendPart(t, p.addr, id, off, file[off:off+1_000_000], total); code != 200 {
			t.Fatalf("part: %d %v", code, out)
		}
	}
	p.kill()
	if err := os.Remove(filepath.Join(dir, "assembler.db")); err != nil {
		t.Fatal(err)
	}

	p = startServeProcess(t, dir)
	var st map[string]any
	waitFor(t, "the status to show both parts", func() bool {
		st = sessionStatus(t, p.addr, id)
		return st["received_length"] == float64(2_000_000)
	})
	if fmt.Sprint(st["missing"]) != "[[1e+06 1e+06]]" {
		t.Fatalf("missing after restart: %v", st["missing"])
	}
	if code, out := sendPart(t, p.addr, id, 1_000_000, file[1_000_000:2_000_000], total); code != 200 {
		t.Fatalf("resumed part: %d %v", code, out)
	}
	r := waitResult(t, p.addr, id)
	if path(r, "file_info", "sha256") != digestsOf(file).sha256 {
		t.Errorf("sha256 after resume across a crash: %v", path(r, "file_info", "sha256"))
	}
}

// Parts spread over two ingest nodes, two assemblers sharing the
// partitions, the owning assembler stopped mid-upload: the other takes the
// partition over and the file still completes.
func TestTwoIngestsTwoAssemblers(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.Blob.Store = "jetstream"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// The first node runs NATS, an ingest, the scanner and the notifier;
	// the assemblers are separate, so the one that owns the partitions is known.
	first, err := node.Start(context.Background(), cfg, []node.Role{node.Ingest, node.Scanner, node.Notifier}, "test", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Close() })
	join := func(roles ...node.Role) *node.Node {
		c := testConfig(t)
		c.NATS.URL = first.NATSURL()
		c.Blob.Store = "jetstream"
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		n, err := node.Start(context.Background(), c, roles, "test", testLog{t})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	ingest2 := join(node.Ingest)
	owner := join(node.Assembler)

	const total = 8 << 20
	const part = 1 << 20
	file := randomBytes(t, total)
	id := openMultipart(t, ingest2.URL(""), total, nil)
	send := func(i int) {
		base := []string{first.URL(""), ingest2.URL("")}[i%2]
		if code, out := sendPart(t, base, id, int64(i*part), file[i*part:(i+1)*part], total); code != 200 {
			t.Fatalf("part %d: %d %v", i, code, out)
		}
	}
	for i := range 4 {
		send(i)
	}
	waitFor(t, "the owning assembler to take the first parts", func() bool {
		return sessionStatus(t, first.URL(""), id)["received_length"] == float64(4*part)
	})
	standby := join(node.Assembler)
	_ = standby
	if err := owner.Close(); err != nil { // the owner goes away mid-upload
		t.Logf("closing assembler: %v", err)
	}
	for i := 4; i < 8; i++ {
		send(i)
	}
	r := waitResult(t, ingest2.URL(""), id)
	if path(r, "file_info", "sha256") != digestsOf(file).sha256 {
		t.Errorf("sha256 across two ingests and a lost assembler: %v", path(r, "file_info", "sha256"))
	}
}
