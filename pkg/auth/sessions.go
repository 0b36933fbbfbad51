package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/kvjson"
)

// Sessions are login sessions in the KV bucket "logins", written only by
// ingest nodes. The bucket's max age is the session TTL, so a session not
// used for that long is gone from every node; each use that finds a
// tenth of the TTL gone rewrites it, which slides the window without a
// write per request.
type Sessions struct {
	KV  jetstream.KeyValue
	TTL time.Duration
}

type login struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
}

func (s Sessions) store() kvjson.Store[login] { return kvjson.Store[login]{KV: s.KV, Name: "logins"} }

// key is what the bucket holds for a session id: its sha256, so whoever
// can read the bucket cannot use what they read.
func key(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// Create opens a session for user and returns its id (256 random bits).
func (s Sessions) Create(ctx context.Context, user string, now time.Time) (string, error) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if _, err := s.store().Put(ctx, key(id), &login{User: user, Expires: now.Add(s.TTL)}, 0); err != nil {
		return "", err
	}
	return id, nil
}

// Resolve returns the user of a live session, extending it; ErrInvalidKey
// when there is none (never opened, logged out, expired).
func (s Sessions) Resolve(ctx context.Context, id string, now time.Time) (string, error) {
	if len(id) != 64 {
		return "", ErrInvalidKey // not something Create makes: no lookup
	}
	k := key(id)
	l, rev, err := s.store().Get(ctx, k)
	if errors.Is(err, kvjson.ErrNotFound) {
		return "", ErrInvalidKey
	}
	if err != nil {
		return "", err
	}
	if !now.Before(l.Expires) {
		return "", ErrInvalidKey
	}
	if l.Expires.Sub(now) < s.TTL-s.TTL/10 {
		// A lost race (another node extended it, or it was logged out
		// meanwhile) changes nothing: the other write stands.
		_, _ = s.store().Put(ctx, k, &login{User: l.User, Expires: now.Add(s.TTL)}, rev)
	}
	return l.User, nil
}

// Delete ends a session (logout). Ending one that is gone is no error.
func (s Sessions) Delete(ctx context.Context, id string) error {
	err := s.KV.Delete(ctx, key(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}
