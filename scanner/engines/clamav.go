package engines

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/scangate/scangate/pkg/result"
)

// ClamAV scans files with a running clamd over its socket protocol.
//
// Each file is streamed with INSTREAM in chunks as it is read: the file is
// never held in memory, only one chunk buffer per scan.
//
// Connection reuse: scans run in clamd's IDSESSION mode, so one connection
// carries many INSTREAM commands and a scan costs no connect/accept and no
// new clamd connection state. A connection serves one scan at a time; idle
// ones are kept in a small LIFO pool (PoolSize). A session may die while idle
// (clamd restarted, or clamd's ReadTimeout closed it), so a pooled connection
// is checked before use with a non-blocking peek (a closed or chattering
// socket is dropped), sessions idle longer than IdleTimeout are dropped
// unused, and if a reused session still turns out dead before any byte past
// the first chunk was taken from the reader, the scan is retried once on a
// fresh connection. Every error ends the session (clamd itself closes a
// session after an ERROR reply), so a connection goes back to the pool only
// after a clean OK/FOUND reply. Concurrency is not limited here: the scanner
// bounds it, and clamd queues what exceeds its MaxThreads.
//
// Why sessions rather than a new connection per scan: it saves a connect,
// accept and close per file, which matters most with a remote clamd. On
// loopback the gain is small because clamd's own per-file work (spooling the
// stream to a temp file, then scanning it) dominates: BenchmarkClamAV4KiB
// measures pool vs raw per-connection INSTREAM in the same run. The cost is
// one clamd descriptor per idle session, counted against clamd's MaxQueue,
// which is why the pool is small.
//
// Info, Ping and Refresh use one-shot connections (no session), so a health
// check also proves that clamd accepts new connections.
type ClamAV struct {
	opts    ClamAVOptions
	network string
	addr    string
	bufs    sync.Pool // *[]byte: clamHeadRoom + ChunkSize + clamTailRoom

	infoMu sync.RWMutex
	info   Info

	mu     sync.Mutex
	idle   []*clamConn // LIFO: the most recently used last
	closed bool
}

// ClamAVOptions configures NewClamAV. Zero values take the defaults.
type ClamAVOptions struct {
	// Address of clamd: "tcp://host:port" or "unix:///path/to/clamd.ctl".
	// A bare "host:port" means TCP and a bare absolute path a Unix socket.
	Address string
	// Timeout bounds one scan (dial, streaming and verdict) and one
	// Ping/Refresh, on top of the caller's context. Default 60s.
	Timeout time.Duration
	// PoolSize is how many idle session connections are kept. Default 4.
	// Scans beyond it open more sessions, closed when they finish.
	PoolSize int
	// ChunkSize is the INSTREAM chunk size, at most 16 MiB. Default 64 KiB.
	ChunkSize int
	// StreamMaxLength is clamd's StreamMaxLength (clamd.conf; clamd's
	// default is 25M) in bytes. clamd has no command to ask for it, so 0
	// means unknown: files are streamed until clamd refuses them. When set,
	// a file known to be larger fails at once without being sent, and a
	// stream that grows past it is cut off locally.
	StreamMaxLength int64
	// IdleTimeout is how long an idle pooled session is kept. It must stay
	// below clamd's ReadTimeout (default 120s; Debian ships 180s), after
	// which clamd closes idle sessions. Default 30s.
	IdleTimeout time.Duration
}

// now is the clock Loaded is read from (a test steps it).
var now = time.Now

// Defaults of ClamAVOptions.
const (
	ClamAVDefaultTimeout     = 60 * time.Second
	ClamAVDefaultPoolSize    = 4
	ClamAVDefaultChunkSize   = 64 << 10
	ClamAVDefaultIdleTimeout = 30 * time.Second
)

// ClamAVSizeLimitThreat is the threat text of the Failed finding for a file
// larger than clamd's StreamMaxLength.
const ClamAVSizeLimitThreat = "file exceeds clamd StreamMaxLength"

// clamdDefTimeLayout is how clamd prints its database date (ctime(3), in
// clamd's local time zone, which scangate takes as UTC).
const clamdDefTimeLayout = "Mon Jan 2 15:04:05 2006"

const (
	clamdInstream  = "zINSTREAM\x00"
	clamdIDSession = "zIDSESSION\x00"
	clamdEnd       = "zEND\x00"
	clamdPing      = "zPING\x00"
	clamdVersion   = "zVERSION\x00"
	// clamdMaxReply bounds what is read as one clamd reply.
	clamdMaxReply = 4096
	// clamHeadRoom is the room before a chunk's data in a scan buffer: the
	// INSTREAM command and the chunk length. clamTailRoom holds the terminating
	// zero-length chunk.
	clamHeadRoom = len(clamdInstream) + 4
	clamTailRoom = 4
)

// errClamdClosed marks a connection that clamd closed (or reset) under us.
var errClamdClosed = errors.New("clamd closed the connection")

// NewClamAV connects to clamd, reads its version and database date, and
// fails with a clear error if clamd does not answer.
func NewClamAV(ctx context.Context, opts ClamAVOptions) (*ClamAV, error) {
	network, addr, err := parseClamdAddress(opts.Address)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = ClamAVDefaultTimeout
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = ClamAVDefaultPoolSize
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = ClamAVDefaultChunkSize
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = ClamAVDefaultIdleTimeout
	}
	if opts.ChunkSize > 16<<20 {
		return nil, fmt.Errorf("clamav: ChunkSize %d is over 16 MiB", opts.ChunkSize)
	}
	if opts.StreamMaxLength < 0 {
		return nil, fmt.Errorf("clamav: negative StreamMaxLength %d", opts.StreamMaxLength)
	}
	c := &ClamAV{opts: opts, network: network, addr: addr}
	size := clamHeadRoom + opts.ChunkSize + clamTailRoom
	c.bufs.New = func() any { b := make([]byte, size); return &b }
	c.info = Info{ID: "clamav", Name: "ClamAV"}
	if err := c.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("clamav: clamd at %s does not answer: %w", opts.Address, err)
	}
	return c, nil
}

// parseClamdAddress splits "tcp://host:port" or "unix:///path".
func parseClamdAddress(a string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(a, "tcp://"):
		network, addr = "tcp", strings.TrimPrefix(a, "tcp://")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", "", fmt.Errorf("clamav: bad clamd address %q: %w", a, err)
		}
	case strings.HasPrefix(a, "unix://"):
		network, addr = "unix", strings.TrimPrefix(a, "unix://")
	case strings.HasPrefix(a, "/"):
		network, addr = "unix", a
	case a == "":
		return "", "", errors.New("clamav: no clamd address (tcp://host:port or unix:///path)")
	default:
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", "", fmt.Errorf("clamav: bad clamd address %q (want tcp://host:port or unix:///path)", a)
		}
		network, addr = "tcp", a
	}
	if addr == "" {
		return "", "", fmt.Errorf("clamav: bad clamd address %q", a)
	}
	return network, addr, nil
}

// Info returns the engine's identity; Version and DefTime are clamd's as of
// the last Refresh, Loaded is when they last changed. DefTime is "" when clamd reports no database date
// (only unpacked .ndb/.hdb files, no daily database).
func (c *ClamAV) Info() Info {
	c.infoMu.RLock()
	defer c.infoMu.RUnlock()
	return c.info
}

// Refresh asks clamd for its version and database date (VERSION) and
// updates Info. Call it periodically so a long-running process reports the
// definitions clamd currently uses.
func (c *ClamAV) Refresh(ctx context.Context) error {
	reply, err := c.oneShot(ctx, clamdVersion)
	if err != nil {
		return fmt.Errorf("clamav: VERSION: %w", err)
	}
	ver, defTime, err := parseClamdVersion(reply)
	if err != nil {
		return err
	}
	dt := ""
	if !defTime.IsZero() {
		dt = result.FormatTime(defTime)
	}
	c.infoMu.Lock()
	// Loaded moves only when clamd serves other definitions: a refresh
	// that finds the same database is not a new download.
	if c.info.Loaded.IsZero() || c.info.Version != ver || c.info.DefTime != dt {
		c.info.Loaded = now()
	}
	c.info.Version = ver
	c.info.DefTime = dt
	c.infoMu.Unlock()
	return nil
}

// parseClamdVersion reads "ClamAV 1.4.3/27000/Thu Nov 20 08:00:00 2026"
// (or "ClamAV 1.4.3" when clamd has no versioned database).
func parseClamdVersion(reply string) (version string, defTime time.Time, err error) {
	s, ok := strings.CutPrefix(strings.TrimSpace(reply), "ClamAV ")
	if !ok {
		return "", time.Time{}, fmt.Errorf("clamav: unexpected VERSION reply %q", reply)
	}
	parts := strings.SplitN(s, "/", 3)
	version = strings.TrimSpace(parts[0])
	if version == "" {
		return "", time.Time{}, fmt.Errorf("clamav: unexpected VERSION reply %q", reply)
	}
	if len(parts) == 3 {
		// ctime pads the day with a space ("Nov  6"): normalise the spaces.
		date := strings.Join(strings.Fields(parts[2]), " ")
		defTime, err = time.ParseInLocation(clamdDefTimeLayout, date, time.UTC)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("clamav: bad database date in VERSION reply %q: %w", reply, err)
		}
	}
	return version, defTime, nil
}

// Ping checks that clamd answers PING with PONG on a new connection.
func (c *ClamAV) Ping(ctx context.Context) error {
	reply, err := c.oneShot(ctx, clamdPing)
	if err != nil {
		return fmt.Errorf("clamav: PING: %w", err)
	}
	if reply != "PONG" {
		return fmt.Errorf("clamav: PING: unexpected reply %q", reply)
	}
	return nil
}

// Close closes the idle connections; scans still running finish and close
// theirs. The engine must not be used afterwards.
func (c *ClamAV) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	c.mu.Unlock()
	for _, cc := range idle {
		cc.end()
	}
	return nil
}

// oneShot sends one command on a new connection and returns the reply.
func (c *ClamAV) oneShot(ctx context.Context, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	conn, err := c.dial(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", clamCtxErr(ctx, err)
	}
	reply, err := clamdReadReply(bufio.NewReaderSize(conn, 512))
	if err != nil {
		return "", clamCtxErr(ctx, err)
	}
	return reply, nil
}

func (c *ClamAV) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: c.opts.Timeout}
	conn, err := d.DialContext(ctx, c.network, c.addr)
	if err != nil {
		return nil, clamCtxErr(ctx, err)
	}
	return conn, nil
}

// clamConn is one IDSESSION connection.
type clamConn struct {
	conn   net.Conn
	br     *bufio.Reader
	nextID int // request number of the next command's reply
	idleAt time.Time
}

// end closes the session politely (END), then the connection.
func (cc *clamConn) end() {
	_ = cc.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(cc.conn, clamdEnd)
	_ = cc.conn.Close()
}

// get returns a live pooled session, or a new one (reused false).
func (c *ClamAV) get(ctx context.Context) (cc *clamConn, reused bool, err error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, false, errors.New("clamav: engine closed")
		}
		if len(c.idle) == 0 {
			c.mu.Unlock()
			break
		}
		cc = c.idle[len(c.idle)-1]
		c.idle[len(c.idle)-1] = nil
		c.idle = c.idle[:len(c.idle)-1]
		c.mu.Unlock()
		if time.Since(cc.idleAt) < c.opts.IdleTimeout && clamConnAlive(cc.conn) {
			return cc, true, nil
		}
		_ = cc.conn.Close()
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(d)
	}
	if _, err := io.WriteString(conn, clamdIDSession); err != nil {
		_ = conn.Close()
		return nil, false, clamCtxErr(ctx, err)
	}
	return &clamConn{conn: conn, br: bufio.NewReaderSize(conn, 512), nextID: 1}, false, nil
}

// put returns a healthy session to the pool, or closes it when the pool is
// full. Sessions idle too long are pruned on the way.
func (c *ClamAV) put(cc *clamConn) {
	_ = cc.conn.SetDeadline(time.Time{})
	cc.idleAt = time.Now()
	var drop []*clamConn
	c.mu.Lock()
	n := 0
	for _, old := range c.idle {
		if time.Since(old.idleAt) >= c.opts.IdleTimeout {
			drop = append(drop, old)
			continue
		}
		c.idle[n] = old
		n++
	}
	clear(c.idle[n:])
	c.idle = c.idle[:n]
	if c.closed || len(c.idle) >= c.opts.PoolSize {
		drop = append(drop, cc)
	} else {
		c.idle = append(c.idle, cc)
	}
	c.mu.Unlock()
	for _, d := range drop {
		d.end()
	}
}

// clamConnAlive reports whether an idle connection can carry a new command: not
// closed or reset by clamd, and with nothing unread (an idle session only
// gets data when clamd is closing it, e.g. "COMMAND READ TIMED OUT").
func clamConnAlive(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		alive = n < 0 && (rerr == unix.EAGAIN || rerr == unix.EWOULDBLOCK)
		return true // never wait for readiness
	})
	return err == nil && alive
}

// ScanStream streams r to clamd with INSTREAM and returns its verdict:
// Infected with clamd's threat name, NoThreat, or Failed with
// ClamAVSizeLimitThreat (and a nil error) for a file larger than clamd's
// StreamMaxLength. Other problems (clamd unreachable, timeouts, protocol
// errors, clamd ERROR replies) are returned as errors.
//
// r is read synchronously, chunk by chunk, and never buffered beyond one
// chunk. On cancellation (or opts.Timeout) ScanStream stops reading r before
// its next Read and aborts a pending clamd write or read at once; a Read on r
// that blocks is not interrupted (the caller's producer must honour the same
// context).
func (c *ClamAV) ScanStream(ctx context.Context, in *Input, r io.Reader) (Finding, error) {
	if ctx.Err() != nil {
		return Finding{}, context.Cause(ctx)
	}
	limit := c.opts.StreamMaxLength
	if limit > 0 && in != nil && in.Size > limit {
		return Finding{Code: result.Failed, Threat: ClamAVSizeLimitThreat}, nil
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.opts.Timeout,
		fmt.Errorf("clamav: scan timed out after %s: %w", c.opts.Timeout, context.DeadlineExceeded))
	defer cancel()

	bp := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(bp)
	buf := *bp

	// Read the first chunk before taking a connection, so a slow producer
	// does not hold a clamd session, and so it can be resent on a retry.
	n, eof, err := clamReadChunk(ctx, r, buf[clamHeadRoom:clamHeadRoom+c.opts.ChunkSize])
	if err != nil {
		return Finding{}, err
	}
	if limit > 0 && int64(n) > limit {
		return Finding{Code: result.Failed, Threat: ClamAVSizeLimitThreat}, nil
	}
	for attempt := 0; ; attempt++ {
		cc, reused, err := c.get(ctx)
		if err != nil {
			return Finding{}, fmt.Errorf("clamav: connect to clamd at %s: %w", c.opts.Address, err)
		}
		s := &clamInstream{c: c, cc: cc, buf: buf, limit: limit}
		f, err := s.run(ctx, n, eof, r)
		if err == nil && s.reusable {
			c.put(cc)
		} else {
			_ = cc.conn.Close()
		}
		if err != nil && s.retryable && reused && attempt == 0 {
			continue // a stale pooled session: try once on a new one
		}
		return f, err
	}
}

// clamInstream is one INSTREAM exchange on a session.
type clamInstream struct {
	c     *ClamAV
	cc    *clamConn
	buf   []byte // clamHeadRoom + chunk + clamTailRoom
	limit int64
	sent  int64

	reusable  bool // the session may carry another command
	retryable bool // failed on a dead session before consuming past chunk one
}

// run sends the first chunk (buf[clamHeadRoom:clamHeadRoom+n], already read; eof
// says it is the whole file), streams the rest of r, and reads the verdict.
func (s *clamInstream) run(ctx context.Context, n int, eof bool, r io.Reader) (Finding, error) {
	conn := s.cc.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			s.reusable = false // the cancellation hit (or is hitting) the connection
		}
	}()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	id := s.cc.nextID
	s.cc.nextID++

	first := true
	for {
		if s.limit > 0 && s.sent+int64(n) > s.limit {
			return Finding{Code: result.Failed, Threat: ClamAVSizeLimitThreat}, nil
		}
		start, end := len(clamdInstream), clamHeadRoom+n
		if first {
			start = 0
			copy(s.buf, clamdInstream)
		}
		binary.BigEndian.PutUint32(s.buf[len(clamdInstream):clamHeadRoom], uint32(n))
		if eof && n > 0 {
			binary.BigEndian.PutUint32(s.buf[end:end+clamTailRoom], 0)
			end += clamTailRoom
		} // (with n == 0 the length just written is the terminator)
		if _, err := conn.Write(s.buf[start:end]); err != nil {
			s.retryable = first && clamdClosedErr(err)
			return s.writeFailed(ctx, id, err)
		}
		s.sent += int64(n)
		if eof {
			break
		}
		first = false
		var err error
		n, eof, err = clamReadChunk(ctx, r, s.buf[clamHeadRoom:clamHeadRoom+s.c.opts.ChunkSize])
		if err != nil {
			return Finding{}, err
		}
	}

	reply, err := clamdReadReply(s.cc.br)
	if err != nil {
		// The whole file went out in the first write, which is still in buf.
		s.retryable = first && clamdClosedErr(err)
		return Finding{}, fmt.Errorf("clamav: read verdict: %w", clamCtxErr(ctx, err))
	}
	f, ok, err := s.verdict(id, reply)
	if err != nil && first && strings.HasPrefix(reply, "COMMAND READ TIMED OUT") {
		s.retryable = true // clamd timed the idle session out just now
	}
	s.reusable = ok && err == nil
	return f, err
}

// writeFailed explains a failed write. clamd stops reading and closes the
// connection when the stream passes its StreamMaxLength, after saying so
// ("INSTREAM size limit exceeded. ERROR"): read what it said.
func (s *clamInstream) writeFailed(ctx context.Context, id int, werr error) (Finding, error) {
	if ctx.Err() != nil {
		return Finding{}, context.Cause(ctx)
	}
	if clamdClosedErr(werr) {
		_ = s.cc.conn.SetReadDeadline(time.Now().Add(min(2*time.Second, s.c.opts.Timeout)))
		if reply, err := clamdReadReply(s.cc.br); err == nil {
			f, _, verr := s.verdict(id, reply)
			if verr == nil {
				s.retryable = false
				return f, nil
			}
			return Finding{}, fmt.Errorf("clamav: stream to clamd after %d bytes: %w", s.sent, verr)
		}
	}
	if s.limit > 0 && s.sent >= s.limit {
		// A broken pipe once StreamMaxLength bytes are out: the limit.
		return Finding{Code: result.Failed, Threat: ClamAVSizeLimitThreat}, nil
	}
	return Finding{}, fmt.Errorf("clamav: stream to clamd after %d bytes: %w", s.sent, werr)
}

// verdict interprets a reply to INSTREAM request id. ok reports a clean
// OK/FOUND reply after which the session goes on.
func (s *clamInstream) verdict(id int, reply string) (f Finding, ok bool, err error) {
	msg := reply
	if p, rest, found := strings.Cut(reply, ": "); found {
		if got, aerr := strconv.Atoi(p); aerr == nil {
			if got != id {
				return Finding{}, false, fmt.Errorf("clamav: reply to request %d, want %d: %q", got, id, reply)
			}
			msg = rest
		}
	}
	return parseClamdStreamReply(msg)
}

// parseClamdStreamReply interprets an INSTREAM reply without session prefix.
func parseClamdStreamReply(msg string) (f Finding, ok bool, err error) {
	switch {
	case strings.HasSuffix(msg, " ERROR"):
		if strings.Contains(msg, "size limit exceeded") {
			return Finding{Code: result.Failed, Threat: ClamAVSizeLimitThreat}, false, nil
		}
		return Finding{}, false, fmt.Errorf("clamav: clamd: %s", msg)
	case msg == "stream: OK":
		return Finding{Code: result.NoThreat}, true, nil
	case strings.HasPrefix(msg, "stream: ") && strings.HasSuffix(msg, " FOUND"):
		name := strings.TrimSuffix(strings.TrimPrefix(msg, "stream: "), " FOUND")
		name = stripClamdDetectionInfo(name)
		if name == "" {
			return Finding{}, false, fmt.Errorf("clamav: clamd: no threat name in %q", msg)
		}
		return Finding{Code: result.Infected, Threat: name}, true, nil
	}
	return Finding{}, false, fmt.Errorf("clamav: unexpected clamd reply %q", msg)
}

// stripClamdDetectionInfo removes the "(md5:size)" or "(sha256:size)" suffix that
// clamd adds with ExtendedDetectionInfo.
func stripClamdDetectionInfo(name string) string {
	i := strings.LastIndexByte(name, '(')
	if i <= 0 || !strings.HasSuffix(name, ")") {
		return name
	}
	hash, size, ok := strings.Cut(name[i+1:len(name)-1], ":")
	if !ok || len(hash) < 32 || size == "" {
		return name
	}
	for _, r := range hash {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return name
		}
	}
	if _, err := strconv.ParseUint(size, 10, 64); err != nil {
		return name
	}
	return name[:i]
}

// clamReadChunk fills p from r; eof reports the end of r. It checks ctx
// between reads, so a cancelled scan stops reading within one Read.
func clamReadChunk(ctx context.Context, r io.Reader, p []byte) (n int, eof bool, err error) {
	for n < len(p) {
		if ctx.Err() != nil {
			return n, false, context.Cause(ctx)
		}
		m, err := r.Read(p[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return n, true, nil
		}
		if err != nil {
			return n, false, fmt.Errorf("clamav: read file: %w", err)
		}
	}
	return n, false, nil
}

// clamdReadReply reads one reply: up to the NUL of the z-commands, or to the end
// of the connection (some of clamd's messages end in "\n" and a close).
func clamdReadReply(br *bufio.Reader) (string, error) {
	var out []byte
	for {
		b, err := br.ReadSlice(0)
		out = append(out, b...)
		switch {
		case err == nil:
			return string(out[:len(out)-1]), nil
		case errors.Is(err, bufio.ErrBufferFull):
			if len(out) > clamdMaxReply {
				return "", fmt.Errorf("clamd reply longer than %d bytes", clamdMaxReply)
			}
		case errors.Is(err, io.EOF):
			if s := strings.TrimSpace(string(bytes.TrimRight(out, "\x00"))); s != "" {
				return s, nil
			}
			return "", errClamdClosed
		default:
			return "", err
		}
	}
}

// clamdClosedErr reports an error that means clamd closed or reset the
// connection (as opposed to a timeout or a local problem).
func clamdClosedErr(err error) bool {
	return errors.Is(err, errClamdClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// clamCtxErr prefers the context's cause over the I/O error it provoked.
func clamCtxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}
