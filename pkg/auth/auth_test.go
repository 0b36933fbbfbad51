package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/rs/zerolog"
	"github.com/scangate/scangate/internal/bustest"
	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
)

func directory(t *testing.T) *auth.Directory {
	t.Helper()
	hash, err := auth.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	ten := 10
	return auth.NewDirectory(config.AuthConfig{ScanLimit: 5, Users: []config.User{
		{Name: "ops", Role: config.RoleAdmin, PasswordHash: hash, APIKeys: []string{"ops-key-0123456789"}},
		{Name: "robot", Role: config.RoleUser, APIKeys: []string{"robot-key-0123456789"}, ScanLimit: &ten},
	}})
}

func TestPasswordsAndKeys(t *testing.T) {
	d := directory(t)
	if id, ok := d.CheckPassword("ops", "correct horse"); !ok || id.User != "ops" || !id.Admin {
		t.Errorf("right password: %+v %v", id, ok)
	}
	for _, c := range [][2]string{{"ops", "wrong"}, {"nobody", "correct horse"}, {"robot", ""}, {"", ""}} {
		if _, ok := d.CheckPassword(c[0], c[1]); ok {
			t.Errorf("CheckPassword(%q, %q) accepted", c[0], c[1])
		}
	}
	if id, ok := d.StaticKey("robot-key-0123456789"); !ok || id.User != "robot" || id.Admin {
		t.Errorf("robot's key: %+v %v", id, ok)
	}
	for _, k := range []string{"", "robot-key-012345678", "robot-key-0123456789 ", "ROBOT-KEY-0123456789"} {
		if _, ok := d.StaticKey(k); ok {
			t.Errorf("StaticKey(%q) accepted", k)
		}
	}
	if d.ScanLimit("robot") != 10 || d.ScanLimit("ops") != 5 || d.ScanLimit(config.AnonymousUser) != 5 {
		t.Errorf("scan limits: robot %d, ops %d, anonymous %d", d.ScanLimit("robot"), d.ScanLimit("ops"), d.ScanLimit(config.AnonymousUser))
	}
}

func TestSees(t *testing.T) {
	alice := auth.Identity{User: "alice"}
	admin := auth.Identity{User: "ops", Admin: true}
	for _, c := range []struct {
		id    auth.Identity
		owner string
		want  bool
	}{
		{alice, "alice", true}, {alice, "bob", false}, {alice, "", false},
		{auth.Anonymous, "", true}, {auth.Anonymous, config.AnonymousUser, true}, {auth.Anonymous, "alice", false},
		{admin, "alice", true}, {admin, "", true},
	} {
		if got := c.id.Sees(c.owner); got != c.want {
			t.Errorf("%q sees a file of %q: %v, want %v", c.id.User, c.owner, got, c.want)
		}
	}
	if auth.Token("a.b") == auth.Token("a_b") || auth.Token("") != auth.Token(config.AnonymousUser) {
		t.Error("tokens collide, or anonymous has two")
	}
}

// A session lives while it is used: each use after a tenth of the TTL
// extends it; unused for the TTL it is gone; logged out it is gone at once.
func TestSessionsSlideAndEnd(t *testing.T) {
	b := bustest.Open(t, bus.Options{SessionTTL: time.Hour})
	s := &auth.Sessions{KV: b.Logins, TTL: time.Hour}
	ctx := context.Background()
	t0 := time.Now()
	id, err := s.Create(ctx, "ops", t0)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := s.Resolve(ctx, id, t0.Add(50*time.Minute)); err != nil || u != "ops" {
		t.Fatalf("within the TTL: %q %v", u, err)
	}
	// That use slid the end to 1h50m.
	if u, err := s.Resolve(ctx, id, t0.Add(100*time.Minute)); err != nil || u != "ops" {
		t.Fatalf("after a slide: %q %v", u, err)
	}
	if _, err := s.Resolve(ctx, id, t0.Add(200*time.Minute+time.Second)); !errors.Is(err, auth.ErrInvalidKey) {
		t.Errorf("unused for longer than the TTL: %v", err)
	}
	id2, _ := s.Create(ctx, "ops", t0)
	if err := s.Delete(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(ctx, id2, t0); !errors.Is(err, auth.ErrInvalidKey) {
		t.Errorf("after logout: %v", err)
	}
	if _, err := s.Resolve(ctx, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", t0); !errors.Is(err, auth.ErrInvalidKey) {
		t.Errorf("a session never opened: %v", err)
	}
	if st, err := b.Logins.Status(ctx); err != nil || st.TTL() != time.Hour {
		t.Errorf("the logins bucket keeps entries for %v, want the session TTL", st.TTL())
	}
}

// Two nodes cache the sessions they resolve; a logout on one ends the
// session on the other at once (through the bucket watch), not when the
// other's cache would have aged out.
func TestLogoutReachesOtherNodesCache(t *testing.T) {
	b := bustest.Open(t, bus.Options{SessionTTL: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodeA := &auth.Sessions{KV: b.Logins, TTL: time.Hour, CacheFor: time.Hour}
	nodeB := &auth.Sessions{KV: b.Logins, TTL: time.Hour, CacheFor: time.Hour}
	for _, n := range []*auth.Sessions{nodeA, nodeB} {
		go n.Watch(ctx, zerolog.Nop())
	}
	id, err := nodeA.Create(ctx, "ops", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// B resolves it until it serves it from its cache: a cached answer
	// survives the KV entry's removal behind the watch's back.
	if !testwait.Until(10*time.Second, func() bool {
		if u, err := nodeB.Resolve(ctx, id, time.Now()); err != nil || u != "ops" {
			t.Fatalf("B resolves: %q %v", u, err)
		}
		return nodeB.Cached(id)
	}) {
		t.Fatal("B never cached the session (is its watch running?)")
	}
	if err := nodeA.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeA.Resolve(ctx, id, time.Now()); !errors.Is(err, auth.ErrInvalidKey) {
		t.Errorf("A after its own logout: %v", err)
	}
	var lastErr error
	if !testwait.Until(10*time.Second, func() bool {
		_, lastErr = nodeB.Resolve(ctx, id, time.Now())
		return errors.Is(lastErr, auth.ErrInvalidKey)
	}) {
		t.Fatalf("B still accepts the session after the logout on A: %v", lastErr)
	}
}

// NATS unreachable is not a logged-out session: Resolve reports the
// failure (ingest answers 503, try again) and never ErrInvalidKey (a 401
// would tell a client with a live session to log in again).
func TestResolveWithoutNATSIsNoInvalidKey(t *testing.T) {
	b := bustest.Open(t, bus.Options{SessionTTL: time.Hour})
	s := &auth.Sessions{KV: b.Logins, TTL: time.Hour}
	ctx := context.Background()
	id, err := s.Create(ctx, "ops", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.NC.Close()
	_, err = s.Resolve(ctx, id, time.Now())
	if err == nil || errors.Is(err, auth.ErrInvalidKey) {
		t.Fatalf("Resolve with NATS gone: %v, want an error that is not ErrInvalidKey", err)
	}
}
