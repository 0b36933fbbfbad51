package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A file on the server's disk takes the path of a body: hashed, stored (a
// large one in the blob store, byte for byte), queued; its name and path
// are what the client gave.
func TestFilePathAccepted(t *testing.T) {
	dir, dirs := sourceDir(t)
	ts := startServer(t, Options{LocalFiles: dirs}, nil)
	want, err := os.ReadFile(filepath.Join(dir, "in/large.bin"))
	if err != nil {
		t.Fatal(err)
	}
	// Percent-encoded, as MetaDefender clients send it.
	resp, body := send(t, "POST", ts.url("/file"), nil, map[string]string{"filepath": url.PathEscape(dir + "/in/large.bin")})
	var up struct {
		DataID string `json:"data_id"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &up) != nil || up.DataID == "" {
		t.Fatalf("POST /file with filepath: %d %s", resp.StatusCode, body)
	}
	files := ts.storedFiles(t)
	if len(files) != 1 || filepath.Base(files[0]) != up.DataID {
		t.Fatalf("stored blobs %v, want the one of %s", files, up.DataID)
	}
	if got, _ := os.ReadFile(files[0]); !bytes.Equal(got, want) {
		t.Errorf("the stored blob differs from the file")
	}

	_, body = send(t, "GET", ts.url("/file/"+up.DataID), nil, nil)
	var res struct {
		FileInfo struct {
			DisplayName string `json:"display_name"`
			FileSize    int64  `json:"file_size"`
			SHA256      string `json:"sha256"`
		} `json:"file_info"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(want)
	fi := res.FileInfo
	if fi.DisplayName != "large.bin" || fi.FileSize != int64(len(want)) || fi.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("file_info %+v, want large.bin, %d bytes, sha256 %x", fi, len(want), sum)
	}
}

// What cannot be scanned in place is refused before anything is stored.
func TestFilePathRefused(t *testing.T) {
	dir, dirs := sourceDir(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "in/link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("report.pdf", filepath.Join(dir, "in/link-in")); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Options{LocalFiles: dirs}, nil)
	for _, tc := range []struct {
		name   string
		header map[string]string
		body   []byte
		status int
		err    string
	}{
		{"dotdot", map[string]string{"filepath": dir + "/in/../in/report.pdf"}, nil, 403, "Access to this file path is not allowed."},
		{"dotdot encoded", map[string]string{"filepath": url.PathEscape(dir + "/../" + filepath.Base(outside) + "/secret")}, nil, 403, "Access to this file path is not allowed."},
		{"symlink out", map[string]string{"filepath": dir + "/in/link-out"}, nil, 403, "Access to this file path is not allowed."},
		{"symlink in", map[string]string{"filepath": dir + "/in/link-in"}, nil, 403, "Access to this file path is not allowed."},
		{"outside", map[string]string{"filepath": outside + "/secret"}, nil, 403, "Access to this file path is not allowed."},
		{"relative", map[string]string{"filepath": "in/report.pdf"}, nil, 403, "Access to this file path is not allowed."},
		{"missing", map[string]string{"filepath": dir + "/in/nope"}, nil, 404, "File path not found."},
		{"directory", map[string]string{"filepath": dir + "/in"}, nil, 400, "File path is not a regular file."},
		{"empty file", map[string]string{"filepath": dir + "/in/empty"}, nil, 422, "File is empty."},
		{"with a body", map[string]string{"filepath": dir + "/in/report.pdf"}, []byte("x"), 400, "Both body data and file path were given."},
		{"with downloadfrom", map[string]string{"filepath": dir + "/in/report.pdf", "downloadfrom": "https://example.com/x"}, nil, 400, "Both file path and download link were given."},
		{"with X-File-ID", map[string]string{"filepath": dir + "/in/report.pdf", "X-File-ID": strings.Repeat("a", 32)}, nil, 400, "X-File-ID cannot be combined with filepath or downloadfrom."},
		{"unknown rule", map[string]string{"filepath": dir + "/in/report.pdf", "rule": "nope"}, nil, 400, "Unknown rule."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := send(t, "POST", ts.url("/file"), tc.body, tc.header)
			var e struct{ Err string }
			if resp.StatusCode != tc.status || json.Unmarshal(body, &e) != nil || e.Err != tc.err {
				t.Errorf("got %d %s, want %d %q", resp.StatusCode, body, tc.status, tc.err)
			}
		})
	}
	if files := ts.storedFiles(t); len(files) != 0 {
		t.Errorf("refused requests left blobs: %v", files)
	}

	// Not configured: refused, whatever the path.
	off := startServer(t, Options{}, nil)
	resp, body := send(t, "POST", off.url("/file"), nil, map[string]string{"filepath": dir + "/in/report.pdf"})
	if resp.StatusCode != 400 || !strings.Contains(string(body), "filepath is not enabled on this server.") {
		t.Errorf("without allowed_dirs: %d %s", resp.StatusCode, body)
	}
}

// A URL is checked and queued at once; the name comes from its path.
func TestDownloadFromAccepted(t *testing.T) {
	ts := startServer(t, Options{DownloadFrom: true}, nil)
	for _, tc := range []struct{ link, name string }{
		{"https://files.example.com/out/report%20v2.pdf?X-Signature=abc%26def", "report v2.pdf"},
		{url.QueryEscape("https://files.example.com/a/b.zip"), "b.zip"}, // the whole URL percent-encoded
		{"https://files.example.com/", ""},
	} {
		resp, body := send(t, "POST", ts.url("/file"), nil, map[string]string{"downloadfrom": tc.link})
		var up struct {
			DataID string `json:"data_id"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &up) != nil || up.DataID == "" {
			t.Fatalf("downloadfrom %s: %d %s", tc.link, resp.StatusCode, body)
		}
		_, body = send(t, "GET", ts.url("/file/"+up.DataID), nil, nil)
		var res struct {
			FileInfo struct {
				DisplayName string `json:"display_name"`
			} `json:"file_info"`
			ScanResults struct {
				ScanAllResultI int `json:"scan_all_result_i"`
			} `json:"scan_results"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatal(err)
		}
		if res.FileInfo.DisplayName != tc.name || res.ScanResults.ScanAllResultI != 255 {
			t.Errorf("downloadfrom %s: display_name %q, verdict %d; want %q, 255", tc.link, res.FileInfo.DisplayName, res.ScanResults.ScanAllResultI, tc.name)
		}
	}
}

func TestDownloadFromRefused(t *testing.T) {
	ts := startServer(t, Options{DownloadFrom: true}, nil)
	for _, link := range []string{
		"ftp://example.com/x", "file:///etc/passwd", "not a url", "https://user:pw@example.com/x",
		"http://127.0.0.1:8008/file", "http://localhost/x", "http://169.254.169.254/latest/meta-data",
		"http://[::1]/x", "http://10.0.0.1/x", "http://2130706433/x",
	} {
		resp, body := send(t, "POST", ts.url("/file"), nil, map[string]string{"downloadfrom": link})
		if resp.StatusCode != 400 || !strings.Contains(string(body), "Download link is invalid.") {
			t.Errorf("downloadfrom %s: %d %s, want 400 Download link is invalid.", link, resp.StatusCode, body)
		}
	}
	// Private targets allowed: a loopback URL is taken.
	allowed := startServer(t, Options{DownloadFrom: true, AllowPrivateDownloads: true}, nil)
	if resp, body := send(t, "POST", allowed.url("/file"), nil, map[string]string{"downloadfrom": "http://127.0.0.1:9/x"}); resp.StatusCode != 200 {
		t.Errorf("loopback with private targets allowed: %d %s", resp.StatusCode, body)
	}
}
