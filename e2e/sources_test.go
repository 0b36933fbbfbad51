package e2e

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/result"
)

// checkScanned asserts a final result for exactly the bytes of want.
func checkScanned(t *testing.T, r map[string]any, want []byte, verdict int64, name string) {
	t.Helper()
	d := digestsOf(want)
	fi := func(k string) any { return path(r, "file_info", k) }
	if got := num(path(r, "scan_results", "scan_all_result_i")); got != verdict {
		t.Errorf("verdict %d (%v), want %d", got, path(r, "process_info", "blocked_reasons"), verdict)
	}
	if num(fi("file_size")) != int64(len(want)) || str(fi("md5")) != d.md5 || str(fi("sha1")) != d.sha1 ||
		str(fi("sha256")) != d.sha256 || str(fi("sha512")) != d.sha512 {
		t.Errorf("file_info %v, want %d bytes with sha256 %s", path(r, "file_info"), len(want), d.sha256)
	}
	if str(fi("display_name")) != name {
		t.Errorf("display_name %q, want %q", fi("display_name"), name)
	}
}

// Files already on the server are scanned in place: a large one (past the
// size carried inside events, so it is streamed into the blob store) and
// a detected one; what must not be read is refused, with nothing stored.
func TestFilePathScannedInPlace(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	large := randomBytes(t, 300<<10)
	for name, b := range map[string][]byte{"drop/large.bin": large, "drop/eicar.com": eicar(), "secret": []byte("secret")} {
		root := dir
		if name == "secret" {
			root = outside
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "drop/out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("large.bin", filepath.Join(dir, "drop/in")); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Sources.FilePath.AllowedDirs = []string{dir}
	n := startNode(t, cfg)
	base := n.URL("")

	id := mustUpload(t, base, nil, map[string]string{"filepath": url.PathEscape(dir + "/drop/large.bin")})
	r := waitResult(t, base, id)
	checkScanned(t, r, large, result.NoThreat, "large.bin")
	if blobs, _ := filepath.Glob(filepath.Join(cfg.DataDir, "blobs", "*", id)); len(blobs) != 1 {
		t.Errorf("the large file has no blob of its own: %v", blobs)
	}
	id = mustUpload(t, base, nil, map[string]string{"filepath": dir + "/drop/eicar.com", "filename": "sample.com"})
	checkScanned(t, waitResult(t, base, id), eicar(), result.Infected, "sample.com")

	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"dotdot", dir + "/drop/../../" + filepath.Base(outside) + "/secret", 403},
		{"symlink pointing out", dir + "/drop/out", 403},
		{"symlink pointing in", dir + "/drop/in", 403},
		{"outside", outside + "/secret", 403},
		{"directory", dir + "/drop", 400},
		{"missing", dir + "/drop/nope", 404},
	} {
		code, out := upload(t, base, nil, map[string]string{"filepath": tc.path})
		if code != tc.status || str(out["err"]) == "" {
			t.Errorf("%s: %d %v, want %d with an error", tc.name, code, out, tc.status)
		}
	}

	// Without allowed directories filepath is refused.
	off := startNode(t, testConfig(t))
	code, out := upload(t, off.URL(""), nil, map[string]string{"filepath": dir + "/drop/large.bin"})
	if code != 400 || out["err"] != "filepath is not enabled on this server." {
		t.Errorf("filepath not configured: %d %v", code, out)
	}
}

// A URL is answered at once and fetched by a scanner: through redirects,
// whatever its length announcement, into a normal verdict with the hashes
// of the bytes served.
func TestDownloadFromScanned(t *testing.T) {
	large := randomBytes(t, 5<<20+123)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/go":
			http.Redirect(w, r, "/files/large.bin", http.StatusFound)
		case "/files/large.bin":
			w.Write(large)
		case "/chunked/eicar.com":
			w.(http.Flusher).Flush() // no Content-Length
			w.Write(eicar())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cfg := testConfig(t)
	cfg.Sources.DownloadFrom.Enabled = true
	cfg.Sources.DownloadFrom.AllowPrivateTargets = true // the test server is on loopback
	n := startNode(t, cfg)
	base := n.URL("")

	id := mustUpload(t, base, nil, map[string]string{"downloadfrom": srv.URL + "/go", "filename": "large.bin"})
	checkScanned(t, waitResult(t, base, id), large, result.NoThreat, "large.bin")
	id = mustUpload(t, base, nil, map[string]string{"downloadfrom": url.QueryEscape(srv.URL + "/chunked/eicar.com")})
	checkScanned(t, waitResult(t, base, id), eicar(), result.Infected, "eicar.com")
}

// A download that cannot complete gives its file verdict 3 Failed with the
// reason, and leaves no bytes behind; a URL refused at upload gives 400.
func TestDownloadFromFailures(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.(http.Flusher).Flush() // chunked: the limit is found while storing
			for range 10 {
				w.Write(make([]byte, 100<<10))
			}
		case "/stall":
			w.Header().Set("Content-Length", "400000")
			w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/ftp":
			http.Redirect(w, r, "ftp://example.com/x", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	defer close(release) // before Close, which waits for the stalled handler

	cfg := testConfig(t)
	cfg.Workflows[0].MaxFileSize = 512 << 10
	cfg.Sources.DownloadFrom.Enabled = true
	cfg.Sources.DownloadFrom.AllowPrivateTargets = true
	cfg.Sources.DownloadFrom.Timeout = time.Second
	n := startNode(t, cfg)
	base := n.URL("")
	for _, tc := range []struct{ path, reason string }{
		{"/big", "Download failed: the file is larger than the limit of 512 KiB"},
		{"/stall", "Download failed: the download did not finish within 1s"},
		{"/missing", "Download failed: the target answered HTTP 404"},
		{"/ftp", "Download failed: the target redirected to a URL scangate does not fetch"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			id := mustUpload(t, base, nil, map[string]string{"downloadfrom": srv.URL + tc.path})
			r := waitResult(t, base, id)
			if code := num(path(r, "scan_results", "scan_all_result_i")); code != result.Failed {
				t.Errorf("verdict %d, want %d Failed", code, result.Failed)
			}
			reasons, _ := path(r, "process_info", "blocked_reasons").([]any)
			if len(reasons) != 1 || reasons[0] != tc.reason || path(r, "process_info", "blocked_reason") != tc.reason {
				t.Errorf("blocked_reasons %v, want [%q]", reasons, tc.reason)
			}
			if strings.Contains(str(path(r, "process_info", "blocked_reason")), "127.0.0.1") {
				t.Errorf("the reason names an address")
			}
			waitFor(t, "the failed download's bytes to be removed", func() bool {
				blobs, _ := filepath.Glob(filepath.Join(cfg.DataDir, "blobs", "*", id))
				return len(blobs) == 0
			})
		})
	}

	// Refused at upload, with nothing stored: a loopback target while
	// private targets are not allowed, and downloadfrom switched off.
	strict := testConfig(t)
	strict.Sources.DownloadFrom.Enabled = true
	sn := startNode(t, strict)
	code, out := upload(t, sn.URL(""), nil, map[string]string{"downloadfrom": srv.URL + "/missing"})
	if code != 400 || out["err"] != "Download link is invalid." {
		t.Errorf("loopback target: %d %v, want 400", code, out)
	}
	off := startNode(t, testConfig(t))
	code, out = upload(t, off.URL(""), nil, map[string]string{"downloadfrom": "https://example.com/x"})
	if code != 400 || out["err"] != "downloadfrom is not enabled on this server." {
		t.Errorf("downloadfrom off: %d %v", code, out)
	}
}
