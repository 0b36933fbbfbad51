package scanner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/netguard"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/workflow"
)

// fetchTest downloads url with a fetcher made from o (and dial, if not
// nil) into a fresh store, and returns the stored bytes or the error.
func fetchTest(t *testing.T, o config.DownloadFromConfig, dial func(context.Context, string, string) (net.Conn, error),
	ctx context.Context, url string, limit int64) ([]byte, error) {
	t.Helper()
	store, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := newFetcher(withDownloadDefaults(o), dial)
	key := ids.New()
	n, err := f.fetchInto(ctx, url, limit, store, key)
	if err != nil {
		return nil, err
	}
	obj, err := store.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil || int64(len(b)) != n {
		t.Fatalf("stored %d bytes (%v), fetchInto said %d", len(b), err, n)
	}
	return b, nil
}

// wantReason checks err is a download failure whose reason says want.
func wantReason(t *testing.T, err error, want string) {
	t.Helper()
	var fe *fetchError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T), want a download failure", err, err)
	}
	if !strings.Contains(fe.Error(), want) {
		t.Errorf("reason %q, want it to say %q", fe.Error(), want)
	}
}

var private = config.DownloadFromConfig{AllowPrivateTargets: true, MaxRedirects: 3}

func TestFetchFollowsRedirects(t *testing.T) {
	body := bytes.Repeat([]byte("scangate "), 1000)
	var encoding atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/a":
			http.Redirect(w, r, "/b", http.StatusFound)
		case "/b":
			http.Redirect(w, r, "/file.bin", http.StatusPermanentRedirect)
		case "/file.bin":
			encoding.Store(r.Header.Get("Accept-Encoding"))
			w.Write(body)
		}
	}))
	defer srv.Close()
	got, err := fetchTest(t, private, nil, context.Background(), srv.URL+"/a", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Errorf("stored %d bytes, want the %d served", len(got), len(body))
	}
	if e, _ := encoding.Load().(string); e != "identity" {
		t.Errorf("Accept-Encoding %q: the stored bytes must be the served ones, not decompressed", e)
	}
}

// Every hop is checked like the first URL. A public first hop (a name the
// test's dialer maps to a local server, past the guard) that redirects to
// a private address is refused there, whether the address is written in
// the redirect or is what a name resolves to: the private server never
// sees a request.
func TestFetchRedirectToPrivateRefused(t *testing.T) {
	var reached atomic.Int32
	inside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.Write([]byte("internal secrets"))
	}))
	defer inside.Close()
	_, insidePort, _ := net.SplitHostPort(inside.Listener.Addr().String())
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/literal":
			http.Redirect(w, r, inside.URL+"/", http.StatusFound)
		case "/name":
			http.Redirect(w, r, "http://internal.test:"+insidePort+"/", http.StatusFound)
		case "/scheme":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		}
	}))
	defer public.Close()

	guarded := netguard.NewDialer(false, 5*time.Second)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, _ := net.SplitHostPort(addr)
		switch host {
		case "public.test":
			// The one public host: reached without the guard.
			var d net.Dialer
			return d.DialContext(ctx, network, public.Listener.Addr().String())
		case "internal.test":
			// A name that resolves to loopback: the guard checks the
			// address actually dialled.
			return guarded.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		}
		return guarded.DialContext(ctx, network, addr)
	}
	o := config.DownloadFromConfig{AllowPrivateTargets: false, MaxRedirects: 3}
	for _, tc := range []struct{ path, reason string }{
		{"/literal", "loopback, private or link-local"},
		{"/name", "loopback, private or link-local"},
		{"/scheme", "redirected to a URL scangate does not fetch"},
		{"/loop", "redirected more than 3 times"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			_, err := fetchTest(t, o, dial, context.Background(), "http://public.test"+tc.path, 1<<20)
			wantReason(t, err, tc.reason)
			if strings.Contains(err.Error(), "127.0.0.1") {
				t.Errorf("the reason %q names an internal address", err)
			}
		})
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the private server got %d requests", n)
	}
	// The first URL itself: a literal private address is refused before
	// any connection.
	_, err := fetchTest(t, o, dial, context.Background(), inside.URL+"/", 1<<20)
	wantReason(t, err, "loopback, private or link-local")
}

func TestFetchSizeLimit(t *testing.T) {
	body := bytes.Repeat([]byte{7}, 10_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // no Content-Length: chunked
		}
		w.Write(body)
	}))
	defer srv.Close()
	for _, path := range []string{"/announced", "/chunked"} {
		_, err := fetchTest(t, private, nil, context.Background(), srv.URL+path, 9_999)
		wantReason(t, err, "larger than the limit of 9.8 KiB")
		if got, err := fetchTest(t, private, nil, context.Background(), srv.URL+path, 10_000); err != nil || len(got) != len(body) {
			t.Errorf("%s at exactly the limit: %d bytes, %v", path, len(got), err)
		}
	}
}

// A body of unknown length is stored a segment at a time.
func TestFetchChunkedAcrossSegments(t *testing.T) {
	body := make([]byte, segmentSize*2+12345)
	for i := range body {
		body[i] = byte(i * 31)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 1<<20)
			w.Write(rest[:n])
			w.(http.Flusher).Flush()
			rest = rest[n:]
		}
	}))
	defer srv.Close()
	got, err := fetchTest(t, private, nil, context.Background(), srv.URL, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Errorf("stored %d bytes that differ from the %d served", len(got), len(body))
	}
}

func TestFetchFailures(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		case "/empty":
			w.Header().Set("Content-Length", "0")
		case "/short":
			// Announces more than it sends, then hangs up.
			w.Header().Set("Content-Length", "100000")
			w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case "/stall":
			w.Header().Set("Content-Length", "100000")
			w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
			<-release
		case "/no-location":
			w.WriteHeader(http.StatusFound)
		}
	}))
	defer srv.Close()
	defer close(release) // before Close, which waits for the stalled handler
	for _, tc := range []struct{ path, reason string }{
		{"/missing", "answered HTTP 404"},
		{"/empty", "empty file"},
		{"/short", "closed the connection before sending the whole file"},
		{"/no-location", "answered 302 without a Location"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			_, err := fetchTest(t, private, nil, context.Background(), srv.URL+tc.path, 1<<20)
			wantReason(t, err, tc.reason)
		})
	}
	t.Run("/stall", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := fetchTest(t, private, nil, ctx, srv.URL+"/stall", 1<<20)
		wantReason(t, err, "did not answer in time")
	})
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, err = fetchTest(t, private, nil, context.Background(), "http://"+addr+"/", 1<<20)
		wantReason(t, err, "refused the connection")
	})
}

// brokenStore fails every write, as a full or failing disk does.
type brokenStore struct{ blob.Store }

func (brokenStore) WriteAt(context.Context, string, int64, io.Reader, int64) error {
	return fmt.Errorf("disk on fire")
}

// A store that cannot take the bytes is not the target's fault: the file
// is tried again later (blob.ErrUnavailable) instead of failed.
func TestFetchStoreFailureIsRetried(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("bytes"))
	}))
	defer srv.Close()
	f := newFetcher(withDownloadDefaults(private), nil)
	_, err := f.fetchInto(context.Background(), srv.URL, 1<<20, brokenStore{}, ids.New())
	var fe *fetchError
	if !errors.Is(err, blob.ErrUnavailable) || errors.As(err, &fe) {
		t.Errorf("error %v: want blob.ErrUnavailable, not a download failure", err)
	}
}

// The download belongs to the work item: a scanner that dies mid-download
// (its connection to JetStream gone, so it can neither keep nor release
// the item) leaves the file to a peer, which downloads it again from the
// start and scans it. Nothing is lost, and the partial bytes of the first
// attempt are not what gets scanned.
func TestDownloadInterruptedIsDoneAgainByAPeer(t *testing.T) {
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	open := func(name string) (*nats.Conn, *bus.Bus) {
		nc, err := ns.Connect(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		b, err := bus.Open(context.Background(), nc, bus.Options{MaxQueued: 100})
		if err != nil {
			t.Fatal(err)
		}
		return nc, b
	}
	ncA, busA := open("scanner-a")
	ncB, busB := open("scanner-b")
	blobs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	data := make([]byte, 300_000)
	for i := range data {
		data[i] = byte(i % 251)
	}
	var requests atomic.Int32
	firstStarted, cut := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		if requests.Add(1) == 1 {
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			close(firstStarted)
			<-cut
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		w.Write(data)
	}))
	defer srv.Close()

	wf := config.Default().Workflows[0]
	start := func(b *bus.Bus, name string) {
		s := New(b, blobs, Options{Workers: 1, Timeout: time.Minute, Workflows: workflow.NewSet([]config.Workflow{wf}),
			Downloads: config.DownloadFromConfig{Enabled: true, AllowPrivateTargets: true, MaxRedirects: 1}},
			zerolog.New(zerolog.NewTestWriter(t)).With().Str("scanner", name).Logger())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	start(busA, "a")

	id := ids.New()
	sub, err := ncB.SubscribeSync(events.ResultSubject(events.Partition(id, busB.Opts.Partitions), id))
	if err != nil {
		t.Fatal(err)
	}
	fc := &events.FileComplete{DataID: id, Priority: events.PriorityNormal, UploadedAt: time.Now(),
		Meta: events.FileMeta{DisplayName: "f.bin", Workflow: wf.Name}, DownloadFrom: srv.URL + "/f.bin"}
	if err := busB.PublishFileComplete(context.Background(), fc); err != nil {
		t.Fatal(err)
	}
	select {
	case <-firstStarted:
	case <-time.After(30 * time.Second):
		t.Fatal("scanner a never started the download")
	}
	ncA.Close() // scanner a is gone, as far as JetStream knows
	close(cut)
	start(busB, "b")

	for {
		m, err := sub.NextMsg(time.Minute)
		if err != nil {
			t.Fatalf("no verdict: %v", err)
		}
		var ev result.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Kind != result.EventFinal {
			continue
		}
		fi := ev.Record.Result.FileInfo
		if code := ev.Record.Result.ScanResults.ScanAllResultI; code != result.NoThreat {
			t.Errorf("verdict %d %v, want %d", code, ev.Record.Result.ProcessInfo.BlockedReasons, result.NoThreat)
		}
		sum := sha256.Sum256(data)
		if fi.FileSize != int64(len(data)) || fi.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("scanned %d bytes with sha256 %s; want the whole file", fi.FileSize, fi.SHA256)
		}
		break
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("the file was requested %d times, want 2 (the interrupted attempt, then the peer's)", n)
	}
}
