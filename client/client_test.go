package client_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/scangate/scangate/client"
)

// fastRetry keeps tests quick; Retry-After still applies as sent.
var fastRetry = client.Retry{MaxAttempts: 5, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond, MaxRetryAfter: 5 * time.Second}

func newClient(t *testing.T, servers []string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(servers, append([]client.Option{client.WithRetry(fastRetry)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// A 503 (queue full) or a 403 with Retry-After (scan limit) is refused
// before the body is read and leaves nothing behind: the upload is sent
// again, no sooner than Retry-After says.
func TestRetryAfterHonoured(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusForbidden} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			var attempts atomic.Int32
			var mu sync.Mutex
			var times []time.Time
			var got []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				times = append(times, time.Now())
				mu.Unlock()
				if attempts.Add(1) == 1 {
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(status)
					fmt.Fprint(w, `{"err":"Server is too busy. Try again later."}`)
					return
				}
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got = b
				mu.Unlock()
				fmt.Fprint(w, `{"data_id":"0123456789abcdef0123456789abcdef"}`)
			}))
			defer srv.Close()
			body := randomBytes(t, 4096)
			id, err := newClient(t, []string{srv.URL}).Upload(context.Background(), bytes.NewReader(body), int64(len(body)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if id != "0123456789abcdef0123456789abcdef" || attempts.Load() != 2 || !bytes.Equal(got, body) {
				t.Fatalf("id %q after %d attempts, body intact %v", id, attempts.Load(), bytes.Equal(got, body))
			}
			// A lower bound only: a slow machine widens the gap, so this
			// fails only if the client did not wait as asked.
			if gap := times[1].Sub(times[0]); gap < 900*time.Millisecond {
				t.Errorf("retried after %v, Retry-After asked for 1s", gap)
			}
		})
	}
}

// A whole-file upload whose body was sent in full and whose answer was
// lost may have been accepted: it is not repeated, and the error says so.
func TestUploadNotRepeatedAfterWholeBody(t *testing.T) {
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // the answer is lost
		}
	}))
	defer srv.Close()
	body := randomBytes(t, 64<<10)
	_, err := newClient(t, []string{srv.URL}).Upload(context.Background(), bytes.NewReader(body), int64(len(body)), nil)
	if !errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("err %v, want ErrOutcomeUnknown", err)
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// A node that refuses connections never saw the upload: it goes to the
// next server, even from a reader that cannot rewind (nothing was read).
func TestUploadMovesToNextServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, `{"data_id":"0123456789abcdef0123456789abcdef"}`)
	}))
	defer srv.Close()
	body := randomBytes(t, 1000)
	onlyReader := struct{ io.Reader }{bytes.NewReader(body)} // hides Seek
	if _, err := newClient(t, []string{dead, srv.URL}).Upload(context.Background(), onlyReader, int64(len(body)), nil); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Errorf("live server hit %d times", hits.Load())
	}
}

// fakeMultipart is a multipart server that loses parts in the ways
// networks do: a part cut off mid-body, a part answered 500.
type fakeMultipart struct {
	mu      sync.Mutex
	file    []byte
	partsAt map[string]int // server name → parts stored
	tries   map[string]int // content-range → attempts
}

func (f *fakeMultipart) handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/file/multipart":
			n, _ := strconv.Atoi(r.Header.Get("total-length"))
			f.mu.Lock()
			f.file = make([]byte, n)
			f.mu.Unlock()
			fmt.Fprint(w, `{"data_id":"0123456789abcdef0123456789abcdef"}`)
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/file/multipart/"):
			cr := r.Header.Get("Content-Range")
			var off, n, total int
			if _, err := fmt.Sscanf(cr, "%d-%d/%d", &off, &n, &total); err != nil || r.ContentLength != int64(n) {
				http.Error(w, `{"err":"bad range"}`, http.StatusBadRequest)
				return
			}
			f.mu.Lock()
			f.tries[cr]++
			try := f.tries[cr]
			f.mu.Unlock()
			switch {
			case off == 0 && try == 1: // cut off mid-body
				_, _ = io.CopyN(io.Discard, r.Body, int64(n/2))
				if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
					conn.Close()
				}
				return
			case off == n && try == 1:
				_, _ = io.Copy(io.Discard, r.Body)
				http.Error(w, `{"err":"Failed to upload - could not store the file."}`, http.StatusInternalServerError)
				return
			}
			b, err := io.ReadAll(r.Body)
			if err != nil || len(b) != n {
				return
			}
			f.mu.Lock()
			copy(f.file[off:], b)
			f.partsAt[name]++
			f.mu.Unlock()
			fmt.Fprintf(w, `{"data_id":"0123456789abcdef0123456789abcdef","status":"uploading"}`)
		default:
			http.NotFound(w, r)
		}
	})
}

// Parts are idempotent: a part cut off or refused is sent again, and the
// parts are spread over every server.
func TestPartsRetriedAndSpread(t *testing.T) {
	f := &fakeMultipart{partsAt: map[string]int{}, tries: map[string]int{}}
	a := httptest.NewServer(f.handler("a"))
	defer a.Close()
	b := httptest.NewServer(f.handler("b"))
	defer b.Close()
	body := randomBytes(t, 10*32<<10+123)
	var progress atomic.Int64
	id, err := newClient(t, []string{a.URL, b.URL}).UploadMultipart(context.Background(), bytes.NewReader(body), int64(len(body)),
		&client.FileOptions{Progress: func(d int64) { progress.Add(d) }}, &client.MultipartOptions{PartSize: 32 << 10, Parallel: 3})
	if err != nil {
		t.Fatal(err)
	}
	if id != "0123456789abcdef0123456789abcdef" || !bytes.Equal(f.file, body) {
		t.Fatalf("id %q, file intact %v", id, bytes.Equal(f.file, body))
	}
	if f.partsAt["a"] == 0 || f.partsAt["b"] == 0 {
		t.Errorf("parts per server %v, want both used", f.partsAt)
	}
	if progress.Load() != int64(len(body)) {
		t.Errorf("progress sums to %d, the file has %d bytes: failed attempts must take theirs back", progress.Load(), len(body))
	}
}

// A request that makes no progress fails after the idle timeout instead
// of hanging; reads are retried, and still fail.
func TestIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	c := newClient(t, []string{srv.URL}, client.WithTimeouts(100*time.Millisecond, 200*time.Millisecond),
		client.WithRetry(client.Retry{MaxAttempts: 2, InitialInterval: 10 * time.Millisecond, MaxInterval: 10 * time.Millisecond}))
	_, err := c.Result(context.Background(), "0123456789abcdef0123456789abcdef")
	if err == nil || !strings.Contains(err.Error(), "idle") {
		t.Fatalf("err %v, want the idle timeout", err)
	}
}

// Errors carry the status and the server's err text; unknown ids are
// ErrNotFound.
func TestErrorsTyped(t *testing.T) {
	c := newClient(t, []string{scangateURL})
	ctx := context.Background()
	_, err := c.Upload(ctx, strings.NewReader("x"), 1, &client.FileOptions{Rule: "no such rule"})
	var e *client.Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusBadRequest || e.Message != "Unknown rule." {
		t.Errorf("unknown rule: %#v", err)
	}
	const unknown = "0123456789abcdef0123456789abcdef"
	_, err = c.Result(ctx, unknown)
	var nf *client.NotFoundError
	if !errors.Is(err, client.ErrNotFound) || !errors.As(err, &nf) || nf.ID != unknown {
		t.Errorf("unknown data_id: %v", err)
	}
	if _, err := c.MultipartStatus(ctx, unknown); !errors.Is(err, client.ErrSessionEnded) || client.StatusCode(err) != 404 {
		t.Errorf("unknown session: %v", err)
	}
}

// A resumed multipart upload sends exactly what the server reports
// missing, and the file arrives whole.
func TestResumeSendsOnlyMissing(t *testing.T) {
	c := newClient(t, []string{scangateURL})
	ctx := context.Background()
	const part = 64 << 10
	body := randomBytes(t, 5*part+1000)
	size := int64(len(body))
	id, err := c.OpenMultipart(ctx, size, &client.FileOptions{Filename: "resume.bin"})
	if err != nil {
		t.Fatal(err)
	}
	// An earlier run sent parts 0 and 3 before it stopped.
	for _, i := range []int64{0, 3} {
		if err := c.SendPart(ctx, id, bytes.NewReader(body), i*part, part, size, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The status is the assembler's view: wait until it shows both.
	var s *client.Session
	if !testwait.Until(30*time.Second, func() bool {
		var err error
		if s, err = c.MultipartStatus(ctx, id); err != nil {
			t.Fatal(err)
		}
		return s.ReceivedLength == 2*part
	}) {
		t.Fatalf("status never showed the two parts: %+v", s)
	}
	var sent atomic.Int64
	var had int64
	got, err := c.UploadMultipart(ctx, bytes.NewReader(body), size,
		&client.FileOptions{Progress: func(d int64) { sent.Add(d) }},
		&client.MultipartOptions{DataID: id, PartSize: part, OnSession: func(_ string, received int64) error { had = received; return nil }})
	if err != nil || got != id {
		t.Fatalf("resume: %q %v", got, err)
	}
	if had != 2*part || sent.Load() != size-2*part {
		t.Errorf("resume found %d bytes and sent %d; want %d and %d", had, sent.Load(), 2*part, size-2*part)
	}
	r, err := c.Wait(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.FileInfo.SHA256 != sha(body) || r.FileInfo.DisplayName != "resume.bin" {
		t.Errorf("result %s %s, want %s resume.bin", r.FileInfo.SHA256, r.FileInfo.DisplayName, sha(body))
	}
	// Resuming a complete session sends nothing.
	sent.Store(0)
	if _, err := c.UploadMultipart(ctx, bytes.NewReader(body), size, &client.FileOptions{Progress: func(d int64) { sent.Add(d) }},
		&client.MultipartOptions{DataID: id, PartSize: part}); err != nil || sent.Load() != 0 {
		t.Errorf("resume of a complete session: sent %d, %v", sent.Load(), err)
	}
	// An aborted session has ended: a resume says so.
	other, err := c.OpenMultipart(ctx, size, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AbortMultipart(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadMultipart(ctx, bytes.NewReader(body), size, nil, &client.MultipartOptions{DataID: other}); !errors.Is(err, client.ErrSessionEnded) {
		t.Errorf("resume of an aborted session: %v", err)
	}
}

// The sequential protocol: chunks in order; the same bytes again are
// answered with the earlier data_id.
func TestUploadChunked(t *testing.T) {
	c := newClient(t, []string{scangateURL})
	ctx := context.Background()
	body := randomBytes(t, 200<<10)
	id, err := c.UploadChunked(ctx, bytes.NewReader(body), int64(len(body)), 64<<10, &client.FileOptions{Filename: "chunked.bin"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Wait(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.FileInfo.SHA256 != sha(body) || r.FileInfo.FileSize != int64(len(body)) {
		t.Fatalf("chunked result: %+v", r.FileInfo)
	}
	again, err := c.UploadChunked(ctx, bytes.NewReader(body), int64(len(body)), 64<<10, nil)
	if err != nil || again != id {
		t.Errorf("same bytes again: %q %v, want the earlier %q", again, err, id)
	}
	byHash, err := c.Hash(ctx, r.FileInfo.SHA256, "")
	if err != nil || byHash.DataID != id {
		t.Errorf("hash lookup: %v %v", byHash, err)
	}
}

// Pre-signed parts, per the API contract. It runs once the server
// answers the route.
func TestUploadPresigned(t *testing.T) {
	c := newClient(t, []string{scangateURL})
	ctx := context.Background()
	body := randomBytes(t, client.MinPresignedPart+300<<10)
	up, err := c.UploadPresigned(ctx, bytes.NewReader(body), int64(len(body)), &client.PresignedOptions{Name: "presigned.bin", PartSize: client.MinPresignedPart})
	if client.StatusCode(err) == http.StatusNotFound {
		t.Skipf("the server does not serve pre-signed part uploads (/file/v1/files/upload/parts) yet: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if up.DataID == "" || up.Size != int64(len(body)) {
		t.Fatalf("completion: %+v", up)
	}
	r, err := c.Wait(ctx, up.DataID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.FileInfo.SHA256 != sha(body) {
		t.Errorf("sha256 %s, want %s", r.FileInfo.SHA256, sha(body))
	}
}

// Wait ends when its context does.
func TestWaitCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data_id":"0123456789abcdef0123456789abcdef","scan_results":{"progress_percentage":50}}`)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	looks := 0
	_, err := newClient(t, []string{srv.URL}).Wait(ctx, "0123456789abcdef0123456789abcdef", &client.WaitOptions{
		MinInterval: time.Millisecond,
		Progress: func(r *client.Result) {
			if looks++; looks == 2 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) || looks != 2 {
		t.Errorf("err %v after %d looks", err, looks)
	}
}

// fakePresigned serves the pre-signed contract of the API: signed URLs,
// PUTs answered with the part's md5 as ETag, fresh URLs for expired ones,
// and a completion that checks every ETag.
type fakePresigned struct {
	mu       sync.Mutex
	parts    map[int][]byte
	gen      int // URLs of older generations have expired
	refreshs int
}

func (f *fakePresigned) urls(n int) string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf(`{"signedUrl":"/signed/%d?gen=%d","partNumber":%d,"expirationTime":"2030-01-01T00:00:00Z"}`, i, f.gen, i))
	}
	return "[" + strings.Join(out, ",") + "]"
}

func (f *fakePresigned) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/file/v1/files/upload/parts":
		var in struct{ Parts int }
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.gen = 1 // the first URLs expire before they are used
		fmt.Fprintf(w, `{"name":"x","mimeType":"application/octet-stream","id":"up1","parts":%d,"signedUrls":%s}`, in.Parts, f.urls(in.Parts))
		f.gen = 2
	case r.Method == http.MethodPost && r.URL.Path == "/file/v1/files/upload/parts/up1":
		var in struct{ Parts int }
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.refreshs++
		fmt.Fprintf(w, `{"id":"up1","parts":%d,"signedUrls":%s}`, in.Parts, f.urls(in.Parts))
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/signed/"):
		if r.URL.Query().Get("gen") != strconv.Itoa(f.gen) {
			http.Error(w, `{"err":"Signed URL expired."}`, http.StatusForbidden)
			return
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/signed/"))
		b, _ := io.ReadAll(r.Body)
		f.parts[n] = b
		sum := md5.Sum(b)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	case r.Method == http.MethodPost && r.URL.Path == "/file/v1/files/upload/parts/up1/complete":
		var in struct {
			Parts []struct {
				PartNumber int
				ETag       string
			}
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		var file []byte
		for i, p := range in.Parts {
			sum := md5.Sum(f.parts[p.PartNumber])
			if p.PartNumber != i+1 || p.ETag != hex.EncodeToString(sum[:]) {
				http.Error(w, fmt.Sprintf(`{"err":"Wrong ETag for part %d."}`, p.PartNumber), http.StatusBadRequest)
				return
			}
			file = append(file, f.parts[p.PartNumber]...)
		}
		fmt.Fprintf(w, `{"id":"up1","data_id":"%s","name":"x","size":%d,"downloadUrl":""}`, sha(file)[:32], len(file))
	default:
		http.NotFound(w, r)
	}
}

// The pre-signed client against the contract: every part PUT, expired
// URLs replaced once, the completion names each part's ETag in order.
func TestUploadPresignedContract(t *testing.T) {
	f := &fakePresigned{parts: map[int][]byte{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	body := randomBytes(t, 2*client.MinPresignedPart+1234)
	up, err := newClient(t, []string{srv.URL}).UploadPresigned(context.Background(), bytes.NewReader(body), int64(len(body)),
		&client.PresignedOptions{Name: "x", PartSize: client.MinPresignedPart, Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if up.DataID != sha(body)[:32] || up.Size != int64(len(body)) || f.refreshs != 1 {
		t.Errorf("completion %+v after %d refreshes, want the whole file and one refresh", up, f.refreshs)
	}
}
