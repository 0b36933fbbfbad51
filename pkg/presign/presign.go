// Package presign signs and checks the URLs of pre-signed part uploads
// (PUT /file/v1/files/upload/parts/{id}/{partNumber}?expires=..&signature=..).
// Such a URL is its own credential: whoever holds it may upload that one
// part of that one upload until it expires, with no apikey. The signature is
// an HMAC-SHA256 over the upload id, the part number and the expiry, with a
// key every ingest node shares, so any node accepts a URL any node issued.
package presign

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/scangate/scangate/pkg/atomicfile"
)

// Query parameter names of a signed URL.
const (
	ParamExpires   = "expires"   // Unix seconds
	ParamSignature = "signature" // hex HMAC-SHA256
)

var (
	// ErrInvalid: the signature does not match what the URL says (a
	// tampered id, part number or expiry, or a key that is not ours).
	ErrInvalid = errors.New("invalid signature")
	// ErrExpired: the URL was signed by us and its time is up.
	ErrExpired = errors.New("signed URL expired")
)

// MinKeyLength is the shortest configured key accepted: a key is what stands
// between anyone on the network and every upload's parts.
const MinKeyLength = 32

// Signer signs and checks part URLs with one key.
type Signer struct{ key []byte }

// New returns a Signer with key (at least MinKeyLength bytes).
func New(key []byte) (*Signer, error) {
	if len(key) < MinKeyLength {
		return nil, fmt.Errorf("presigned key: want at least %d bytes, got %d", MinKeyLength, len(key))
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// mac is the signature of one part URL. The fields are joined with a
// separator none of them contains, under a label, so no other message
// scangate might ever sign with the key can collide with it.
func (s *Signer) mac(id string, part int, expires int64) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("scangate presigned part v1\n"))
	m.Write([]byte(id))
	m.Write([]byte{'\n'})
	m.Write([]byte(strconv.Itoa(part)))
	m.Write([]byte{'\n'})
	m.Write([]byte(strconv.FormatInt(expires, 10)))
	return m.Sum(nil)
}

// Query is the query string that signs part of upload id until expires
// (rounded down to the second).
func (s *Signer) Query(id string, part int, expires time.Time) string {
	exp := expires.Unix()
	return ParamExpires + "=" + strconv.FormatInt(exp, 10) + "&" + ParamSignature + "=" + hex.EncodeToString(s.mac(id, part, exp))
}

// Verify checks the expires and signature parameters of a URL for part of
// upload id at time now. The signature is checked first and in constant
// time: an expiry moved forward is ErrInvalid, not a valid URL.
func (s *Signer) Verify(id string, part int, expires, signature string, now time.Time) error {
	exp, err := strconv.ParseInt(expires, 10, 64)
	if err != nil || exp <= 0 {
		return ErrInvalid
	}
	sig, err := hex.DecodeString(signature)
	if err != nil || !hmac.Equal(sig, s.mac(id, part, exp)) {
		return ErrInvalid
	}
	if !now.Before(time.Unix(exp, 0)) {
		return ErrExpired
	}
	return nil
}

// KeyFile is the file, in the data directory, that holds the key a node
// generated because none was configured.
const KeyFile = "presigned.key"

// LoadKey returns the configured key or, when there is none, the one kept
// in dataDir/presigned.key, generating it (32 random bytes, hex, mode 0600)
// on the first start. A generated key is this data directory's alone:
// generated reports that, so the caller can warn that nodes sharing an
// upload must be configured with one key.
func LoadKey(configured, dataDir string) (key []byte, generated bool, err error) {
	if configured != "" {
		if len(configured) < MinKeyLength {
			return nil, false, fmt.Errorf("presigned.key: want at least %d characters", MinKeyLength)
		}
		return []byte(configured), false, nil
	}
	path := filepath.Join(dataDir, KeyFile)
	raw, err := os.ReadFile(path)
	if err == nil {
		k := strings.TrimSpace(string(raw))
		if len(k) < MinKeyLength {
			return nil, false, fmt.Errorf("%s: holds no key (delete it to have one generated)", path)
		}
		return []byte(k), true, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("presigned key: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, false, fmt.Errorf("presigned key: %w", err)
	}
	k := hex.EncodeToString(b[:])
	// Written whole or not at all, and only if no other process sharing
	// the data directory wrote one first: URLs handed out must stay valid
	// across a restart, so the key must survive a crash right after it
	// was first used, and every process must sign with the same one.
	written, err := atomicfile.WriteNew(path, []byte(k+"\n"), 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("presigned key: %w", err)
	}
	if !written {
		return LoadKey("", dataDir)
	}
	return []byte(k), true, nil
}
