package ingest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// presignedOpenAt opens a pre-signed upload through path with headers and
// returns its id, URLs and their expiries.
func presignedOpenAt(t *testing.T, ts *testServer, path string, headers map[string]string) (id string, urls []string, expires []time.Time) {
	t.Helper()
	resp, raw := send(t, "POST", ts.url(path), []byte(`{"name":"a.bin","parts":2}`), headers)
	if resp.StatusCode != 200 {
		t.Fatalf("open: %d %s", resp.StatusCode, raw)
	}
	if bytes.Contains(raw, []byte(`\u0026`)) {
		t.Errorf("the URLs' query is escaped in the JSON: %s", raw)
	}
	var out urlsAnswer
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	for _, u := range out.SignedURLs {
		e, err := time.Parse(time.RFC3339, u.ExpirationTime)
		if err != nil {
			t.Fatal(err)
		}
		urls, expires = append(urls, u.SignedURL), append(expires, e)
	}
	return out.ID, urls, expires
}

// The URLs name the API where the client reaches it: behind a proxy, the
// scheme and host it forwards (only http or https as the scheme); under
// /v4 when asked there; presigned.base_url when configured.
func TestPresignedURLsFollowTheClientsBase(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	id, urls, _ := presignedOpenAt(t, ts, presignedPath, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "scan.example.com"})
	if want := "https://scan.example.com" + presignedPath + "/" + id + "/2?expires="; !strings.HasPrefix(urls[1], want) {
		t.Errorf("behind a proxy: %s, want %s...", urls[1], want)
	}
	_, urls, _ = presignedOpenAt(t, ts, presignedPath, map[string]string{"X-Forwarded-Proto": "javascript"})
	if !strings.HasPrefix(urls[0], "http://"+ts.addr+presignedPath) {
		t.Errorf("with a made-up scheme: %s", urls[0])
	}
	_, urls, _ = presignedOpenAt(t, ts, "/v4"+presignedPath, nil)
	if !strings.HasPrefix(urls[0], "http://"+ts.addr+"/v4"+presignedPath) {
		t.Errorf("under /v4: %s", urls[0])
	}
	configured := startServer(t, Options{Presigned: PresignedOptions{BaseURL: "https://files.example.org/scan/"}}, nil)
	_, urls, _ = presignedOpenAt(t, configured, "/v4"+presignedPath, nil)
	if !strings.HasPrefix(urls[0], "https://files.example.org/scan"+presignedPath+"/") {
		t.Errorf("with base_url: %s", urls[0])
	}
}

// A URL expires after the URL time to live, never after its upload; once
// the clock passes its expiry it is refused with 403 before a byte is
// stored.
func TestPresignedURLsExpire(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	ts := startServer(t, Options{Presigned: PresignedOptions{URLTTL: 10 * time.Minute, Now: clock}}, nil)
	long := startServer(t, Options{Presigned: PresignedOptions{URLTTL: 100 * time.Hour}}, nil)

	_, _, exp := presignedOpenAt(t, long, presignedPath, nil)
	if d := time.Until(exp[0]); d > 61*time.Minute {
		t.Errorf("a URL outlives its upload (multipart.ttl 60m) by %v", d-time.Hour)
	}
	_, urls, exp := presignedOpenAt(t, ts, presignedPath, nil)
	if d := exp[0].Sub(clock()); d < 9*time.Minute || d > 10*time.Minute {
		t.Errorf("expires in %v, want the URL time to live (10m)", d)
	}
	put := func() (int, string) {
		req, _ := http.NewRequest("PUT", urls[0], strings.NewReader("part"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	if code, body := put(); code != 200 {
		t.Fatalf("a fresh URL: %d %s", code, body)
	}
	now.Add(int64(10 * time.Minute))
	if code, body := put(); code != 403 || !strings.Contains(body, "expired") {
		t.Errorf("past its expiry: %d %s, want 403 expired", code, body)
	}
}
