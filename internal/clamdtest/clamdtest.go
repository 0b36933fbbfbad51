// Package clamdtest starts a real clamd for tests, with a generated
// clamd.conf and a tiny signature database shipped in testdata (EICAR plus a
// harmless marker). Without clamd, Find and Start skip the test, unless
// SCANGATE_REQUIRE_CLAMD=1 (CI) makes that a failure.
//
// It speaks the few bytes of the clamd protocol it needs itself, so that it
// imports nothing from scanner/engines (whose tests use it).
package clamdtest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	// StreamMaxLength is the StreamMaxLength of the test clamd.
	StreamMaxLength = 1 << 20
	// DBVersion is the version of the database the test clamd starts with.
	DBVersion = 27000
)

// DBTime is the build time of the database the test clamd starts with.
var DBTime = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

//go:embed testdata/scangate-test.ndb
var ndb []byte

// NDB returns the shipped signature database (a copy).
func NDB() []byte { return bytes.Clone(ndb) }

// Marker returns the harmless string the test database flags, assembled so
// that this file itself does not match.
func Marker() []byte { return []byte("SCANGATE-CLAMAV-" + "TEST-MARKER") }

// Find returns the clamd binary, or skips (fails under
// SCANGATE_REQUIRE_CLAMD=1) when there is none.
func Find(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("clamd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/clamd", "/usr/local/sbin/clamd"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if os.Getenv("SCANGATE_REQUIRE_CLAMD") == "1" {
		tb.Fatal("clamd not installed but SCANGATE_REQUIRE_CLAMD=1 (apt-get install clamav-daemon)")
	}
	tb.Skip("clamd not installed (apt-get install clamav-daemon); set SCANGATE_REQUIRE_CLAMD=1 to make this a failure")
	return ""
}

// writeDB writes daily.cud into dir: an unsigned ClamAV database container
// (512-byte CVD header + tar.gz holding daily.info and the shipped .ndb).
// Unlike a loose .ndb, a "daily" container gives clamd a database version
// and date, so VERSION answers like a production clamd:
// "ClamAV 1.4.6/27000/Fri Nov 20 08:00:00 2026". Only unsigned (.cud)
// containers can be made without ClamAV's signing key.
func writeDB(tb testing.TB, dir string, version int, built time.Time) {
	tb.Helper()
	sigs := bytes.Count(bytes.TrimSpace(ndb), []byte("\n")) + 1
	sum := sha256.Sum256(ndb)
	header := fmt.Sprintf("ClamAV-VDB:%s:%d:%d:1:%s:unsigned:scangate-test:%d",
		built.UTC().Format("02 Jan 2006 15-04 -0700"), version, sigs, strings.Repeat("0", 32), built.Unix())
	info := fmt.Sprintf("%s\ndaily.ndb:%d:%s\n", header, len(ndb), hex.EncodeToString(sum[:]))

	var body bytes.Buffer
	gz := gzip.NewWriter(&body)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name string
		data []byte
	}{{"daily.info", []byte(info)}, {"daily.ndb", ndb}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Format: tar.FormatUSTAR}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		tb.Fatal(err)
	}
	head := []byte(header + strings.Repeat(" ", 512-len(header)))
	tmp := filepath.Join(dir, ".daily.cud.tmp")
	if err := os.WriteFile(tmp, append(head, body.Bytes()...), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "daily.cud")); err != nil {
		tb.Fatal(err)
	}
}

// Clamd is a clamd process owned by a test.
type Clamd struct {
	Port  int    // loopback TCP port
	Sock  string // Unix socket path
	Dir   string // temp dir holding clamd.conf, logs, pid, tmp
	DBDir string // database directory (daily.cud)

	tb     testing.TB
	bin    string
	conf   string
	cmd    *exec.Cmd
	done   chan struct{}
	output string
}

// TCPAddr is clamd's TCP address as "tcp://127.0.0.1:<port>".
func (d *Clamd) TCPAddr() string { return fmt.Sprintf("tcp://127.0.0.1:%d", d.Port) }

// UnixAddr is clamd's Unix socket address as "unix://<path>".
func (d *Clamd) UnixAddr() string { return "unix://" + d.Sock }

// Pid is the process id of the running clamd (0 when it is not running).
func (d *Clamd) Pid() int {
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Start writes a clamd.conf and database into a temp dir, starts clamd in
// the foreground, waits until it answers PING, and kills it at Cleanup.
func Start(tb testing.TB) *Clamd {
	tb.Helper()
	bin := Find(tb)
	dir := tb.TempDir()
	d := &Clamd{tb: tb, bin: bin, Dir: dir, DBDir: filepath.Join(dir, "db"),
		conf: filepath.Join(dir, "clamd.conf"), Sock: filepath.Join(dir, "clamd.sock"),
		output: filepath.Join(dir, "clamd.out")}
	for _, sub := range []string{d.DBDir, filepath.Join(dir, "tmp")} {
		if err := os.Mkdir(sub, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	writeDB(tb, d.DBDir, DBVersion, DBTime)
	d.Port = freePort(tb)
	conf := strings.Join([]string{
		// Stay attached: the test owns the process, reads its output and kills it.
		"Foreground yes",
		// Loopback TCP on a free port, plus a Unix socket to test unix:// addresses.
		fmt.Sprintf("TCPSocket %d", d.Port),
		"TCPAddr 127.0.0.1",
		"LocalSocket " + d.Sock,
		"LocalSocketMode 600",
		// Only the test database: no freshclam, no network. clamd refuses
		// to start without any signature, so this one matters.
		"DatabaseDirectory " + d.DBDir,
		// Small, so that a 1.5 MiB file exceeds it.
		"StreamMaxLength 1M",
		// Logs and pid in the temp dir, nothing in syslog or /var.
		"LogFile " + filepath.Join(dir, "clamd.log"),
		"LogSyslog no",
		"LogTime yes",
		"PidFile " + filepath.Join(dir, "clamd.pid"),
		// INSTREAM spools each stream to a temp file: keep those here too.
		"TemporaryDirectory " + filepath.Join(dir, "tmp"),
		// No periodic database check: the tests reload explicitly (RELOAD).
		"SelfCheck 0",
		// No bytecode signatures to load; start faster.
		"Bytecode no",
		// "User" is deliberately unset: clamd then keeps the uid of the test
		// process (root on CI, a normal user on a laptop), which owns the
		// temp dir. Setting it would need root and an existing user.
		"",
	}, "\n")
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	d.start()
	tb.Cleanup(d.Kill)
	return d
}

// FreePort returns a loopback TCP port that was free a moment ago (nothing
// listens there any more).
func FreePort(tb testing.TB) int { tb.Helper(); return freePort(tb) }

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WriteDB rewrites daily.cud with the given version and build time; clamd
// picks it up on RELOAD.
func (d *Clamd) WriteDB(version int, built time.Time) {
	d.tb.Helper()
	writeDB(d.tb, d.DBDir, version, built)
}

// Restart starts clamd again (after Kill) on the same port and socket.
func (d *Clamd) Restart() {
	d.tb.Helper()
	d.Kill()
	d.start()
}

// start runs clamd with d's configuration and waits (up to 60s) for PONG.
func (d *Clamd) start() {
	d.tb.Helper()
	out, err := os.OpenFile(d.output, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.tb.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(d.bin, "--foreground", "--config-file="+d.conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		d.tb.Fatalf("start clamd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	d.cmd, d.done = cmd, done

	deadline := time.Now().Add(60 * time.Second)
	for {
		if RawCommand(fmt.Sprintf("127.0.0.1:%d", d.Port), "zPING\x00") == "PONG" {
			return
		}
		select {
		case <-done:
			d.tb.Fatalf("clamd exited during start-up:\n%s", d.LogTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.Kill()
			d.tb.Fatalf("clamd did not answer PING within 60s:\n%s", d.LogTail())
		}
	}
}

// Kill stops clamd hard (SIGKILL) and waits for it. It does nothing when
// clamd is not running.
func (d *Clamd) Kill() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.done
	d.cmd = nil
}

// LogTail is the end (up to 4000 bytes) of clamd's stdout and stderr.
func (d *Clamd) LogTail() string {
	b, _ := os.ReadFile(d.output)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// RawCommand sends one z-command (e.g. "zVERSION\x00") on a new TCP
// connection to addr ("host:port") and returns the reply; "" on any error.
func RawCommand(addr, cmd string) string {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, cmd); err != nil {
		return ""
	}
	reply, _ := readReply(conn)
	return reply
}

// RawInstream scans data with a plain INSTREAM on a new TCP connection to
// addr ("host:port"), no session and no pool: a benchmark baseline.
func RawInstream(addr string, data []byte) (string, error) {
	const instream = "zINSTREAM\x00"
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	msg := make([]byte, 0, len(instream)+8+len(data))
	msg = append(msg, instream...)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(data)))
	msg = append(msg, data...)
	msg = binary.BigEndian.AppendUint32(msg, 0)
	if _, err := conn.Write(msg); err != nil {
		return "", err
	}
	return readReply(conn)
}

// readReply reads one NUL-terminated reply (or, if clamd closes the
// connection first, whatever it sent).
func readReply(r io.Reader) (string, error) {
	s, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString(0)
	switch {
	case err == nil:
		return strings.TrimSuffix(s, "\x00"), nil
	case errors.Is(err, io.EOF) && strings.TrimSpace(s) != "":
		return strings.TrimSpace(s), nil
	}
	return "", err
}
