// Package netguard keeps scangate from being used to reach places its
// operators did not mean to expose: loopback, private networks, link-local
// and metadata services (SSRF). Ingest uses it to refuse bad webhook URLs
// early; the notifier dials through it, so the address actually connected to
// is checked, whatever a name resolves to.
package netguard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"code.dny.dev/ssrf"
	"golang.org/x/net/idna"
)

// MaxURLLength bounds a target URL; longer ones are refused.
const MaxURLLength = 2048

// ErrInvalidURL: the URL is not an absolute http(s) URL scangate will call.
var ErrInvalidURL = errors.New("invalid target URL")

// ErrForbidden: the target is (or resolved to) an address in a range that
// is not allowed.
var ErrForbidden = errors.New("forbidden target address")

// guardian holds the library's denied sets (IANA special-purpose IPv4
// ranges, everything outside IPv6 global unicast, ...). Any port and any
// network: webhook receivers listen wherever they like, and the network is
// always TCP here anyway.
var guardian = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())

// CheckURL parses raw and checks that it is something scangate may call: an
// absolute http or https URL with a host, no userinfo, at most MaxURLLength
// bytes, and an IPv4 address only as a canonical dotted quad. Errors wrap
// ErrInvalidURL.
func CheckURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidURL)
	}
	if len(raw) > MaxURLLength {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidURL, MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: scheme %q is not http or https", ErrInvalidURL, u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: no host", ErrInvalidURL)
	}
	// Credentials in a URL end up in logs and in the delivery state we serve.
	if u.User != nil {
		return nil, fmt.Errorf("%w: must not contain user info", ErrInvalidURL)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: port %q out of range", ErrInvalidURL, p)
		}
	}
	// Resolvers (inet_aton) and browsers read 127.1, 0x7f.1, 2130706433,
	// 0177.0.0.1 and 127.0.0.1. as 127.0.0.1. Rather than follow every
	// spelling, such a host is refused unless it is the dotted quad
	// netip parses (LiteralForbidden then judges the address).
	if _, err := netip.ParseAddr(u.Hostname()); err != nil && endsInNumber(asciiHost(u.Hostname())) {
		return nil, fmt.Errorf("%w: host %q is an IPv4 address not written as a dotted quad", ErrInvalidURL, u.Hostname())
	}
	return u, nil
}

// endsInNumber reports whether a host is meant as an IPv4 address: its last
// label (ignoring one trailing dot) is a decimal or 0x-hex number. It is the
// URL Standard's test; no top-level domain is a number.
func endsInNumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if hex, ok := strings.CutPrefix(last, "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}

// asciiHost is host as clients look it up: lower case and, for an
// internationalised name, IDNA-mapped, as Go's HTTP client and browsers do
// ("１２７。０。０。１" is 127.0.0.1, "ＬＯＣＡＬＨＯＳＴ" is localhost).
func asciiHost(host string) string {
	host = strings.ToLower(host)
	if strings.ContainsFunc(host, func(r rune) bool { return r >= utf8.RuneSelf }) {
		if a, err := idna.Lookup.ToASCII(host); err == nil {
			return a
		}
	}
	return host
}

// LiteralForbidden reports whether u's host is, without any DNS lookup, a
// forbidden destination: "localhost" (and names under it, RFC 6761) or a
// literal IP in a denied range. Names are not resolved here — the answer
// could change before the dial — the client from NewClient checks those.
func LiteralForbidden(u *url.URL) bool {
	host := strings.TrimSuffix(asciiHost(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false // a name
	}
	return guardian.SafeAddr(ip.Unmap()) != nil
}

// NewClient returns an HTTP client for calling user-supplied URLs. Unless
// allowPrivate, every connection it opens is checked against the denied
// ranges at dial time, on the resolved address, so DNS tricks (a name
// resolving to 127.0.0.1, rebinding) do not get through. It follows no
// redirects: the 3xx is the caller's answer (a redirected POST arrives as a
// GET without its body, somewhere the caller never chose). timeout bounds a
// whole request.
func NewClient(allowPrivate bool, timeout time.Duration) *http.Client {
	dialer := NewDialer(allowPrivate, timeout)
	transport := &http.Transport{
		// No proxy from the environment: the guard would then check the
		// proxy's address, and the proxy would happily reach private targets.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// NewDialer returns a dialer for user-supplied targets: unless
// allowPrivate, every connection it opens is checked against the denied
// ranges on the address actually dialled, after any DNS lookup. timeout
// bounds each connect.
func NewDialer(allowPrivate bool, timeout time.Duration) *net.Dialer {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = control
	}
	return dialer
}

// control is the dialer hook: it sees the IP and port about to be connected.
func control(network, address string, c syscall.RawConn) error {
	if err := guardian.Safe(network, address, c); err != nil {
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	return nil
}

// Redact is raw as scangate shows it back: without userinfo, query string
// or fragment, which commonly carry tokens (a callback URL's ?token=).
// What cannot be parsed is not shown at all.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// Describe says why a request to a target failed in words fit for the
// client who named the target: the kind of failure, never the addresses
// a name resolved to or that were refused (those reveal the network
// scangate runs in, and belong in operators' logs only).
func Describe(err error) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var unknownAuth x509.UnknownAuthorityError
	var recordErr tls.RecordHeaderError
	var timeout interface{ Timeout() bool }
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrForbidden):
		return "the target is a loopback, private or link-local address"
	case errors.Is(err, ErrInvalidURL):
		return "the target URL is invalid"
	case errors.As(err, &dnsErr):
		return "the target's host name could not be resolved"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the target refused the connection"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return "the target reset the connection"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return "the target is unreachable"
	case errors.As(err, &certErr) || errors.As(err, &hostErr) || errors.As(err, &unknownAuth):
		return "the target's TLS certificate is not valid for it"
	case errors.As(err, &recordErr):
		return "the target does not speak TLS"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &timeout) && timeout.Timeout():
		return "the target did not answer in time"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "the target closed the connection without an answer"
	}
	return "the request to the target failed"
}
