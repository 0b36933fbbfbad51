package ingest

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/scangate/scangate/assembler"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/localfile"
	"github.com/scangate/scangate/pkg/workflow"
)

// The package's tests share one embedded JetStream server, started by the
// first test that needs it.
var (
	busOnce sync.Once
	busDir  string
	busSrv  *bus.Embedded
	testBus *bus.Bus
	busErr  error
	// assemblerBlobs is the store of the assembler beside the tests. A
	// node that completes pre-signed uploads must store parts in it: the
	// assembler concatenates them there.
	assemblerBlobs blob.Store
)

func TestMain(m *testing.M) {
	code := m.Run()
	if busSrv != nil {
		busSrv.Shutdown()
	}
	if busDir != "" {
		os.RemoveAll(busDir)
	}
	os.Exit(code)
}

func sharedBus(t *testing.T) *bus.Bus {
	t.Helper()
	busOnce.Do(func() {
		if busDir, busErr = os.MkdirTemp("", "ingest-test"); busErr != nil {
			return
		}
		if busSrv, busErr = bus.StartEmbedded(bus.EmbeddedOptions{DataDir: busDir, Log: zerolog.Nop()}); busErr != nil {
			return
		}
		nc, err := busSrv.Connect("ingest-test")
		if err != nil {
			busErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if testBus, busErr = bus.Open(ctx, nc, bus.Options{MaxQueued: 1000}); busErr != nil {
			return
		}
		// Sessions and results are written by their owner, the assembler:
		// one runs beside the tests so that sessions open and close.
		blobs, err := blob.NewFS(filepath.Join(busDir, "assembler-blobs"))
		if err != nil {
			busErr = err
			return
		}
		assemblerBlobs = blobs
		as, err := assembler.New(testBus, blobs, filepath.Join(busDir, "assembler.db"), assembler.Options{}, zerolog.Nop())
		if err != nil {
			busErr = err
			return
		}
		go func() { _ = as.Run(context.Background()) }()
	})
	if busErr != nil {
		t.Fatalf("test bus: %v", busErr)
	}
	return testBus
}

// withAssemblerBlobs makes a node store its bytes where the assembler
// beside the tests reads them (startServer's wrap).
func withAssemblerBlobs(t *testing.T) func(blob.Store) blob.Store {
	sharedBus(t)
	return func(blob.Store) blob.Store { return assemblerBlobs }
}

// testServer is an ingest node answering on a real loopback listener.
type testServer struct {
	*Server
	addr    string
	blobDir string // root of the blob store
	logs    *logBuffer

	stopped  chan struct{} // closed when Serve returns
	serveErr error         // what Serve returned
}

// startServer runs an ingest node until the test ends. wrap, when not nil,
// stands between the server and its blob store.
func startServer(t *testing.T, opts Options, wrap func(blob.Store) blob.Store) *testServer {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs")
	fs, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	var store blob.Store = fs
	if wrap != nil {
		store = wrap(fs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOn(t, ln, store, opts)
	ts.blobDir = dir
	return ts
}

// serveOn runs an ingest node on ln until the test ends.
func serveOn(t *testing.T, ln net.Listener, store blob.Store, opts Options) *testServer {
	t.Helper()
	if opts.Workflows == nil {
		opts.Workflows = workflow.NewSet(config.Default().Workflows)
	}
	ts := &testServer{addr: ln.Addr().String(), logs: &logBuffer{}, stopped: make(chan struct{})}
	ts.Server = New(sharedBus(t), store, opts, zerolog.New(io.MultiWriter(ts.logs, testWriter{t})))
	go func() {
		ts.serveErr = ts.Serve(ln)
		close(ts.stopped)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ts.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-ts.stopped
	})
	return ts
}

func (ts *testServer) url(path string) string { return "http://" + ts.addr + path }

// storedFiles lists the blobs on disk.
func (ts *testServer) storedFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(ts.blobDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// logBuffer collects the server's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// faultStore is a blob store whose writes fail with err after reading a
// little of the body, as a disk that fills up or a store that times out
// mid-write would.
type faultStore struct {
	blob.Store
	err   error
	panic bool
}

func (f *faultStore) WriteAt(ctx context.Context, key string, off int64, r io.Reader, n int64) error {
	if _, err := io.CopyN(io.Discard, r, min(n, 1024)); err != nil {
		return err
	}
	if f.panic {
		panic("blob store bug")
	}
	return f.err
}

// dial opens a raw connection to the server.
func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// response is one answer read off a raw connection.
type response struct {
	status int
	header http.Header
	body   string
}

// readResponses reads answers until the server closes the connection (or
// resets it) and returns them.
func readResponses(br *bufio.Reader) []response {
	var out []response
	for {
		r, ok := readResponse(br)
		if !ok {
			return out
		}
		out = append(out, r)
	}
}

func readResponse(br *bufio.Reader) (response, bool) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return response{}, false
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return response{}, false
	}
	if resp.Close {
		resp.Header.Set("Connection", "close")
	}
	return response{resp.StatusCode, resp.Header, string(body)}, true
}

// exchange writes raw to a new connection, closes its sending side, and
// returns every answer the server gives before closing.
func exchange(t *testing.T, addr string, raw []byte) []response {
	t.Helper()
	c := dial(t, addr)
	go func() {
		_, _ = c.Write(raw) // the server may close before reading it all
		_ = c.CloseWrite()
	}()
	return readResponses(bufio.NewReader(c))
}

// pipelined is n copies of a request, as a body that a server which parses
// body bytes as requests would answer n times.
func pipelined(n int) []byte {
	return bytes.Repeat([]byte("GET /version HTTP/1.1\r\nHost: scangate\r\n\r\n"), n)
}

// sourceDir makes a directory for filepath uploads, with in/report.pdf
// (a few bytes), in/empty and in/large.bin (200 KiB, past the size of a
// file carried in its event), allows it, and returns its path.
func sourceDir(t *testing.T) (string, *localfile.Dirs) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"in/report.pdf": []byte("%PDF-1.4 not really"),
		"in/empty":      nil,
		"in/large.bin":  bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dirs, err := localfile.OpenDirs([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dirs.Close() })
	return dir, dirs
}
