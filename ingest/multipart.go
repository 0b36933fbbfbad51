package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/metrics"
	"github.com/scangate/scangate/pkg/rangeset"
	"github.com/scangate/scangate/pkg/session"
)

// viewWait bounds how long a request waits for the assembler to apply its
// event to the session view (open, abort, a sequential chunk).
const viewWait = 15 * time.Second

// errAborted is the cause of a part cut off by DELETE /file/multipart/{id}.
var errAborted = errors.New("upload session aborted")

var (
	errSessionNotFound  = apiError(fiber.StatusNotFound, "Multipart uploading session not found.")
	errSessionCancelled = apiError(fiber.StatusGone, "Multipart uploading session cancelled")
	errSessionTimedOut  = apiError(fiber.StatusGone, "Multipart uploading session timed out")
)

// inflight tracks the parts this node is receiving, so an abort broadcast
// from any node cuts them off at once.
type inflight struct {
	mu    sync.Mutex
	parts map[string]map[*context.CancelCauseFunc]struct{}
}

func (f *inflight) add(id string, cancel *context.CancelCauseFunc) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.parts == nil {
		f.parts = map[string]map[*context.CancelCauseFunc]struct{}{}
	}
	if f.parts[id] == nil {
		f.parts[id] = map[*context.CancelCauseFunc]struct{}{}
	}
	f.parts[id][cancel] = struct{}{}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.parts[id], cancel)
		if len(f.parts[id]) == 0 {
			delete(f.parts, id)
		}
	}
}

func (f *inflight) abort(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for cancel := range f.parts[id] {
		(*cancel)(errAborted)
	}
}

// listenAborts subscribes to abort broadcasts for the node's lifetime.
func (s *Server) listenAborts() error {
	_, err := s.b.NC.Subscribe(events.AbortSubjects, func(m *nats.Msg) {
		s.parts.abort(m.Subject[len(events.AbortSubject("")):])
	})
	return err
}

// openSession opens an upload session: the open event goes to the
// assembler, the session's only writer, and the answer waits until its view
// exists, so the client's first part (to any node) finds it. Shared by POST
// /file/multipart and the first chunk of a sequential upload.
func (s *Server) openSession(ctx context.Context, total int64, meta events.FileMeta, chunked bool, ttl time.Duration) (*session.Session, error) {
	now := time.Now()
	return s.openUpload(ctx, &events.UploadEvent{Kind: events.UploadOpen, DataID: ids.New(), Total: total, Meta: &meta,
		CreatedAt: now, ExpiresAt: now.Add(ttl), Chunked: chunked})
}

// openUpload publishes an open event and waits for the session's view.
func (s *Server) openUpload(ctx context.Context, open *events.UploadEvent) (*session.Session, error) {
	id, total, chunked := open.DataID, open.Total, open.Chunked
	if err := s.joinBatch(ctx, open.Meta.Batch, id); err != nil {
		return nil, err // the batch closed meanwhile (batch.go)
	}
	p := events.Partition(id, s.b.Opts.Partitions)
	log := s.log.With().Str("data_id", id).Logger()
	if _, err := s.b.PublishUpload(ctx, p, open, "open-"+id); err != nil {
		return nil, s.queueError(err, log)
	}
	sess, err := s.waitView(ctx, id, func(*session.Session) bool { return true })
	if err != nil {
		log.Error().Err(err).Msg("upload session not opened in time; is an assembler running?")
		return nil, apiError(fiber.StatusServiceUnavailable, "Failed to request scan. Try again later.")
	}
	log.Info().Int64("total", total).Bool("chunked", chunked).Time("expires_at", sess.ExpiresAt).Msg("upload session opened")
	return sess, nil
}

// ownSession is the view of upload session id for the request's user:
// another user's session is session.ErrNotFound, like an unknown one.
func (s *Server) ownSession(c *fiber.Ctx, id string) (*session.Session, error) {
	sess, _, err := s.sessions.Get(c.UserContext(), id)
	if err == nil && !sees(c, sess.Meta.Username) {
		return nil, session.ErrNotFound
	}
	return sess, err
}

// waitView waits (bounded by viewWait) for the session view to satisfy cond.
func (s *Server) waitView(ctx context.Context, id string, cond func(*session.Session) bool) (*session.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, viewWait)
	defer cancel()
	return s.sessions.Wait(ctx, id, cond)
}

// postMultipart is POST /file/multipart: open a session for parts.
func (s *Server) postMultipart(c *fiber.Ctx) error {
	total, err := strconv.ParseInt(c.Get("total-length"), 10, 64)
	if err != nil || total <= 0 {
		return apiError(fiber.StatusBadRequest, "Missing or invalid total-length header.")
	}
	meta, err := s.fileMeta(c)
	if err != nil {
		return err
	}
	wf, _ := s.opts.Workflows.Get(meta.Workflow)
	if !wf.Multipart.Enabled {
		return apiError(fiber.StatusForbidden, "Multipart upload is not enabled for this rule.")
	}
	if wf.MaxFileSize > 0 && total > int64(wf.MaxFileSize) {
		return apiError(fiber.StatusRequestEntityTooLarge, "File is too large for this rule.")
	}
	if err := s.checkDisk(total); err != nil {
		return err
	}
	if err := s.admit(c); err != nil {
		return err
	}
	sess, err := s.openSession(c.UserContext(), total, meta, false, wf.Multipart.TTL)
	if err != nil {
		return err
	}
	setDataID(c, sess.DataID)
	return c.JSON(fiber.Map{"data_id": sess.DataID})
}

// getMultipart is GET /file/multipart/{data_id}: what was received and
// what is missing.
func (s *Server) getMultipart(c *fiber.Ctx) error {
	id := c.Params("id")
	if !ids.Valid(id) {
		return errSessionNotFound
	}
	sess, err := s.ownSession(c, id)
	if errors.Is(err, session.ErrNotFound) {
		return errSessionNotFound
	}
	if err != nil {
		return err
	}
	if sess.Status == session.Uploading && !time.Now().Before(sess.ExpiresAt) {
		sess.Status = session.TimedOut // the expire event is on its way
	}
	return c.JSON(sess.View())
}

// deleteMultipart is DELETE /file/multipart/{data_id}: abort. The abort
// event goes to the assembler; once it is durable, every node is told to
// cut off parts still streaming in; the answer reports how the session
// ended, as the assembler decided it (an abort that lost the race to the
// last part is a 409).
func (s *Server) deleteMultipart(c *fiber.Ctx) error {
	id := c.Params("id")
	if !ids.Valid(id) {
		return errSessionNotFound
	}
	ctx := c.UserContext()
	sess, err := s.ownSession(c, id)
	if errors.Is(err, session.ErrNotFound) {
		return errSessionNotFound
	}
	if err != nil {
		return err
	}
	if err := abortAnswer(sess); err != nil || sess.Status == session.Cancelled {
		return err
	}
	if _, err := s.b.PublishUpload(ctx, sess.Partition, &events.UploadEvent{Kind: events.UploadAbort, DataID: id}, "abort-"+id); err != nil {
		return s.queueError(err, s.log.With().Str("data_id", id).Logger())
	}
	if err := s.b.NC.Publish(events.AbortSubject(id), nil); err != nil {
		s.log.Warn().Err(err).Str("data_id", id).Msg("abort broadcast failed; parts in flight finish and are refused")
	}
	ended, err := s.waitView(ctx, id, func(v *session.Session) bool { return v.Status != session.Uploading })
	if err != nil {
		// The abort is in the session's log and will be applied.
		s.log.Warn().Err(err).Str("data_id", id).Msg("abort not applied in time; answering from the log")
	} else if err := abortAnswer(ended); err != nil {
		return err
	}
	s.log.Info().Str("data_id", id).Msg("upload session aborted")
	return c.JSON(map[string]string{id: "cancelled"})
}

// abortAnswer is the error an abort of sess gets, nil when it may proceed
// (or, for a cancelled session, already has: a repeated abort is answered
// like the first).
func abortAnswer(sess *session.Session) error {
	switch {
	case sess.Status == session.Complete:
		return apiError(fiber.StatusConflict, "Multipart uploading session already completed.")
	case sess.Status == session.TimedOut || sess.Status == session.Uploading && !time.Now().Before(sess.ExpiresAt):
		return errSessionTimedOut
	}
	return nil
}

// postPart is POST /file/multipart/{data_id}: one part, at the offset its
// content-range names. It answers only once the bytes are durable and the
// assembler's event is in the stream.
func (s *Server) postPart(c *fiber.Ctx) error {
	id := c.Params("id")
	if !ids.Valid(id) {
		return errSessionNotFound
	}
	if mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType)); err != nil || mt != "application/octet-stream" {
		return apiError(fiber.StatusBadRequest, "Content-Type must be application/octet-stream.")
	}
	off, n, total, err := ParseContentRange(c.Get("content-range"))
	if err != nil {
		return apiError(fiber.StatusBadRequest, err.Error())
	}
	size, err := bodyLength(c)
	if err != nil {
		return err
	}
	if size != n {
		return apiError(fiber.StatusBadRequest, "Content-Length must equal the length in content-range.")
	}
	sess, err := s.ownSession(c, id)
	if errors.Is(err, session.ErrNotFound) {
		return errSessionNotFound
	}
	if err != nil {
		return err
	}
	if sess.Presigned != nil {
		return apiError(fiber.StatusBadRequest, "This upload takes pre-signed parts (PUT to its signed URLs).")
	}
	if err := refuseClosed(sess); err != nil {
		return err
	}
	if sess.Status == session.Complete {
		return c.JSON(partAnswer(sess, nil)) // a retry after the end: nothing to store
	}
	if total != sess.TotalLength {
		return apiError(fiber.StatusBadRequest, "Content-Range total differs from the session's total-length.")
	}
	if sess.Chunked {
		return apiError(fiber.StatusBadRequest, "This session takes sequential chunks (POST /file with X-File-ID).")
	}
	if err := s.checkPartLimits(sess, off, n); err != nil {
		return err
	}
	if err := s.checkDisk(n); err != nil {
		return err
	}
	if err := s.storePart(c, sess, off, n); err != nil {
		return err
	}
	return c.JSON(partAnswer(sess, &rangeset.Range{Off: off, Len: n}))
}

// checkPartLimits refuses parts that would make a session cost more than
// it should: tiny parts (one event each) and ranges so scattered that the
// session's view grows without bound. Both are checked against the view
// as this node sees it; parts racing in on other nodes can pass it by at
// most their number.
func (s *Server) checkPartLimits(sess *session.Session, off, n int64) error {
	if min := s.opts.MinPartSize; n < min && off+n != sess.TotalLength {
		return apiError(fiber.StatusBadRequest, fmt.Sprintf("Part is smaller than the minimum part size (%d bytes); only the last part of a file may be smaller.", min))
	}
	if max := s.opts.MaxRanges; max > 0 {
		set := sess.Ranges.Clone()
		set.Add(off, n)
		if set.Len() > max {
			return apiError(fiber.StatusBadRequest, fmt.Sprintf("Too many separate ranges in this session (at most %d); send the missing ranges first.", max))
		}
	}
	return nil
}

// refuseClosed answers parts for sessions that no longer take them.
func refuseClosed(sess *session.Session) error {
	switch {
	case sess.Status == session.Cancelled:
		return errSessionCancelled
	case sess.Status == session.TimedOut, sess.Status == session.Uploading && !time.Now().Before(sess.ExpiresAt):
		return errSessionTimedOut
	}
	return nil
}

// storePart streams the body into the file at off, then publishes the
// part event (with the part's sha256, so the assembler can tell a retry
// from a rewrite).
func (s *Server) storePart(c *fiber.Ctx, sess *session.Session, off, n int64) error {
	log := s.log.With().Str("data_id", sess.DataID).Int64("off", off).Int64("len", n).Logger()
	sum, err := s.receive(c, sess, sess.DataID, off, n, log)
	if err != nil {
		return err
	}
	part := &events.UploadEvent{Kind: events.UploadPart, DataID: sess.DataID, Off: off, Len: n, Digest: sum}
	// Every stored part is its own event, even one resent with the same
	// bytes: a duplicate event changes nothing, a dropped one could leave a
	// hole the client was told is filled.
	if _, err := s.b.PublishUpload(s.ctx, sess.Partition, part, "part-"+ids.New()); err != nil {
		return s.queueError(err, log)
	}
	log.Debug().Msg("part stored")
	s.opts.Metrics.Upload(metrics.UploadPart, n)
	return nil
}

// receive streams the request body (n bytes) into blob key at off. A part
// being received is cut off by an abort from any node; after the write it
// checks the session was not ended meanwhile, and releases what it wrote
// if so. It returns the body's sha256 (hex).
func (s *Server) receive(c *fiber.Ctx, sess *session.Session, key string, off, n int64, log zerolog.Logger) (string, error) {
	return s.receiveHashed(c, sess, key, off, n, sha256.New(), log)
}

// receiveHashed is receive with the digest of the caller's choosing (a
// pre-signed part's ETag is its md5, as S3's is).
func (s *Server) receiveHashed(c *fiber.Ctx, sess *session.Session, key string, off, n int64, digest hash.Hash, log zerolog.Logger) (string, error) {
	id := sess.DataID
	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	defer s.parts.add(id, &cancel)()
	body := s.bodyStream(c)
	// An abort must not wait for a stalled client's next byte. The
	// connection is taken now: the callback may run after the handler
	// returned and fiber recycled its context.
	if conn := c.Context().Conn(); conn != nil {
		stopCut := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
		defer stopCut()
	}

	err := s.blobs.WriteAt(ctx, key, off, io.TeeReader(body, digest), n)
	if errors.Is(context.Cause(ctx), errAborted) {
		log.Info().Msg("part cut off by abort")
		if key != id {
			s.discard(key)
		}
		return "", errSessionCancelled
	}
	if err != nil {
		if key != id {
			s.discard(key)
		}
		return "", s.storeError(err, body, log)
	}
	// The abort may have been applied while we wrote: look again, and
	// release what we wrote if so (the assembler may already have).
	if cur, _, err := s.sessions.Get(s.ctx, id); err == nil {
		if cur.Status == session.Cancelled || cur.Status == session.TimedOut {
			s.discard(key)
			if key != id {
				s.discard(id)
			}
			return "", refuseClosed(cur)
		}
	}
	return hex.EncodeToString(digest.Sum(nil)), nil
}

// partAnswer is the 200 body for a part: progress as this node sees it —
// the assembler's last view plus this part.
func partAnswer(sess *session.Session, part *rangeset.Range) fiber.Map {
	set := sess.Ranges.Clone()
	if part != nil {
		set.Add(part.Off, part.Len)
	}
	status := sess.Status
	if set.Complete(sess.TotalLength) {
		status = session.Complete
	}
	return fiber.Map{"data_id": sess.DataID, "received_length": set.Covered(), "total_length": sess.TotalLength, "status": status}
}

// postChunk handles the sequential-chunk protocol on POST /file: the first
// chunk declares X-File-Size and opens a session; later chunks name it with
// X-File-ID and are appended in arrival order. A chunk's bytes are staged
// in a blob of their own; only once they are all stored does its event ask
// the assembler to append them, at the offset the assembler decides. So a
// chunk cut off mid-body leaves no trace (its retry simply works), and
// chunks sent at once on several nodes never overlap. Each chunk is
// answered once the assembler has applied it.
func (s *Server) postChunk(c *fiber.Ctx, size int64, declared int64, fileID string) error {
	ctx := c.UserContext()
	var sess *session.Session
	if fileID == "" {
		if size > declared {
			return apiError(fiber.StatusBadRequest, "File size exceeded the declared X-File-Size.")
		}
		meta, err := s.fileMeta(c)
		if err != nil {
			return err
		}
		wf, _ := s.opts.Workflows.Get(meta.Workflow)
		if wf.MaxFileSize > 0 && declared > int64(wf.MaxFileSize) {
			return apiError(fiber.StatusRequestEntityTooLarge, "File is too large for this rule.")
		}
		if err := s.checkDisk(declared); err != nil {
			return err
		}
		if err := s.admit(c); err != nil {
			return err
		}
		ttl := wf.Multipart.TTL
		if ttl <= 0 {
			ttl = time.Hour
		}
		if sess, err = s.openSession(ctx, declared, meta, true, ttl); err != nil {
			return err
		}
	} else {
		if !ids.Valid(fileID) {
			return apiError(fiber.StatusBadRequest, "Invalid X-File-ID header.")
		}
		cur, err := s.ownSession(c, fileID)
		if errors.Is(err, session.ErrNotFound) {
			return apiError(fiber.StatusBadRequest, "Invalid X-File-ID header.")
		}
		if err != nil {
			return err
		}
		if err := refuseClosed(cur); err != nil {
			return err
		}
		if !cur.Chunked {
			return apiError(fiber.StatusBadRequest, "Invalid X-File-ID header.")
		}
		if cur.Status == session.Complete || cur.ReceivedLength+size > cur.TotalLength {
			return apiError(fiber.StatusBadRequest, "File size exceeded the declared X-File-Size.")
		}
		sess = cur
	}
	if min := s.opts.MinPartSize; size < min && sess.ReceivedLength+size < sess.TotalLength {
		return apiError(fiber.StatusBadRequest, fmt.Sprintf("Chunk is smaller than the minimum part size (%d bytes); only the last chunk of a file may be smaller.", min))
	}
	if err := s.checkDisk(2 * size); err != nil { // staged, then appended
		return err
	}
	setDataID(c, sess.DataID)
	log := s.log.With().Str("data_id", sess.DataID).Int64("len", size).Logger()
	staged := sess.DataID + ".c" + ids.New()[:15]
	if _, err := s.receive(c, sess, staged, 0, size, log); err != nil {
		return err
	}
	ev := &events.UploadEvent{Kind: events.UploadChunk, DataID: sess.DataID, Len: size, Staged: staged}
	seq, err := s.b.PublishUpload(s.ctx, sess.Partition, ev, "chunk-"+staged)
	if err != nil {
		s.discard(staged)
		return s.queueError(err, log)
	}
	applied, err := s.waitView(ctx, sess.DataID, func(v *session.Session) bool {
		return v.Seq >= seq || v.Status != session.Uploading
	})
	if err != nil {
		log.Error().Err(err).Msg("chunk not applied in time; is an assembler running?")
		return apiError(fiber.StatusServiceUnavailable, "Failed to request scan. Try again later.")
	}
	if slices.Contains(applied.Refused, seq) {
		return apiError(fiber.StatusBadRequest, "File size exceeded the declared X-File-Size.")
	}
	if err := refuseClosed(applied); err != nil {
		return err
	}
	s.opts.Metrics.Upload(metrics.UploadChunk, size)
	if applied.Status != session.Complete {
		return c.JSON(fiber.Map{"data_id": sess.DataID})
	}
	// The last chunk: answer with the data_id the file ends up under — an
	// earlier scan of the same bytes under the same workflow, if any.
	if applied.DuplicateOf != "" {
		return c.JSON(fiber.Map{"data_id": applied.DuplicateOf})
	}
	return c.JSON(fiber.Map{"data_id": sess.DataID})
}
