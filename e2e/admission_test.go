package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/scanner/engines"
)

// startWithoutScanner runs ingest, assembler and notifier: files are
// accepted and queued, and nothing drains the queue until the test starts
// a scanner.
func startWithoutScanner(t *testing.T, cfg *config.Config, log io.Writer) *node.Node {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(context.Background(), cfg, []node.Role{node.Ingest, node.Assembler, node.Notifier}, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// uploadUntilBusy uploads small files until one is refused; it returns the
// ids of the accepted ones and the refusal.
func uploadUntilBusy(t *testing.T, n *node.Node) ([]string, *http.Response, map[string]any) {
	t.Helper()
	var (
		ids     []string
		refusal *http.Response
		body    map[string]any
	)
	waitFor(t, "an upload refused with 503", func() bool {
		resp, err := http.Post(n.URL("/file"), "application/octet-stream", strings.NewReader(fmt.Sprintf("queued file %d", len(ids))))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		switch resp.StatusCode {
		case http.StatusOK:
			var out map[string]any
			if err := json.Unmarshal(raw, &out); err != nil || str(out["data_id"]) == "" {
				t.Fatalf("accepted upload answered %q", raw)
			}
			ids = append(ids, str(out["data_id"]))
			return false
		case http.StatusServiceUnavailable:
			refusal = resp
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("503 body %q: %v", raw, err)
			}
			return true
		default:
			t.Fatalf("upload: %d %s", resp.StatusCode, raw)
			return false
		}
	})
	return ids, refusal, body
}

// checkBusy checks a refusal is the documented one: the server's fault, with
// a usable Retry-After.
func checkBusy(t *testing.T, h http.Header, body map[string]any) int {
	t.Helper()
	if body["err"] != "Server is too busy. Try again later." {
		t.Errorf("503 body %v, want the busy error", body)
	}
	ra, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q, want whole seconds in 1..60", h.Get("Retry-After"))
	}
	return ra
}

// bodyWithheld sends a request's head and only the first sent bytes of the
// body it promises, then waits for the answer: one arriving at all shows
// the server decided without the rest. (The HTTP server reads up to 8 KiB
// of a body with the headers, before any handler runs: that much is sent.)
func bodyWithheld(t *testing.T, n *node.Node, head string, sent int) (int, http.Header) {
	t.Helper()
	conn, err := net.Dial("tcp", n.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, head+"\r\n"+strings.Repeat("x", sent)); err != nil {
		t.Fatal(err)
	}
	// Only a guard against hanging for ever: a server that waits for the
	// body fails the test here.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer while the body was withheld: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// storedFiles counts the files under the blob store.
func storedFiles(t *testing.T, n *node.Node) int {
	t.Helper()
	count := 0
	err := filepath.WalkDir(filepath.Join(n.Config().DataDir, "blobs"), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			count++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return count
}

// With no scanner there is no drain rate yet, so limits.max_queued alone
// bounds the queue. Every way a new file begins is refused before its body
// is read, and nothing is stored for it; once a scanner drains the queue,
// uploads are admitted again.
func TestAdmissionWithoutScannerThenDrained(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxQueued = 4
	n := startWithoutScanner(t, cfg, testLog{t})

	ids, refusal, body := uploadUntilBusy(t, n)
	if len(ids) != 4 {
		t.Errorf("%d files accepted before the first 503, want max_queued (4)", len(ids))
	}
	checkBusy(t, refusal.Header, body)

	stored := storedFiles(t, n)
	for _, tc := range []struct {
		name, head string
		sent       int
	}{
		{"whole file", "POST /file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 524288\r\n", 8 << 10},
		{"whole file on /v4", "POST /v4/file HTTP/1.1\r\nHost: x\r\nContent-Length: 524288\r\n", 8 << 10},
		{"first sequential chunk", "POST /file HTTP/1.1\r\nHost: x\r\nX-File-Size: 1048576\r\nContent-Length: 524288\r\n", 8 << 10},
		{"multipart session", "POST /file/multipart HTTP/1.1\r\nHost: x\r\nTotal-Length: 1048576\r\nContent-Length: 0\r\n", 0},
	} {
		code, h := bodyWithheld(t, n, tc.head, tc.sent)
		if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Errorf("%s: %d Retry-After %q, want 503 with Retry-After", tc.name, code, h.Get("Retry-After"))
		}
	}
	if got := storedFiles(t, n); got != stored {
		t.Errorf("refused uploads stored something: %d files in the blob store, %d before", got, stored)
	}

	sig, err := engines.NewSignatures()
	if err != nil {
		t.Fatal(err)
	}
	startScanner(t, n, sig, time.Second)
	for _, id := range ids {
		waitResult(t, n.URL(""), id)
	}
	waitFor(t, "an upload admitted after the queue drained", func() bool {
		code, _ := upload(t, n.URL(""), []byte("after the drain"), nil)
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Fatalf("upload after the drain: %d", code)
		}
		return code == http.StatusOK
	})
}

// gatedEngine stands for scanners that have slowed down: a scan finishes
// only when the test lets it, one per token or all once open is closed.
type gatedEngine struct {
	tokens chan struct{}
	open   chan struct{}
}

func (e gatedEngine) Info() engines.Info {
	return engines.Info{ID: "gated", Name: "Gated", Version: "1", DefTime: "2026-01-01T00:00:00.000Z"}
}

func (e gatedEngine) ScanStream(ctx context.Context, in *engines.Input, r io.Reader) (engines.Finding, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return engines.Finding{}, err
	}
	select {
	case <-e.tokens:
	case <-e.open:
	case <-ctx.Done():
		return engines.Finding{}, ctx.Err()
	}
	return engines.Finding{}, nil
}

// Once scanners have drained files, admission follows them: when they stop
// finishing, the queue is cut off at limits.max_queue_wait rather than at
// max_queued, the refusal is logged with the queue's figures, and uploads are
// admitted again once the scanners catch up.
func TestAdmissionFollowsSlowScanners(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxQueueWait = time.Second
	tap := &logTap{t: t}
	n := startWithoutScanner(t, cfg, tap)
	eng := gatedEngine{tokens: make(chan struct{}), open: make(chan struct{})}
	startScanner(t, n, eng, time.Second)
	var once sync.Once
	release := func() { once.Do(func() { close(eng.open) }) }
	t.Cleanup(release)

	// The scanners finish a few files: admission learns a drain rate.
	for i := range 3 {
		id := mustUpload(t, n.URL(""), fmt.Appendf(nil, "drained %d", i), nil)
		eng.tokens <- struct{}{}
		waitResult(t, n.URL(""), id)
	}

	// Now they finish nothing: the queue grows until uploads are refused,
	// far below max_queued.
	ids, refusal, body := uploadUntilBusy(t, n)
	if int64(len(ids)) >= cfg.Limits.MaxQueued {
		t.Errorf("%d files accepted: max_queued, not the drain rate, stopped them", len(ids))
	}
	checkBusy(t, refusal.Header, body)
	tap.waitLine("scan queue full", "max_queue_wait", "oldest_wait", "queued")

	release()
	for _, id := range ids {
		waitResult(t, n.URL(""), id)
	}
	waitFor(t, "an upload admitted after the scanners caught up", func() bool {
		code, _ := upload(t, n.URL(""), []byte("after the catch-up"), nil)
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Fatalf("upload after the catch-up: %d", code)
		}
		return code == http.StatusOK
	})
}
