package netguard

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckURL(t *testing.T) {
	good := []string{
		"http://example.com",
		"https://example.com:8443/hook?x=1",
		"HTTPS://Example.COM/x",
		"http://10.0.0.1/x", // shape only; LiteralForbidden decides about the address
		"http://[2001:4860::8888]:80/",
	}
	for _, raw := range good {
		if _, err := CheckURL(raw); err != nil {
			t.Errorf("CheckURL(%q) = %v, want ok", raw, err)
		}
	}
	bad := []string{
		"",
		"not a url",
		"/relative/path",
		"example.com/x",
		"ftp://example.com/x",
		"javascript:alert(1)",
		"file:///etc/passwd",
		"http://",
		"http:///path",
		"http://user:pass@example.com/",
		"http://user@example.com/",
		"http://example.com:0/",
		"http://example.com:99999/",
		"http://exa mple.com/",
		"http://example.com/" + strings.Repeat("a", MaxURLLength),
	}
	for _, raw := range bad {
		_, err := CheckURL(raw)
		if err == nil {
			t.Errorf("CheckURL(%q) ok, want an error", raw)
		} else if !errors.Is(err, ErrInvalidURL) {
			t.Errorf("CheckURL(%q) = %v, want it to wrap ErrInvalidURL", raw, err)
		}
	}
}

// An IPv4 address may be written only as a canonical dotted quad. Legacy
// forms (inet_aton: 1 to 4 parts, decimal, octal or hex) and anything else
// whose last label is a number are what resolvers and browsers turn into an
// address, so they are refused outright, private or not; a canonical
// address goes on to LiteralForbidden.
func TestCheckURLIPv4Forms(t *testing.T) {
	cases := map[string]bool{ // host → accepted
		"127.0.0.1":           true,
		"10.0.0.1":            true,
		"8.8.8.8":             true,
		"0.0.0.0":             true,
		"[::1]":               true,
		"[::ffff:127.0.0.1]":  true,
		"[::ffff:7f00:1]":     true,
		"example.com":         true,
		"example.com.":        true,
		"1.2.3.4.example.com": true,
		"0x7f.example.com":    true,
		"a.0xg":               true, // not a hex number: a name
		"127.1":               false,
		"127.0.1":             false,
		"0x7f.1":              false,
		"0X7F.0.0.1":          false,
		"0x7f000001":          false,
		"2130706433":          false,
		"0177.0.0.1":          false,
		"0177.1":              false,
		"127.0.0.01":          false,
		"127.0.0.1.":          false,
		"0x7f.0.0x0.1":        false,
		"0x7f.0.0.1.":         false,
		"017700000001":        false,
		"1.2.3.4.5":           false,
		"256.0.0.1":           false,
		"8.8.8.08":            false,
		"0x":                  false, // 0.0.0.0 to a browser
		"example.123":         false, // no registrable name ends in a number
		"example.0x1f":        false,
		"１２７。０。０。１":           false, // full-width digits and ideographic dots map to 127.0.0.1
		"１０.０.０.１":            false,
	}
	for host, ok := range cases {
		raw := "http://" + host + ":8080/hook"
		_, err := CheckURL(raw)
		switch {
		case ok && err != nil:
			t.Errorf("CheckURL(%q) = %v, want ok", raw, err)
		case !ok && err == nil:
			t.Errorf("CheckURL(%q) ok, want it refused", raw)
		case !ok && !errors.Is(err, ErrInvalidURL):
			t.Errorf("CheckURL(%q) = %v, want it to wrap ErrInvalidURL", raw, err)
		}
	}
}

func TestLiteralForbidden(t *testing.T) {
	cases := map[string]bool{
		"http://localhost/":                true,
		"http://LOCALHOST./":               true,
		"http://api.localhost/":            true,
		"http://127.0.0.1:8080/":           true,
		"http://10.1.2.3/":                 true,
		"http://172.16.0.1/":               true,
		"http://192.168.1.1/":              true,
		"http://169.254.169.254/latest":    true,
		"http://100.64.0.1/":               true, // CGNAT
		"http://0.0.0.0/":                  true,
		"http://224.0.0.1/":                true,
		"http://[::1]/":                    true,
		"http://[::]/":                     true,
		"http://[fe80::1%25eth0]/":         true,
		"http://[fd00::1]/":                true, // ULA
		"http://[::ffff:127.0.0.1]/":       true,
		"http://[::ffff:10.0.0.1]/":        true,
		"http://ＬＯＣＡＬＨＯＳＴ/":                true, // what a browser or Go's client calls "localhost"
		"http://api.ｌｏｃａｌｈｏｓｔ/":            true,
		"http://8.8.8.8/":                  false,
		"http://[2001:4860:4860::8888]/":   false,
		"http://example.com/":              false, // names are checked when dialled
		"http://localhost.example.com/":    false,
		"https://hooks.example.org:8443/x": false,
	}
	for raw, want := range cases {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if got := LiteralForbidden(u); got != want {
			t.Errorf("LiteralForbidden(%s) = %v, want %v", raw, got, want)
		}
	}
}

// receiver counts the requests it gets.
func receiver(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func post(c *http.Client, target string) error {
	resp, err := c.Post(target, "application/json", strings.NewReader(`{}`))
	if err == nil {
		resp.Body.Close()
	}
	return err
}

func TestClientRefusesPrivateTargets(t *testing.T) {
	srv, hits := receiver(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	c := NewClient(false, 2*time.Second)

	targets := []string{
		srv.URL,                              // literal 127.0.0.1
		"http://localhost:" + port + "/hook", // a name that resolves to loopback
		"http://10.255.255.1:" + port + "/",  // private; refused before any packet leaves
		"http://169.254.169.254/latest/meta-data",
		"http://[::1]:" + port + "/",
	}
	for _, target := range targets {
		err := post(c, target)
		if err == nil {
			t.Errorf("POST %s succeeded, want it refused", target)
			continue
		}
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("POST %s: %v, want an error wrapping ErrForbidden", target, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("receiver got %d requests, want none", n)
	}
}

func TestClientAllowsPrivateWhenConfigured(t *testing.T) {
	srv, hits := receiver(t)
	c := NewClient(true, 2*time.Second)
	if err := post(c, srv.URL+"/hook"); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Fatalf("receiver got %d requests, want 1", hits.Load())
	}
}

// A webhook is a POST: following a redirect would turn it into a GET
// without the body somewhere else. The client hands the 3xx back instead,
// wherever it points.
func TestClientDoesNotFollowRedirects(t *testing.T) {
	target, targetHits := receiver(t)
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/moved", code)
		}))
		for _, allowPrivate := range []bool{true, false} {
			c := NewClient(allowPrivate, 2*time.Second)
			// Let the dial to the redirector through (it is on loopback),
			// as if it were a public receiver: redirects are under test.
			c.Transport = NewClient(true, 2*time.Second).Transport
			resp, err := c.Post(redirector.URL, "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Errorf("%d, allowPrivate %v: %v, want the redirect response", code, allowPrivate, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != code || resp.Header.Get("Location") != target.URL+"/moved" {
				t.Errorf("%d, allowPrivate %v: got %d to %q, want the redirect itself", code, allowPrivate,
					resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		redirector.Close()
	}
	if n := targetHits.Load(); n != 0 {
		t.Errorf("redirect target got %d requests, want none", n)
	}
}

// What a client reads back about its webhook names no address: neither
// the one its host name resolved to nor the one that was refused.
func TestDescribeHidesAddresses(t *testing.T) {
	srv, _ := receiver(t)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	// "localhost" resolves to loopback: refused by the guard.
	refused := post(NewClient(false, 2*time.Second), "http://localhost:"+strconv.Itoa(port)+"/")
	// Nothing listens on a closed port: connection refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	dialFailed := post(NewClient(true, 2*time.Second), "http://"+closed+"/")
	for _, c := range []struct {
		err  error
		want string
	}{
		{refused, "loopback, private or link-local"},
		{dialFailed, "refused the connection"},
		{&net.DNSError{Err: "no such host", Name: "internal.corp", Server: "10.0.0.53:53"}, "could not be resolved"},
	} {
		if c.err == nil {
			t.Fatalf("no error to describe (want %q)", c.want)
		}
		got := Describe(c.err)
		if !strings.Contains(got, c.want) {
			t.Errorf("Describe(%v) = %q, want %q", c.err, got, c.want)
		}
		for _, leak := range []string{"127.0.0.1", "::1", "10.0.0.53", closed, "internal.corp"} {
			if strings.Contains(got, leak) {
				t.Errorf("Describe(%v) = %q reveals %s", c.err, got, leak)
			}
		}
	}
}

func TestRedact(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hooks.example.com/in?token=s3cret":     "https://hooks.example.com/in",
		"https://user:pw@hooks.example.com/in#frag":     "https://hooks.example.com/in",
		"http://hooks.example.com:8080/a/b?":            "http://hooks.example.com:8080/a/b",
		"https://hooks.example.com/p%20q?x=1&token=abc": "https://hooks.example.com/p%20q",
		"%zz": "",
	} {
		if got := Redact(raw); got != want {
			t.Errorf("Redact(%q) = %q, want %q", raw, got, want)
		}
	}
}
