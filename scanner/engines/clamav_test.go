package engines

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/scangate/scangate/internal/clamdtest"
	"github.com/scangate/scangate/pkg/result"
)

// The tests below run a real clamd (internal/clamdtest), started by the test
// with a generated clamd.conf and a tiny signature database (EICAR plus a
// harmless marker). Without clamd they skip, unless SCANGATE_REQUIRE_CLAMD=1
// (CI) makes that a failure.

func newTestClamAV(tb testing.TB, opts ClamAVOptions) *ClamAV {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := NewClamAV(ctx, opts)
	if err != nil {
		tb.Fatalf("NewClamAV: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func clamScan(t *testing.T, c *ClamAV, data []byte) (Finding, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.ScanStream(ctx, &Input{Size: int64(len(data))}, bytes.NewReader(data))
}

func clamWant(t *testing.T, f Finding, err error, code int, threatPrefix string) {
	t.Helper()
	if err != nil {
		t.Fatalf("ScanStream: %v", err)
	}
	if f.Code != code || !strings.HasPrefix(f.Threat, threatPrefix) || (threatPrefix == "" && f.Threat != "") {
		t.Fatalf("finding = %+v, want code %d threat %q...", f, code, threatPrefix)
	}
}

func clamCleanFile(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func (c *ClamAV) idleCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idle)
}

func TestClamAV(t *testing.T) {
	d := clamdtest.Start(t)
	c := newTestClamAV(t, ClamAVOptions{Address: d.TCPAddr()})

	t.Run("Info", func(t *testing.T) {
		info := c.Info()
		if info.ID != "clamav" || info.Name != "ClamAV" {
			t.Fatalf("info = %+v", info)
		}
		if info.Version == "" || strings.ContainsAny(info.Version, "/ ") {
			t.Fatalf("version = %q, want clamd's engine version alone", info.Version)
		}
		if !strings.HasPrefix(clamdtest.RawCommand(d.TCPAddr()[len("tcp://"):], clamdVersion), "ClamAV "+info.Version+"/") {
			t.Fatalf("version %q is not clamd's", info.Version)
		}
		dt, err := time.Parse(result.TimeFormat, info.DefTime)
		if err != nil {
			t.Fatalf("def_time %q: %v", info.DefTime, err)
		}
		if !dt.Equal(clamdtest.DBTime) || info.DefTime != "2026-11-20T08:00:00.000Z" {
			t.Fatalf("def_time = %q, want the test database's %v", info.DefTime, clamdtest.DBTime)
		}
	})

	t.Run("Ping", func(t *testing.T) {
		if err := c.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Clean", func(t *testing.T) {
		f, err := clamScan(t, c, []byte("just a harmless text file\n"))
		clamWant(t, f, err, result.NoThreat, "")
	})

	t.Run("Empty", func(t *testing.T) {
		f, err := clamScan(t, c, nil)
		clamWant(t, f, err, result.NoThreat, "")
	})

	t.Run("EICAR", func(t *testing.T) {
		f, err := clamScan(t, c, eicar())
		clamWant(t, f, err, result.Infected, "Eicar-Test-Signature")
	})

	t.Run("Marker", func(t *testing.T) {
		f, err := clamScan(t, c, append([]byte("some text around "), append(clamdtest.Marker(), " the marker"...)...))
		clamWant(t, f, err, result.Infected, "ScanGate.Test.Marker")
	})

	t.Run("MarkerAcrossChunks", func(t *testing.T) {
		// 300 KiB with the marker straddling the 64 KiB chunk boundary.
		data := clamCleanFile(300 << 10)
		copy(data[64<<10-10:], clamdtest.Marker())
		f, err := clamScan(t, c, data)
		clamWant(t, f, err, result.Infected, "ScanGate.Test.Marker")
	})

	t.Run("SmallChunks", func(t *testing.T) {
		sc := newTestClamAV(t, ClamAVOptions{Address: d.TCPAddr(), ChunkSize: 1000})
		data := clamCleanFile(10_500)
		copy(data[3000-7:], clamdtest.Marker())
		f, err := clamScan(t, sc, data)
		clamWant(t, f, err, result.Infected, "ScanGate.Test.Marker")
		f, err = clamScan(t, sc, append(eicar(), clamCleanFile(5000)...))
		clamWant(t, f, err, result.Infected, "Eicar-Test-Signature")
		f, err = clamScan(t, sc, clamCleanFile(3000)) // ends on a chunk boundary
		clamWant(t, f, err, result.NoThreat, "")
	})

	t.Run("ExactlyStreamMaxLength", func(t *testing.T) {
		f, err := clamScan(t, c, clamCleanFile(clamdtest.StreamMaxLength))
		clamWant(t, f, err, result.NoThreat, "")
	})

	t.Run("OverStreamMaxLength", func(t *testing.T) {
		// The engine does not know the limit: clamd's reply says it.
		before := c.idleCount()
		f, err := c.ScanStream(context.Background(), &Input{}, bytes.NewReader(clamCleanFile(clamdtest.StreamMaxLength*3/2)))
		clamWant(t, f, err, result.Failed, ClamAVSizeLimitThreat)
		if f.Threat != ClamAVSizeLimitThreat {
			t.Fatalf("threat = %q", f.Threat)
		}
		if c.idleCount() > before {
			t.Fatal("a session that clamd closed went back to the pool")
		}
		// The engine still works afterwards.
		f, err = clamScan(t, c, []byte("after the limit"))
		clamWant(t, f, err, result.NoThreat, "")
	})

	t.Run("OverKnownStreamMaxLength", func(t *testing.T) {
		k := newTestClamAV(t, ClamAVOptions{Address: d.TCPAddr(), StreamMaxLength: clamdtest.StreamMaxLength})
		// Size known up front: failed without sending anything.
		f, err := k.ScanStream(context.Background(), &Input{Size: clamdtest.StreamMaxLength + 1}, clamErrReader{})
		clamWant(t, f, err, result.Failed, ClamAVSizeLimitThreat)
		// Size unknown: cut off locally once past the limit.
		f, err = k.ScanStream(context.Background(), nil, bytes.NewReader(clamCleanFile(clamdtest.StreamMaxLength+1)))
		clamWant(t, f, err, result.Failed, ClamAVSizeLimitThreat)
		f, err = clamScan(t, k, clamCleanFile(clamdtest.StreamMaxLength))
		clamWant(t, f, err, result.NoThreat, "")
	})

	t.Run("SessionReuse", func(t *testing.T) {
		s := newTestClamAV(t, ClamAVOptions{Address: d.TCPAddr()})
		for i := range 5 {
			data := []byte("clean")
			want, prefix := result.NoThreat, ""
			if i%2 == 1 {
				data, want, prefix = eicar(), result.Infected, "Eicar-Test-Signature"
			}
			f, err := clamScan(t, s, data)
			clamWant(t, f, err, want, prefix)
		}
		s.mu.Lock()
		n, id := len(s.idle), s.idle[0].nextID
		s.mu.Unlock()
		if n != 1 || id != 6 {
			t.Fatalf("pool has %d sessions, next request %d; want 1 session that ran 5 scans", n, id)
		}
	})

	t.Run("UnixSocket", func(t *testing.T) {
		u := newTestClamAV(t, ClamAVOptions{Address: d.UnixAddr()})
		for range 3 {
			f, err := clamScan(t, u, eicar())
			clamWant(t, f, err, result.Infected, "Eicar-Test-Signature")
		}
		if err := u.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		const workers, perWorker = 32, 8
		var wg sync.WaitGroup
		var bad atomic.Int32
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWorker {
					data, want := []byte(fmt.Sprintf("clean file %d/%d", w, i)), result.NoThreat
					switch (w + i) % 3 {
					case 1:
						data, want = eicar(), result.Infected
					case 2:
						data, want = append(clamCleanFile(100<<10), clamdtest.Marker()...), result.Infected
					}
					f, err := c.ScanStream(context.Background(), &Input{Size: int64(len(data))}, bytes.NewReader(data))
					if err != nil || f.Code != want {
						bad.Add(1)
						t.Errorf("worker %d scan %d: %+v, %v; want code %d", w, i, f, err, want)
					}
				}
			}()
		}
		wg.Wait()
		if bad.Load() == 0 && c.idleCount() > ClamAVDefaultPoolSize {
			t.Fatalf("pool holds %d idle sessions, more than PoolSize", c.idleCount())
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		// Cancelled before: no I/O at all.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := c.ScanStream(ctx, nil, clamErrReader{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("pre-cancelled: err = %v", err)
		}
		// Cancelled while a slow, endless file streams.
		ctx, cancel = context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.ScanStream(ctx, nil, &clamSlowReader{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("cancellation took %v", el)
		}
		// A deadline from opts.Timeout works the same way.
		tm := newTestClamAV(t, ClamAVOptions{Address: d.TCPAddr(), Timeout: 300 * time.Millisecond})
		start = time.Now()
		_, err = tm.ScanStream(context.Background(), nil, &clamSlowReader{})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("err = %v, want a timeout", err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("timeout took %v", el)
		}
		f, err := clamScan(t, c, []byte("still fine"))
		clamWant(t, f, err, result.NoThreat, "")
	})

	t.Run("ReadError", func(t *testing.T) {
		_, err := c.ScanStream(context.Background(), nil, clamErrReader{})
		if err == nil || !strings.Contains(err.Error(), "read file") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("Refresh", func(t *testing.T) {
		newTime := time.Date(2026, 11, 21, 9, 30, 5, 0, time.UTC)
		d.WriteDB(clamdtest.DBVersion+1, newTime)
		if r := clamdtest.RawCommand(d.TCPAddr()[len("tcp://"):], "zRELOAD\x00"); r != "RELOADING" {
			t.Fatalf("RELOAD: %q", r)
		}
		if !testwait.Until(30*time.Second, func() bool {
			if err := c.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			return c.Info().DefTime == "2026-11-21T09:30:05.000Z"
		}) {
			t.Fatalf("def_time still %q after reload", c.Info().DefTime)
		}
		f, err := clamScan(t, c, eicar())
		clamWant(t, f, err, result.Infected, "Eicar-Test-Signature")
	})
}

// TestClamAVClamdRestart kills clamd under a pool of live sessions, expects
// clear errors while it is down, and working scans once it is back.
func TestClamAVClamdRestart(t *testing.T) {
	d := clamdtest.Start(t)
	c := newTestClamAV(t, ClamAVOptions{Address: d.TCPAddr(), Timeout: 10 * time.Second})

	// Fill the pool with several sessions: 8 scans held open at once (each
	// blocks after its first chunk until all 8 have a session).
	var wg, arrived sync.WaitGroup
	gate := make(chan struct{})
	arrived.Add(8)
	go func() { arrived.Wait(); close(gate) }()
	for range 8 {
		wg.Go(func() {
			r := io.MultiReader(bytes.NewReader(clamCleanFile(ClamAVDefaultChunkSize)),
				clamGateReader{arrived: &arrived, gate: gate}, bytes.NewReader(clamdtest.Marker()))
			f, err := c.ScanStream(context.Background(), nil, r)
			if err != nil || f.Code != result.Infected {
				t.Errorf("scan: %+v, %v", f, err)
			}
		})
	}
	wg.Wait()
	if n := c.idleCount(); n != ClamAVDefaultPoolSize {
		t.Fatalf("pool holds %d sessions, want %d", n, ClamAVDefaultPoolSize)
	}

	d.Kill()
	f, err := clamScan(t, c, []byte("clean"))
	if err == nil {
		t.Fatalf("scan with clamd down: %+v, want an error", f)
	}
	if !strings.Contains(err.Error(), "clamd") {
		t.Fatalf("unclear error: %v", err)
	}
	t.Logf("clamd down: %v", err)
	if err := c.Ping(context.Background()); err == nil {
		t.Fatal("Ping with clamd down succeeded")
	}
	if err := c.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh with clamd down succeeded")
	}

	d.Restart()
	for range 3 {
		wg.Go(func() {
			for i := range 4 {
				data, want := []byte("clean"), result.NoThreat
				if i%2 == 0 {
					data, want = eicar(), result.Infected
				}
				f, err := c.ScanStream(context.Background(), nil, bytes.NewReader(data))
				if err != nil || f.Code != want {
					t.Errorf("scan after restart: %+v, %v", f, err)
				}
			}
		})
	}
	wg.Wait()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestClamAVStaleSessionRetry: a pooled session that a server drops when
// the next command arrives (so the liveness check cannot see it) costs a
// retry, not a failed scan.
func TestClamAVStaleSessionRetry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var conns atomic.Int32
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go fakeClamdOneScan(conn)
		}
	}()
	c := newTestClamAV(t, ClamAVOptions{Address: "tcp://" + l.Addr().String()})
	for i := range 3 {
		f, err := clamScan(t, c, []byte("clean"))
		clamWant(t, f, err, result.NoThreat, "")
		if i == 0 && c.idleCount() != 1 {
			t.Fatalf("pool holds %d sessions, want 1", c.idleCount())
		}
	}
	// VERSION, the first session, then one new session per later scan
	// after its stale one failed.
	if got := conns.Load(); got != 4 {
		t.Fatalf("%d connections, want 4", got)
	}
}

// fakeClamdOneScan answers VERSION, or one INSTREAM in a session, then drops
// the connection as soon as the next command arrives.
func fakeClamdOneScan(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	cmd, err := br.ReadString(0)
	if err != nil {
		return
	}
	if cmd == clamdVersion {
		_, _ = io.WriteString(conn, "ClamAV 9.9.9/1/Fri Nov 20 08:00:00 2026\x00")
		return
	}
	if cmd != clamdIDSession {
		return
	}
	if cmd, err = br.ReadString(0); err != nil || cmd != clamdInstream {
		return
	}
	for {
		var n uint32
		if err := binary.Read(br, binary.BigEndian, &n); err != nil {
			return
		}
		if n == 0 {
			break
		}
		if _, err := br.Discard(int(n)); err != nil {
			return
		}
	}
	_, _ = io.WriteString(conn, "1: stream: OK\x00")
	_, _ = br.ReadByte() // the next command: drop the session
}

func TestNewClamAVNoClamd(t *testing.T) {
	port := clamdtest.FreePort(t) // nothing listens there any more
	_, err := NewClamAV(context.Background(), ClamAVOptions{Address: fmt.Sprintf("tcp://127.0.0.1:%d", port), Timeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("err = %v", err)
	}
	for _, bad := range []string{"", "tcp://nohostport", "localhost", "unix://"} {
		if _, err := NewClamAV(context.Background(), ClamAVOptions{Address: bad}); err == nil {
			t.Errorf("address %q accepted", bad)
		}
	}
}

func TestParseClamdAddress(t *testing.T) {
	for in, want := range map[string][2]string{
		"tcp://127.0.0.1:3310":         {"tcp", "127.0.0.1:3310"},
		"tcp://[::1]:3310":             {"tcp", "[::1]:3310"},
		"clamd:3310":                   {"tcp", "clamd:3310"},
		"unix:///run/clamav/clamd.ctl": {"unix", "/run/clamav/clamd.ctl"},
		"/run/clamav/clamd.ctl":        {"unix", "/run/clamav/clamd.ctl"},
	} {
		n, a, err := parseClamdAddress(in)
		if err != nil || n != want[0] || a != want[1] {
			t.Errorf("parseClamdAddress(%q) = %q, %q, %v; want %v", in, n, a, err, want)
		}
	}
}

func TestParseClamdVersion(t *testing.T) {
	tests := []struct {
		reply, version, defTime string
	}{
		{"ClamAV 1.4.3/27000/Thu Nov 20 08:00:00 2026", "1.4.3", "2026-11-20T08:00:00.000Z"},
		{"ClamAV 1.0.7/26951/Fri Jun  6 07:35:51 2025", "1.0.7", "2025-06-06T07:35:51.000Z"},
		{"ClamAV 1.4.6", "1.4.6", ""},
	}
	for _, tt := range tests {
		v, dt, err := parseClamdVersion(tt.reply)
		got := ""
		if !dt.IsZero() {
			got = result.FormatTime(dt)
		}
		if err != nil || v != tt.version || got != tt.defTime {
			t.Errorf("parseClamdVersion(%q) = %q, %q, %v", tt.reply, v, got, err)
		}
	}
	for _, bad := range []string{"", "PONG", "ClamAV ", "ClamAV 1.4.3/27000/yesterday"} {
		if _, _, err := parseClamdVersion(bad); err == nil {
			t.Errorf("parseClamdVersion(%q) accepted", bad)
		}
	}
}

func TestParseStreamReply(t *testing.T) {
	tests := []struct {
		reply  string
		code   int
		threat string
		ok     bool
		err    bool
	}{
		{"stream: OK", result.NoThreat, "", true, false},
		{"stream: Eicar-Signature FOUND", result.Infected, "Eicar-Signature", true, false},
		{"stream: Win.Test.EICAR_HDB-1(44d88612fea8a8f36de82e1278abb02f:68) FOUND", result.Infected, "Win.Test.EICAR_HDB-1", true, false},
		{"stream: Odd(name) FOUND", result.Infected, "Odd(name)", true, false},
		{"INSTREAM size limit exceeded. ERROR", result.Failed, ClamAVSizeLimitThreat, false, false},
		{"stream: Can't allocate memory ERROR", 0, "", false, true},
		{"COMMAND READ TIMED OUT", 0, "", false, true},
		{"stream:  FOUND", 0, "", false, true},
	}
	for _, tt := range tests {
		f, ok, err := parseClamdStreamReply(tt.reply)
		if f.Code != tt.code || f.Threat != tt.threat || ok != tt.ok || (err != nil) != tt.err {
			t.Errorf("parseClamdStreamReply(%q) = %+v, %v, %v", tt.reply, f, ok, err)
		}
	}
	// Session replies carry the request number, which must match.
	s := &clamInstream{}
	if f, ok, err := s.verdict(3, "3: stream: OK"); err != nil || !ok || f.Code != result.NoThreat {
		t.Errorf("verdict: %+v %v %v", f, ok, err)
	}
	if _, _, err := s.verdict(3, "2: stream: OK"); err == nil {
		t.Error("a reply to another request was accepted")
	}
}

// The shipped database flags exactly the EICAR file and the test marker.
func TestClamAVTestDatabase(t *testing.T) {
	b := clamdtest.NDB()
	want := "Eicar-Test-Signature:0:0:" + hex.EncodeToString(eicar()) + "\n" +
		"ScanGate.Test.Marker:0:*:" + hex.EncodeToString(clamdtest.Marker()) + "\n"
	if string(b) != want {
		t.Fatalf("clamdtest.NDB() =\n%s\nwant\n%s", b, want)
	}
}

// clamSlowReader is an endless file that trickles in.
type clamSlowReader struct{}

func (*clamSlowReader) Read(p []byte) (int, error) {
	time.Sleep(5 * time.Millisecond) // the trickle itself: what the test is about, not a wait for state
	n := min(len(p), 512)
	for i := range p[:n] {
		p[i] = 'x'
	}
	return n, nil
}

// clamGateReader marks its arrival, then waits for the gate; it reads nothing.
type clamGateReader struct {
	arrived *sync.WaitGroup
	gate    chan struct{}
}

func (g clamGateReader) Read([]byte) (int, error) {
	g.arrived.Done()
	<-g.gate
	return 0, io.EOF
}

type clamErrReader struct{}

func (clamErrReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

const clamBenchWorkers = 32

// BenchmarkClamAV4KiB scans 4 KiB clean files from 32 goroutines, through
// ClamAV.ScanStream (sessions, pool) and through raw INSTREAM calls on a new
// connection each (no pool), in the same run against the same clamd.
//
//	go test -run '^$' -bench ClamAV4KiB -benchtime 4000x ./scanner/engines/
func BenchmarkClamAV4KiB(b *testing.B) {
	d := clamdtest.Start(b)
	c := newTestClamAV(b, ClamAVOptions{Address: d.TCPAddr()})
	c32 := newTestClamAV(b, ClamAVOptions{Address: d.TCPAddr(), PoolSize: clamBenchWorkers})
	addr := d.TCPAddr()[len("tcp://"):]
	data := clamCleanFile(4 << 10)

	// run scans n files from clamBenchWorkers goroutines and adds the wall
	// time and the CPU time (clamd's plus this process's) to *m.
	type cost struct{ wall, cpu time.Duration }
	run := func(m *cost, n int, scan func() error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Value
		cpu0 := clamdCPU(b, d.Pid()) + selfCPU()
		start := time.Now()
		for range clamBenchWorkers {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if err := scan(); err != nil {
						failed.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		m.wall += time.Since(start)
		m.cpu += clamdCPU(b, d.Pid()) + selfCPU() - cpu0
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
	}
	through := func(c *ClamAV) func() error {
		return func() error {
			f, err := c.ScanStream(context.Background(), &Input{Size: int64(len(data))}, bytes.NewReader(data))
			if err == nil && f.Code != result.NoThreat {
				err = fmt.Errorf("finding %+v", f)
			}
			return err
		}
	}
	pooled, pooled32 := through(c), through(c32)
	raw := func() error {
		r, err := clamdtest.RawInstream(addr, data)
		if err == nil && r != "stream: OK" {
			err = fmt.Errorf("reply %q", r)
		}
		return err
	}
	// Warm both paths (pool filled, clamd threads started).
	for range clamBenchWorkers {
		_ = pooled()
		_ = pooled32()
		_ = raw()
	}
	// The three ways take turns in rounds, so that noise from other work on
	// the machine hits them alike. CPU per file (clamd + client) is the
	// steadier figure on a busy machine; files/s is what a user sees.
	const rounds = 10
	var pool, pool32, rawc cost
	b.ResetTimer()
	for i := range rounds {
		n := b.N/rounds + min(1, max(0, b.N%rounds-i))
		run(&pool, n, pooled)
		run(&rawc, n, raw)
		run(&pool32, n, pooled32)
	}
	b.StopTimer()
	rate := func(m cost) float64 { return float64(b.N) / m.wall.Seconds() }
	perFile := func(m cost) float64 { return float64(m.cpu.Microseconds()) / float64(b.N) }
	b.ReportMetric(rate(pool), "pool_files/s")
	b.ReportMetric(rate(pool32), "pool32_files/s")
	b.ReportMetric(rate(rawc), "raw_files/s")
	b.ReportMetric(rate(pool)/rate(rawc), "pool/raw")
	b.ReportMetric(perFile(pool), "pool_cpu_us/file")
	b.ReportMetric(perFile(rawc), "raw_cpu_us/file")
	b.ReportMetric(0, "ns/op") // three ways share b.N: ns/op means nothing
}

// clamdCPU is the CPU time a process has used (Linux /proc, 100 Hz ticks).
func clamdCPU(tb testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the ")" closing the command name: state is field 3,
	// utime and stime are fields 14 and 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Refresh follows clamd's database: def_time and eng_ver change with it,
// and Loaded (download_time) moves only when the database does.
func TestClamAVRefreshFollowsDatabase(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var version atomic.Value
	version.Store("ClamAV 1.4.3/27000/Thu Nov 19 08:00:00 2026")
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				cmd, err := bufio.NewReader(conn).ReadString(0)
				if err == nil && cmd == clamdVersion {
					_, _ = io.WriteString(conn, version.Load().(string)+"\x00")
				}
			}()
		}
	}()
	c := newTestClamAV(t, ClamAVOptions{Address: "tcp://" + l.Addr().String()})
	first := c.Info()
	if first.DefTime != "2026-11-19T08:00:00.000Z" || first.Loaded.IsZero() {
		t.Fatalf("info at start %+v", first)
	}
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.Info(); got != first {
		t.Fatalf("a refresh finding the same database changed info: %+v, was %+v", got, first)
	}
	later := first.Loaded.Add(time.Minute) // the reload happens a minute on
	now = func() time.Time { return later }
	t.Cleanup(func() { now = time.Now })
	version.Store("ClamAV 1.4.3/27001/Fri Nov 20 08:00:00 2026")
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	got := c.Info()
	if got.DefTime != "2026-11-20T08:00:00.000Z" || !got.Loaded.Equal(later) {
		t.Fatalf("after a database reload info %+v, was %+v", got, first)
	}
}
