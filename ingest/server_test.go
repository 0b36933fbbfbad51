package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/workflow"
)

func partHead(id string, n int) string {
	return fmt.Sprintf("POST /file/multipart/%s HTTP/1.1\r\nHost: scangate\r\nContent-Type: application/octet-stream\r\n"+
		"Content-Range: 0-%d/%d\r\nContent-Length: %d\r\n\r\n", id, n, n, n)
}

func fileHead(n int) string {
	return fmt.Sprintf("POST /file HTTP/1.1\r\nHost: scangate\r\nContent-Length: %d\r\n\r\n", n)
}

// errOf decodes an {"err": ...} body.
func errOf(t *testing.T, body string) string {
	t.Helper()
	var out struct {
		Err string `json:"err"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("body %q is not an error JSON: %v", body, err)
	}
	return out.Err
}

// A body is never read as requests, whatever the handler did with it: an
// answer given before the body was read to its end closes the connection.
func TestBodyIsNeverReadAsRequests(t *testing.T) {
	body := pipelined(30000) // 1.2 MiB of "GET /version" requests
	cases := []struct {
		name   string
		wrap   func(blob.Store) blob.Store
		head   string
		status int
	}{
		{"part for an unknown session", nil, partHead(ids.New(), len(body)), http.StatusNotFound},
		{"body on a route that ignores it", nil,
			fmt.Sprintf("GET /version HTTP/1.1\r\nHost: scangate\r\nContent-Length: %d\r\n\r\n", len(body)), http.StatusOK},
		{"upload whose store fails mid-body",
			func(s blob.Store) blob.Store { return &faultStore{Store: s, err: syscall.EIO} },
			fileHead(len(body)), http.StatusServiceUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, Options{}, tc.wrap)
			got := exchange(t, ts.addr, append([]byte(tc.head), body...))
			if len(got) != 1 {
				t.Fatalf("%d answers on one connection, want 1", len(got))
			}
			if got[0].status != tc.status || got[0].header.Get("Connection") != "close" {
				t.Errorf("answer %d Connection=%q, want %d and close", got[0].status, got[0].header.Get("Connection"), tc.status)
			}
		})
	}
}

// A short unread body is drained instead: the connection stays usable.
func TestShortUnreadBodyKeepsConnection(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	body := pipelined(20)
	raw := partHead(ids.New(), len(body)) + string(body) + "GET /version HTTP/1.1\r\nHost: scangate\r\n\r\n"
	got := exchange(t, ts.addr, []byte(raw))
	if len(got) != 2 || got[0].status != http.StatusNotFound || got[1].status != http.StatusOK {
		t.Fatalf("answers %+v, want 404 then 200", got)
	}
}

// A part for an aborted session is refused before its body is read; the
// body is not taken for requests either.
func TestPartForAbortedSession(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	body := pipelined(30000)
	id := openSession(t, ts, len(body))
	req, _ := http.NewRequest(http.MethodDelete, ts.url("/file/multipart/"+id), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("abort: %v %v", resp, err)
	}
	got := exchange(t, ts.addr, append([]byte(partHead(id, len(body))), body...))
	if len(got) != 1 || got[0].status != http.StatusGone || got[0].header.Get("Connection") != "close" {
		t.Fatalf("answers %+v, want one 410 and close", got)
	}
}

func openSession(t *testing.T, ts *testServer, total int) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.url("/file/multipart"), nil)
	req.Header.Set("total-length", fmt.Sprint(total))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		DataID string `json:"data_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("open session: %d %v", resp.StatusCode, err)
	}
	return out.DataID
}

// A panicking handler is a logged 500; the server keeps serving.
func TestPanicIsInternalError(t *testing.T) {
	ts := startServer(t, Options{}, func(s blob.Store) blob.Store { return &faultStore{Store: s, panic: true} })
	large := strings.Repeat("x", events.InlineMax+1) // too large to travel inline: written to the store
	resp, err := http.Post(ts.url("/file"), "application/octet-stream", strings.NewReader(large))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || errOf(t, string(body)) != "Internal error" {
		t.Errorf("answer %d %s, want 500 Internal error", resp.StatusCode, body)
	}
	if resp, err := http.Get(ts.url("/version")); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the panic: %v %v", resp, err)
	}
	logs := ts.logs.String()
	for _, want := range []string{"blob store bug", `"path":"/file"`, `"stack":`, "faultStore"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func TestMethodsAndUnknownPaths(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	cases := []struct {
		method, path string
		status       int
		err, allow   string
	}{
		{http.MethodPut, "/file", http.StatusMethodNotAllowed, "Method not allowed.", "POST"},
		{http.MethodPut, "/v4/file", http.StatusMethodNotAllowed, "Method not allowed.", "POST"},
		{http.MethodDelete, "/version", http.StatusMethodNotAllowed, "Method not allowed.", "GET, HEAD"},
		{http.MethodPatch, "/file/multipart/" + ids.New(), http.StatusMethodNotAllowed, "Method not allowed.", "GET, HEAD, POST, DELETE"},
		{http.MethodGet, "/nothing/here", http.StatusNotFound, "Not found", ""},
		{http.MethodPut, "/nothing/here", http.StatusNotFound, "Not found", ""},
		{"BREW", "/file", http.StatusNotImplemented, "Method not implemented.", ""},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, ts.url(tc.path), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" || errOf(t, string(body)) != tc.err {
			t.Errorf("%s %s: %d %s %s, want %d %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.err)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

// A request fasthttp cannot parse gets a plain 400, not its own bytes back.
func TestMalformedRequestIsNotEchoed(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	for _, raw := range []string{
		"GET /version HTTP/1.1\r\nHost: scangate\r\nX-Secret: hunter2\r\nno colon here\r\n\r\n",
		"GET /version HTTP/1.1\r\nHost: scangate\r\nContent-Length: x-hunter2\r\n\r\n",
		"GET /ver\x00sion-hunter2 HTTP/1.1\r\nHost: scangate\r\n\r\n",
	} {
		got := exchange(t, ts.addr, []byte(raw))
		if len(got) != 1 || got[0].status != http.StatusBadRequest || errOf(t, got[0].body) != "Malformed request." {
			t.Errorf("%q: answers %+v, want one 400 Malformed request.", raw, got)
		}
	}
}

func TestPostFileWithoutLength(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	for _, raw := range []string{
		"POST /file HTTP/1.1\r\nHost: scangate\r\n\r\n",
		"POST /file HTTP/1.1\r\nHost: scangate\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	} {
		got := exchange(t, ts.addr, []byte(raw))
		if len(got) != 1 || got[0].status != http.StatusLengthRequired || errOf(t, got[0].body) != "Missing Content-Length header." {
			t.Errorf("%q: answers %+v, want one 411", raw, got)
		}
	}
}

// flakyListener fails its first Accepts as a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestAcceptErrorsDoNotStopServing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOn(t, &flakyListener{Listener: ln, fails: 5}, fs, Options{})
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get(ts.url("/version"))
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		got <- err
	}()
	select {
	case <-ts.stopped:
		t.Fatalf("Serve returned: %v", ts.serveErr)
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(ts.logs.String(), "too many open files"); n != 1 {
		t.Errorf("accept error logged %d times, want once", n)
	}
}

func TestConnectionCap(t *testing.T) {
	ts := startServer(t, Options{MaxConnections: 2}, nil)
	var held []net.Conn
	for range 2 {
		c := dial(t, ts.addr)
		if _, err := io.WriteString(c, "GET /version HTTP/1.1\r\nHost: scangate\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if r, ok := readResponse(bufio.NewReader(c)); !ok || r.status != http.StatusOK {
			t.Fatalf("connection within the cap: %+v", r)
		}
		held = append(held, c)
	}
	got := readResponses(bufio.NewReader(dial(t, ts.addr)))
	if len(got) != 1 || got[0].status != http.StatusServiceUnavailable || got[0].header.Get("Retry-After") == "" ||
		errOf(t, got[0].body) != "Server is too busy. Try again later." {
		t.Fatalf("connection over the cap: %+v, want one 503", got)
	}

	// A freed slot serves again.
	held[0].Close()
	for {
		resp, err := http.Get(ts.url("/version"))
		if err == nil && resp.StatusCode == http.StatusOK {
			break
		}
		if err == nil {
			resp.Body.Close()
		}
		select {
		case <-ts.stopped:
			t.Fatal("server stopped")
		case <-time.After(10 * time.Millisecond): // the server notices the close on its own time
		}
	}
}

// Losing JetStream (no quorum, a leader election, a dropped connection) is
// a pause: requests that need it get 503 with Retry-After, never a 4xx or
// a bare 500.
func TestJetStreamUnavailableIs503(t *testing.T) {
	sharedBus(t)
	nc, err := busSrv.Connect("ingest-unavailable")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.Open(context.Background(), nc, bus.Options{MaxQueued: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := New(b, fs, Options{Workflows: workflow.NewSet(config.Default().Workflows)}, zerolog.New(testWriter{t}))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	nc.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/file/" + ids.New())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET /file without JetStream: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
