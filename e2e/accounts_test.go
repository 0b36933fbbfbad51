package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/config"
)

// Keys of the accounts withAccounts configures.
const (
	aliceKey = "alice-key-0123456789"
	bobKey   = "bob-key-0123456789ab"
	adminKey = "admin-key-0123456789"
)

// withAccounts adds users alice and bob and an admin, each with a static
// key; alice and the admin can also log in with password "secret".
func withAccounts(t testing.TB, cfg *config.Config) {
	t.Helper()
	hash, err := auth.HashPassword("secret")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth.Users = []config.User{
		{Name: "alice", Role: config.RoleUser, PasswordHash: hash, APIKeys: []string{aliceKey}},
		{Name: "bob", Role: config.RoleUser, APIKeys: []string{bobKey}},
		{Name: "root", Role: config.RoleAdmin, PasswordHash: hash, APIKeys: []string{adminKey}},
	}
}

// call sends a request with an apikey (none when key is "") and returns
// the status, the decoded JSON body (nil when not JSON) and the headers.
func call(t testing.TB, method, url, key string, body []byte, headers map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("apikey", key)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, url, raw, err)
		}
	}
	return resp.StatusCode, out, resp.Header
}

// A file is its owner's: every endpoint that takes its data_id or hash
// answers another user exactly as for an unknown id, and an admin sees it.
func TestFilesAreTheirOwners(t *testing.T) {
	var hits atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer receiver.Close()
	cfg := testConfig(t)
	withAccounts(t, cfg)
	cfg.Workflows[0].Sanitize.Enabled = true
	n := startNode(t, cfg)
	base := n.URL("")

	// alice's SVG gets sanitized, so /file/converted has something to hide.
	svg := []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><rect width="1" height="1"/></svg>`)
	d := digestsOf(svg)
	callback := receiver.URL + "/hook?token=s3cret"
	code, out, _ := call(t, "POST", base+"/file", aliceKey, svg, map[string]string{"filename": "a.svg", "callbackurl": callback})
	id := str(out["data_id"])
	if code != 200 || id == "" {
		t.Fatalf("alice's upload: %d %v", code, out)
	}
	var final map[string]any
	waitFor(t, "alice's verdict", func() bool {
		_, final, _ = call(t, "GET", base+"/file/"+id, aliceKey, nil, nil)
		return path(final, "scan_results", "progress_percentage") == float64(100)
	})
	if path(final, "process_info", "username") != "alice" {
		t.Errorf("process_info.username = %v, want alice", path(final, "process_info", "username"))
	}
	if got := path(final, "process_info", "post_processing", "actions_ran"); !strings.HasPrefix(str(got), "Sanitized") {
		t.Fatalf("the SVG was not sanitized: %v", got)
	}
	waitFor(t, "the callback", func() bool { return hits.Load() > 0 })

	// What an unknown id gets, endpoint by endpoint.
	unknown := "0123456789abcdef0123456789abcdef"
	endpoints := []struct{ method, path string }{
		{"GET", "/file/%s"},
		{"GET", "/file/converted/%s"},
		{"GET", "/file/webhook/%s"},
		{"GET", "/file/%s/extraction-errors"},
		{"GET", "/file/multipart/%s"},
		{"DELETE", "/file/multipart/%s"},
		{"POST", "/file/%s/cancel"},
	}
	for _, e := range endpoints {
		wantCode, wantBody, _ := call(t, e.method, base+strings.ReplaceAll(e.path, "%s", unknown), bobKey, nil, nil)
		code, body, _ := call(t, e.method, base+strings.ReplaceAll(e.path, "%s", id), bobKey, nil, nil)
		if code != wantCode || !sameExceptID(body, wantBody, id, unknown) {
			t.Errorf("bob %s %s: %d %v; an unknown id gets %d %v", e.method, e.path, code, body, wantCode, wantBody)
		}
	}
	for _, h := range []string{d.md5, d.sha1, d.sha256, d.sha512} {
		code, body, _ := call(t, "GET", base+"/hash/"+h, bobKey, nil, nil)
		if code != 200 || body[h] != "Not Found" {
			t.Errorf("bob GET /hash/%s: %d %v", h[:8], code, body)
		}
		if _, body, _ := call(t, "GET", base+"/hash/"+h, aliceKey, nil, nil); body["data_id"] != id {
			t.Errorf("alice GET /hash/%s: %v, want her data_id", h[:8], body)
		}
		if _, body, _ := call(t, "GET", base+"/hash/"+h, adminKey, nil, nil); body["data_id"] != id {
			t.Errorf("admin GET /hash/%s: %v, want alice's data_id", h[:8], body)
		}
	}
	// Anonymous is a user like any other.
	if _, body, _ := call(t, "GET", base+"/file/"+id, "", nil, nil); body[id] != "Not Found" {
		t.Errorf("anonymous sees alice's file: %v", body)
	}
	// The replay is for admins only, whoever owns the file.
	if code, _, _ := call(t, "POST", base+"/file/webhook/"+id+"/replay", aliceKey, nil, nil); code != 403 {
		t.Errorf("alice replays a webhook: %d, want 403", code)
	}

	// The owner and an admin see it all; the callback's token never shows.
	for _, key := range []string{aliceKey, adminKey} {
		if code, body, _ := call(t, "GET", base+"/file/"+id, key, nil, nil); code != 200 || body["data_id"] != id {
			t.Errorf("GET /file as %s: %d %v", key[:5], code, body)
		}
		code, hdr := getConverted(t, base+"/file/converted/"+id, key)
		if code != 200 || !strings.Contains(hdr.Get("Content-Disposition"), "attachment") {
			t.Errorf("GET /file/converted as %s: %d", key[:5], code)
		}
		code, body, _ := call(t, "GET", base+"/file/webhook/"+id, key, nil, nil)
		if code != 200 || body["url"] != receiver.URL+"/hook" {
			t.Errorf("GET /file/webhook as %s: %d %v, want url %s without its query", key[:5], code, body, receiver.URL+"/hook")
		}
	}
	if code, body, _ := call(t, "POST", base+"/file/webhook/"+id+"/replay", adminKey, nil, nil); code != 200 || body[id] != "replaying" {
		t.Errorf("admin replays: %d %v", code, body)
	}

	// Multipart sessions and sequential chunks, likewise.
	code, out, _ = call(t, "POST", base+"/file/multipart", aliceKey, nil, map[string]string{"total-length": "8"})
	mp := str(out["data_id"])
	if code != 200 {
		t.Fatalf("alice opens a multipart upload: %d %v", code, out)
	}
	part := map[string]string{"content-range": "0-4/8", "Content-Type": "application/octet-stream"}
	if code, body, _ := call(t, "POST", base+"/file/multipart/"+mp, bobKey, []byte("abcd"), part); code != 404 {
		t.Errorf("bob sends a part of alice's upload: %d %v", code, body)
	}
	if code, body, _ := call(t, "GET", base+"/file/multipart/"+mp, aliceKey, nil, nil); code != 200 || num(body["received_length"]) != 0 {
		t.Errorf("alice's session after bob's part: %d %v", code, body)
	}
	code, out, _ = call(t, "POST", base+"/file", aliceKey, []byte("first"), map[string]string{"X-File-Size": "10"})
	chunked := str(out["data_id"])
	if code != 200 || chunked == "" {
		t.Fatalf("alice's first chunk: %d %v", code, out)
	}
	code, body, _ := call(t, "POST", base+"/file", bobKey, []byte("bob's"), map[string]string{"X-File-Size": "10", "X-File-ID": chunked})
	if code != 400 || body["err"] != "Invalid X-File-ID header." {
		t.Errorf("bob appends to alice's chunked upload: %d %v", code, body)
	}
	if code, body, _ := call(t, "DELETE", base+"/file/multipart/"+mp, aliceKey, nil, nil); code != 200 {
		t.Errorf("alice aborts her own upload: %d %v", code, body)
	}
}

// sameExceptID compares two JSON answers, one about id and one about
// unknown, with each id's text swapped for the other.
func sameExceptID(a, b map[string]any, id, unknown string) bool {
	ra, _ := json.Marshal(a)
	rb, _ := json.Marshal(b)
	return strings.ReplaceAll(string(ra), id, unknown) == string(rb)
}

func getConverted(t testing.TB, url, key string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("apikey", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

// Login and logout the way OPSWAT's C++ client sends them: the JSON body
// with an urlencoded content type and an X-File-Size header, and the
// session back in a percent-encoded apikey header.
func TestLoginLogoutAsRealClientsSendThem(t *testing.T) {
	cfg := testConfig(t)
	withAccounts(t, cfg)
	cfg.Auth.Anonymous = false
	n := startNode(t, cfg)
	base := n.URL("")

	body := []byte(`{"user":"alice","password":"secret"}`)
	clientHeaders := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-File-Size": strconv.Itoa(len(body))}
	code, out, _ := call(t, "POST", base+"/login", "", body, clientHeaders)
	sid := str(out["session_id"])
	if code != 200 || sid == "" {
		t.Fatalf("login: %d %v", code, out)
	}
	if code, out, _ := call(t, "POST", base+"/login", "", []byte(`{"user":"alice","password":"wrong"}`), clientHeaders); code != 403 || out["err"] != "Failed to login" {
		t.Errorf("wrong password: %d %v", code, out)
	}
	if code, out, _ := call(t, "POST", base+"/login", "", []byte(`{"user":"nobody","password":"secret"}`), nil); code != 403 || out["err"] != "Failed to login" {
		t.Errorf("unknown user: %d %v", code, out)
	}
	if code, out, _ := call(t, "POST", base+"/login", "", []byte(`{"user":"bob","password":""}`), nil); code != 403 {
		t.Errorf("a user without a password logs in: %d %v", code, out)
	}
	if code, out, _ := call(t, "POST", base+"/login", "", []byte("user=alice&password=secret"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); code != 200 || out["session_id"] == nil {
		t.Errorf("form login: %d %v", code, out)
	}

	// The session works for uploads and lookups, percent-encoded or not.
	encoded := url.PathEscape(sid[:10]) + "%" + strings.ToUpper(strconv.FormatInt(int64(sid[10]), 16)) + sid[11:]
	code, out, _ = call(t, "POST", base+"/file", encoded, []byte("by session"), nil)
	id := str(out["data_id"])
	if code != 200 || id == "" {
		t.Fatalf("upload with the session: %d %v", code, out)
	}
	if _, out, _ := call(t, "GET", base+"/file/"+id, aliceKey, nil, nil); out["data_id"] != id {
		t.Errorf("alice's static key does not see the file her session sent: %v", out)
	}

	// Without a key, anonymous is off: 401. Open paths stay open.
	if code, out, _ := call(t, "GET", base+"/file/"+id, "", nil, nil); code != 401 || out["err"] == nil {
		t.Errorf("no apikey with anonymous off: %d %v", code, out)
	}
	for _, p := range []string{"/readyz", "/livez", "/version"} {
		if code, _, _ := call(t, "GET", base+p, "", nil, nil); code != 200 {
			t.Errorf("GET %s without a key: %d", p, code)
		}
	}

	if code, out, _ := call(t, "POST", base+"/logout", sid, nil, nil); code != 200 || out["response"] != "Logout success" {
		t.Fatalf("logout: %d %v", code, out)
	}
	if code, out, _ := call(t, "GET", base+"/file/"+id, sid, nil, nil); code != 401 {
		t.Errorf("the session after logout: %d %v", code, out)
	}
	if code, _, _ := call(t, "POST", base+"/logout", aliceKey, nil, nil); code != 400 {
		t.Errorf("logout with a static key: %d", code)
	}
}

// A key that was sent must be valid, even where anonymous is allowed: a
// client with an expired session hears so instead of silently acting as
// anonymous and losing sight of its files.
func TestInvalidKeyIsRefusedEvenWithAnonymous(t *testing.T) {
	cfg := testConfig(t)
	withAccounts(t, cfg)
	n := startNode(t, cfg)
	for _, key := range []string{"not-a-key", strings.Repeat("a", 64), aliceKey + "x"} {
		if code, out, _ := call(t, "GET", n.URL("/stat/engines"), key, nil, nil); code != 401 || out["err"] != "Invalid API key" {
			t.Errorf("apikey %q: %d %v", key, code, out)
		}
	}
	if code, _, _ := call(t, "GET", n.URL("/stat/engines"), "", nil, nil); code != 200 {
		t.Errorf("anonymous: %d", code)
	}
}

// Over the files per minute of a user: 403 Scan limit reached with a
// Retry-After; other users are unaffected. (That the
// next window takes files again is TestScanLimitRecovers, in ingest, with
// a short window.)
func TestScanLimit(t *testing.T) {
	cfg := testConfig(t)
	withAccounts(t, cfg)
	three := 3
	cfg.Auth.Users[0].ScanLimit = &three // alice
	n := startNode(t, cfg)
	base := n.URL("")

	var code int
	var out map[string]any
	var hdr http.Header
	for attempt := 0; ; attempt++ {
		minute := time.Now().Unix() / 60
		for i := range 3 {
			if code, out, _ := call(t, "POST", base+"/file", aliceKey, []byte("file "+strconv.Itoa(i)), nil); code != 200 && time.Now().Unix()/60 == minute {
				t.Fatalf("upload %d within the limit: %d %v", i, code, out)
			}
		}
		code, out, hdr = call(t, "POST", base+"/file", aliceKey, []byte("one too many"), nil)
		if time.Now().Unix()/60 == minute {
			break
		}
		if attempt == 2 {
			t.Fatal("the uploads keep spanning two minutes")
		}
	}
	if code != 403 || out["err"] != "Scan limit reached" {
		t.Fatalf("upload over the limit: %d %v", code, out)
	}
	ra, err := strconv.Atoi(hdr.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q, want 1..60 seconds", hdr.Get("Retry-After"))
	}
	if code, out, _ := call(t, "POST", base+"/file/multipart", aliceKey, nil, map[string]string{"total-length": "10"}); code != 403 {
		t.Errorf("a multipart upload over the limit: %d %v", code, out)
	}
	if code, out, _ := call(t, "POST", base+"/file", bobKey, []byte("bob is not limited"), nil); code != 200 {
		t.Errorf("bob's upload: %d %v", code, out)
	}
}

// One client address cannot take every connection: past its share it is
// answered 403 and closed, while other clients still get in.
func TestConnectionsPerClient(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxConnectionsPerClient = 4
	n := startNode(t, cfg)
	addr := n.Addr().String()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Four connections that each served a request, so they are counted.
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufioReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d: %v %v", len(conns), resp, err)
		}
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := http.ReadResponse(bufioReader(c), nil)
	if err != nil {
		t.Fatalf("the fifth connection: %v", err)
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || !strings.Contains(string(raw), "exceeded number of allowed clients") {
		t.Errorf("the fifth connection: %d %s", resp.StatusCode, raw)
	}
	// Another address (::1 or 127.0.0.2) is not counted with them.
	other, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, net.TCPAddrFromAddrPort(netipAddrPort(t, addr)))
	if err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	defer other.Close()
	if _, err := other.Write([]byte("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufioReader(other), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("another client: %v %v", resp, err)
	}
	// A connection that closes frees its place.
	conns[0].Close()
	conns = conns[1:]
	waitFor(t, "a freed place to be taken", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"))
		resp, err := http.ReadResponse(bufioReader(c), nil)
		return err == nil && resp.StatusCode == 200
	})
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func netipAddrPort(t testing.TB, addr string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// GET /admin/license answers admins only, with the fields clients parse.
func TestAdminLicense(t *testing.T) {
	cfg := testConfig(t)
	withAccounts(t, cfg)
	n := startNode(t, cfg)
	if code, _, _ := call(t, "GET", n.URL("/admin/license"), aliceKey, nil, nil); code != 403 {
		t.Errorf("a user reads the license: %d", code)
	}
	if code, _, _ := call(t, "GET", n.URL("/admin/license"), "", nil, nil); code != 403 {
		t.Errorf("anonymous reads the license: %d", code)
	}
	code, out, _ := call(t, "GET", n.URL("/admin/license"), adminKey, nil, nil)
	if code != 200 {
		t.Fatalf("admin: %d %v", code, out)
	}
	if d, ok := out["days_left"].(float64); !ok || d < 365 || d != float64(int64(d)) {
		t.Errorf("days_left = %v, want a large positive integer", out["days_left"])
	}
	if out["online_activated"] != true {
		t.Errorf("online_activated = %v", out["online_activated"])
	}
	for _, f := range []string{"product_name", "licensed_to", "expiration", "deployment"} {
		if s, ok := out[f].(string); !ok || s == "" {
			t.Errorf("%s = %v, want a non-empty string", f, out[f])
		}
	}
	if _, ok := out["max_node_count"].(float64); !ok {
		t.Errorf("max_node_count = %v, want an integer", out["max_node_count"])
	}
	_, again, _ := call(t, "GET", n.URL("/admin/license"), adminKey, nil, nil)
	if again["deployment"] != out["deployment"] {
		t.Errorf("deployment changed between calls: %v, %v", out["deployment"], again["deployment"])
	}
}
