package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serveProcess is `scangate serve` running as a child process, so a test
// can kill it the hard way (SIGKILL: no shutdown code runs).
type serveProcess struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

func startServeProcess(t testing.TB, dataDir string, env ...string) *serveProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--data", dataDir, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), append([]string{"SCANGATE_AS_MAIN=1", "SCANGATE_LOG_LEVEL=info",
		"SCANGATE_LIMITS_DISK_RESERVE=1MiB", "SCANGATE_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true",
		"SCANGATE_WEBHOOKS_RETRY_INITIAL_INTERVAL=50ms", "SCANGATE_WEBHOOKS_RETRY_MAX_INTERVAL=200ms"}, env...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["message"] == "ingest listening" {
				addr <- line["listen"].(string)
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case a := <-addr:
		p.addr = "http://" + a
	case <-p.done:
		t.Fatal("scangate serve exited before listening")
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("scangate serve did not start listening")
	}
	t.Cleanup(p.kill)
	return p
}

func (p *serveProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Files answered 200 are durable: kill -9 the server right after the last
// 200, start it again, and every accepted file gets its verdict — and its
// webhook.
func TestHardStopKeepsAcceptedFiles(t *testing.T) {
	var mu sync.Mutex
	delivered := map[string]bool{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var res map[string]any
		body, _ := io.ReadAll(r.Body)
		if json.Unmarshal(body, &res) == nil {
			mu.Lock()
			delivered[str(res["data_id"])] = true
			mu.Unlock()
		}
	}))
	defer receiver.Close()

	dir := t.TempDir()
	p := startServeProcess(t, dir, "SCANGATE_SCANNER_WORKERS=1")
	const files = 40
	type accepted struct{ id, sha256 string }
	var got []accepted
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				body := randomBytes(t, 2000+i*50_000)
				id := mustUpload(t, p.addr, body, map[string]string{"callbackurl": receiver.URL + fmt.Sprintf("/hook/%d", i)})
				mu.Lock()
				got = append(got, accepted{id, digestsOf(body).sha256})
				mu.Unlock()
			}
		})
	}
	for i := range files {
		work <- i
	}
	close(work)
	wg.Wait()
	p.kill() // SIGKILL, right after the last 200

	p = startServeProcess(t, dir)
	for _, a := range got {
		r := waitResult(t, p.addr, a.id)
		if path(r, "file_info", "sha256") != a.sha256 || path(r, "process_info", "result") != "Allowed" {
			t.Errorf("%s after restart: %v %v", a.id, path(r, "file_info", "sha256"), path(r, "process_info", "result"))
		}
	}
	waitFor(t, "every webhook to be delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range got {
			if !delivered[a.id] {
				return false
			}
		}
		return true
	})
}

// Small files are accepted in group commits (many files, one fsync). Kill
// -9 the server while 32 clients post them, in the middle of such commits:
// every file that was answered 200 survives with its bytes and gets its
// verdict; the ones cut off were never acknowledged.
func TestKillDuringGroupCommitsKeepsAcceptedFiles(t *testing.T) {
	dir := t.TempDir()
	p := startServeProcess(t, dir)
	type accepted struct{ id, sha256 string }
	var (
		mu   sync.Mutex
		got  []accepted
		fail atomic.Int64
	)
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for c := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				body := randomBytes(t, 4096)
				copy(body, fmt.Sprintf("client %d file %d", c, i))
				resp, err := http.Post(p.addr+"/file", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					fail.Add(1)
					return // the server is gone
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					// Admission: scanning is behind. Come back as asked
					// (client backoff, not a wait for a condition).
					secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
					time.Sleep(time.Duration(max(secs, 1)) * time.Second)
					continue
				}
				var out map[string]any
				if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil {
					return // killed mid-answer
				}
				mu.Lock()
				got = append(got, accepted{str(out["data_id"]), digestsOf(body).sha256})
				if len(got) == 300 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-enough:
	case <-time.After(5 * time.Minute):
		t.Fatal("300 uploads were never accepted")
	}
	p.kill() // SIGKILL while the clients are still posting
	wg.Wait()
	if fail.Load() == 0 {
		t.Fatal("no upload was cut off: the kill did not land during the uploads")
	}

	p = startServeProcess(t, dir)
	for _, a := range got {
		r := waitResult(t, p.addr, a.id)
		if path(r, "file_info", "sha256") != a.sha256 || path(r, "process_info", "result") != "Allowed" {
			t.Errorf("%s after restart: %v %v", a.id, path(r, "file_info", "sha256"), path(r, "process_info", "result"))
		}
	}
	t.Logf("%d files acknowledged before the kill, all with their verdicts after it", len(got))
}
