package ingest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// DefaultMaxConnections caps open HTTP connections when Options leave it
// unset: well below the file descriptors a process usually gets, so the
// blob store and NATS keep theirs.
const DefaultMaxConnections = 10000

// listener is what ingest serves on. It caps the open connections, rides
// out a shortage of file descriptors or kernel memory instead of ending
// Serve, and hands out connections whose every read has the idle timeout.
// Accept is called from one goroutine (fasthttp's Serve loop).
type listener struct {
	net.Listener
	max       int64
	perClient int
	idle      time.Duration
	log       zerolog.Logger

	open      atomic.Int64
	clientsMu sync.Mutex
	clients   map[netip.Addr]int // open connections per client address
	closed    chan struct{}
	closeOnce sync.Once

	acceptLog, refuseLog rateLimit
}

func newListener(ln net.Listener, maxConns, perClient int, idle time.Duration, log zerolog.Logger) *listener {
	return &listener{Listener: ln, max: int64(maxConns), perClient: perClient, idle: idle, log: log,
		clients: map[netip.Addr]int{}, closed: make(chan struct{})}
}

// clientAddr is the address connections are counted under: IPv6 clients
// by their /64, which one host usually has whole.
func clientAddr(c net.Conn) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	return a, true
}

// admitClient counts a connection under its client address, refusing it
// when that client holds its share already. It returns the release.
func (l *listener) admitClient(c net.Conn) (release func(), ok bool) {
	a, known := clientAddr(c)
	if !known {
		return func() {}, true // not TCP/IP (tests over pipes): nothing to share
	}
	l.clientsMu.Lock()
	defer l.clientsMu.Unlock()
	if l.clients[a] >= l.perClient {
		return nil, false
	}
	l.clients[a]++
	return func() {
		l.clientsMu.Lock()
		defer l.clientsMu.Unlock()
		if l.clients[a]--; l.clients[a] <= 0 {
			delete(l.clients, a)
		}
	}, true
}

const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

func (l *listener) Accept() (net.Conn, error) {
	backoff := minAcceptBackoff
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !transientAcceptError(err) {
				return nil, err
			}
			if skipped, ok := l.acceptLog.allow(); ok {
				l.log.Error().Err(err).Int("suppressed", skipped).Dur("retry_in", backoff).Msg("accepting connections failed; retrying")
			}
			select {
			case <-l.closed:
				return nil, net.ErrClosed
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxAcceptBackoff)
			continue
		}
		backoff = minAcceptBackoff
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refuse(c, tooBusy, "connection refused: too many open connections")
			continue
		}
		releaseClient, ok := l.admitClient(c)
		if !ok {
			l.open.Add(-1)
			l.refuse(c, tooManyFromClient, "connection refused: too many open connections from one client")
			continue
		}
		return &clientConn{Conn: c, idle: l.idle, release: func() { releaseClient(); l.open.Add(-1) }}, nil
	}
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// transientAcceptError recognises the accept failures that pass once
// connections close or memory frees up.
func transientAcceptError(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// tooBusy is the whole answer to a connection over the cap.
var tooBusy = func() string {
	body := `{"err":"Server is too busy. Try again later."}`
	return fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json\r\n"+
		"Retry-After: %s\r\nContent-Length: %d\r\n\r\n%s", retryAfter, len(body), body)
}()

// tooManyFromClient answers a connection over its client's share
// (MetaDefender's answer for too many simultaneous clients).
var tooManyFromClient = func() string {
	body := `{"err":"exceeded number of allowed clients"}`
	return fmt.Sprintf("HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: application/json\r\n"+
		"Retry-After: %s\r\nContent-Length: %d\r\n\r\n%s", retryAfter, len(body), body)
}()

// refuse answers a connection over a cap without reading from it; a
// client's socket buffer takes the few bytes, so the write does not wait.
func (l *listener) refuse(c net.Conn, answer, why string) {
	if skipped, ok := l.refuseLog.allow(); ok {
		l.log.Warn().Int64("max_connections", l.max).Int("max_connections_per_client", l.perClient).
			Str("remote", c.RemoteAddr().String()).Int("suppressed", skipped).Msg(why)
	}
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c, answer)
	_ = c.Close()
}

// rateLimit lets one log line through per interval and counts the rest.
type rateLimit struct {
	last    time.Time
	skipped int
}

const logInterval = 10 * time.Second

func (r *rateLimit) allow() (skipped int, ok bool) {
	if now := time.Now(); now.Sub(r.last) >= logInterval {
		skipped, r.last, r.skipped = r.skipped, now, 0
		return skipped, true
	}
	r.skipped++
	return 0, false
}

// clientConn gives every read its own idle deadline, so a client is cut off
// after the idle timeout without a byte, however long its whole request
// takes — headers, body or the wait for the next request. A deadline set
// on the connection (an abort cutting a read short, a bounded drain) still
// applies when it is sooner.
type clientConn struct {
	net.Conn
	idle    time.Duration
	release func()

	mu       sync.Mutex
	deadline time.Time // set through SetReadDeadline
	readBy   time.Time // idle deadline of the current read
	linger   bool

	closeOnce sync.Once
	closeErr  error
}

func (c *clientConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.readBy = time.Now().Add(c.idle)
	err := c.Conn.SetReadDeadline(sooner(c.deadline, c.readBy))
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetReadDeadline(sooner(t, c.readBy))
}

func (c *clientConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// sooner is the earlier of two deadlines, zero meaning none.
func sooner(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// lingerOnClose makes Close wait a moment for the client. Closing a socket
// with unread bytes in it resets the connection, and the reset can discard
// the answer before the client has read it: a client still sending a body
// we will not read would see "connection reset" instead of our error.
func (c *clientConn) lingerOnClose() {
	c.mu.Lock()
	c.linger = true
	c.mu.Unlock()
}

// lingerTime bounds how long a closing connection reads what the client
// still sends, so that the answer it was given reaches it.
const lingerTime = 500 * time.Millisecond

func (c *clientConn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		linger := c.linger
		c.mu.Unlock()
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && linger {
			_ = cw.CloseWrite()
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
			_, _ = io.Copy(io.Discard, c.Conn)
		}
		c.closeErr = c.Conn.Close()
		c.release()
	})
	return c.closeErr
}
