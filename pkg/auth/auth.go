// Package auth is who is asking: configured users with their roles,
// passwords and static API keys, login sessions kept in JetStream KV (so
// any ingest node accepts a session another one opened), and the rule that
// decides who sees what. It never logs a key or a password.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"runtime"

	"golang.org/x/crypto/bcrypt"

	"github.com/scangate/scangate/pkg/config"
)

// Identity is who a request acts for.
type Identity struct {
	User  string
	Admin bool
	// Session is the key of the login session the request came with ("":
	// a static key, or anonymous).
	Session string
}

// Anonymous is the identity of requests without an apikey, when allowed.
var Anonymous = Identity{User: config.AnonymousUser}

// Sees reports whether id may see a record created by owner. Records from
// before accounts existed carry no owner: they belong to anonymous.
func (id Identity) Sees(owner string) bool {
	if owner == "" {
		owner = config.AnonymousUser
	}
	return id.Admin || id.User == owner
}

// Token is user as a KV key token (base64url: letters, digits, - and _),
// for keys that are per user (the hash index, scan limits).
func Token(user string) string {
	if user == "" {
		user = config.AnonymousUser
	}
	return base64.RawURLEncoding.EncodeToString([]byte(user))
}

// ErrInvalidKey: the apikey is neither a static key nor a live session.
var ErrInvalidKey = errors.New("invalid API key")

type account struct {
	name      string
	admin     bool
	hash      []byte // bcrypt; nil: no login
	scanLimit int
}

// Directory is the configured accounts.
type Directory struct {
	anonymous bool
	accounts  map[string]*account
	keys      map[[32]byte]*account // sha256 of each static key
	defLimit  int
	logins    chan struct{} // bounds bcrypt work running at once
}

// NewDirectory builds the accounts of cfg (already validated).
func NewDirectory(cfg config.AuthConfig) *Directory {
	d := &Directory{anonymous: cfg.Anonymous, accounts: map[string]*account{}, keys: map[[32]byte]*account{},
		defLimit: cfg.ScanLimit,
		// A password check costs tens of milliseconds of CPU by design; a
		// flood of logins must not take the cores scanning needs.
		logins: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))}
	for _, u := range cfg.Users {
		a := &account{name: u.Name, admin: u.Role == config.RoleAdmin, scanLimit: cfg.ScanLimit}
		if u.PasswordHash != "" {
			a.hash = []byte(u.PasswordHash)
		}
		if u.ScanLimit != nil {
			a.scanLimit = *u.ScanLimit
		}
		d.accounts[u.Name] = a
		for _, k := range u.APIKeys {
			d.keys[sha256.Sum256([]byte(k))] = a
		}
	}
	return d
}

// AnonymousAllowed reports whether requests without an apikey are served.
func (d *Directory) AnonymousAllowed() bool { return d.anonymous }

// StaticKey returns the identity of a configured API key. The key is
// compared as its sha256, so the lookup's timing says nothing about how
// much of a guess was right.
func (d *Directory) StaticKey(key string) (Identity, bool) {
	sum := sha256.Sum256([]byte(key))
	a, ok := d.keys[sum]
	if !ok {
		return Identity{}, false
	}
	return Identity{User: a.name, Admin: a.admin}, true
}

// User returns the identity of a configured user, for a login session
// that names it. A user removed from the config since is unknown.
func (d *Directory) User(name string) (Identity, bool) {
	a, ok := d.accounts[name]
	if !ok {
		return Identity{}, false
	}
	return Identity{User: a.name, Admin: a.admin}, true
}

// dummyHash is checked against when the user does not exist, so a wrong
// user name costs the same time as a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("scangate"), bcrypt.DefaultCost)

// CheckPassword reports whether password is user's.
func (d *Directory) CheckPassword(user, password string) (Identity, bool) {
	d.logins <- struct{}{}
	defer func() { <-d.logins }()
	a, ok := d.accounts[user]
	hash := dummyHash
	if ok && a.hash != nil {
		hash = a.hash
	}
	match := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
	if !ok || a.hash == nil || !match {
		return Identity{}, false
	}
	return Identity{User: a.name, Admin: a.admin}, true
}

// ScanLimit is user's files per minute (0: no limit).
func (d *Directory) ScanLimit(user string) int {
	if a, ok := d.accounts[user]; ok {
		return a.scanLimit
	}
	return d.defLimit
}

// HashPassword makes the password_hash of a user's config.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}

// Equal compares two secrets in constant time.
func Equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
