package result

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotFound: no record for that data_id.
var ErrNotFound = errors.New("result not found")

// ErrConflict: the record changed since it was read (another writer won).
var ErrConflict = errors.New("result changed concurrently")

// Store reads and writes records in the results bucket with optimistic
// concurrency: every write names the revision it replaces, so a cancel and
// a scanner finishing at the same moment cannot both win.
type Store struct{ KV jetstream.KeyValue }

// Get returns the record of dataID and its revision.
func (s Store) Get(ctx context.Context, dataID string) (*Record, uint64, error) {
	e, err := s.KV.Get(ctx, dataID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("results get %s: %w", dataID, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("results decode %s: %w", dataID, err)
	}
	return &r, e.Revision(), nil
}

// GetRaw returns the stored JSON of dataID's record, for serving without
// decoding and encoding it again.
func (s Store) GetRaw(ctx context.Context, dataID string) ([]byte, error) {
	e, err := s.KV.Get(ctx, dataID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("results get %s: %w", dataID, err)
	}
	return e.Value(), nil
}

// Put writes r: revision 0 creates (ErrConflict if it exists), otherwise it
// replaces exactly that revision (ErrConflict if it moved on).
func (s Store) Put(ctx context.Context, r *Record, revision uint64) (uint64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("results encode: %w", err)
	}
	id := r.Result.DataID
	var rev uint64
	if revision == 0 {
		rev, err = s.KV.Create(ctx, id, b)
	} else {
		rev, err = s.KV.Update(ctx, id, b, revision)
	}
	if IsConflict(err) {
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("results put %s: %w", id, err)
	}
	return rev, nil
}

// IsConflict reports a KV create or update refused because the key exists
// or moved past the expected revision.
func IsConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// ResultJSON extracts the public result from a stored record without a
// full decode.
func ResultJSON(raw []byte) (json.RawMessage, error) {
	var r struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	return r.Result, nil
}
