package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/node"
)

// A node whose embedded JetStream turns itself off (what the server does
// on a critical store error) fails: readiness says so, and the node reports
// the failure so that the process ends non-zero and is restarted — instead
// of answering HTTP with nothing behind it.
func TestJetStreamDisabledFailsTheNode(t *testing.T) {
	cfg := testConfig(t)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(context.Background(), cfg, node.All, "test", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	mustUpload(t, n.URL(""), []byte("before"), nil)
	if err := n.EmbeddedServer().DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n.Failed():
		t.Logf("node failed as it should: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the node went on without JetStream")
	}
	if code := getJSON(t, n.URL("/readyz"), nil); code != 503 {
		t.Errorf("/readyz without JetStream: %d", code)
	}
}

// mountSmallDisk mounts a tmpfs of size bytes at a new directory, or skips
// when this machine cannot (not root).
func mountSmallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a small disk for the test (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fillDisk writes a file in dir until the disk is full, then frees leave
// bytes; it returns the filler's path.
func fillDisk(t *testing.T, dir string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	st, _ := f.Stat()
	if err := f.Truncate(max(0, st.Size()-leave)); err != nil {
		t.Fatal(err)
	}
	return p
}

// The disk fills up under a running server: whatever was answered 200
// before survives, the server stops accepting (5xx, never a 200 it cannot
// keep), ends itself so that it is restarted, and once space is freed the
// restarted server finishes every accepted file.
func TestDiskFullNothingAcceptedIsLost(t *testing.T) {
	dir := mountSmallDisk(t, 96<<20)
	// No reserve: the test is what happens when the disk really fills,
	// under the blob store and under JetStream.
	p := startServeProcess(t, dir, "SCANGATE_LIMITS_DISK_RESERVE=0")
	type accepted struct{ id, sha256 string }
	var got []accepted
	for i := range 5 {
		body := randomBytes(t, 10_000+i)
		got = append(got, accepted{mustUpload(t, p.addr, body, nil), digestsOf(body).sha256})
	}
	filler := fillDisk(t, dir, 64<<10)
	// Keep sending small files until the server refuses or stops.
	// Until the server stops, or refuses steadily (50 refusals in a row:
	// it stays up answering 503 while its own store still works).
	deadline := time.Now().Add(60 * time.Second)
	exited := false
	codes := map[int]int{}
	for refusals := 0; !exited && refusals < 50 && time.Now().Before(deadline); {
		body := randomBytes(t, 2000)
		code, out := tryUpload(p.addr, body)
		codes[code]++
		if code == 200 {
			refusals = 0
		} else {
			refusals++
		}
		switch {
		case code == 200:
			got = append(got, accepted{str(out["data_id"]), digestsOf(body).sha256})
		case code >= 400 && code < 500:
			t.Fatalf("a full disk blamed on the client: %d %v", code, out)
		}
		select {
		case <-p.done:
			exited = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("answers while the disk was full: %v; server exited: %v", codes, exited)
	if !exited {
		// The server may stay up refusing uploads with 5xx while its
		// store still works; then it is stopped the hard way.
		p.kill()
	} else if p.cmd.ProcessState.Success() {
		t.Errorf("the server ended with success on a full disk")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p = startServeProcess(t, dir, "SCANGATE_LIMITS_DISK_RESERVE=0")
	for _, a := range got {
		r := waitResult(t, p.addr, a.id)
		if path(r, "file_info", "sha256") != a.sha256 || path(r, "process_info", "result") != "Allowed" {
			t.Errorf("%s after the disk was freed: %v %v", a.id, path(r, "file_info", "sha256"), r["scan_results"])
		}
	}
}

// tryUpload is upload for a server that may be going away: a failed
// connection is status 0.
func tryUpload(base string, body []byte) (int, map[string]any) {
	resp, err := http.Post(base+"/file", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}
