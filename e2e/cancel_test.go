package e2e

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/workflow"
	"github.com/scangate/scangate/scanner"
	"github.com/scangate/scangate/scanner/engines"
)

func cancel(t *testing.T, base, id string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/file/"+id+"/cancel", nil)
	return do(t, req)
}

// A file still waiting for a scanner is cancelled; a scanner that picks it
// up afterwards leaves the verdict alone and clears it from the queue.
func TestCancelQueuedFile(t *testing.T) {
	cfg := testConfig(t)
	cfg.Workflows[0].Engines = nil
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(context.Background(), cfg, []node.Role{node.Ingest, node.Assembler, node.Notifier}, "test", testLog{t}) // no scanner yet
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })

	id := mustUpload(t, n.URL(""), []byte("queued file"), nil)
	var r map[string]any
	getJSON(t, n.URL("/file/"+id), &r)
	if path(r, "scan_results", "scan_all_result_i") != float64(255) || path(r, "process_info", "result") != "Processing" ||
		path(r, "scan_results", "total_time") != float64(-1) {
		t.Fatalf("queued file should be In Progress: %v", r)
	}
	if code, out := cancel(t, n.URL(""), id); code != 200 || out[id] != "cancelled" {
		t.Fatalf("cancel: %d %v", code, out)
	}
	r = waitResult(t, n.URL(""), id)
	if path(r, "scan_results", "scan_all_result_i") != float64(19) || path(r, "process_info", "result") != "Blocked" {
		t.Fatalf("cancelled file: %v", r)
	}
	if code, out := cancel(t, n.URL(""), id); code != 200 || out[id] != "cancelled" {
		t.Errorf("second cancel: %d %v", code, out)
	}

	// Now a scanner arrives.
	blobs, _ := blob.NewFS(filepath.Join(cfg.DataDir, "blobs"))
	sig, _ := engines.NewSignatures()
	sc := scanner.New(n.Bus(), blobs, scanner.Options{Workers: 1, Timeout: time.Minute, Workflows: workflow.NewSet(cfg.Workflows),
		Engines: []scanner.NamedEngine{{Name: "signatures", Engine: sig}}}, *n.Log())
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go sc.Run(ctx)
	waitFor(t, "the queue to drain", func() bool {
		st, err := n.Bus().JS.Stream(ctx, events.StreamFiles)
		return err == nil && st.CachedInfo().State.Msgs == 0
	})
	getJSON(t, n.URL("/file/"+id), &r)
	if path(r, "scan_results", "scan_all_result_i") != float64(19) {
		t.Errorf("scanner overwrote the cancel: %v", r["scan_results"])
	}
}

// startWithEngine runs a node whose only scanner uses eng (registered as
// "signatures", which every workflow runs).
func startWithEngine(t *testing.T, eng engines.Engine) *node.Node {
	t.Helper()
	cfg := testConfig(t)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(context.Background(), cfg, []node.Role{node.Ingest, node.Assembler, node.Notifier}, "test", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	blobs, _ := blob.NewFS(filepath.Join(cfg.DataDir, "blobs"))
	sc := scanner.New(n.Bus(), blobs, scanner.Options{Workers: 1, Timeout: time.Minute, Workflows: workflow.NewSet(cfg.Workflows),
		Engines: []scanner.NamedEngine{{Name: "signatures", Engine: eng}}}, *n.Log())
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go sc.Run(ctx)
	return n
}

// blockingEngine stands for a slow engine (a large archive, a remote AV):
// it reads nothing and returns only when its scan is stopped.
type blockingEngine struct{ started chan string }

func (b blockingEngine) Info() engines.Info {
	return engines.Info{ID: "slow", Name: "Slow", Version: "1", DefTime: "2026-01-01T00:00:00.000Z"}
}

func (b blockingEngine) ScanStream(ctx context.Context, in *engines.Input, r io.Reader) (engines.Finding, error) {
	b.started <- in.DataID
	<-ctx.Done()
	return engines.Finding{}, ctx.Err()
}

// A running scan is stopped by the cancel, and the verdict is 19 — not a
// failure, not a late clean verdict from the interrupted scanner.
func TestCancelRunningScan(t *testing.T) {
	slow := blockingEngine{started: make(chan string, 1)}
	n := startWithEngine(t, slow)
	ctx := context.Background()

	id := mustUpload(t, n.URL(""), []byte("slow file"), nil)
	select {
	case got := <-slow.started:
		if got != id {
			t.Fatalf("scanning %s, want %s", got, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("scan never started")
	}
	if code, out := cancel(t, n.URL(""), id); code != 200 || out[id] != "cancelled" {
		t.Fatalf("cancel: %d %v", code, out)
	}
	r := waitResult(t, n.URL(""), id)
	if path(r, "scan_results", "scan_all_result_i") != float64(19) {
		t.Fatalf("verdict after cancel: %v", r["scan_results"])
	}
	waitFor(t, "the scanner to let go of the file", func() bool {
		st, err := n.Bus().JS.Stream(ctx, events.StreamFiles)
		return err == nil && st.CachedInfo().State.Msgs == 0
	})
	var after map[string]any
	getJSON(t, n.URL("/file/"+id), &after)
	if path(after, "scan_results", "scan_all_result_i") != float64(19) {
		t.Errorf("verdict changed after the scanner stopped: %v", after["scan_results"])
	}
}

// selectiveBlocker blocks only on files with a given name, so a test can
// hold an archive's extraction at one child.
type selectiveBlocker struct {
	name    string
	started chan string
	stopped chan error
}

func (b selectiveBlocker) Info() engines.Info {
	return engines.Info{ID: "slow", Name: "Slow", Version: "1", DefTime: "2026-01-01T00:00:00.000Z"}
}

func (b selectiveBlocker) ScanStream(ctx context.Context, in *engines.Input, r io.Reader) (engines.Finding, error) {
	if in.DisplayName != b.name {
		return engines.Finding{}, nil
	}
	b.started <- in.DataID
	<-ctx.Done()
	b.stopped <- ctx.Err()
	return engines.Finding{}, ctx.Err()
}

// Cancelling an archive stops the scan of the child in progress and of
// the children not reached yet.
func TestCancelArchiveCascades(t *testing.T) {
	slow := selectiveBlocker{name: "slow.txt", started: make(chan string, 1), stopped: make(chan error, 1)}
	n := startWithEngine(t, slow)

	z := zipOf(t, map[string][]byte{"a.txt": []byte("a"), "slow.txt": []byte("s"), "c.txt": []byte("c")}, "a.txt", "slow.txt", "c.txt")
	id := mustUpload(t, n.URL(""), z, map[string]string{"filename": "three.zip"})
	select {
	case <-slow.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow child never started")
	}
	if code, out := cancel(t, n.URL(""), id); code != 200 {
		t.Fatalf("cancel: %d %v", code, out)
	}
	select {
	case err := <-slow.stopped:
		if err == nil {
			t.Error("child scan ended without its context being cancelled")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the child scan in progress was not stopped by the parent's cancel")
	}
	if r := waitResult(t, n.URL(""), id); path(r, "scan_results", "scan_all_result_i") != float64(19) {
		t.Errorf("parent after cancel: %v", r["scan_results"])
	}
	// The worker is free again: a plain file scans.
	if r := waitResult(t, n.URL(""), mustUpload(t, n.URL(""), []byte("after"), nil)); path(r, "process_info", "result") != "Allowed" {
		t.Errorf("next file after the cancelled archive: %v", r["process_info"])
	}
}
