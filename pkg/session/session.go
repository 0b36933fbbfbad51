// Package session is the shared view of a multipart or chunked upload
// session, kept in the KV bucket "sessions". The assembler that owns the
// session's partition is its only writer: ingest nodes send it events
// (open, part, abort) and read the view to answer status requests, to
// refuse parts for sessions that are gone and to learn where the next
// sequential chunk goes.
package session

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/kvjson"
	"github.com/scangate/scangate/pkg/rangeset"
	"github.com/scangate/scangate/pkg/result"
)

// Statuses.
const (
	Uploading = "uploading"
	Complete  = "complete"
	Cancelled = "cancelled"
	TimedOut  = "timed_out"
)

// Session is one upload session.
type Session struct {
	DataID         string          `json:"data_id"`
	Status         string          `json:"status"`
	TotalLength    int64           `json:"total_length"`
	ReceivedLength int64           `json:"received_length"`
	Ranges         rangeset.Set    `json:"ranges"`
	CreatedAt      time.Time       `json:"created_at"`
	ExpiresAt      time.Time       `json:"expires_at"`
	Partition      int             `json:"partition"`
	Meta           events.FileMeta `json:"meta"`
	// Chunked sessions (POST /file with X-File-Size) take bytes in arrival
	// order: each chunk goes where the received prefix ends.
	Chunked bool `json:"chunked,omitempty"`
	// DuplicateOf is set when a chunked upload turned out to be a file
	// already scanned under the same workflow: no new scan ran.
	DuplicateOf string `json:"duplicate_of,omitempty"`
	// Refused lists the stream sequences of the latest chunks that were not
	// appended (they would have passed the declared size), so the request
	// that sent one can say so.
	Refused []uint64 `json:"refused,omitempty"`
	// Presigned is set for pre-signed part uploads (presigned.go).
	Presigned *Presigned `json:"presigned,omitempty"`
	// Seq is the UPLOADS stream sequence of the last event the view
	// reflects. An assembler whose own cache is behind it rebuilds the
	// session from the stream instead of trusting the cache.
	Seq uint64 `json:"seq"`
}

// Open reports whether the session still takes parts at time now.
func (s *Session) Open(now time.Time) bool { return s.Status == Uploading && now.Before(s.ExpiresAt) }

// View is the body of GET /file/multipart/{data_id}: a client resumes by
// sending exactly Missing.
type View struct {
	DataID         string           `json:"data_id"`
	Status         string           `json:"status"`
	TotalLength    int64            `json:"total_length"`
	ReceivedLength int64            `json:"received_length"`
	Ranges         []rangeset.Range `json:"ranges"`
	Missing        []rangeset.Range `json:"missing"`
	CreatedAt      string           `json:"created_at"`
	ExpiresAt      string           `json:"expires_at"`
}

// View returns the public status.
func (s *Session) View() View {
	v := View{DataID: s.DataID, Status: s.Status, TotalLength: s.TotalLength, ReceivedLength: s.Ranges.Covered(),
		Ranges: s.Ranges.Ranges(), Missing: s.Ranges.Missing(s.TotalLength),
		CreatedAt: result.FormatTime(s.CreatedAt), ExpiresAt: result.FormatTime(s.ExpiresAt)}
	if v.Ranges == nil {
		v.Ranges = []rangeset.Range{}
	}
	if v.Missing == nil || s.Status != Uploading {
		v.Missing = []rangeset.Range{}
	}
	return v
}

// ErrNotFound: no session with that id.
var ErrNotFound = kvjson.ErrNotFound

// ErrConflict: the session changed since it was read.
var ErrConflict = kvjson.ErrConflict

// Store reads and writes sessions with compare-and-set (see pkg/kvjson).
type Store struct{ KV jetstream.KeyValue }

func (s Store) kv() kvjson.Store[Session] { return kvjson.Store[Session]{KV: s.KV, Name: "sessions"} }

// Get returns the session and its revision.
func (s Store) Get(ctx context.Context, dataID string) (*Session, uint64, error) {
	return s.kv().Get(ctx, dataID)
}

// Wait returns the session once cond holds for it, watching the view
// (the assembler applies events asynchronously). It gives up when ctx ends.
func (s Store) Wait(ctx context.Context, dataID string, cond func(*Session) bool) (*Session, error) {
	return s.kv().Wait(ctx, dataID, cond)
}

// Put creates (revision 0) or replaces exactly revision.
func (s Store) Put(ctx context.Context, sess *Session, revision uint64) (uint64, error) {
	return s.kv().Put(ctx, sess.DataID, sess, revision)
}
