package result

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/kvjson"
)

// ErrNotFound: no record for that data_id.
var ErrNotFound = kvjson.ErrNotFound

// ErrConflict: the record changed since it was read (another writer won).
var ErrConflict = kvjson.ErrConflict

// Store reads and writes records in the results bucket. Only the recorder
// writes (with compare-and-set, so an owner that lost its partition while
// writing cannot overwrite the next one's record); every other role reads.
type Store struct {
	KV jetstream.KeyValue
	// Commit, when set, group-commits writes (the recorder's, see
	// bus.Committer).
	Commit func(context.Context, *nats.Msg) (*jetstream.PubAck, error)
}

func (s Store) kv() kvjson.Store[Record] {
	return kvjson.Store[Record]{KV: s.KV, Name: "results", Commit: s.Commit}
}

// Get returns the record of dataID and its revision.
func (s Store) Get(ctx context.Context, dataID string) (*Record, uint64, error) {
	return s.kv().Get(ctx, dataID)
}

// GetRaw returns the stored JSON of dataID's record, for serving without
// decoding and encoding it again, and its revision.
func (s Store) GetRaw(ctx context.Context, dataID string) ([]byte, uint64, error) {
	return s.kv().GetRaw(ctx, dataID)
}

// Put writes r: revision 0 creates (ErrConflict if it exists), otherwise it
// replaces exactly that revision (ErrConflict if it moved on).
func (s Store) Put(ctx context.Context, r *Record, revision uint64) (uint64, error) {
	return s.kv().Put(ctx, r.Result.DataID, r, revision)
}

// Wait returns dataID's record once cond holds for it, watching the key.
func (s Store) Wait(ctx context.Context, dataID string, cond func(*Record) bool) (*Record, error) {
	return s.kv().Wait(ctx, dataID, cond)
}

// ResultJSON extracts the public result from a stored record without a
// full decode.
func ResultJSON(raw []byte) (json.RawMessage, error) {
	body, _, err := OwnedResultJSON(raw)
	return body, err
}

// OwnedResultJSON extracts the public result and the user it belongs to
// (meta.username) from a stored record without a full decode.
func OwnedResultJSON(raw []byte) (body json.RawMessage, owner string, err error) {
	var r struct {
		Result json.RawMessage `json:"result"`
		Meta   struct {
			Username string `json:"username"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, "", err
	}
	return r.Result, r.Meta.Username, nil
}
