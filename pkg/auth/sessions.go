package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/kvjson"
)

// Sessions are login sessions in the KV bucket "logins", written only by
// ingest nodes. The bucket's max age is the session TTL, so a session not
// used for that long is gone from every node; each use that finds a
// tenth of the TTL gone rewrites it, which slides the window without a
// write per request.
//
// Clients poll with their session as apikey, so each node keeps the
// sessions it resolved for a few seconds (CacheFor) instead of reading KV
// on every request. A logout anywhere reaches every node's cache through
// a watch of the bucket; while that watch is not running, nothing is
// cached.
type Sessions struct {
	KV  jetstream.KeyValue
	TTL time.Duration
	// CacheFor is how long a resolved session is trusted without reading
	// KV again (0: never cached).
	CacheFor time.Duration

	mu       sync.Mutex
	cache    map[string]cached // by bucket key
	watching bool
	gen      uint64 // changes seen by the watch: a read that spans one is not cached
}

type cached struct {
	user    string
	expires time.Time // the session's own end
	until   time.Time // when to read KV again
}

// Watch keeps the cache honest until ctx ends: every change to the bucket
// (a logout, an expiry, another node's refresh) drops that session from
// the cache. A broken watch is started again; meanwhile nothing is cached.
func (s *Sessions) Watch(ctx context.Context, log zerolog.Logger) {
	if s.CacheFor <= 0 {
		return
	}
	for ctx.Err() == nil {
		w, err := s.KV.WatchAll(ctx, jetstream.UpdatesOnly())
		if err == nil {
			err = s.follow(ctx, w)
			_ = w.Stop()
		}
		s.setWatching(false)
		if ctx.Err() != nil {
			return
		}
		log.Warn().Err(err).Msg("watching login sessions failed; sessions are read from KV on every request until it runs again")
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// follow evicts every key the watch reports, until the watch ends.
func (s *Sessions) follow(ctx context.Context, w jetstream.KeyWatcher) error {
	// Every entry, a put (another node slid it) or a delete (a logout, an
	// expiry), evicts its key.
	s.setWatching(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if e == nil {
				continue // the end of the initial values (none: updates only)
			}
			s.mu.Lock()
			delete(s.cache, e.Key())
			s.gen++
			s.mu.Unlock()
		}
	}
}

func (s *Sessions) setWatching(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watching = on
	s.gen++
	s.cache = nil // what was cached before or while the watch was down is read again
}

// fromCache returns a cached session, or the generation to hand
// remember after reading KV.
func (s *Sessions) fromCache(k string, now time.Time) (user string, gen uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cache[k]
	if !ok || !s.watching || !now.Before(c.until) || !now.Before(c.expires) {
		return "", s.gen, false
	}
	return c.user, s.gen, true
}

// remember caches what a KV read found, unless the watch saw a change
// since the read began (it may have been this session's logout).
func (s *Sessions) remember(k, user string, expires, now time.Time, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.watching || s.CacheFor <= 0 || s.gen != gen {
		return
	}
	if s.cache == nil {
		s.cache = map[string]cached{}
	}
	if len(s.cache) >= maxCached {
		clear(s.cache) // crude, and rare: more live sessions than this on one node
	}
	s.cache[k] = cached{user: user, expires: expires, until: now.Add(s.CacheFor)}
}

// maxCached bounds the cache of one node.
const maxCached = 100000

type login struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
}

func (s *Sessions) store() kvjson.Store[login] { return kvjson.Store[login]{KV: s.KV, Name: "logins"} }

// key is what the bucket holds for a session id: its sha256, so whoever
// can read the bucket cannot use what they read.
func key(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// Create opens a session for user and returns its id (256 random bits).
func (s *Sessions) Create(ctx context.Context, user string, now time.Time) (string, error) {
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
func (s *Sessions) Resolve(ctx context.Context, id string, now time.Time) (string, error) {
	if len(id) != 64 {
		return "", ErrInvalidKey // not something Create makes: no lookup
	}
	k := key(id)
	user, gen, ok := s.fromCache(k, now)
	if ok {
		return user, nil
	}
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
	expires := l.Expires
	if l.Expires.Sub(now) < s.TTL-s.TTL/10 {
		// A lost race (another node extended it, or it was logged out
		// meanwhile) changes nothing: the other write stands.
		if _, err := s.store().Put(ctx, k, &login{User: l.User, Expires: now.Add(s.TTL)}, rev); err == nil {
			expires = now.Add(s.TTL)
		}
	}
	s.remember(k, l.User, expires, now, gen)
	return l.User, nil
}

// Delete ends a session (logout). Ending one that is gone is no error.
func (s *Sessions) Delete(ctx context.Context, id string) error {
	k := key(id)
	s.mu.Lock()
	delete(s.cache, k) // this node answers the next request right; the watch tells the others
	s.gen++
	s.mu.Unlock()
	err := s.KV.Delete(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// Cached reports whether session id would be answered from the cache.
func (s *Sessions) Cached(id string) bool {
	_, _, ok := s.fromCache(key(id), time.Now())
	return ok
}
