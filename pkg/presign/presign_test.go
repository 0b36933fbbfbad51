package presign

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const id = "0123456789abcdef0123456789abcdef"

func signer(t *testing.T, key string) *Signer {
	t.Helper()
	s, err := New([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func params(t *testing.T, q string) (expires, sig string) {
	t.Helper()
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	return v.Get(ParamExpires), v.Get(ParamSignature)
}

// A URL is valid for its upload, its part and until its expiry; changing
// any of them, or signing with another key, makes it invalid; past the
// expiry it is expired.
func TestSignAndVerify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := signer(t, strings.Repeat("k", 32))
	exp, sig := params(t, s.Query(id, 3, now.Add(time.Hour)))
	if exp != strconv.FormatInt(now.Add(time.Hour).Unix(), 10) {
		t.Fatalf("expires = %s", exp)
	}
	if err := s.Verify(id, 3, exp, sig, now); err != nil {
		t.Fatalf("a fresh URL: %v", err)
	}
	if err := s.Verify(id, 3, exp, strings.ToUpper(sig), now); err != nil {
		t.Errorf("hex in capitals: %v", err)
	}
	later := strconv.FormatInt(now.Add(2*time.Hour).Unix(), 10)
	other := "fedcba9876543210fedcba9876543210"
	flipped := []byte(sig)
	if flipped[10] == '0' {
		flipped[10] = '1'
	} else {
		flipped[10] = '0'
	}
	for name, err := range map[string]error{
		"another part":          s.Verify(id, 4, exp, sig, now),
		"another upload":        s.Verify(other, 3, exp, sig, now),
		"expiry moved forward":  s.Verify(id, 3, later, sig, now),
		"a flipped digit":       s.Verify(id, 3, exp, string(flipped), now),
		"a truncated signature": s.Verify(id, 3, exp, sig[:len(sig)-2], now),
		"no signature":          s.Verify(id, 3, exp, "", now),
		"not hex":               s.Verify(id, 3, exp, "zz"+sig[2:], now),
		"no expiry":             s.Verify(id, 3, "", sig, now),
		"a negative expiry":     s.Verify(id, 3, "-1", sig, now),
		"another key":           signer(t, strings.Repeat("x", 32)).Verify(id, 3, exp, sig, now),
	} {
		if err != ErrInvalid {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if err := s.Verify(id, 3, exp, sig, now.Add(time.Hour)); err != ErrExpired {
		t.Errorf("at the expiry: %v, want ErrExpired", err)
	}
	if err := s.Verify(id, 3, exp, sig, now.Add(time.Hour-time.Second)); err != nil {
		t.Errorf("a second before the expiry: %v", err)
	}
}

func TestShortKeyRefused(t *testing.T) {
	if _, err := New([]byte("short")); err == nil {
		t.Error("a 5-byte key was accepted")
	}
	if _, _, err := LoadKey("short", t.TempDir()); err == nil {
		t.Error("a 5-character configured key was accepted")
	}
}

// Without a configured key one is generated into the data directory,
// readable by its owner only, and the same key is read on the next start.
func TestLoadKeyGeneratesOnceAndKeeps(t *testing.T) {
	dir := t.TempDir()
	k1, generated, err := LoadKey("", dir)
	if err != nil || !generated || len(k1) < MinKeyLength {
		t.Fatalf("LoadKey = %q, %v, %v", k1, generated, err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, _, err := LoadKey("", dir)
	if err != nil || string(k2) != string(k1) {
		t.Errorf("second start: %q, %v; want the first key", k2, err)
	}
	if other, _, _ := LoadKey("", t.TempDir()); string(other) == string(k1) {
		t.Error("two data directories generated the same key")
	}
	configured := strings.Repeat("c", 40)
	k3, generated, err := LoadKey(configured, dir)
	if err != nil || generated || string(k3) != configured {
		t.Errorf("configured key: %q, %v, %v", k3, generated, err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadKey("", dir); err == nil {
		t.Error("an empty key file was accepted")
	}
}
