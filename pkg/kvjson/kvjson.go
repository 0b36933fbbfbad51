// Package kvjson keeps JSON records in a JetStream KV bucket with
// optimistic concurrency: every write names the revision it replaces, so
// two writers racing on one key (a cancel and a scanner finishing, two
// notifiers handling one delivery) cannot both win. Results, upload
// sessions and webhook states all use it.
package kvjson

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotFound: no record under that key.
var ErrNotFound = errors.New("record not found")

// ErrConflict: the record changed since it was read (another writer won).
var ErrConflict = errors.New("record changed concurrently")

// Store holds records of type T. Name says what they are, in errors.
type Store[T any] struct {
	KV   jetstream.KeyValue
	Name string
	// Commit, when set, stores writes through a group committer
	// (bus.Committer.Publish) so concurrent writers share fsyncs.
	Commit func(context.Context, *nats.Msg) (*jetstream.PubAck, error)
}

// GetRaw returns the stored JSON under key and its revision.
func (s Store[T]) GetRaw(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return nil, 0, fmt.Errorf("%s %s: %w", s.Name, key, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s get %s: %w", s.Name, key, err)
	}
	return e.Value(), e.Revision(), nil
}

// Get returns the record under key and its revision.
func (s Store[T]) Get(ctx context.Context, key string) (*T, uint64, error) {
	raw, rev, err := s.GetRaw(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	v := new(T)
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, 0, fmt.Errorf("%s decode %s: %w", s.Name, key, err)
	}
	return v, rev, nil
}

// Put writes v under key: revision 0 creates (ErrConflict if the key
// exists), otherwise it replaces exactly that revision (ErrConflict if it
// moved on). It returns the new revision.
func (s Store[T]) Put(ctx context.Context, key string, v *T, revision uint64) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("%s encode %s: %w", s.Name, key, err)
	}
	var rev uint64
	switch {
	case s.Commit != nil:
		// What KV.Update sends, through the group committer: the
		// expected-sequence check holds inside a batch as it does alone
		// (revision 0: the key must not exist).
		m := nats.NewMsg("$KV." + s.KV.Bucket() + "." + key)
		m.Data = b
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(revision, 10))
		var ack *jetstream.PubAck
		if ack, err = s.Commit(ctx, m); err == nil {
			rev = ack.Sequence
		} else if revision == 0 && IsConflict(err) {
			// A deleted key still has its delete marker: KV.Create
			// knows to write over that.
			rev, err = s.KV.Create(ctx, key, b)
		}
	case revision == 0:
		rev, err = s.KV.Create(ctx, key, b)
	default:
		rev, err = s.KV.Update(ctx, key, b, revision)
	}
	if IsConflict(err) {
		return 0, fmt.Errorf("%s put %s: %w", s.Name, key, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("%s put %s: %w", s.Name, key, err)
	}
	return rev, nil
}

// Update applies change to the current record until it lands without a
// conflict; change returns false to leave the record as it is. It returns
// the record as last seen.
func (s Store[T]) Update(ctx context.Context, key string, change func(*T) (bool, error)) (*T, error) {
	for {
		v, rev, err := s.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		ok, err := change(v)
		if err != nil || !ok {
			return v, err
		}
		if _, err := s.Put(ctx, key, v, rev); errors.Is(err, ErrConflict) {
			continue
		} else if err != nil {
			return nil, err
		}
		return v, nil
	}
}

// Wait returns the record under key once cond holds for it (a record that
// does not exist yet is waited for too). It watches the key rather than
// polling, and gives up with ctx's error when ctx ends.
func (s Store[T]) Wait(ctx context.Context, key string, cond func(*T) bool) (*T, error) {
	w, err := s.KV.Watch(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("%s watch %s: %w", s.Name, key, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s wait %s: %w", s.Name, key, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("%s wait %s: watch ended", s.Name, key)
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // end of the initial values, or a delete
			}
			v := new(T)
			if err := json.Unmarshal(e.Value(), v); err != nil {
				return nil, fmt.Errorf("%s decode %s: %w", s.Name, key, err)
			}
			if cond(v) {
				return v, nil
			}
		}
	}
}

// IsConflict reports a KV create or update refused because the key exists
// or moved past the expected revision (on a single server or a cluster).
func IsConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
