// Package assembler is the upload-session role. It consumes the events of
// multipart and chunked uploads (stream UPLOADS, upload.<partition>.<data_id>),
// keeps each session's received byte ranges in bbolt, hashes the contiguous
// prefix as it grows, and emits file-complete exactly once when [0,total) is
// covered. It also ends sessions that are aborted or outlive their time to
// live.
//
// Partitions spread sessions over assemblers: JetStream pins each
// partition's consumer to one assembler (priority group, pinned client) and
// moves it to another when that one stops pulling. bbolt is only a cache of
// the stream: a session the local database does not know is rebuilt by
// replaying its subject.
package assembler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/hashing"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/session"
)

var bucketSessions = []byte("sessions")

// Assembler owns upload sessions.
type Assembler struct {
	b        *bus.Bus
	blobs    blob.Store
	db       *bolt.DB
	sessions session.Store
	results  result.Store
	log      zerolog.Logger
}

// state is what bbolt keeps per session: the shared view plus what only
// the owner needs.
type state struct {
	Session     session.Session `json:"session"`
	LastSeq     uint64          `json:"last_seq"`     // last stream sequence applied
	HashedBytes int64           `json:"hashed_bytes"` // prefix already hashed
	HashState   []byte          `json:"hash_state,omitempty"`
}

// New opens (or creates) the assembler's bbolt database at dbPath.
func New(b *bus.Bus, blobs blob.Store, dbPath string, log zerolog.Logger) (*Assembler, error) {
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("assembler state %s: %w", dbPath, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketSessions)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("assembler state: %w", err)
	}
	return &Assembler{b: b, blobs: blobs, db: db, sessions: session.Store{KV: b.Sessions},
		results: result.Store{KV: b.Results}, log: log.With().Str("role", "assembler").Logger()}, nil
}

// Run consumes every partition until ctx ends, then closes the database.
func (a *Assembler) Run(ctx context.Context) error {
	defer a.db.Close()
	var wg sync.WaitGroup
	for p := range a.b.Opts.Partitions {
		wg.Go(func() { a.consume(ctx, p) })
	}
	a.log.Info().Int("partitions", a.b.Opts.Partitions).Msg("assembler started")
	wg.Wait()
	return nil
}

// consume pulls one partition's events in order. While another assembler
// holds the partition the pulls simply wait; they take over when it stops.
func (a *Assembler) consume(ctx context.Context, p int) {
	log := a.log.With().Int("partition", p).Logger()
	for ctx.Err() == nil {
		cons, err := a.b.JS.Consumer(ctx, events.StreamUploads, events.AssemblerConsumer(p))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Warn().Err(err).Msg("partition consumer unavailable; retrying")
			sleep(ctx, time.Second)
			continue
		}
		it, err := cons.Messages(jetstream.PullPriorityGroup(events.AssemblerGroup), jetstream.PullMaxMessages(1))
		if err != nil {
			log.Warn().Err(err).Msg("partition subscription failed; retrying")
			sleep(ctx, time.Second)
			continue
		}
		stop := context.AfterFunc(ctx, it.Stop)
		for {
			msg, err := it.Next()
			if err != nil {
				break
			}
			a.handle(ctx, p, msg)
		}
		stop()
		it.Stop()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// handle applies one event. Effects (KV, results, file-complete, blob
// release) come before the bbolt write that records the event as applied,
// and every effect is idempotent: a crash anywhere redelivers the event and
// redoes them harmlessly.
func (a *Assembler) handle(ctx context.Context, p int, msg jetstream.Msg) {
	var ev events.UploadEvent
	md, err := msg.Metadata()
	if err != nil || json.Unmarshal(msg.Data(), &ev) != nil || ev.DataID == "" {
		a.log.Error().Str("subject", msg.Subject()).Msg("malformed upload event dropped")
		_ = msg.Term()
		return
	}
	seq := md.Sequence.Stream
	log := a.log.With().Str("data_id", ev.DataID).Str("event", ev.Kind).Logger()
	defer keepAlive(msg)()

	st, err := a.load(ev.DataID)
	if err != nil {
		log.Error().Err(err).Msg("reading state failed; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if st == nil && ev.Kind != events.UploadOpen {
		if st, err = a.rebuild(ctx, p, ev.DataID, seq); err != nil {
			log.Error().Err(err).Msg("rebuilding session from the stream failed; will retry")
			_ = msg.NakWithDelay(time.Second)
			return
		}
		if st == nil {
			// The session's log was purged: it ended long ago (a late
			// retry of a part, or an expiry that lost the race).
			log.Debug().Msg("event for an ended session ignored")
			_ = msg.Ack()
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
	st = apply(st, &ev, p)
	if st == nil {
		_ = msg.Ack()
		return
	}
	st.LastSeq = seq

	if err := a.effects(ctx, st, before, log); err != nil {
		if ctx.Err() != nil {
			_ = msg.Nak() // shutting down: the next owner redoes it
			return
		}
		log.Error().Err(err).Msg("applying upload event failed; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := a.save(st); err != nil {
		log.Error().Err(err).Msg("saving state failed; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn().Err(err).Msg("ack failed; the event will be redelivered and skipped")
	}
}

// apply folds one event into a session's state; it has no side effects,
// so replaying a session's log rebuilds exactly the state its owner had.
func apply(st *state, ev *events.UploadEvent, p int) *state {
	switch ev.Kind {
	case events.UploadOpen:
		if st != nil || ev.Meta == nil || ev.Total <= 0 {
			return st // opened twice (a retried publish): the first wins
		}
		return &state{Session: session.Session{DataID: ev.DataID, Status: session.Uploading, TotalLength: ev.Total,
			CreatedAt: ev.CreatedAt, ExpiresAt: ev.ExpiresAt, Partition: p, Meta: *ev.Meta, Chunked: ev.Chunked}}
	case events.UploadPart:
		if st == nil || st.Session.Status != session.Uploading || ev.Off < 0 || ev.Len <= 0 || ev.Off+ev.Len > st.Session.TotalLength {
			return st
		}
		st.Session.Ranges.Add(ev.Off, ev.Len)
		st.Session.ReceivedLength = st.Session.Ranges.Covered()
		if st.Session.Ranges.Complete(st.Session.TotalLength) {
			st.Session.Status = session.Complete
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

// effects makes the outside world match st: the shared session view,
// prefix hashing, and — when the session just ended — file-complete or the
// final verdict, the blob released and the log purged.
func (a *Assembler) effects(ctx context.Context, st *state, before string, log zerolog.Logger) error {
	s := &st.Session
	if s.Status == session.Uploading || s.Status == session.Complete {
		if err := a.hashPrefix(ctx, st); err != nil {
			// Not fatal: the scanner hashes whatever is left.
			log.Warn().Err(err).Msg("prefix hashing failed")
		}
	}
	var fc *events.FileComplete
	var earlier *result.Record
	if s.Status == session.Complete && before != session.Complete {
		var err error
		// Decided before the view says "complete": a client waiting on its
		// last chunk reads the duplicate's id from the same write.
		if fc, earlier, err = a.prepareComplete(ctx, st); err != nil {
			return err
		}
	}
	shared, err := a.publishView(ctx, st)
	if err != nil {
		return err
	}
	// An abort written by ingest straight into the shared view wins over
	// our progress (it is what every ingest node already enforces).
	if shared == session.Cancelled && s.Status == session.Uploading {
		s.Status = session.Cancelled
	}
	if s.Status == before {
		return nil
	}
	switch s.Status {
	case session.Complete:
		if earlier != nil {
			log.Info().Str("duplicate_of", s.DuplicateOf).Msg("chunked upload matches a scanned file; no new scan")
			return a.reuse(ctx, st, earlier)
		}
		if err := a.b.PublishFileComplete(ctx, fc); err != nil {
			return err
		}
		log.Info().Int64("size", s.TotalLength).Int64("hashed_on_arrival", st.HashedBytes).Msg("upload complete")
		return a.b.PurgeUpload(ctx, s.Partition, s.DataID)
	case session.Cancelled:
		log.Info().Msg("upload aborted")
		return a.end(ctx, st, result.Cancelled)
	case session.TimedOut:
		log.Info().Time("expires_at", s.ExpiresAt).Int64("received", s.ReceivedLength).Msg("upload timed out")
		return a.end(ctx, st, result.MultipartTimedOut)
	}
	return nil
}

// publishView writes the session into the shared KV view, keeping what
// ingest nodes own there (an abort, chunk reservations). It returns the
// status the view had.
func (a *Assembler) publishView(ctx context.Context, st *state) (string, error) {
	var shared string
	created := false
	_, err := a.sessions.Update(ctx, st.Session.DataID, func(cur *session.Session) (bool, error) {
		shared = cur.Status
		next := st.Session
		next.Reserved = max(cur.Reserved, next.Reserved)
		if cur.Status == session.Cancelled && next.Status == session.Uploading {
			next.Status = session.Cancelled
		}
		*cur = next
		return true, nil
	})
	if errors.Is(err, session.ErrNotFound) {
		// Ingest creates the view before it publishes open; a missing one
		// was lost with a KV bucket re-created by hand. Recreate it.
		_, err = a.sessions.Put(ctx, &st.Session, 0)
		created = true
	}
	if err != nil && !(created && errors.Is(err, session.ErrConflict)) {
		return "", fmt.Errorf("session view: %w", err)
	}
	return shared, nil
}

// hashPrefix hashes the bytes between what was hashed and the end of the
// contiguous prefix, so a file sent mostly in order is hashed by the time
// its last part lands.
func (a *Assembler) hashPrefix(ctx context.Context, st *state) error {
	end := st.Session.Ranges.PrefixEnd()
	if end <= st.HashedBytes {
		return nil
	}
	var m *hashing.Multi
	var err error
	if st.HashedBytes == 0 {
		m = hashing.New()
	} else if m, err = hashing.Restore(st.HashState); err != nil {
		return err
	}
	defer m.Close()
	obj, err := a.blobs.Open(ctx, st.Session.DataID)
	if err != nil {
		return err
	}
	defer obj.Close()
	if _, err := io.CopyBuffer(m, io.NewSectionReader(obj, st.HashedBytes, end-st.HashedBytes), make([]byte, 256<<10)); err != nil {
		return err
	}
	state, err := m.State()
	if err != nil {
		return err
	}
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
	if st.HashedBytes == s.TotalLength && st.HashState != nil {
		m, err := hashing.Restore(st.HashState)
		if err != nil {
			return nil, nil, err
		}
		fc.Hashes = m.Sums()
		m.Close()
	} else if st.HashedBytes > 0 {
		fc.HashState, fc.HashedBytes = st.HashState, st.HashedBytes
	}
	if !s.Chunked || fc.Hashes.SHA256 == "" {
		return fc, nil, nil
	}
	e, err := a.b.Hashes.Get(ctx, events.HashKey("sha256", fc.Hashes.SHA256))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fc, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	earlier, _, err = a.results.Get(ctx, string(e.Value()))
	if errors.Is(err, result.ErrNotFound) || (err == nil && (!earlier.Final() || earlier.Meta.Workflow != s.Meta.Workflow)) {
		return fc, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	s.DuplicateOf = earlier.Result.DataID
	return fc, earlier, nil
}

// reuse gives a duplicate upload a copy of the earlier result (so polling
// its own id works too), announces it, and releases its bytes.
func (a *Assembler) reuse(ctx context.Context, st *state, earlier *result.Record) error {
	s := &st.Session
	rec, rev, err := a.results.Get(ctx, s.DataID)
	if err != nil && !errors.Is(err, result.ErrNotFound) {
		return err
	}
	if rec == nil || !rec.Final() {
		cp := *earlier
		cp.Meta = s.Meta
		cp.Result.DataID, cp.Result.ScanResults.DataID = s.DataID, s.DataID
		cp.Result.FileInfo.DisplayName = s.Meta.DisplayName
		if _, err := a.results.Put(ctx, &cp, rev); err != nil && !errors.Is(err, result.ErrConflict) {
			return err
		}
	}
	return a.announceAndRelease(ctx, s)
}

// end closes a session that will never complete: final verdict (unless the
// file already has one), webhook, bytes released, log purged.
func (a *Assembler) end(ctx context.Context, st *state, code int) error {
	s := &st.Session
	for {
		rec, rev, err := a.results.Get(ctx, s.DataID)
		if errors.Is(err, result.ErrNotFound) {
			rec = result.New(s.DataID, s.TotalLength, events.Hashes{}, s.Meta, s.CreatedAt, code)
		} else if err != nil {
			return err
		}
		if rec.Final() {
			break
		}
		now := time.Now()
		rec.Finish(code, nil, s.CreatedAt, now)
		if _, err := a.results.Put(ctx, rec, rev); errors.Is(err, result.ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		break
	}
	return a.announceAndRelease(ctx, s)
}

// announceAndRelease publishes the session's final result (webhooks),
// releases its bytes and purges its log. Each step is idempotent.
func (a *Assembler) announceAndRelease(ctx context.Context, s *session.Session) error {
	done := &events.ScanDone{DataID: s.DataID, CallbackURL: s.Meta.CallbackURL, SanitizedURL: s.Meta.SanitizedURL}
	if err := a.b.PublishScanDone(ctx, done); err != nil {
		return err
	}
	if err := a.blobs.Delete(ctx, s.DataID); err != nil {
		return err
	}
	return a.b.PurgeUpload(ctx, s.Partition, s.DataID)
}

// rebuild replays a session's log up to (not including) seq, for a
// session this assembler has never seen or whose state it lost.
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
			st = apply(st, &ev, p)
			if st != nil {
				st.LastSeq = md.Sequence.Stream
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
	return a.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		if st.Session.Status != session.Uploading {
			return b.Delete([]byte(st.Session.DataID))
		}
		v, err := json.Marshal(st)
		if err != nil {
			return err
		}
		return b.Put([]byte(st.Session.DataID), v)
	})
}

// keepAlive tells JetStream the event is still being worked on (hashing a
// large part takes a while), so it is not redelivered meanwhile.
func keepAlive(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(bus.AssemblerAckWait / 4)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}
