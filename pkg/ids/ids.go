// Package ids makes and checks scangate's identifiers: data_id, batch_id and
// file_id are 32 lowercase hex characters (128 random bits), URL- and
// NATS-subject-safe.
package ids

import (
	"crypto/rand"
	"encoding/hex"
)

// New returns a fresh random identifier.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Valid reports whether s has the shape of an identifier scangate issues.
// Anything else is refused before it reaches a key, a subject or a path.
func Valid(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
