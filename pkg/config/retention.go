package config

import (
	"fmt"
	"math"
	"time"
)

// RetentionConfig bounds how long scangate keeps what it stored about a
// file once it is done with it, so that nothing grows without bound.
type RetentionConfig struct {
	// Results is how long a scan result (KV results), a hash index entry
	// (KV hashes) and an upload session's status (KV sessions) live after
	// their last write. A result is rewritten as its file progresses, so
	// for a finished file this is the time since its verdict.
	Results time.Duration `yaml:"results"`
	// Webhooks is how long a webhook delivery state (KV webhooks) lives
	// after its last write (its last attempt).
	Webhooks time.Duration `yaml:"webhooks"`
	// Originals is how long a stored original file (the blob named by its
	// data_id) is kept after both its last write and its result's last
	// change: for a scanned file, after its verdict.
	Originals time.Duration `yaml:"originals"`
	// Sanitized is how long a sanitized output is kept, counted the same way.
	Sanitized time.Duration `yaml:"sanitized"`
}

// MinRetention is the shortest retention accepted. Below it an expiry
// would race the writes it follows, and the blob sweeper could not keep
// up (it runs a few times per retention).
const MinRetention = time.Second

// defaultChunkedTTL is the life of a sequential-chunk upload under a
// workflow without a multipart ttl (multipart off): ingest gives it an hour.
const defaultChunkedTTL = time.Hour

// SessionTTL is how long an upload session under w may stay open: its
// multipart ttl, which sequential-chunk uploads follow too.
func (w Workflow) SessionTTL() time.Duration {
	if w.Multipart.TTL > 0 {
		return w.Multipart.TTL
	}
	return defaultChunkedTTL
}

// LongestSession is the longest an upload session may stay open under any
// workflow, and the index of that workflow (-1 without workflows).
func (c *Config) LongestSession() (time.Duration, int) {
	var longest time.Duration
	at := -1
	for i, w := range c.Workflows {
		if ttl := w.SessionTTL(); ttl > longest {
			longest, at = ttl, i
		}
	}
	return longest, at
}

// LongestDelivery bounds how long one webhook is retried: every attempt
// taking its whole timeout and every wait between attempts the longest
// retry interval. Notifiers read the file's result at each attempt and
// rewrite the delivery state after it, so both must outlive this.
func (w WebhooksConfig) LongestDelivery() time.Duration {
	attempts := int64(max(w.MaxAttempts, 1))
	return addDur(mulDur(attempts-1, w.Retry.MaxInterval), mulDur(attempts, w.Timeout))
}

// mulDur and addDur saturate instead of wrapping around: a huge
// max_attempts means "practically for ever", not a negative duration.
func mulDur(n int64, d time.Duration) time.Duration {
	if n <= 0 || d <= 0 {
		return 0
	}
	if n > math.MaxInt64/int64(d) {
		return math.MaxInt64
	}
	return time.Duration(n) * d
}

func addDur(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// validateRetention checks that nothing is dropped while it is still in
// use: a retention is a promise about finished work, never a limit on work
// under way.
func (c *Config) validateRetention(bad func(format string, a ...any)) {
	r := c.Retention
	for _, f := range []struct {
		key string
		d   time.Duration
	}{
		{"retention.results", r.Results},
		{"retention.webhooks", r.Webhooks},
		{"retention.originals", r.Originals},
		{"retention.sanitized", r.Sanitized},
	} {
		if f.d < MinRetention {
			bad("%s: want at least %v (scangate keeps nothing for ever), got %v", f.key, MinRetention, f.d)
		}
	}
	if r.Results < MinRetention || r.Webhooks < MinRetention || r.Originals < MinRetention {
		return // the bounds below would only repeat it
	}
	session, wi := c.LongestSession()
	sessionKey := "the default chunked-upload time to live"
	if wi >= 0 {
		sessionKey = fmt.Sprintf("workflows[%d].multipart.ttl", wi)
	}
	// A stored original is swept only once its file is scanned; the sweeper
	// checks that in the streams, but bytes are also written before any
	// event names them (a part, a chunk, a whole-file upload in flight, a
	// nested archive extracted during a scan). Outlasting an upload session
	// and a scan covers every such window.
	if floor := session + c.Scanner.Timeout; c.Scanner.Timeout > 0 && r.Originals <= floor {
		bad("retention.originals: %v is too short: it must outlast the longest upload session (%s, %v) plus scanner.timeout (%v), "+
			"so a file still uploading or waiting to be scanned never loses its bytes; want more than %v",
			r.Originals, sessionKey, session, c.Scanner.Timeout, floor)
	}
	// A session's status and its file's "uploading" result are written when
	// it opens and may not be rewritten until its deadline.
	if r.Results <= session {
		bad("retention.results: %v is too short: an upload session's status and result are written when it opens and must "+
			"last until it ends (the longest session: %s, %v); want more than %v", r.Results, sessionKey, session, session)
	}
	delivery := c.Webhooks.LongestDelivery()
	if r.Results < delivery {
		bad("retention.results: %v is too short: a webhook delivery reads the file's result at every attempt, and retries "+
			"last up to %v ((webhooks.max_attempts-1) x webhooks.retry.max_interval + webhooks.max_attempts x webhooks.timeout); "+
			"want at least %v", r.Results, delivery, delivery)
	}
	if r.Webhooks < delivery {
		bad("retention.webhooks: %v is too short: a delivery's state must outlast its retries, up to %v "+
			"((webhooks.max_attempts-1) x webhooks.retry.max_interval + webhooks.max_attempts x webhooks.timeout); want at least %v",
			r.Webhooks, delivery, delivery)
	}
}
