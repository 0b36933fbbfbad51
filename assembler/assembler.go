// Package assembler is the role that owns a file's state. It is the only
// writer of upload sessions and, through its recorder, of results:
//
//   - Upload sessions: it consumes the events of multipart and chunked
//     uploads (stream UPLOADS, upload.<partition>.<data_id>), keeps each
//     session's received byte ranges in bbolt, hashes the contiguous prefix
//     as it grows, publishes the session view (KV sessions) and, once
//     [0,total) is covered, the file's "queued" result event — exactly
//     once. It ends sessions that are aborted or outlive their time to live.
//   - Results: the recorder (recorder.go) applies every file's result events
//     (stream RESULTS) to KV results in stream order, queues files for the
//     scanners and announces final results.
//
// Partitions spread both over assemblers: JetStream pins each partition's
// consumer to one assembler (priority group, pinned client) and moves it to
// another when that one stops pulling. bbolt is only a cache of the stream:
// it records the last sequence it applied, and a session the cache does not
// know, or knows less well than the shared view (the partition moved away
// and back), is rebuilt by replaying its subject.
package assembler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/hashing"
	"github.com/scangate/scangate/pkg/metrics"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/session"
)

var bucketSessions = []byte("sessions")

// Options tune the assembler.
type Options struct {
	// ExpiryGrace is how long after a session's deadline its expire event
	// fires. Ingest refuses parts from the deadline on; the grace covers a
	// part that passed that check a moment before and is still being written.
	ExpiryGrace time.Duration
	// Metrics gets the open-sessions gauge (nil: none).
	Metrics *metrics.Metrics
	// Retention: how long stored files are kept once done with (see
	// retention.go); zero keeps them.
	Retention BlobRetention
}

// Assembler owns upload sessions and, through its recorder, results.
type Assembler struct {
	b        *bus.Bus
	blobs    blob.Store
	db       *bolt.DB
	sessions session.Store
	results  result.Store
	opts     Options
	log      zerolog.Logger
	rec      *recorder
	open     atomic.Int64 // sessions in bbolt: the ones this assembler holds open
	sweeper  *sweeper     // nil: no retention
}

// state is what bbolt keeps per session: the shared view plus what only
// the owner needs.
type state struct {
	Session     session.Session `json:"session"`
	LastSeq     uint64          `json:"last_seq"`     // last stream sequence applied
	HashedBytes int64           `json:"hashed_bytes"` // prefix already hashed
	HashState   []byte          `json:"hash_state,omitempty"`
	// HashDirty: a part rewrote bytes already hashed with different (or
	// unknown) content. The prefix hash no longer describes the file; the
	// scanner hashes every byte it scans instead.
	HashDirty bool `json:"hash_dirty,omitempty"`
	// Recent are the last parts applied, so the common rewrite — a client
	// retrying a part whose answer it lost — keeps the prefix hash.
	Recent []partDigest `json:"recent,omitempty"`

	// copyChunk is the chunk the event being applied appends: effects copy
	// its staged bytes into place. Not kept: a replay only needs the ranges.
	copyChunk *chunkCopy
	// release and concat are what the pre-signed event being applied frees
	// and makes (presigned.go); like copyChunk, for effects only.
	release []string
	concat  bool
}

type chunkCopy struct {
	staged   string
	off, len int64
	refused  bool
}

// refusedKept is how many refused chunk sequences a session view lists.
const refusedKept = 16

type partDigest struct {
	Off    int64  `json:"off"`
	Len    int64  `json:"len"`
	Digest string `json:"digest"`
}

// recentParts is how many parts state.Recent remembers.
const recentParts = 32

// New opens (or creates) the assembler's bbolt database at dbPath.
func New(b *bus.Bus, blobs blob.Store, dbPath string, opts Options, log zerolog.Logger) (*Assembler, error) {
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("assembler state %s: %w", dbPath, err)
	}
	var cached int
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSessions)
		if err == nil {
			cached = b.Stats().KeyN // once; save and the sweep keep the count after
		}
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("assembler state: %w", err)
	}
	if opts.ExpiryGrace <= 0 {
		opts.ExpiryGrace = 5 * time.Second
	}
	log = log.With().Str("role", "assembler").Logger()
	a := &Assembler{b: b, blobs: blobs, db: db, sessions: session.Store{KV: b.Sessions},
		results: result.Store{KV: b.Results}, opts: opts, log: log, rec: newRecorder(b, log),
		sweeper: newSweeper(b, blobs, opts.Retention, log)}
	a.open.Store(int64(cached))
	opts.Metrics.WatchAssemblerSessions(func() float64 { return float64(a.open.Load()) })
	return a, nil
}

// Run consumes every upload and results partition until ctx ends, then
// closes the database.
func (a *Assembler) Run(ctx context.Context) error {
	defer a.db.Close()
	var wg sync.WaitGroup
	wg.Go(func() { a.sweepLoop(ctx) })
	wg.Go(func() { a.compactLoop(ctx) })
	if a.sweeper != nil {
		wg.Go(func() { a.sweeper.run(ctx) })
	}
	for p := range a.b.Opts.Partitions {
		wg.Go(func() {
			pull(ctx, a.b, events.StreamUploads, events.AssemblerConsumer(p), events.AssemblerGroup, 1,
				a.log.With().Int("partition", p).Logger(), func(m jetstream.Msg) { a.handle(ctx, p, m) })
		})
		wg.Go(func() {
			pull(ctx, a.b, events.StreamResults, events.RecorderConsumer(p), events.RecorderGroup, bus.RecorderInFlight,
				a.rec.log.With().Int("partition", p).Logger(), func(m jetstream.Msg) { a.rec.handle(ctx, m) })
		})
	}
	a.log.Info().Int("partitions", a.b.Opts.Partitions).Msg("assembler started")
	wg.Wait()
	return nil
}

// compactEvery is how often the recorders' acknowledged result events are
// purged. Every assembler does it; a purge another already did is a no-op.
const compactEvery = time.Second

func (a *Assembler) compactLoop(ctx context.Context) {
	t := time.NewTicker(compactEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := a.b.CompactResults(ctx)
		if err != nil && ctx.Err() == nil {
			a.rec.log.Warn().Err(err).Msg("compacting applied result events failed; trying again shortly")
		} else if n > 0 {
			a.rec.log.Debug().Uint64("events", n).Msg("applied result events compacted")
		}
	}
}

// handle applies one upload event. Effects (result events, the session
// view, blob release) come before the bbolt write that records the event as
// applied, and every effect is idempotent: a crash anywhere redelivers the
// event and redoes them harmlessly.
func (a *Assembler) handle(ctx context.Context, p int, msg jetstream.Msg) {
	var ev events.UploadEvent
	md, err := msg.Metadata()
	if err != nil || json.Unmarshal(msg.Data(), &ev) != nil || ev.DataID == "" {
		a.log.Error().Str("subject", msg.Subject()).Msg("malformed upload event dropped")
		_ = msg.Term()
		return
	}
	seq := md.Sequence.Stream
	log := a.log.With().Str("data_id", ev.DataID).Str("event", ev.Kind).Uint64("seq", seq).Logger()
	defer bus.KeepAlive(msg, bus.AssemblerAckWait/4)()
	defer recoverEvent(msg, log, func() {
		// The session cannot go on: its file gets a Failed verdict.
		ev := &result.Event{Kind: result.EventClosed, DataID: ev.DataID, Code: result.Failed,
			Reason: "internal error applying an upload event", At: time.Now()}
		_ = a.b.PublishResult(context.WithoutCancel(ctx), ev, "closed-"+ev.DataID)
	})

	retry := func(what string, err error) {
		if ctx.Err() != nil {
			_ = msg.Nak() // shutting down: the next owner redoes it
			return
		}
		log.Error().Err(a.b.Check(err)).Msg(what + "; will retry")
		_ = msg.NakWithDelay(time.Second)
	}
	view, viewRev, err := a.sessions.Get(ctx, ev.DataID)
	if errors.Is(err, session.ErrNotFound) {
		view, viewRev = nil, 0
	} else if err != nil {
		retry("reading the session view failed", err)
		return
	}
	st, err := a.load(ev.DataID)
	if err != nil {
		retry("reading state failed", err)
		return
	}
	if st != nil && view != nil && view.Seq > st.LastSeq {
		// Another assembler applied events of this session while it owned
		// the partition: the cache is behind the stream.
		log.Info().Uint64("cached_seq", st.LastSeq).Uint64("view_seq", view.Seq).Msg("cached session is stale; rebuilding it from the stream")
		st = nil
	}
	if st == nil && ev.Kind != events.UploadOpen {
		if st, err = a.rebuild(ctx, p, ev.DataID, seq); err != nil {
			retry("rebuilding the session from the stream failed", err)
			return
		}
		if st == nil {
			// The session's log was purged: it ended (a late retry of a
			// part, or an expiry that lost the race). A part that landed
			// after an abort or expiry left bytes nobody will read.
			if ev.Kind == events.UploadPart && view != nil && (view.Status == session.Cancelled || view.Status == session.TimedOut) {
				if err := a.blobs.Delete(ctx, ev.DataID); err != nil {
					retry("releasing a late part failed", err)
					return
				}
			}
			if ev.Kind == events.UploadNumberedPart {
				if err := a.dropLatePart(ctx, &ev, view); err != nil {
					retry("releasing a late part failed", err)
					return
				}
			}
			log.Debug().Msg("event for an ended session ignored")
			_ = msg.Ack()
			if ev.Kind == events.UploadChunk {
				a.dropStaged(ctx, ev.Staged, log)
			}
			return
		}
	}
	if st != nil && seq <= st.LastSeq {
		_ = msg.Ack() // applied before; a redelivery after our ack was lost
		return
	}
	before := ""
	if st != nil {
		before = st.Session.Status
	}
	st = apply(st, &ev, p, seq)
	if st == nil {
		if ev.Kind == events.UploadChunk {
			a.dropStaged(ctx, ev.Staged, log)
		}
		_ = msg.Ack()
		return
	}
	st.LastSeq = seq
	st.Session.Seq = seq

	if err := a.effects(ctx, st, before, viewRev, log); err != nil {
		retry("applying the upload event failed", err)
		return
	}
	if err := a.save(st); err != nil {
		retry("saving state failed", err)
		return
	}
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn().Err(err).Msg("ack failed; the event will be redelivered and skipped")
	}
	if ev.Kind == events.UploadChunk {
		// Only now: a redelivery before the ack copies it again.
		a.dropStaged(ctx, ev.Staged, log)
	}
}

// dropStaged releases a chunk's staging blob once it is appended (or
// refused) for good.
func (a *Assembler) dropStaged(ctx context.Context, key string, log zerolog.Logger) {
	if key == "" {
		return
	}
	if err := a.blobs.Delete(ctx, key); err != nil {
		log.Warn().Err(err).Str("staged", key).Msg("releasing a staged chunk failed")
	}
}

// apply folds one event into a session's state; it has no side effects,
// so replaying a session's log rebuilds exactly the state its owner had
// (less the prefix hash, which effects recompute from the bytes).
func apply(st *state, ev *events.UploadEvent, p int, seq uint64) *state {
	if st != nil {
		st.copyChunk = nil
		st.release, st.concat = nil, false
	}
	if isPresigned(ev) {
		return applyPresigned(st, ev, p, seq)
	}
	switch ev.Kind {
	case events.UploadOpen:
		if st != nil || ev.Meta == nil || ev.Total <= 0 {
			return st // opened twice (a retried publish): the first wins
		}
		return &state{Session: session.Session{DataID: ev.DataID, Status: session.Uploading, TotalLength: ev.Total,
			CreatedAt: ev.CreatedAt, ExpiresAt: ev.ExpiresAt, Partition: p, Meta: *ev.Meta, Chunked: ev.Chunked}}
	case events.UploadPart:
		s := st.sessionOrNil()
		if s == nil || s.Status != session.Uploading || ev.Off < 0 || ev.Len <= 0 || ev.Off+ev.Len > s.TotalLength {
			return st
		}
		if s.Chunked {
			return st // a chunked session takes chunk events only
		}
		st.notePart(ev)
		s.Ranges.Add(ev.Off, ev.Len)
		s.ReceivedLength = s.Ranges.Covered()
		if s.Ranges.Complete(s.TotalLength) {
			s.Status = session.Complete
		}
	case events.UploadChunk:
		s := st.sessionOrNil()
		if s == nil || s.Status != session.Uploading || !s.Chunked || ev.Len <= 0 || ev.Staged == "" {
			return st
		}
		off := s.Ranges.PrefixEnd()
		if off+ev.Len > s.TotalLength {
			// Past the declared size: refused, with no effect on the file.
			s.Refused = append(s.Refused, seq)
			if len(s.Refused) > refusedKept {
				s.Refused = slices.Delete(s.Refused, 0, len(s.Refused)-refusedKept)
			}
			st.copyChunk = &chunkCopy{staged: ev.Staged, refused: true}
			return st
		}
		st.copyChunk = &chunkCopy{staged: ev.Staged, off: off, len: ev.Len}
		s.Ranges.Add(off, ev.Len)
		s.ReceivedLength = s.Ranges.Covered()
		if s.Ranges.Complete(s.TotalLength) {
			s.Status = session.Complete
		}
	case events.UploadAbort:
		if st != nil && st.Session.Status == session.Uploading {
			st.Session.Status = session.Cancelled
		}
	case events.UploadExpire:
		if st != nil && st.Session.Status == session.Uploading {
			st.Session.Status = session.TimedOut
		}
	}
	return st
}

func (st *state) sessionOrNil() *session.Session {
	if st == nil {
		return nil
	}
	return &st.Session
}

// notePart keeps the prefix hash honest: a part that overlaps bytes already
// hashed may have changed them, unless it repeats a recent part exactly.
func (st *state) notePart(ev *events.UploadEvent) {
	if !st.HashDirty && ev.Off < st.HashedBytes {
		same := ev.Digest != "" && slices.Contains(st.Recent, partDigest{ev.Off, ev.Len, ev.Digest})
		if !same {
			st.HashDirty, st.HashedBytes, st.HashState = true, 0, nil
		}
	}
	st.Recent = append(st.Recent, partDigest{ev.Off, ev.Len, ev.Digest})
	if len(st.Recent) > recentParts {
		st.Recent = slices.Delete(st.Recent, 0, len(st.Recent)-recentParts)
	}
}

// effects makes the outside world match st: prefix hashing, the file's
// result events, the shared session view and — when the session just ended
// — the bytes released and the log purged. The result event goes out before
// the view says the session ended, so anyone who sees the end in the view
// can rely on the result following.
func (a *Assembler) effects(ctx context.Context, st *state, before string, viewRev uint64, log zerolog.Logger) error {
	s := &st.Session
	if before == "" {
		// Just opened: the file shows 256 until it completes, and the
		// session's deadline is scheduled.
		up := &result.Event{Kind: result.EventUploading, DataID: s.DataID, Size: s.TotalLength, Meta: &s.Meta, CreatedAt: s.CreatedAt}
		if err := a.b.PublishResult(ctx, up, "uploading-"+s.DataID); err != nil {
			return err
		}
		if err := a.b.ScheduleExpiry(ctx, s.Partition, s.DataID, s.ExpiresAt.Add(a.opts.ExpiryGrace)); err != nil {
			return err
		}
	}
	if c := st.copyChunk; c != nil && !c.refused {
		if err := a.appendChunk(ctx, s.DataID, c); err != nil {
			return err
		}
	}
	if (s.Status == session.Uploading || s.Status == session.Complete) && !st.HashDirty {
		if err := a.hashPrefix(ctx, st); err != nil {
			// Not fatal: the scanner hashes whatever is left.
			log.Warn().Err(err).Msg("prefix hashing failed")
		}
	}
	if err := a.presignedEffects(ctx, st); err != nil {
		return err
	}
	ended := s.Status != before && s.Status != session.Uploading
	if ended {
		if err := a.announceEnd(ctx, st, log); err != nil {
			return err
		}
	}
	if _, err := a.sessions.Put(ctx, s, viewRev); err != nil {
		// A conflict means another assembler wrote the view meanwhile (the
		// partition moved): the redelivery finds our cache stale.
		return fmt.Errorf("session view: %w", err)
	}
	if !ended {
		return nil
	}
	if s.Status != session.Complete || s.DuplicateOf != "" {
		if err := a.blobs.Delete(ctx, s.DataID); err != nil {
			return err
		}
	}
	if s.Status != session.Complete {
		if err := a.releaseParts(ctx, s); err != nil {
			return err
		}
	}
	return a.b.PurgeUpload(ctx, s.Partition, s.DataID)
}

// announceEnd publishes the result event of a session that just ended:
// the file queued for scanning, a copy of an earlier scan of the same
// bytes, or the verdict of an abort or expiry.
func (a *Assembler) announceEnd(ctx context.Context, st *state, log zerolog.Logger) error {
	s := &st.Session
	switch s.Status {
	case session.Complete:
		fc, earlier, err := a.prepareComplete(ctx, st)
		if err != nil {
			return err
		}
		if earlier != nil {
			log.Info().Str("duplicate_of", s.DuplicateOf).Msg("chunked upload matches a scanned file; no new scan")
			cp := *earlier
			cp.Seq = 0
			cp.Meta = s.Meta
			cp.Result.DataID, cp.Result.ScanResults.DataID = s.DataID, s.DataID
			cp.Result.FileInfo.DisplayName = s.Meta.DisplayName
			return a.b.PublishResult(ctx, &result.Event{Kind: result.EventFinal, DataID: s.DataID, Record: &cp}, "final-"+s.DataID)
		}
		log.Info().Int64("size", s.TotalLength).Int64("hashed_on_arrival", st.HashedBytes).Bool("rewritten", st.HashDirty).Msg("upload complete")
		return a.b.PublishResult(ctx, &result.Event{Kind: result.EventQueued, DataID: s.DataID, File: fc}, "queued-"+s.DataID)
	case session.Cancelled, session.TimedOut:
		code := result.Cancelled
		if s.Status == session.TimedOut {
			code = result.MultipartTimedOut
			log.Info().Time("expires_at", s.ExpiresAt).Int64("received", s.ReceivedLength).Msg("upload timed out")
		} else {
			log.Info().Msg("upload aborted")
		}
		ev := &result.Event{Kind: result.EventClosed, DataID: s.DataID, Code: code, Size: s.TotalLength, Meta: &s.Meta,
			CreatedAt: s.CreatedAt, At: time.Now()}
		return a.b.PublishResult(ctx, ev, "closed-"+s.DataID)
	}
	return nil
}

// appendChunk copies a staged chunk to its place in the file. Copying
// again (a redelivered event) writes the same bytes.
func (a *Assembler) appendChunk(ctx context.Context, dataID string, c *chunkCopy) error {
	obj, err := a.blobs.Open(ctx, c.staged)
	if err != nil {
		return fmt.Errorf("staged chunk %s: %w", c.staged, err)
	}
	defer obj.Close()
	if obj.Size() != c.len {
		return fmt.Errorf("staged chunk %s has %d bytes, want %d", c.staged, obj.Size(), c.len)
	}
	if err := a.blobs.WriteAt(ctx, dataID, c.off, blob.Section(obj, 0, c.len), c.len); err != nil {
		return fmt.Errorf("append chunk: %w", err)
	}
	return nil
}

// hashPrefix hashes the bytes between what was hashed and the end of the
// contiguous prefix, so a file sent mostly in order is hashed by the time
// its last part lands.
func (a *Assembler) hashPrefix(ctx context.Context, st *state) error {
	end := st.Session.Ranges.PrefixEnd()
	if end <= st.HashedBytes {
		return nil
	}
	t0 := time.Now()
	var m *hashing.Multi
	var err error
	if st.HashedBytes == 0 {
		m = hashing.New()
	} else if m, err = hashing.Restore(st.HashState); err != nil {
		return err
	}
	defer m.Close()
	obj, err := blob.OpenPrefix(ctx, a.blobs, st.Session.DataID)
	if err != nil {
		return err
	}
	defer obj.Close()
	if obj.Size() < end {
		return fmt.Errorf("stored prefix of %s ends at %d, the parts applied at %d", st.Session.DataID, obj.Size(), end)
	}
	if _, err := io.CopyBuffer(m, blob.Section(obj, st.HashedBytes, end-st.HashedBytes), make([]byte, 256<<10)); err != nil {
		return err
	}
	state, err := m.State()
	if err != nil {
		return err
	}
	// How far hashing trails the parts is what decides the wait between
	// the last part and the verdict.
	a.log.Debug().Str("data_id", st.Session.DataID).Int64("from", st.HashedBytes).Int64("to", end).
		Dur("took", time.Since(t0)).Msg("prefix hashed")
	st.HashedBytes, st.HashState = end, state
	return nil
}

// prepareComplete builds the file-complete event of a finished upload and,
// for a chunked upload, looks for an earlier final result of the same
// bytes under the same workflow (then no new scan runs: earlier is set and
// the session records DuplicateOf).
func (a *Assembler) prepareComplete(ctx context.Context, st *state) (fc *events.FileComplete, earlier *result.Record, err error) {
	s := &st.Session
	fc = &events.FileComplete{DataID: s.DataID, Size: s.TotalLength, Meta: s.Meta, Priority: events.PriorityNormal,
		UploadedAt: s.CreatedAt}
	switch {
	case st.HashDirty:
		// Bytes were rewritten after they were hashed: the scanner hashes
		// exactly the bytes it scans.
	case st.HashedBytes == s.TotalLength && st.HashState != nil:
		m, err := hashing.Restore(st.HashState)
		if err != nil {
			return nil, nil, err
		}
		fc.Hashes = m.Sums()
		m.Close()
	case st.HashedBytes > 0:
		fc.HashState, fc.HashedBytes = st.HashState, st.HashedBytes
	}
	if !s.Chunked || fc.Hashes.SHA256 == "" {
		return fc, nil, nil
	}
	e, err := a.b.Hashes.Get(ctx, events.HashKey("sha256", fc.Hashes.SHA256, auth.Token(s.Meta.Username)))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fc, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	earlier, _, err = a.results.Get(ctx, string(e.Value()))
	if errors.Is(err, result.ErrNotFound) || (err == nil && (!earlier.Final() || earlier.Meta.Workflow != s.Meta.Workflow ||
		auth.Token(earlier.Meta.Username) != auth.Token(s.Meta.Username))) {
		return fc, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	s.DuplicateOf = earlier.Result.DataID
	return fc, earlier, nil
}

// rebuild replays a session's log up to (not including) seq, for a
// session this assembler has never seen, lost, or holds a stale copy of.
func (a *Assembler) rebuild(ctx context.Context, p int, dataID string, seq uint64) (*state, error) {
	oc, err := a.b.JS.OrderedConsumer(ctx, events.StreamUploads, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.UploadSubject(p, dataID)},
	})
	if err != nil {
		return nil, err
	}
	var st *state
	for {
		msg, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return nil, fmt.Errorf("replay %s: %w", dataID, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return nil, err
		}
		if md.Sequence.Stream >= seq {
			break
		}
		var ev events.UploadEvent
		if json.Unmarshal(msg.Data(), &ev) == nil {
			st = apply(st, &ev, p, md.Sequence.Stream)
			if st != nil {
				st.LastSeq = md.Sequence.Stream
				st.Session.Seq = md.Sequence.Stream
			}
		}
	}
	if st != nil {
		a.log.Info().Str("data_id", dataID).Int64("received", st.Session.ReceivedLength).Msg("session rebuilt from the stream")
	}
	return st, nil
}
func (a *Assembler) load(dataID string) (*state, error) {
	var st *state
	err := a.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSessions).Get([]byte(dataID))
		if v == nil {
			return nil
		}
		st = &state{}
		return json.Unmarshal(v, st)
	})
	return st, err
}

// save records st; ended sessions are dropped from the cache (their
// outcome lives in the shared view and the results).
func (a *Assembler) save(st *state) error {
	var delta int64
	err := a.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		key := []byte(st.Session.DataID)
		had := b.Get(key) != nil
		if st.Session.Status != session.Uploading {
			if had {
				delta = -1
			}
			return b.Delete(key)
		}
		v, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if !had {
			delta = 1
		}
		return b.Put(key, v)
	})
	if err == nil {
		a.open.Add(delta)
	}
	return err
}

// cacheSweepEvery is how often the cache is checked for sessions that
// ended while another assembler owned their partition.
const cacheSweepEvery = 10 * time.Minute

// sweepCache drops cached sessions that are over: ended in the shared view
// (another assembler finished them while it owned the partition), or gone
// from it. Without it such entries would stay for ever; a session still
// uploading is kept (and rebuilt if its view is ahead, when its next event
// comes).
func (a *Assembler) sweepCache(ctx context.Context) {
	var ids []string
	_ = a.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	dropped := 0
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		view, _, err := a.sessions.Get(ctx, id)
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			a.log.Warn().Err(err).Str("data_id", id).Msg("cache sweep: session view unreadable; kept")
			continue
		}
		if view != nil && view.Status == session.Uploading {
			continue
		}
		had := false
		if err := a.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketSessions)
			had = b.Get([]byte(id)) != nil
			return b.Delete([]byte(id))
		}); err != nil {
			a.log.Warn().Err(err).Str("data_id", id).Msg("cache sweep: dropping an ended session failed")
			continue
		}
		if had {
			a.open.Add(-1)
		}
		dropped++
	}
	a.log.Info().Int("cached", len(ids)-dropped).Int("dropped", dropped).Msg("session cache swept")
}

// sweepLoop sweeps the cache at start and every cacheSweepEvery.
func (a *Assembler) sweepLoop(ctx context.Context) {
	for {
		a.sweepCache(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(cacheSweepEvery):
		}
	}
}
