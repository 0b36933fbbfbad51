package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/workflow"
	"github.com/scangate/scangate/scanner"
	"github.com/scangate/scangate/scanner/engines"
)

// Metadata is the client's data: a key that looks like a result field must
// not change how the result is rendered (it once crashed the process on
// every GET of that file, and on every restart).
func TestMetadataNeverSteersRendering(t *testing.T) {
	n := startNode(t, testConfig(t))
	body := []byte("metadata that looks like an archive result")
	id := mustUpload(t, n.URL(""), body, map[string]string{"metadata": `{"extracted_files":1}`})
	r := waitResult(t, n.URL(""), id)
	if _, ok := r["extracted_files"]; ok {
		t.Errorf("a plain file has extracted_files: %v", r["extracted_files"])
	}
	if path(r, "metadata", "extracted_files") != float64(1) {
		t.Errorf("metadata not echoed: %v", r["metadata"])
	}
	var byHash map[string]any
	if code := getJSON(t, n.URL("/hash/"+digestsOf(body).sha256), &byHash); code != 200 || byHash["data_id"] != id {
		t.Errorf("GET /hash: %d %v", code, byHash)
	}
	if code := getJSON(t, n.URL("/livez"), nil); code != 200 {
		t.Errorf("/livez after the lookups: %d", code)
	}
}

// heartbeatEngine stands for a scan longer than the heartbeat interval: it
// reads the file, then holds until the test has seen a progress report
// reach the file's result, and counts how often it was run.
type heartbeatEngine struct {
	release chan struct{}
	runs    *atomic.Int32
}

func (e heartbeatEngine) Info() engines.Info {
	return engines.Info{ID: "long", Name: "Long", Version: "1", DefTime: "2026-01-01T00:00:00.000Z"}
}

func (e heartbeatEngine) ScanStream(ctx context.Context, in *engines.Input, r io.Reader) (engines.Finding, error) {
	e.runs.Add(1)
	if _, err := io.Copy(io.Discard, r); err != nil {
		return engines.Finding{}, err
	}
	select {
	case <-e.release:
		return engines.Finding{}, nil
	case <-ctx.Done():
		return engines.Finding{}, ctx.Err()
	}
}

// startScanner runs a scanner with one engine (registered as "signatures",
// which every workflow runs) beside n, until the test ends.
func startScanner(t *testing.T, n *node.Node, eng engines.Engine, heartbeat time.Duration) {
	t.Helper()
	cfg := n.Config()
	blobs, err := blob.NewFS(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	sc := scanner.New(n.Bus(), blobs, scanner.Options{Workers: 4, Timeout: time.Minute, Heartbeat: heartbeat,
		Workflows: workflow.NewSet(cfg.Workflows), Engines: []scanner.NamedEngine{{Name: "signatures", Engine: eng}}}, *n.Log())
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sc.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
}

// A scan that outlasts several heartbeats reports progress while it runs and
// ends with its verdict, scanned once (a heartbeat was once taken for a
// cancel, and such files stayed at 255 for ever).
func TestLongScanKeepsItsVerdict(t *testing.T) {
	cfg := testConfig(t)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	hook := newWebhookReceiver(t)
	n, err := node.Start(context.Background(), cfg, []node.Role{node.Ingest, node.Assembler, node.Notifier}, "test", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	eng := heartbeatEngine{release: make(chan struct{}), runs: new(atomic.Int32)}
	startScanner(t, n, eng, 50*time.Millisecond)

	var ids []string
	for i := range 3 {
		ids = append(ids, mustUpload(t, n.URL(""), fmt.Appendf(nil, "long scan %d", i), map[string]string{"callbackurl": hook.url}))
	}
	for _, id := range ids {
		waitFor(t, "a progress report in the result of "+id, func() bool {
			var r map[string]any
			getJSON(t, n.URL("/file/"+id), &r)
			return path(r, "scan_results", "progress_percentage") == float64(99) &&
				path(r, "scan_results", "scan_all_result_i") == float64(255)
		})
	}
	close(eng.release)
	for _, id := range ids {
		r := waitResult(t, n.URL(""), id)
		if path(r, "scan_results", "scan_all_result_i") != float64(0) || path(r, "process_info", "result") != "Allowed" {
			t.Errorf("%s after a long scan: %v", id, r["scan_results"])
		}
		if got := hook.waitFor(t, id); path(got, "scan_results", "scan_all_result_i") != float64(0) {
			t.Errorf("webhook of %s: %v", id, got["scan_results"])
		}
	}
	if got := eng.runs.Load(); got != int32(len(ids)) {
		t.Errorf("engine ran %d times for %d files", got, len(ids))
	}
}

// A part that rewrites bytes the assembler already hashed, with different
// content, must not leave the reported hashes describing the old bytes: the
// verdict and the hashes are of the same, scanned bytes.
func TestOverlappingRewriteReportsScannedHashes(t *testing.T) {
	n := startNode(t, testConfig(t))
	const half = 4096
	benign := bytes.Repeat([]byte{'b'}, half)
	evil := append(eicar(), bytes.Repeat([]byte{' '}, half-len(eicar()))...)
	tail := bytes.Repeat([]byte{'t'}, half)
	const total = 2 * half
	id := openMultipart(t, n.URL(""), total, nil)
	if code, out := sendPart(t, n.URL(""), id, 0, benign, total); code != 200 {
		t.Fatalf("benign part: %d %v", code, out)
	}
	waitFor(t, "the benign part applied", func() bool {
		return sessionStatus(t, n.URL(""), id)["received_length"] == float64(half)
	})
	if code, out := sendPart(t, n.URL(""), id, 0, evil, total); code != 200 {
		t.Fatalf("rewrite: %d %v", code, out)
	}
	if code, out := sendPart(t, n.URL(""), id, half, tail, total); code != 200 {
		t.Fatalf("tail: %d %v", code, out)
	}
	r := waitResult(t, n.URL(""), id)
	scanned := append(append([]byte{}, evil...), tail...)
	if got, want := path(r, "file_info", "sha256"), digestsOf(scanned).sha256; got != want {
		t.Errorf("sha256 %v, want that of the scanned bytes %s", got, want)
	}
	if got, want := path(r, "file_info", "md5"), digestsOf(scanned).md5; got != want {
		t.Errorf("md5 %v, want %s", got, want)
	}
	if path(r, "scan_results", "scan_all_result_i") != float64(1) {
		t.Errorf("verdict of the rewritten file: %v", r["scan_results"])
	}
	// An exact retry of a part keeps the hashes right too.
	id2 := openMultipart(t, n.URL(""), total, nil)
	for _, p := range []struct {
		off  int64
		body []byte
	}{{0, benign}, {0, benign}, {half, tail}} {
		if code, out := sendPart(t, n.URL(""), id2, p.off, p.body, total); code != 200 {
			t.Fatalf("part %d: %d %v", p.off, code, out)
		}
	}
	r = waitResult(t, n.URL(""), id2)
	if got, want := path(r, "file_info", "sha256"), digestsOf(append(append([]byte{}, benign...), tail...)).sha256; got != want {
		t.Errorf("after a retried part: sha256 %v, want %s", got, want)
	}
}

// sendCutChunk sends a chunk whose connection drops half-way through the
// body, and waits until the server has answered (or dropped) it.
func sendCutChunk(t *testing.T, base, fileID string, body []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /file HTTP/1.1\r\nHost: x\r\nX-File-ID: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", fileID, len(body))
	if _, err := conn.Write(body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).CloseWrite() // the client is gone mid-body
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.Copy(io.Discard, conn) // the server's answer (if any) and close
}

// A sequential chunk cut off mid-body leaves no trace: its retry lands
// where it belongs and the file completes with the right bytes.
func TestChunkCutOffThenRetried(t *testing.T) {
	n := startNode(t, testConfig(t))
	file := randomBytes(t, 300_000)
	chunks := [][]byte{file[:100_000], file[100_000:200_000], file[200_000:]}
	id := mustUpload(t, n.URL(""), chunks[0], map[string]string{"X-File-Size": strconv.Itoa(len(file))})
	sendCutChunk(t, n.URL(""), id, chunks[1])
	if got := mustUpload(t, n.URL(""), chunks[1], map[string]string{"X-File-ID": id}); got != id {
		t.Fatalf("retried chunk answered %s", got)
	}
	if got := mustUpload(t, n.URL(""), chunks[2], map[string]string{"X-File-ID": id}); got != id {
		t.Fatalf("last chunk answered %s", got)
	}
	r := waitResult(t, n.URL(""), id)
	if path(r, "file_info", "sha256") != digestsOf(file).sha256 || path(r, "scan_results", "scan_all_result_i") != float64(0) {
		t.Errorf("file after a cut-off chunk: %v %v", r["file_info"], r["scan_results"])
	}
}

// One session cannot grow without bound: tiny parts and scattered ranges
// get a clear 400 and change nothing.
func TestPartLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MinPartSize = 1000
	cfg.Limits.MaxRanges = 3
	n := startNode(t, cfg)
	const total = 100_000
	file := randomBytes(t, total)
	id := openMultipart(t, n.URL(""), total, nil)
	if code, out := sendPart(t, n.URL(""), id, 0, file[:10], total); code != 400 || !strings.Contains(str(out["err"]), "minimum part size") {
		t.Errorf("tiny part: %d %v", code, out)
	}
	for i, off := range []int64{0, 10_000, 20_000} {
		if code, out := sendPart(t, n.URL(""), id, off, file[off:off+1000], total); code != 200 {
			t.Fatalf("part %d: %d %v", i, code, out)
		}
	}
	waitFor(t, "three ranges applied", func() bool { return sessionStatus(t, n.URL(""), id)["received_length"] == float64(3000) })
	if code, out := sendPart(t, n.URL(""), id, 30_000, file[30_000:31_000], total); code != 400 || !strings.Contains(str(out["err"]), "Too many separate ranges") {
		t.Errorf("a fourth separate range: %d %v", code, out)
	}
	// A part that joins ranges is fine, and the last part may be small.
	if code, out := sendPart(t, n.URL(""), id, 1000, file[1000:10_000], total); code != 200 {
		t.Errorf("joining part: %d %v", code, out)
	}
	if code, out := sendPart(t, n.URL(""), id, 21_000, file[21_000:total-10], total); code != 200 {
		t.Errorf("large part: %d %v", code, out)
	}
	if code, out := sendPart(t, n.URL(""), id, total-10, file[total-10:], total); code != 200 {
		t.Errorf("small last part: %d %v", code, out)
	}
	if code, out := sendPart(t, n.URL(""), id, 10_000, file[10_000:20_000], total); code != 200 {
		t.Errorf("closing part: %d %v", code, out)
	}
	if r := waitResult(t, n.URL(""), id); path(r, "file_info", "sha256") != digestsOf(file).sha256 {
		t.Errorf("file after refused parts: %v", r["file_info"])
	}
}

// A verdict whose publish fails is kept and retried until it lands: the
// file ends with exactly one final result, never stuck at 255 (a commit
// that failed on the last allowed delivery once left it there for good).
func TestVerdictPublishRetried(t *testing.T) {
	cfg := testConfig(t)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tap := &logTap{t: t}
	n, err := node.Start(context.Background(), cfg, []node.Role{node.Ingest, node.Assembler, node.Notifier}, "test", tap) // the scanner comes later
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	ctx := context.Background()
	js := n.Bus().JS
	id := mustUpload(t, n.URL(""), []byte("verdict in hand"), nil)
	waitFor(t, "the file queued for a scanner", func() bool {
		st, err := js.Stream(ctx, events.StreamFiles)
		return err == nil && st.CachedInfo().State.Msgs == 1
	})

	// Refuse every result event from now on: none fits.
	st, err := js.Stream(ctx, events.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	orig := st.CachedInfo().Config
	blocked := orig
	blocked.MaxMsgSize = 1
	if _, err := js.UpdateStream(ctx, blocked); err != nil {
		t.Fatal(err)
	}
	sig, err := engines.NewSignatures()
	if err != nil {
		t.Fatal(err)
	}
	startScanner(t, n, sig, time.Minute)
	tap.waitLine(`"data_id":"`+id+`"`, "publishing the verdict failed")
	if _, err := js.UpdateStream(ctx, orig); err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, n.URL(""), id)
	if path(r, "scan_results", "scan_all_result_i") != float64(0) {
		t.Errorf("verdict after the retry: %v", r["scan_results"])
	}
}

// webhookReceiver is a real HTTP receiver that keeps the last callback body
// per data_id.
type webhookReceiver struct {
	url string
	mu  sync.Mutex
	got map[string]map[string]any
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	w := &webhookReceiver{got: map[string]map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err == nil {
			w.mu.Lock()
			w.got[str(body["data_id"])] = body
			w.mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL + "/hook"
	return w
}

// waitFor returns the callback body delivered for id.
func (w *webhookReceiver) waitFor(t *testing.T, id string) map[string]any {
	t.Helper()
	var body map[string]any
	waitFor(t, "the callback of "+id, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		body = w.got[id]
		return body != nil
	})
	return body
}

// logTap is a node's log, kept for tests that wait on what it says.
type logTap struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (l *logTap) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// waitLine waits for a log line that contains every one of parts.
func (l *logTap) waitLine(parts ...string) {
	l.t.Helper()
	waitFor(l.t, fmt.Sprintf("a log line with %q", parts), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for line := range strings.Lines(l.b.String()) {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return true
			}
		}
		return false
	})
}

// startNodeTapped is startNode with the log kept in a logTap.
func startNodeTapped(t *testing.T, cfg *config.Config) (*node.Node, *logTap) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tap := &logTap{t: t}
	n, err := node.Start(context.Background(), cfg, node.All, "test", tap)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n, tap
}

// assemblerHost is a node running ingest, scanner and notifier, whose
// assemblers run as separate nodes the test starts and stops, so it knows
// which one owns a partition.
type assemblerHost struct {
	t     *testing.T
	first *node.Node
}

func newAssemblerHost(t *testing.T) *assemblerHost {
	cfg := testConfig(t)
	cfg.NATS.Listen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	first, err := node.Start(context.Background(), cfg, []node.Role{node.Ingest, node.Scanner, node.Notifier}, "test", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Close() })
	return &assemblerHost{t: t, first: first}
}

// dataDir is a data dir for an assembler that shares the first node's fs
// blob store (the fs store lives under <data>/blobs).
func (h *assemblerHost) dataDir() string {
	dir := h.t.TempDir()
	if err := os.Symlink(filepath.Join(h.first.Config().DataDir, "blobs"), filepath.Join(dir, "blobs")); err != nil {
		h.t.Fatal(err)
	}
	return dir
}

// assembler starts an assembler on dataDir, logging to out.
func (h *assemblerHost) assembler(dataDir string, out io.Writer) *node.Node {
	c := testConfig(h.t)
	c.DataDir = dataDir
	c.NATS.URL = h.first.NATSURL()
	if _, ok := out.(*logTap); ok {
		c.Log.Level = "info" // the test waits on what it says
	}
	if err := c.Validate(); err != nil {
		h.t.Fatal(err)
	}
	n, err := node.Start(context.Background(), c, []node.Role{node.Assembler}, "test", out)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// handOver lets the next assembler take id's partitions at once, rather
// than after the pin's time to live, once their owner is gone.
func (h *assemblerHost) handOver(id string) {
	ctx := context.Background()
	p := events.Partition(id, h.first.Bus().Opts.Partitions)
	for _, c := range []struct{ stream, consumer, group string }{
		{events.StreamUploads, events.AssemblerConsumer(p), events.AssemblerGroup},
		{events.StreamResults, events.RecorderConsumer(p), events.RecorderGroup},
	} {
		st, err := h.first.Bus().JS.Stream(ctx, c.stream)
		if err != nil {
			h.t.Fatal(err)
		}
		_ = st.UnpinConsumer(ctx, c.consumer, c.group)
	}
}

// An upload partition that moves from assembler A to B and back to A (a
// rolling restart) completes the file: A finds its cached session behind
// what B applied and rebuilds it from the stream instead of trusting it.
func TestPartitionMovesAwayAndBack(t *testing.T) {
	h := newAssemblerHost(t)
	base := h.first.URL("")
	const part, parts = 64 << 10, 4
	file := randomBytes(t, part*parts)
	total := int64(len(file))
	send := func(id string, i int) {
		if code, out := sendPart(t, base, id, int64(i*part), file[i*part:(i+1)*part], total); code != 200 {
			t.Fatalf("part %d: %d %v", i, code, out)
		}
	}
	applied := func(id string, n int) {
		waitFor(t, fmt.Sprintf("%d parts applied", n), func() bool {
			return sessionStatus(t, base, id)["received_length"] == float64(n*part)
		})
	}
	dirA, dirB := h.dataDir(), h.dataDir()

	a := h.assembler(dirA, testLog{t})
	id := openMultipart(t, base, total, nil)
	send(id, 0)
	applied(id, 1)
	_ = a.Close()
	h.handOver(id)

	b := h.assembler(dirB, testLog{t})
	send(id, 1)
	send(id, 2)
	applied(id, 3)
	_ = b.Close()
	h.handOver(id)

	a = h.assembler(dirA, testLog{t}) // its cache still says one part
	t.Cleanup(func() { _ = a.Close() })
	send(id, 3)
	r := waitResult(t, base, id)
	if path(r, "file_info", "sha256") != digestsOf(file).sha256 || path(r, "scan_results", "scan_all_result_i") != float64(0) {
		t.Errorf("after A→B→A: %v %v", r["file_info"], r["scan_results"])
	}
	if st := sessionStatus(t, base, id); st["status"] != "complete" {
		t.Errorf("session after A→B→A: %v", st)
	}
}

// A session that another assembler finished while it owned the partition
// does not stay in this assembler's cache for ever.
func TestCacheDropsSessionsEndedElsewhere(t *testing.T) {
	h := newAssemblerHost(t)
	base := h.first.URL("")
	file := randomBytes(t, 2<<10)
	total := int64(len(file))
	dirA, dirB := h.dataDir(), h.dataDir()

	a := h.assembler(dirA, testLog{t})
	id := openMultipart(t, base, total, nil)
	if code, out := sendPart(t, base, id, 0, file[:1<<10], total); code != 200 {
		t.Fatalf("first part: %d %v", code, out)
	}
	waitFor(t, "the first part applied", func() bool { return sessionStatus(t, base, id)["received_length"] == float64(1<<10) })
	_ = a.Close()
	h.handOver(id)

	b := h.assembler(dirB, testLog{t})
	if code, out := sendPart(t, base, id, 1<<10, file[1<<10:], total); code != 200 {
		t.Fatalf("last part: %d %v", code, out)
	}
	waitResult(t, base, id)
	_ = b.Close()

	tap := &logTap{t: t}
	a = h.assembler(dirA, tap)
	tap.waitLine(`"message":"session cache swept"`, `"dropped":1`)
	_ = a.Close()
	db, err := bolt.Open(filepath.Join(dirA, "assembler.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("sessions")); b != nil && b.Get([]byte(id)) != nil {
			t.Errorf("the ended session %s is still cached", id)
		}
		return nil
	})
}
