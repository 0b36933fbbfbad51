package ingest

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/rangeset"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/session"
)

// expiryGrace is how long after a session's deadline its expire event
// fires. Ingest refuses parts from the deadline on; the grace covers a part
// that passed that check a moment before and is still being written.
const expiryGrace = 5 * time.Second

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

// openSession creates an upload session: the shared view, the 256
// "Multipart Uploading" result, the open event for the assembler and the
// scheduled expiry. Shared by POST /file/multipart and the first chunk of a
// sequential upload.
func (s *Server) openSession(ctx context.Context, total int64, meta events.FileMeta, chunked bool, ttl time.Duration) (*session.Session, error) {
	id := ids.New()
	now := time.Now()
	sess := &session.Session{DataID: id, Status: session.Uploading, TotalLength: total, CreatedAt: now,
		ExpiresAt: now.Add(ttl), Partition: events.Partition(id, s.b.Opts.Partitions), Meta: meta, Chunked: chunked}
	log := s.log.With().Str("data_id", id).Logger()
	fail := func(err error) (*session.Session, error) {
		_ = s.b.Sessions.Delete(context.Background(), id)
		_ = s.b.Results.Delete(context.Background(), id)
		return nil, s.queueError(err, log)
	}
	if _, err := s.sessions.Put(ctx, sess, 0); err != nil {
		return fail(err)
	}
	if _, err := s.results.Put(ctx, result.New(id, total, events.Hashes{}, meta, now, result.MultipartUploading), 0); err != nil {
		return fail(err)
	}
	open := &events.UploadEvent{Kind: events.UploadOpen, DataID: id, Total: total, Meta: &meta,
		CreatedAt: now, ExpiresAt: sess.ExpiresAt, Chunked: chunked}
	if err := s.b.PublishUpload(ctx, sess.Partition, open, "open-"+id); err != nil {
		return fail(err)
	}
	if err := s.b.ScheduleExpiry(ctx, sess.Partition, id, sess.ExpiresAt.Add(expiryGrace)); err != nil {
		return fail(err)
	}
	log.Info().Int64("total", total).Bool("chunked", chunked).Time("expires_at", sess.ExpiresAt).Msg("upload session opened")
	return sess, nil
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
	sess, err := s.openSession(c.UserContext(), total, meta, false, wf.Multipart.TTL)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"data_id": sess.DataID})
}

// getMultipart is GET /file/multipart/{data_id}: what was received and
// what is missing.
func (s *Server) getMultipart(c *fiber.Ctx) error {
	id := c.Params("id")
	if !ids.Valid(id) {
		return errSessionNotFound
	}
	sess, _, err := s.sessions.Get(c.UserContext(), id)
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

// deleteMultipart is DELETE /file/multipart/{data_id}: abort. The shared
// view says "cancelled" before the answer, so every node refuses further
// parts; the broadcast cuts off parts still streaming in anywhere; the
// assembler releases the bytes and writes verdict 19.
func (s *Server) deleteMultipart(c *fiber.Ctx) error {
	id := c.Params("id")
	if !ids.Valid(id) {
		return errSessionNotFound
	}
	ctx := c.UserContext()
	var answer error
	sess, err := s.sessions.Update(ctx, id, func(sess *session.Session) (bool, error) {
		switch {
		case sess.Status == session.Complete:
			answer = apiError(fiber.StatusConflict, "Multipart uploading session already completed.")
		case sess.Status == session.TimedOut || sess.Status == session.Uploading && !time.Now().Before(sess.ExpiresAt):
			answer = errSessionTimedOut
		case sess.Status == session.Cancelled:
			// Repeated abort: same answer, and the events below again
			// (idempotent) in case the first request died half-way.
		default:
			sess.Status = session.Cancelled
			return true, nil
		}
		return false, nil
	})
	if errors.Is(err, session.ErrNotFound) {
		return errSessionNotFound
	}
	if err != nil {
		return err
	}
	if answer != nil {
		return answer
	}
	if err := s.b.NC.Publish(events.AbortSubject(id), nil); err != nil {
		s.log.Warn().Err(err).Str("data_id", id).Msg("abort broadcast failed; parts in flight finish and are refused")
	}
	if err := s.b.PublishUpload(ctx, sess.Partition, &events.UploadEvent{Kind: events.UploadAbort, DataID: id}, "abort-"+id); err != nil {
		return err
	}
	s.log.Info().Str("data_id", id).Msg("upload session aborted")
	return c.JSON(map[string]string{id: "cancelled"})
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
	ctx := c.UserContext()
	sess, _, err := s.sessions.Get(ctx, id)
	if errors.Is(err, session.ErrNotFound) {
		return errSessionNotFound
	}
	if err != nil {
		return err
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
	if err := s.checkDisk(n); err != nil {
		return err
	}
	if err := s.storePart(c, sess, off, n); err != nil {
		return err
	}
	return c.JSON(partAnswer(sess, &rangeset.Range{Off: off, Len: n}))
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

// storePart streams the body into the blob at off, then checks the session
// was not aborted meanwhile, then publishes the part event.
func (s *Server) storePart(c *fiber.Ctx, sess *session.Session, off, n int64) error {
	id := sess.DataID
	log := s.log.With().Str("data_id", id).Int64("off", off).Int64("len", n).Logger()
	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	defer s.parts.add(id, &cancel)()
	body := s.bodyStream(c)
	// An abort must not wait for a stalled client's next byte.
	stopCut := context.AfterFunc(ctx, func() {
		if conn := c.Context().Conn(); conn != nil {
			_ = conn.SetReadDeadline(time.Now())
		}
	})
	defer stopCut()

	err := s.blobs.WriteAt(ctx, id, off, body, n)
	if errors.Is(context.Cause(ctx), errAborted) {
		log.Info().Msg("part cut off by abort")
		return errSessionCancelled
	}
	if err != nil {
		return s.storeError(err, body, log)
	}
	// The abort may have landed on another node while we wrote: look again,
	// and release what we wrote if so (the assembler may already have).
	if cur, _, err := s.sessions.Get(s.ctx, id); err == nil {
		if cur.Status == session.Cancelled || cur.Status == session.TimedOut {
			_ = s.blobs.Delete(context.Background(), id)
			return refuseClosed(cur)
		}
	}
	part := &events.UploadEvent{Kind: events.UploadPart, DataID: id, Off: off, Len: n}
	if err := s.b.PublishUpload(s.ctx, sess.Partition, part, fmt.Sprintf("part-%s-%d-%d", id, off, n)); err != nil {
		return s.queueError(err, log)
	}
	log.Debug().Msg("part stored")
	return nil
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
// chunk declares X-File-Size and opens a session; later chunks name it
// with X-File-ID and are appended in arrival order (each request reserves
// its offset with compare-and-set, so concurrent chunks never overlap).
func (s *Server) postChunk(c *fiber.Ctx, size int64, declared int64, fileID string) error {
	ctx := c.UserContext()
	var sess *session.Session
	var off int64
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
		ttl := wf.Multipart.TTL
		if ttl <= 0 {
			ttl = time.Hour
		}
		if sess, err = s.openSession(ctx, declared, meta, true, ttl); err != nil {
			return err
		}
		if _, err := s.sessions.Update(ctx, sess.DataID, func(cur *session.Session) (bool, error) {
			cur.Reserved = max(cur.Reserved, size)
			return true, nil
		}); err != nil {
			return err
		}
	} else {
		if !ids.Valid(fileID) {
			return apiError(fiber.StatusBadRequest, "Invalid X-File-ID header.")
		}
		var answer error
		cur, err := s.sessions.Update(ctx, fileID, func(cur *session.Session) (bool, error) {
			answer = refuseClosed(cur)
			switch {
			case answer != nil:
			case !cur.Chunked:
				answer = apiError(fiber.StatusBadRequest, "Invalid X-File-ID header.")
			case cur.Status == session.Complete || cur.Reserved+size > cur.TotalLength:
				answer = apiError(fiber.StatusBadRequest, "File size exceeded the declared X-File-Size.")
			default:
				off = cur.Reserved
				cur.Reserved += size
				return true, nil
			}
			return false, nil
		})
		if errors.Is(err, session.ErrNotFound) {
			return apiError(fiber.StatusBadRequest, "Invalid X-File-ID header.")
		}
		if err != nil {
			return err
		}
		if answer != nil {
			return answer
		}
		sess = cur
	}
	if err := s.storePart(c, sess, off, size); err != nil {
		return err
	}
	if off+size < sess.TotalLength {
		return c.JSON(fiber.Map{"data_id": sess.DataID})
	}
	// The last chunk: answer with the data_id the file ends up under — an
	// earlier scan of the same bytes under the same workflow, if any.
	return c.JSON(fiber.Map{"data_id": s.awaitCompletion(ctx, sess.DataID, s.log.With().Str("data_id", sess.DataID).Logger())})
}

// awaitCompletion waits (bounded) for the assembler to finish a chunked
// session and returns the id its result lives under.
func (s *Server) awaitCompletion(ctx context.Context, id string, log zerolog.Logger) string {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		sess, _, err := s.sessions.Get(ctx, id)
		if err == nil && sess.Status != session.Uploading {
			if sess.DuplicateOf != "" {
				return sess.DuplicateOf
			}
			return id
		}
		time.Sleep(10 * time.Millisecond)
	}
	log.Warn().Msg("chunked upload not assembled within 30s; answering with its own id")
	return id
}
