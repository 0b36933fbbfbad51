package e2e

// scangate upload, the command, against real nodes: a directory of small
// and large files through two ingest nodes, interrupted and resumed, with
// every byte that crosses the wire counted by a proxy in front of each
// node.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/scangate/scangate/internal/cli"
	"github.com/scangate/scangate/internal/clustertest"
	"github.com/scangate/scangate/internal/node"
)

// wireLog is a counting reverse proxy in front of one node: what each
// request sent, per kind, and what each resume was told was missing.
type wireLog struct {
	srv *httptest.Server
	mu  sync.Mutex
	// per run (see next)
	wholeBytes map[string]int64 // filename → bytes of POST /file bodies
	partBytes  map[string]int64 // data_id → bytes of part bodies
	acked      map[string]int64 // data_id → bytes of parts answered 200
	missing    map[string]int64 // data_id → bytes a status answer reported missing
	partsSeen  int
	// onAck, when set, sees every part answered 200.
	onAck func()
}

func newWireLog(t *testing.T, target string) *wireLog {
	t.Helper()
	w := &wireLog{}
	w.next()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		req := resp.Request
		id := strings.TrimPrefix(req.URL.Path, "/file/multipart/")
		switch {
		case req.Method == http.MethodPost && id != req.URL.Path && resp.StatusCode == http.StatusOK:
			w.mu.Lock()
			w.acked[id] += req.ContentLength
			ack := w.onAck
			w.mu.Unlock()
			if ack != nil {
				ack()
			}
		case req.Method == http.MethodGet && id != req.URL.Path:
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			var st struct{ Missing [][2]int64 }
			_ = json.Unmarshal(body, &st)
			w.mu.Lock()
			for _, m := range st.Missing {
				w.missing[id] += m[1]
			}
			w.mu.Unlock()
		}
		return nil
	}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.ContentLength > 0 {
			n := &counted{r: r.Body}
			r.Body = n
			defer func() {
				w.mu.Lock()
				defer w.mu.Unlock()
				if id, ok := strings.CutPrefix(r.URL.Path, "/file/multipart/"); ok {
					w.partBytes[id] += n.n.Load()
					w.partsSeen++
				} else if r.URL.Path == "/file" {
					w.wholeBytes[r.Header.Get("filename")] += n.n.Load()
				}
			}()
		}
		proxy.ServeHTTP(rw, r)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// next starts counting a new run.
func (w *wireLog) next() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wholeBytes, w.partBytes, w.acked, w.missing = map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}
}

type counted struct {
	r io.ReadCloser
	n atomic.Int64
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
func (c *counted) Close() error { return c.r.Close() }

// sum adds a map of the two proxies' counts.
func sum(logs []*wireLog, pick func(*wireLog) map[string]int64, key string) int64 {
	var n int64
	for _, w := range logs {
		w.mu.Lock()
		n += pick(w)[key]
		w.mu.Unlock()
	}
	return n
}

// runUpload runs the command as main would and returns its exit code and
// outputs.
func runUpload(ctx context.Context, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := cli.Run(ctx, append([]string{"upload"}, args...), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// twoIngests starts a node with every role that shares its NATS, and a
// second node that runs only the HTTP API against it: any node takes any
// part. Uploaded bytes live in JetStream, which both reach.
func twoIngests(t *testing.T) (first, second *node.Node) {
	t.Helper()
	cfg := testConfig(t)
	// A port of its own: nats-server reads port 0 as its default 4222,
	// which other test processes on the machine may hold.
	cfg.NATS.Listen = fmt.Sprintf("127.0.0.1:%d", clustertest.FreePorts(t, 1)[0])
	cfg.Blob.Store = "jetstream"
	first = startNode(t, cfg)
	c := testConfig(t)
	c.NATS.URL = first.NATSURL()
	c.Blob.Store = "jetstream"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	second, err := node.Start(context.Background(), c, []node.Role{node.Ingest}, "test", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	return first, second
}

// A directory of small and large files through two nodes: interrupted
// mid-way, then run again. The second run sends only what the server
// reported missing and nothing it had already accepted; the third sends
// nothing. --wait reports the EICAR file blocked, and the exit code says so.
func TestUploadCommandResumesAcrossTwoNodes(t *testing.T) {
	first, second := twoIngests(t)
	logs := []*wireLog{newWireLog(t, first.URL("")), newWireLog(t, second.URL(""))}

	dir := t.TempDir()
	files := map[string][]byte{
		"a-small.txt": []byte(strings.Repeat("small file\n", 3000)),
		"big1.bin":    randomBytes(t, 12*128<<10+777),
		"big2.bin":    randomBytes(t, 9*128<<10),
		"eicar.com":   eicar(),
		"sub/c.txt":   []byte(strings.Repeat("another small file\n", 100)),
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "a-small.txt"), filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	args := []string{"--server", logs[0].srv.URL, "--server", logs[1].srv.URL, "--state-dir", t.TempDir(),
		"--threshold", "1MiB", "--part-size", "128KiB", "--parallel", "2", "--jobs", "1", "--progress", "lines", dir, "--wait"}

	// Run 1, cut off (as by Ctrl-C) once six parts of big1 are answered.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var acks atomic.Int32
	for _, w := range logs {
		w.onAck = func() {
			if acks.Add(1) == 6 {
				cancel()
			}
		}
	}
	code, stdout, stderr := runUpload(ctx, args...)
	if code != 130 {
		t.Fatalf("interrupted run: exit %d, want 130\n%s\n%s", code, stdout, stderr)
	}
	for _, w := range logs {
		w.onAck = nil
	}
	var big1 string
	for _, w := range logs {
		for id := range w.acked {
			big1 = id
		}
	}
	acked := sum(logs, func(w *wireLog) map[string]int64 { return w.acked }, big1)
	if big1 == "" || acked < 6*128<<10 {
		t.Fatalf("run 1 acknowledged %d bytes of parts of %q", acked, big1)
	}
	if sum(logs, func(w *wireLog) map[string]int64 { return w.wholeBytes }, "a-small.txt") != int64(len(files["a-small.txt"])) {
		t.Fatal("run 1 did not send a-small.txt before big1.bin")
	}
	// The status is the assembler's view of durable parts; let it show
	// what was acknowledged, so the resume demonstrably skips it.
	waitFor(t, "the session to show the acknowledged parts", func() bool {
		return num(sessionStatus(t, first.URL(""), big1)["received_length"]) >= acked
	})

	// Run 2: resume.
	for _, w := range logs {
		w.next()
	}
	code, stdout, stderr = runUpload(context.Background(), args...)
	if code != 1 {
		t.Fatalf("resumed run: exit %d, want 1 (EICAR is blocked)\n%s\n%s", code, stdout, stderr)
	}
	missing := sum(logs, func(w *wireLog) map[string]int64 { return w.missing }, big1)
	resent := sum(logs, func(w *wireLog) map[string]int64 { return w.partBytes }, big1)
	t.Logf("big1.bin: %d bytes, %d acknowledged before the cut, %d missing at the resume, %d sent", len(files["big1.bin"]), acked, missing, resent)
	if missing == 0 || missing > int64(len(files["big1.bin"]))-acked || resent != missing {
		t.Errorf("big1.bin: the server missed %d bytes (%d were acknowledged), the resume sent %d", missing, acked, resent)
	}
	if n := sum(logs, func(w *wireLog) map[string]int64 { return w.wholeBytes }, "a-small.txt"); n != 0 {
		t.Errorf("a-small.txt, accepted in run 1, was sent again: %d bytes", n)
	}
	for _, name := range []string{"eicar.com", "c.txt"} {
		if n := sum(logs, func(w *wireLog) map[string]int64 { return w.wholeBytes }, name); n != int64(len(files[strings.Replace(name, "c.txt", "sub/c.txt", 1)])) {
			t.Errorf("%s: %d bytes sent whole", name, n)
		}
	}
	var big2Parts int64
	for _, w := range logs {
		w.mu.Lock()
		for id, n := range w.partBytes {
			if id != big1 {
				big2Parts += n
			}
		}
		w.mu.Unlock()
	}
	if big2Parts != int64(len(files["big2.bin"])) {
		t.Errorf("big2.bin: %d bytes of parts, want %d", big2Parts, len(files["big2.bin"]))
	}
	for i, w := range logs {
		if w.partsSeen == 0 {
			t.Errorf("server %d received no part in run 2: parts are not spread", i)
		}
	}
	// The verdict table.
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
		f := strings.Fields(line)
		rows[filepath.Base(f[0])] = line
	}
	if len(rows) != len(files) || rows["link.txt"] != "" {
		t.Errorf("table rows for %d files (symlinks are not followed by default):\n%s", len(files), stdout)
	}
	if !strings.Contains(rows["eicar.com"], "Blocked") || !strings.Contains(rows["eicar.com"], "EICAR-Test-File") {
		t.Errorf("eicar row: %q", rows["eicar.com"])
	}
	for _, name := range []string{"a-small.txt", "big1.bin", "big2.bin", "c.txt"} {
		if !strings.Contains(rows[name], "Allowed") {
			t.Errorf("%s row: %q", name, rows[name])
		}
	}
	if !strings.Contains(stderr, "link.txt: symlink") {
		t.Errorf("the skipped symlink is not reported:\n%s", stderr)
	}
	r := waitResult(t, first.URL(""), big1)
	if path(r, "file_info", "sha256") != digestsOf(files["big1.bin"]).sha256 {
		t.Errorf("big1.bin resumed over two nodes: sha256 %v", path(r, "file_info", "sha256"))
	}

	// Run 3: everything is on the server; nothing is sent, and the JSON
	// report carries the same verdicts.
	for _, w := range logs {
		w.next()
	}
	code, stdout, stderr = runUpload(context.Background(), append(args, "--json")...)
	if code != 1 {
		t.Fatalf("third run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for i, w := range logs {
		if len(w.wholeBytes)+len(w.partBytes) != 0 {
			t.Errorf("third run sent to server %d: whole %v parts %v", i, w.wholeBytes, w.partBytes)
		}
	}
	var report []struct {
		File, DataID, Result, Note string
		Threats                    []string
	}
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || len(report) != len(files) {
		t.Fatalf("JSON report (%v):\n%s", err, stdout)
	}
	for _, e := range report {
		blocked := filepath.Base(e.File) == "eicar.com"
		if (e.Result == "Blocked") != blocked || e.Note != "already uploaded" {
			t.Errorf("JSON entry %+v", e)
		}
	}
}

// A refusal with Retry-After (503 here) is waited out and the upload
// succeeds; a workflow without multipart gets large files whole; bad
// invocations exit 2, unreachable servers 3, clean files 0.
func TestUploadCommandExitCodes(t *testing.T) {
	cfg := testConfig(t)
	cfg.Workflows[0].Multipart.Enabled = false
	n := startNode(t, cfg)
	target, _ := url.Parse(n.URL(""))
	proxy := httputil.NewSingleHostReverseProxy(target)
	var posts atomic.Int32
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/file" && posts.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"err":"Server is too busy. Try again later."}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer busy.Close()

	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.txt")
	if err := os.WriteFile(clean, []byte("nothing to see"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	if code, out, errOut := runUpload(context.Background(), "--server", busy.URL, "--state-dir", state, "--progress", "none", "--wait", clean); code != 0 ||
		!strings.Contains(out, "Allowed") || posts.Load() != 2 {
		t.Errorf("through a 503 with Retry-After: exit %d after %d POSTs\n%s\n%s", code, posts.Load(), out, errOut)
	}
	if code, out, errOut := runUpload(context.Background(), "--server", n.URL(""), "--state-dir", state, "--threshold", "1", "--progress", "lines", dir); code != 0 ||
		!strings.Contains(errOut, "Multipart upload is not enabled") || !strings.Contains(out, "whole") {
		t.Errorf("a large file under a workflow without multipart: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"unknown flag", []string{"--no-such-flag", clean}, 2},
		{"no path", []string{"--state-dir", state}, 2},
		{"missing path", []string{"--state-dir", state, filepath.Join(dir, "nope")}, 2},
		{"metadata not an object", []string{"--state-dir", state, "--metadata", "[1]", clean}, 2},
		{"server down", []string{"--state-dir", t.TempDir(), "--server", "http://127.0.0.1:1", "--retries", "1", "--progress", "none", clean}, 3},
	} {
		if code, out, errOut := runUpload(context.Background(), tc.args...); code != tc.want {
			t.Errorf("%s: exit %d, want %d\n%s\n%s", tc.name, code, tc.want, out, errOut)
		}
	}
}
