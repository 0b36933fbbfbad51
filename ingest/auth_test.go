package ingest

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/config"
)

// A user over their scan limit is refused until the window has passed,
// then served again; the counter is JetStream's, so it is the same for
// every ingest node: two servers here share one limit.
func TestScanLimitRecovers(t *testing.T) {
	two := 2
	dir := auth.NewDirectory(config.AuthConfig{Anonymous: true, Users: []config.User{
		{Name: "carol", Role: config.RoleUser, APIKeys: []string{"carol-key-0123456789"}, ScanLimit: &two},
	}})
	opts := Options{Auth: dir, ScanLimitWindow: 2 * time.Second}
	a, b := startServer(t, opts, nil), startServer(t, opts, nil)
	post := func(ts *testServer, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", ts.url("/file"), bytes.NewReader([]byte(body)))
		req.Header.Set("apikey", "carol-key-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// A whole window of room: start right after one begins.
	waitWindow := func() {
		w := opts.ScanLimitWindow.Milliseconds()
		start := time.Now().UnixMilli() / w
		testwait.Until(2*opts.ScanLimitWindow, func() bool { return time.Now().UnixMilli()/w != start })
	}
	for attempt := 0; ; attempt++ {
		waitWindow()
		w := opts.ScanLimitWindow.Milliseconds()
		slot := time.Now().UnixMilli() / w
		codes := []int{post(a, "one").StatusCode, post(b, "two").StatusCode}
		over := post(a, "three")
		if time.Now().UnixMilli()/w != slot {
			if attempt < 3 {
				continue // the window ended mid-way on a slow machine; again
			}
			t.Fatal("uploads keep spanning two windows")
		}
		if codes[0] != 200 || codes[1] != 200 {
			t.Fatalf("uploads within the limit: %v", codes)
		}
		if over.StatusCode != 403 {
			t.Fatalf("the third upload in a window: %d, want 403", over.StatusCode)
		}
		if ra, err := strconv.Atoi(over.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
			t.Errorf("Retry-After %q, want 1..2 s", over.Header.Get("Retry-After"))
		}
		break
	}
	waitWindow()
	if resp := post(b, "four"); resp.StatusCode != 200 {
		t.Errorf("after the window: %d, want 200", resp.StatusCode)
	}
}
