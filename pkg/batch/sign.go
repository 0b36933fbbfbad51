package batch

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scangate/scangate/pkg/atomicfile"
)

// A signed report is two YAML documents in one body:
//
//	<report>---\n<signature document>
//
// The signature is over the exact bytes of <report>: from the first byte
// of the body up to and including the newline before the line "---". The
// report never contains a line that is exactly "---" (YAML would quote or
// indent any such text), so cutting at the first such line finds it. The
// digest is SHA-256; with an ECDSA key the signature is ASN.1 DER (r, s),
// with an RSA key PKCS #1 v1.5 — both what `openssl dgst -sha256 -verify`
// checks.

// separator starts the signature document.
const separator = "---\n"

// Files a generated key pair is kept in, under the data dir.
const (
	GeneratedKeyFile  = "batch-signing-key.pem"
	GeneratedCertFile = "batch-signing-cert.pem"
)

// Signer signs batch reports with a private key whose certificate it
// hands out with every signature.
type Signer struct {
	key     crypto.Signer
	certPEM []byte
	alg     string
}

// Algorithm names the signature scheme, as the signature document states it.
func (s *Signer) Algorithm() string { return s.alg }

// CertificatePEM is the signing certificate, PEM-encoded.
func (s *Signer) CertificatePEM() []byte { return s.certPEM }

// Sign signs the SHA-256 digest of doc.
func (s *Signer) Sign(doc []byte) ([]byte, error) {
	sum := sha256.Sum256(doc)
	return s.key.Sign(rand.Reader, sum[:], crypto.SHA256)
}

// Envelope returns report followed by its signature document. report must
// end with a newline.
func (s *Signer) Envelope(report []byte) ([]byte, error) {
	if len(report) == 0 || report[len(report)-1] != '\n' {
		return nil, errors.New("a report must end with a newline")
	}
	if bytes.HasPrefix(report, []byte(separator)) || bytes.Contains(report, []byte("\n"+separator)) {
		return nil, errors.New(`a report must not contain a "---" line`)
	}
	sig, err := s.Sign(report)
	if err != nil {
		return nil, fmt.Errorf("signing the batch report: %w", err)
	}
	var b bytes.Buffer
	b.Grow(len(report) + 2*len(s.certPEM))
	b.Write(report)
	b.WriteString(separator)
	b.WriteString("signature_algorithm: " + s.alg + "\n")
	b.WriteString("signature: " + base64.StdEncoding.EncodeToString(sig) + "\n")
	b.WriteString("certificate: |\n")
	for line := range strings.Lines(string(s.certPEM)) {
		b.WriteString("  " + line)
	}
	return b.Bytes(), nil
}

// Split takes a signed report apart: the report's exact bytes, the
// signature, and the certificate (PEM) the body names.
func Split(body []byte) (report, sig, certPEM []byte, err error) {
	i := bytes.Index(body, []byte("\n"+separator))
	if i < 0 {
		return nil, nil, nil, errors.New("no signature document")
	}
	report, rest := body[:i+1], body[i+1+len(separator):]
	var inCert bool
	var cert bytes.Buffer
	for line := range strings.Lines(string(rest)) {
		switch {
		case inCert && strings.HasPrefix(line, "  "):
			cert.WriteString(line[2:])
		case strings.HasPrefix(line, "signature: "):
			inCert = false
			if sig, err = base64.StdEncoding.DecodeString(strings.TrimSpace(strings.TrimPrefix(line, "signature: "))); err != nil {
				return nil, nil, nil, fmt.Errorf("signature: %w", err)
			}
		case strings.HasPrefix(line, "certificate: |"):
			inCert = true
		default:
			inCert = false
		}
	}
	if sig == nil || cert.Len() == 0 {
		return nil, nil, nil, errors.New("the signature document lacks signature or certificate")
	}
	return report, sig, cert.Bytes(), nil
}

// Verify checks that sig is the signature of report by the key of the
// certificate certPEM. Whoever verifies must also trust that certificate:
// compare it with the one the operator publishes.
func Verify(report, sig, certPEM []byte) error {
	cert, err := parseCert(certPEM)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(report)
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, sum[:], sig) {
			return errors.New("ECDSA signature does not match")
		}
		return nil
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig)
	}
	return fmt.Errorf("unsupported public key %T", cert.PublicKey)
}

// OpenSigner is the signer a node's configuration names: the configured
// pair (batches.signing_key and batches.certificate), or else the pair
// generated into dataDir.
func OpenSigner(keyPath, certPath, dataDir string) (*Signer, error) {
	if keyPath != "" || certPath != "" {
		return LoadSigner(keyPath, certPath)
	}
	return LoadOrCreateSigner(dataDir)
}

// LoadSigner reads a configured key pair: a PEM private key (PKCS #8,
// SEC 1 EC or PKCS #1 RSA) and the PEM certificate of its public key.
func LoadSigner(keyPath, certPath string) (*Signer, error) {
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("batches.signing_key: %w", err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("batches.certificate: %w", err)
	}
	return newSigner(keyPEM, certPEM)
}

// LoadOrCreateSigner reads the key pair generated into dir, generating and
// storing it first if there is none: an ECDSA P-256 key (mode 0600) and a
// self-signed certificate for it. A key found without its certificate (a
// start that stopped half-way) gets a new certificate; a key is never
// replaced, so reports signed before a restart still verify.
func LoadOrCreateSigner(dir string) (*Signer, error) {
	keyPath, certPath := filepath.Join(dir, GeneratedKeyFile), filepath.Join(dir, GeneratedCertFile)
	keyPEM, err := readOrCreate(keyPath, 0o600, func() ([]byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	})
	if err != nil {
		return nil, fmt.Errorf("batch signing key: %w", err)
	}
	certPEM, err := readOrCreate(certPath, 0o644, func() ([]byte, error) {
		key, err := parseKey(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyPath, err)
		}
		return selfSigned(key)
	})
	if err != nil {
		return nil, fmt.Errorf("batch signing certificate: %w", err)
	}
	return newSigner(keyPEM, certPEM)
}

// readOrCreate reads path, first storing what create makes when there is
// no such file. Of two processes creating it at once, one file wins and
// both read it.
func readOrCreate(path string, mode os.FileMode, create func() ([]byte, error)) ([]byte, error) {
	data, err := os.ReadFile(path)
	if !errors.Is(err, os.ErrNotExist) {
		return data, err
	}
	if data, err = create(); err != nil {
		return nil, err
	}
	if _, err := atomicfile.WriteNew(path, data, mode); err != nil {
		return nil, fmt.Errorf("storing %s: %w", path, err)
	}
	return os.ReadFile(path)
}

// NewEphemeralSigner makes a key pair that lives as long as the process:
// for a server built without a configured or stored pair (tests, embedding).
func NewEphemeralSigner() (*Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := selfSigned(key)
	if err != nil {
		return nil, err
	}
	return &Signer{key: key, certPEM: cert, alg: algorithm(key)}, nil
}

func newSigner(keyPEM, certPEM []byte) (*Signer, error) {
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("batch signing key: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("batch signing certificate: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("the batch signing certificate is not for the signing key")
	}
	// Hand out the certificate alone, normalised, whatever else its file held.
	return &Signer{key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), alg: algorithm(key)}, nil
}

func algorithm(key crypto.Signer) string {
	if _, ok := key.(*rsa.PrivateKey); ok {
		return "RSA-PKCS1v15-SHA256"
	}
	return "ECDSA-SHA256"
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("an RSA key of %d bits is too weak (want at least 2048)", k.N.BitLen())
		}
		return k, nil
	}
	// Ed25519 signs the message itself, not a SHA-256 digest: openssl dgst
	// -sha256 could not check it.
	return nil, fmt.Errorf("unsupported key type %T (want ECDSA or RSA)", key)
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// selfSigned makes a certificate for key, signed by itself.
func selfSigned(key crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "scangate batch reports", Organization: []string{"scangate"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("batch signing certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
