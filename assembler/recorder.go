package assembler

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/result"
)

// recorder is the one writer of the results bucket. Every role that learns
// something about a file's result (ingest: accepted, cancelled; the
// assembler: uploading, complete, aborted, expired; the scanner: progress
// and its verdict) publishes a result event; the recorder applies them in
// stream order (result.Apply), so a heartbeat, a cancel and a verdict can
// never be mistaken for one another and the first final event wins. It also
// performs the effects that follow from a record changing, exactly where
// the change is decided: a queued file is handed to the scanners, a final
// result is announced (scan-done, for the webhooks). Applied events are
// compacted away in bulk (bus.CompactResults).
type recorder struct {
	b       *bus.Bus
	results result.Store
	cache   *recordCache
	log     zerolog.Logger
}

func newRecorder(b *bus.Bus, log zerolog.Logger) *recorder {
	results := result.Store{KV: b.Results, Commit: b.Committer(bus.BucketStream(events.BucketResults)).Publish}
	return &recorder{b: b, results: results, cache: newRecordCache(), log: log.With().Str("component", "recorder").Logger()}
}

// handle applies one result event. The record carries the sequence of the
// last event applied, so a redelivered event changes nothing; the effects
// of the event that changed the record are repeated on redelivery (each is
// idempotent), in case the process died between the write and them.
func (r *recorder) handle(ctx context.Context, msg jetstream.Msg) {
	var ev result.Event
	md, err := msg.Metadata()
	if err != nil || json.Unmarshal(msg.Data(), &ev) != nil || ev.DataID == "" {
		r.log.Error().Str("subject", msg.Subject()).Msg("malformed result event dropped")
		_ = msg.Term()
		return
	}
	seq := md.Sequence.Stream
	log := r.log.With().Str("data_id", ev.DataID).Str("event", ev.Kind).Uint64("seq", seq).Logger()
	defer bus.KeepAlive(msg, bus.AssemblerAckWait/4)()
	defer recoverEvent(msg, log, nil)

	for reread := false; ; reread = true {
		err := r.apply(ctx, &ev, seq, reread, log)
		if errors.Is(err, result.ErrConflict) {
			// Another recorder wrote this record meanwhile (the partition
			// moved), or our view of it was stale: read it again; the
			// sequence check sorts out the rest.
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				_ = msg.Nak()
				return
			}
			log.Error().Err(r.b.Check(err)).Msg("recording result event failed; will retry")
			_ = msg.NakWithDelay(time.Second)
			return
		}
		break
	}
	// A plain ack: a lost one only redelivers the event, which the sequence
	// check skips.
	_ = msg.Ack()
}

func (r *recorder) apply(ctx context.Context, ev *result.Event, seq uint64, reread bool, log zerolog.Logger) error {
	rec, rev, known, err := r.read(ctx, ev, reread)
	if err != nil {
		return err
	}
	if rec != nil && seq <= rec.Seq {
		if seq == rec.Seq {
			return r.effects(ctx, ev, rec, rev, log) // written, but maybe not followed up
		}
		return nil
	}
	next := result.Apply(rec, ev)
	if next == nil || next == rec {
		if rec != nil && rec.Final() && ev.Kind != result.EventProgress {
			log.Debug().Int("verdict", rec.Result.ScanResults.ScanAllResultI).Msg("result already final; event ignored")
		}
		return nil
	}
	next.Seq = seq
	if ev.Kind == result.EventQueued && ev.File != nil && !next.Final() && known {
		// Queue the file while its record is written (when the record
		// was read, not guessed): the two wait on different streams'
		// fsyncs. A scanner that is quicker than the write finds no
		// record, which it treats as not final; its verdict is a later
		// event of this file, applied after this one.
		queued := make(chan error, 1)
		go func() { queued <- r.b.PublishFileComplete(ctx, ev.File) }()
		_, err = r.put(ctx, next, rev)
		if err = errors.Join(err, <-queued); err != nil {
			return err
		}
		return r.member(ctx, next) // batch membership (batchmember.go)
	}
	rev, err = r.put(ctx, next, rev)
	if err != nil {
		return err
	}
	return r.effects(ctx, ev, next, rev, log)
}

// read returns the file's record and revision (nil, 0: none yet): from the
// cache of our own writes, else from the bucket (always, when reread: the
// last write conflicted). The first event of a new file (queued, uploading)
// is not looked up at all: its record cannot exist unless the event is a
// redelivery, which the create's compare-and-set reports as a conflict, and
// the retry reads.
//
// known is false for that guess: until the create succeeds, the file must
// not be queued for scanning (a late event of a file already final).
func (r *recorder) read(ctx context.Context, ev *result.Event, reread bool) (rec *result.Record, rev uint64, known bool, err error) {
	if !reread {
		if rec, rev, ok := r.cache.get(ev.DataID); ok {
			return rec, rev, true, nil
		}
		if ev.Kind == result.EventQueued || ev.Kind == result.EventUploading {
			return nil, 0, false, nil
		}
	}
	rec, rev, err = r.results.Get(ctx, ev.DataID)
	if errors.Is(err, result.ErrNotFound) {
		return nil, 0, true, nil
	}
	return rec, rev, true, err
}

// put writes rec over rev and caches it; on a conflict the cached view was
// stale, and the retry reads the bucket.
func (r *recorder) put(ctx context.Context, rec *result.Record, rev uint64) (uint64, error) {
	next, err := r.results.Put(ctx, rec, rev)
	switch {
	case err == nil:
		r.cache.put(rec, next)
	case errors.Is(err, result.ErrConflict):
		r.cache.drop(rec.Result.DataID)
	}
	return next, err
}

// effects follow from rec having just been written by ev, at revision rev.
func (r *recorder) effects(ctx context.Context, ev *result.Event, rec *result.Record, rev uint64, log zerolog.Logger) error {
	if err := r.member(ctx, rec); err != nil { // batch membership (batchmember.go)
		return err
	}
	switch {
	case rec.Final():
		// Only webhooks listen for scan-done: a file without one is not
		// announced, which spares two fsyncs per file (store and remove).
		if rec.Meta.CallbackURL != "" || rec.Meta.SanitizedURL != "" {
			done := &events.ScanDone{DataID: ev.DataID, Revision: rev, CallbackURL: rec.Meta.CallbackURL, SanitizedURL: rec.Meta.SanitizedURL}
			if err := r.b.PublishScanDone(ctx, done); err != nil {
				return err
			}
		}
		log.Info().Int("scan_all_result_i", rec.Result.ScanResults.ScanAllResultI).
			Str("result", rec.Result.ProcessInfo.Result).Msg("result final")
	case ev.Kind == result.EventQueued && ev.File != nil:
		return r.b.PublishFileComplete(ctx, ev.File)
	}
	return nil
}
