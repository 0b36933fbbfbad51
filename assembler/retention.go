package assembler

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/result"
)

// Retention of stored files. Roles delete the bytes they know are done
// with (an aborted or expired upload, a duplicate, an appended chunk, a
// nested archive once extracted), but a stored original and a sanitized
// output stay after the scan for clients to fetch, and a crash can leave
// bytes nobody will come back for. The sweeper deletes both kinds once
// they are past their retention and nothing under way still needs them.
//
// Assemblers sweep: they own upload sessions and already release upload
// bytes, and they always see the blob store the uploads went to (they
// append chunks and hash prefixes from it), whether it is a directory on
// this host or the JetStream object store every host shares. Several
// assemblers on one store sweep it each: a delete is idempotent and every
// decision is made on shared state, so concurrent sweeps are harmless, and
// jittered intervals keep them apart.

// BlobRetention is how long stored files are kept once done with
// (retention.originals, retention.sanitized). A zero field keeps that
// kind for ever.
type BlobRetention struct {
	// Originals: a file's stored bytes (the blob named by its data_id),
	// and every other blob but sanitized outputs: staged chunks and nested
	// archives that a crash left behind.
	Originals time.Duration
	// Sanitized: sanitized outputs (blob.SanitizedKey).
	Sanitized time.Duration
}

// sweepEveryMax is the longest pause between sweeps: a blob outlives its
// retention by at most about this. A sweep lists the store (a directory
// walk, or one small index entry per part) and reads shared state only
// for blobs past their retention, so once a minute costs little.
const sweepEveryMax = time.Minute

// sweepEvery is the pause between sweeps: a minute, or a quarter of the
// shorter retention if that is less, so a blob outlives its retention by at
// most a quarter of it.
func (r BlobRetention) sweepEvery() time.Duration {
	d := sweepEveryMax
	for _, ret := range []time.Duration{r.Originals, r.Sanitized} {
		if ret > 0 {
			d = min(d, ret/4)
		}
	}
	return max(d, 10*time.Millisecond)
}

// jittered spreads d by ±25%, so that assemblers started together do not
// sweep together.
func jittered(d time.Duration) time.Duration {
	return d - d/4 + rand.N(d/2+1)
}

// sweeper deletes blobs past their retention.
type sweeper struct {
	b     *bus.Bus
	blobs blob.Store
	list  blob.Lister
	ret   BlobRetention
	log   zerolog.Logger
	now   func() time.Time
}

// newSweeper returns nil when nothing is to be swept: no retention, or a
// store that cannot list what it holds.
func newSweeper(b *bus.Bus, blobs blob.Store, ret BlobRetention, log zerolog.Logger) *sweeper {
	l, ok := blobs.(blob.Lister)
	if !ok || ret.Originals <= 0 && ret.Sanitized <= 0 {
		return nil
	}
	return &sweeper{b: b, blobs: blobs, list: l, ret: ret, log: log.With().Str("component", "retention").Logger(), now: time.Now}
}

// run sweeps every sweepEvery, jittered, until ctx ends. The first sweep
// also waits: a node starting has better things to do.
func (s *sweeper) run(ctx context.Context) {
	every := s.ret.sweepEvery()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(jittered(every)):
		}
		s.sweep(ctx)
	}
}

// Kinds of blob, as sweeps count them.
const (
	kindOriginal  = "original"  // the blob named by a data_id
	kindSanitized = "sanitized" // blob.SanitizedKey
	kindOther     = "other"     // a staged chunk, or any other suffix
)

func kindOf(key string) (dataID, kind string) {
	dataID = key[:32] // blob.ValidKey: 32 hex digits, then an optional suffix
	switch key {
	case dataID:
		return dataID, kindOriginal
	case blob.SanitizedKey(dataID):
		return dataID, kindSanitized
	}
	return dataID, kindOther
}

// sweepStats is what one sweep did.
type sweepStats struct {
	Listed  int            // blobs in the store
	Deleted map[string]int // by kind
	Freed   int64          // bytes of the blobs deleted
	InUse   int            // past their retention, kept for work under way
	Failed  int            // could not be decided on or deleted; the next sweep tries again
	err     error          // the first failure
}

func (st *sweepStats) fail(err error) {
	st.Failed++
	if st.err == nil {
		st.err = err
	}
}

// sweep lists the store once and deletes what is past its retention.
func (s *sweeper) sweep(ctx context.Context) sweepStats {
	start := time.Now()
	st := sweepStats{Deleted: map[string]int{}}
	err := s.list.List(ctx, func(i blob.Info) error {
		st.Listed++
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.consider(ctx, i, &st)
		return nil
	})
	if ctx.Err() != nil {
		return st
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("listing the blob store failed; retention sweeps again shortly")
		return st
	}
	deleted := st.Deleted[kindOriginal] + st.Deleted[kindSanitized] + st.Deleted[kindOther]
	ev := s.log.Debug()
	if deleted > 0 {
		ev = s.log.Info()
	}
	ev.Int("listed", st.Listed).Int("originals", st.Deleted[kindOriginal]).Int("sanitized", st.Deleted[kindSanitized]).
		Int("other", st.Deleted[kindOther]).Int64("bytes_freed", st.Freed).Int("in_use", st.InUse).Int("failed", st.Failed).
		Dur("took", time.Since(start)).Msg("blob retention sweep")
	if st.err != nil {
		s.log.Warn().Err(st.err).Int("failed", st.Failed).Msg("some blobs past their retention could not be deleted; the next sweep tries again")
	}
	return st
}

// consider deletes one blob if it is past its retention and nothing under
// way still needs it. Every doubt keeps it for the next sweep.
func (s *sweeper) consider(ctx context.Context, i blob.Info, st *sweepStats) {
	id, kind := kindOf(i.Key)
	ret := s.ret.Originals
	if kind == kindSanitized {
		ret = s.ret.Sanitized
	}
	now := s.now()
	if ret <= 0 || now.Sub(i.ModTime) < ret {
		return // written within its retention: the common case, decided without a request
	}
	log := s.log.With().Str("data_id", id).Str("key", i.Key).Logger()
	// Work under way on the file: an open upload (its bytes and staged
	// chunks), a scan waiting or running, a verdict not yet recorded,
	// webhooks not yet delivered (a sanitizedurl target reads the
	// sanitized output). A file can wait for a scanner longer than any
	// retention; it never loses its bytes meanwhile.
	where, err := s.b.InFlight(ctx, id)
	if err != nil {
		st.fail(err)
		return
	}
	if where != "" {
		log.Debug().Str("stream", where).Msg("past its retention but still in use; kept")
		st.InUse++
		return
	}
	// The record, read after the streams (see bus.InFlight): a file is
	// done with once its verdict is recorded, and its bytes are kept for
	// the retention after that verdict, not after their upload. No record
	// at all (never made, or past retention.results) means nothing will
	// read them.
	e, err := s.b.Results.Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		st.fail(err)
		return
	default:
		var rec result.Record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			// Not ours to judge: kept until the record itself expires.
			log.Warn().Err(err).Msg("past its retention but its result is unreadable; kept")
			st.InUse++
			return
		}
		if !rec.Final() {
			log.Debug().Msg("past its retention but its file has no verdict yet; kept")
			st.InUse++
			return
		}
		if now.Sub(e.Created()) < ret {
			return // its verdict is recent: the retention counts from it
		}
	}
	if err := s.blobs.Delete(ctx, i.Key); err != nil {
		log.Warn().Err(err).Msg("deleting a blob past its retention failed")
		st.fail(err)
		return
	}
	log.Debug().Str("kind", kind).Int64("size", i.Size).Time("modified", i.ModTime).Msg("blob past its retention deleted")
	st.Deleted[kind]++
	st.Freed += i.Size
}
