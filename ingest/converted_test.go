package ingest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

// sanitized stores a finished, sanitized file and returns its data_id.
func sanitized(t *testing.T, ts *testServer, content []byte) string {
	t.Helper()
	ctx := context.Background()
	id := ids.New()
	rec := result.New(id, int64(len(content)), events.Hashes{}, events.FileMeta{}, time.Now(), 0)
	rec.Result.ScanResults.ProgressPercentage = 100
	rec.Result.ProcessInfo.PostProcessing.ActionsRan = "Sanitized"
	if _, err := ts.results.Put(ctx, rec, 0); err != nil {
		t.Fatal(err)
	}
	if err := ts.blobs.WriteAt(ctx, blob.SanitizedKey(id), 0, bytes.NewReader(content), int64(len(content))); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestConvertedRanges(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	content := []byte("0123456789")
	id := sanitized(t, ts, content)
	cases := []struct {
		rng          string
		status       int
		body, cRange string
	}{
		{"bytes=1-9223372036854775807", http.StatusPartialContent, "123456789", "bytes 1-9/10"},
		{"bytes=0-99999999999999999999", http.StatusPartialContent, "0123456789", "bytes 0-9/10"},
		{"bytes=2-4", http.StatusPartialContent, "234", "bytes 2-4/10"},
		{"bytes=7-", http.StatusPartialContent, "789", "bytes 7-9/10"},
		{"bytes=-3", http.StatusPartialContent, "789", "bytes 7-9/10"},
		{"bytes=-9223372036854775807", http.StatusPartialContent, "0123456789", "bytes 0-9/10"},
		{"bytes=-99999999999999999999", http.StatusPartialContent, "0123456789", "bytes 0-9/10"},
		{"bytes=9223372036854775807-", http.StatusRequestedRangeNotSatisfiable, "", "bytes */10"},
		{"bytes=99999999999999999999-", http.StatusRequestedRangeNotSatisfiable, "", "bytes */10"},
		{"bytes=10-", http.StatusRequestedRangeNotSatisfiable, "", "bytes */10"},
		{"bytes=-0", http.StatusRequestedRangeNotSatisfiable, "", "bytes */10"},
		{"", http.StatusOK, "0123456789", ""},
		{"bytes=0-1,3-4", http.StatusOK, "0123456789", ""}, // several ranges: the whole file
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodGet, ts.url("/file/converted/"+id), nil)
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%q: %v", tc.rng, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.cRange ||
			tc.status != http.StatusRequestedRangeNotSatisfiable && string(body) != tc.body {
			t.Errorf("%q: %d %q %q, want %d %q %q", tc.rng, resp.StatusCode, resp.Header.Get("Content-Range"), body, tc.status, tc.cRange, tc.body)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=1-9223372036854775807", "bytes=-9223372036854775808",
		"bytes=9223372036854775807-9223372036854775807", "bytes=-", "bytes=5-3", "bytes=+1-2", "bytes= 1-2", "bytes=0-1,2-3"} {
		f.Add(s, int64(10))
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			return
		}
		start, end, partial, err := parseRange(h, size)
		if err != nil {
			return
		}
		if start < 0 || start > end || end > size {
			t.Fatalf("parseRange(%q, %d) = [%d, %d)", h, size, start, end)
		}
		if partial && start == end {
			t.Fatalf("parseRange(%q, %d): empty partial range at %d", h, size, start)
		}
		if !partial && (start != 0 || end != size) {
			t.Fatalf("parseRange(%q, %d): whole file as [%d, %d)", h, size, start, end)
		}
	})
}
