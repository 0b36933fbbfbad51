package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/scangate/scangate/internal/cli"
	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/config"
)

// TestMain lets the test binary stand in for the scangate binary: the
// crash tests run it as a child process (SCANGATE_AS_MAIN=1) and kill it.
func TestMain(m *testing.M) {
	if os.Getenv("SCANGATE_AS_MAIN") == "1" {
		os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// testConfig is the default config with a private data dir, a free port,
// and webhook retries short enough for tests.
func testConfig(t testing.TB) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Log.Level = "warn"
	cfg.Limits.DiskReserve = 1 << 20
	cfg.Limits.MinPartSize = 1              // tests send tiny parts; the minimum has its own test
	cfg.Webhooks.AllowPrivateTargets = true // test receivers live on loopback
	cfg.Webhooks.Retry.InitialInterval = 50 * time.Millisecond
	cfg.Webhooks.Retry.MaxInterval = 200 * time.Millisecond
	cfg.Webhooks.Timeout = 5 * time.Second
	return cfg
}

// startNode runs the real serve wiring in process and stops it at cleanup.
func startNode(t testing.TB, cfg *config.Config) *node.Node {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(context.Background(), cfg, node.All, "test", testLog{t})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// testLog sends the node's log lines to the test log (shown on failure).
type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// upload POSTs body to /file with headers and returns the status and the decoded JSON.
func upload(t testing.TB, base string, body []byte, headers map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/file", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func do(t testing.TB, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", req.Method, req.URL, raw, err)
		}
	}
	return resp.StatusCode, out
}

func getJSON(t testing.TB, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("GET %s: bad JSON %q: %v", url, raw, err)
		}
	}
	return resp.StatusCode
}

// mustUpload uploads and returns the data_id, failing the test on anything but 200.
func mustUpload(t testing.TB, base string, body []byte, headers map[string]string) string {
	t.Helper()
	code, out := upload(t, base, body, headers)
	id, _ := out["data_id"].(string)
	if code != 200 || id == "" {
		t.Fatalf("upload: %d %v", code, out)
	}
	return id
}

// pollEvery paces the polling helpers below. It only spaces the looks at
// a condition: what a test asserts is the condition, never the time.
const pollEvery = 20 * time.Millisecond

// waitResult polls GET /file/{id} until progress reaches 100, as clients do.
func waitResult(t testing.TB, base, id string) map[string]any {
	t.Helper()
	r := finalResult(t, base, id, time.Now().Add(60*time.Second))
	if r == nil {
		var last map[string]any
		getJSON(t, base+"/file/"+id, &last)
		t.Fatalf("no final result for %s: %v", id, last)
	}
	return r
}

// finalResult polls GET /file/{id} until progress reaches 100; it gives up
// at the deadline and returns nil.
func finalResult(t testing.TB, base, id string, deadline time.Time) map[string]any {
	t.Helper()
	for {
		var r map[string]any
		getJSON(t, base+"/file/"+id, &r)
		if path(r, "scan_results", "progress_percentage") == float64(100) {
			return r
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(pollEvery)
	}
}

// waitFor polls cond until it holds, for at most 30 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, what, 30*time.Second, cond)
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !testwait.Until(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// path digs into decoded JSON: path(r, "scan_results", "scan_all_result_i").
func path(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

type digests struct{ md5, sha1, sha256, sha512 string }

func digestsOf(b []byte) digests {
	m, s1, s2, s5 := md5.Sum(b), sha1.Sum(b), sha256.Sum256(b), sha512.Sum512(b)
	return digests{hex.EncodeToString(m[:]), hex.EncodeToString(s1[:]), hex.EncodeToString(s2[:]), hex.EncodeToString(s5[:])}
}

// eicar builds the EICAR test file from two halves, so that this source
// file is not itself flagged by virus scanners.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR` + `-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

func str(v any) string { s, _ := v.(string); return s }
