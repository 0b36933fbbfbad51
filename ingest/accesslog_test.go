package ingest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/ids"
)

// accessLines returns the access-log lines the server wrote so far.
func accessLines(t *testing.T, ts *testServer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(ts.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// send makes a request and returns the answer with its body read.
func send(t *testing.T, method, url string, body []byte, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// Every request gets one access-log line with what an operator needs to
// find it — the file it concerned included — and none of what a client
// may keep secret: the apikey header and the query string stay out.
func TestAccessLogLine(t *testing.T) {
	const apikey, query = "apikey-value-never-logged", "token-in-query-never-logged"
	ts := startServer(t, Options{Auth: auth.NewDirectory(config.AuthConfig{Users: []config.User{
		{Name: "logged", Role: config.RoleUser, APIKeys: []string{apikey}}}})}, nil)
	body := []byte("hello access log")
	resp, raw := send(t, http.MethodPost, ts.url("/file?token="+query), body,
		map[string]string{"apikey": apikey, HeaderRequestID: "client-request-42"})
	var answer struct {
		DataID string `json:"data_id"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &answer) != nil || answer.DataID == "" {
		t.Fatalf("POST /file: %d %s", resp.StatusCode, raw)
	}
	resp, _ = send(t, http.MethodGet, ts.url("/file/"+answer.DataID), nil, map[string]string{"apikey": apikey})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /file/{id}: %d", resp.StatusCode)
	}

	lines := accessLines(t, ts)
	if len(lines) != 2 {
		t.Fatalf("%d access-log lines for 2 requests:\n%s", len(lines), ts.logs.String())
	}
	post, get := lines[0], lines[1]
	want := map[string]any{"level": "info", "method": "POST", "route": "/file", "path": "/file", "status": float64(200),
		"bytes_in": float64(len(body)), "request_id": "client-request-42", "data_id": answer.DataID}
	for k, v := range want {
		if post[k] != v {
			t.Errorf("POST line: %s = %v, want %v (%v)", k, post[k], v, post)
		}
	}
	if n, _ := post["bytes_out"].(float64); n != float64(len(raw)) {
		t.Errorf("POST line: bytes_out %v, want %d", post["bytes_out"], len(raw))
	}
	if d, ok := post["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("POST line: duration_ms %v", post["duration_ms"])
	}
	if a, _ := post["remote_addr"].(string); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("POST line: remote_addr %q", a)
	}
	// The data_id of a lookup comes from its route.
	if get["route"] != "/file/:id" || get["path"] != "/file/"+answer.DataID || get["data_id"] != answer.DataID {
		t.Errorf("GET line: %v", get)
	}
	if logs := ts.logs.String(); strings.Contains(logs, apikey) || strings.Contains(logs, query) {
		t.Errorf("the log holds the apikey or the query string:\n%s", logs)
	}
}

// A request id a client sends is echoed, when sane; otherwise, or when
// there is none, a new one is made. Errors carry it too, and the log line
// has the id the client got.
func TestRequestID(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	cases := []struct {
		name, sent string
		echoed     bool
	}{
		{"none", "", false},
		{"sane", "3f9c1e2a-7b4d-4e8f-9a1b-2c3d4e5f6a7b", true},
		{"too long", strings.Repeat("a", maxRequestID+1), false},
		{"with a space", "two words", false},
		{"not ASCII", "naïve", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			header := map[string]string{}
			if tc.sent != "" {
				header[HeaderRequestID] = tc.sent
			}
			// An unknown path: the error answer carries the id too.
			resp, _ := send(t, http.MethodGet, ts.url("/no/such/"+tc.name), nil, header)
			got := resp.Header.Get(HeaderRequestID)
			switch {
			case resp.StatusCode != http.StatusNotFound:
				t.Fatalf("status %d", resp.StatusCode)
			case tc.echoed && got != tc.sent:
				t.Errorf("X-Request-ID %q, want the client's %q", got, tc.sent)
			case !tc.echoed && !ids.Valid(got):
				t.Errorf("X-Request-ID %q, want a new id", got)
			}
			lines := accessLines(t, ts)
			last := lines[len(lines)-1]
			if last["request_id"] != got || last["status"] != float64(404) || last["route"] != routeUnmatched {
				t.Errorf("log line %v, want request_id %q, status 404, route %q", last, got, routeUnmatched)
			}
		})
	}
	// Two requests without one never share an id.
	a, _ := send(t, http.MethodGet, ts.url("/version"), nil, nil)
	b, _ := send(t, http.MethodGet, ts.url("/version"), nil, nil)
	if a.Header.Get(HeaderRequestID) == b.Header.Get(HeaderRequestID) {
		t.Errorf("two requests got the same id %q", a.Header.Get(HeaderRequestID))
	}
}
