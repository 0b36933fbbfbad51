package config

import (
	"net/url"
	"time"
)

// PresignedConfig configures pre-signed part uploads
// (/file/v1/files/upload/parts).
type PresignedConfig struct {
	// Key signs part URLs (HMAC-SHA256), at least 32 characters. Every
	// ingest node of a deployment must have the same one: a URL is
	// checked by whichever node the client reaches. Empty: each node
	// generates its own into data_dir/presigned.key on first start, which
	// is enough for one node (or one data directory) only.
	Key string `yaml:"key"`
	// URLTTL is how long a signed URL stays valid, at most until its
	// upload's multipart ttl ends.
	URLTTL time.Duration `yaml:"url_ttl"`
	// MinPartSize: at complete, a part smaller than this that is not the
	// last is refused, naming it.
	MinPartSize ByteSize `yaml:"min_part_size"`
	// MaxParts is the highest part number. Each part is an entry in the
	// upload's session view, which must stay well below the NATS message
	// size limit.
	MaxParts int `yaml:"max_parts"`
	// BaseURL is where clients reach the API, for the signed URLs, e.g.
	// https://scan.example.com. Empty: the scheme and host of the request
	// that asked for them (X-Forwarded-Proto and X-Forwarded-Host
	// included).
	BaseURL string `yaml:"base_url"`
}

// MaxPresignedParts bounds presigned.max_parts: the session view of an
// upload with this many parts, and as many reported ETags, is about 640
// KB, within NATS's default 1 MiB message limit.
const MaxPresignedParts = 5000

// MinPresignedKey is the shortest presigned.key accepted.
const MinPresignedKey = 32

func (p PresignedConfig) validate(bad func(string, ...any)) {
	if p.Key != "" && len(p.Key) < MinPresignedKey {
		bad("presigned.key: want at least %d characters (or empty: one is generated into data_dir)", MinPresignedKey)
	}
	if p.URLTTL < time.Second {
		bad("presigned.url_ttl: want at least 1s, got %v", p.URLTTL)
	}
	if p.MinPartSize < 1 {
		bad("presigned.min_part_size: must be at least 1 byte")
	}
	if p.MaxParts < 1 || p.MaxParts > MaxPresignedParts {
		bad("presigned.max_parts: want 1..%d, got %d", MaxPresignedParts, p.MaxParts)
	}
	if p.BaseURL != "" && !validBaseURL(p.BaseURL) {
		bad("presigned.base_url: want an http(s) URL without query or fragment, got %q", p.BaseURL)
	}
}

func validBaseURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.RawQuery == "" && u.Fragment == "" && u.User == nil
}
