package batch

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const report = "batch_id: 0123456789abcdef0123456789abcdef\nuser_data: |-\n  a\n  ---\n  b\nbatch_count: 2\n"

// A signed report verifies with the certificate it carries, and any change
// to the report's bytes breaks it.
func TestSignedReportVerifies(t *testing.T) {
	s, err := NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	body, err := s.Envelope([]byte(report))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(body, []byte(report+"---\nsignature_algorithm: ECDSA-SHA256\nsignature: ")) {
		t.Fatalf("body does not start with the report and the signature document:\n%s", body)
	}
	got, sig, cert, err := Split(body)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != report || !bytes.Equal(cert, s.CertificatePEM()) {
		t.Fatalf("Split: report %q, certificate %q", got, cert)
	}
	if err := Verify(got, sig, cert); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	tampered := bytes.Replace(got, []byte("batch_count: 2"), []byte("batch_count: 1"), 1)
	if err := Verify(tampered, sig, cert); err == nil {
		t.Error("a changed report verifies")
	}
	if err := Verify(append(bytes.Clone(got), '\n'), sig, cert); err == nil {
		t.Error("a report with one more byte verifies")
	}
	other, _ := NewEphemeralSigner()
	if err := Verify(got, sig, other.CertificatePEM()); err == nil {
		t.Error("the signature verifies with another certificate")
	}
	for _, bad := range []string{"no newline", "---\nx: 1\n", "a: 1\n---\nb: 2\n"} {
		if _, err := s.Envelope([]byte(bad)); err == nil {
			t.Errorf("Envelope(%q) succeeded", bad)
		}
	}
}

// A generated pair is stored once (the key 0600) and used again after a
// restart; a key left without its certificate gets one.
func TestLoadOrCreateSigner(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, GeneratedKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	b, err := LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.CertificatePEM(), b.CertificatePEM()) {
		t.Error("a restart made a new certificate")
	}
	sig, _ := a.Sign([]byte(report))
	if err := Verify([]byte(report), sig, b.CertificatePEM()); err != nil {
		t.Errorf("a report signed before the restart does not verify after it: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, GeneratedCertFile)); err != nil {
		t.Fatal(err)
	}
	c, err := LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ = c.Sign([]byte(report))
	if err := Verify([]byte(report), sig, a.CertificatePEM()); err != nil {
		t.Errorf("the key changed when its certificate was made again: %v", err)
	}
}

// A configured pair: ECDSA (SEC 1) and RSA (PKCS #1) keys, and a
// certificate that is not for the key, which is refused.
func TestLoadSigner(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	ecCert, err := selfSigned(ec)
	if err != nil {
		t.Fatal(err)
	}
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaCert, err := selfSigned(rk)
	if err != nil {
		t.Fatal(err)
	}
	ecKey := write("ec.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}))
	rsaKey := write("rsa.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}))
	ecCertPath, rsaCertPath := write("ec.crt", ecCert), write("rsa.crt", rsaCert)

	for _, pair := range [][2]string{{ecKey, ecCertPath}, {rsaKey, rsaCertPath}} {
		s, err := LoadSigner(pair[0], pair[1])
		if err != nil {
			t.Fatalf("LoadSigner(%s): %v", pair[0], err)
		}
		body, err := s.Envelope([]byte(report))
		if err != nil {
			t.Fatal(err)
		}
		got, sig, cert, err := Split(body)
		if err != nil || Verify(got, sig, cert) != nil {
			t.Errorf("%s: the signed report does not verify (%v)", s.Algorithm(), err)
		}
	}
	if _, err := LoadSigner(ecKey, rsaCertPath); err == nil || !strings.Contains(err.Error(), "not for the signing key") {
		t.Errorf("a mismatched pair: %v", err)
	}
	if _, err := LoadSigner(filepath.Join(dir, "missing.pem"), ecCertPath); err == nil {
		t.Error("a missing key file is accepted")
	}
}
