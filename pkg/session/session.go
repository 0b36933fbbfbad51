// Package session is the shared view of a multipart or chunked upload
// session, kept in the KV bucket "sessions". The assembler that owns the
// session's partition writes its progress; ingest nodes read it to answer
// status requests and to refuse parts for sessions that are gone, and write
// it for the two changes that must be seen at once on every node: abort,
// and the offsets handed out to sequential chunks.
package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/events"
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
	// order: Reserved is how far offsets have been handed out.
	Chunked  bool  `json:"chunked,omitempty"`
	Reserved int64 `json:"reserved,omitempty"`
	// DuplicateOf is set when a chunked upload turned out to be a file
	// already scanned under the same workflow: no new scan ran.
	DuplicateOf string `json:"duplicate_of,omitempty"`
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
var ErrNotFound = errors.New("upload session not found")

// ErrConflict: the session changed since it was read.
var ErrConflict = errors.New("upload session changed concurrently")

// Store reads and writes sessions with compare-and-set.
type Store struct{ KV jetstream.KeyValue }

// Get returns the session and its revision.
func (s Store) Get(ctx context.Context, dataID string) (*Session, uint64, error) {
	e, err := s.KV.Get(ctx, dataID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("sessions get %s: %w", dataID, err)
	}
	var sess Session
	if err := json.Unmarshal(e.Value(), &sess); err != nil {
		return nil, 0, fmt.Errorf("sessions decode %s: %w", dataID, err)
	}
	return &sess, e.Revision(), nil
}

// Put creates (revision 0) or replaces exactly revision.
func (s Store) Put(ctx context.Context, sess *Session, revision uint64) (uint64, error) {
	b, err := json.Marshal(sess)
	if err != nil {
		return 0, fmt.Errorf("sessions encode: %w", err)
	}
	var rev uint64
	if revision == 0 {
		rev, err = s.KV.Create(ctx, sess.DataID, b)
	} else {
		rev, err = s.KV.Update(ctx, sess.DataID, b, revision)
	}
	if result.IsConflict(err) {
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("sessions put %s: %w", sess.DataID, err)
	}
	return rev, nil
}

// Update applies change to the current session until it lands without a
// conflict. change returns false to leave the session as it is.
func (s Store) Update(ctx context.Context, dataID string, change func(*Session) (bool, error)) (*Session, error) {
	for {
		sess, rev, err := s.Get(ctx, dataID)
		if err != nil {
			return nil, err
		}
		ok, err := change(sess)
		if err != nil || !ok {
			return sess, err
		}
		if _, err := s.Put(ctx, sess, rev); errors.Is(err, ErrConflict) {
			continue
		} else if err != nil {
			return nil, err
		}
		return sess, nil
	}
}
