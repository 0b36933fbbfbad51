package ingest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/hashing"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/metrics"
	"github.com/scangate/scangate/pkg/result"
)

// postFile is POST /file: the whole file in the body (or a sequential
// chunk, or, with filepath or downloadfrom, no body at all). It answers
// only once the bytes are fsynced and the file-complete event is
// acknowledged by JetStream, so a 200 survives any crash that follows.
func (s *Server) postFile(c *fiber.Ctx) error {
	if c.Get("downloadfrom") != "" || c.Get("filepath") != "" {
		return s.postSource(c) // the bytes are not in the body (sources.go)
	}
	size, err := bodyLength(c)
	if err != nil {
		return err
	}
	if size == 0 {
		return apiError(fiber.StatusUnprocessableEntity, "File is empty.")
	}
	declared, fileID, err := chunkHeaders(c)
	if err != nil {
		return err
	}
	if fileID != "" || declared > 0 && declared != size {
		return s.postChunk(c, size, declared, fileID)
	}
	meta, err := s.fileMeta(c)
	if err != nil {
		return err
	}
	if err := s.admitFile(c, meta, size); err != nil {
		return err
	}
	body := s.bodyStream(c)
	return s.acceptFile(c, meta, size, body, func(err error, log zerolog.Logger) error {
		return s.storeError(err, body, log)
	})
}

// admitFile decides, before a byte is read, whether a new whole file of
// size bytes is taken: the workflow's size limit, the disk reserve, the
// scan queue and the user's scan limit.
func (s *Server) admitFile(c *fiber.Ctx, meta events.FileMeta, size int64) error {
	wf, _ := s.opts.Workflows.Get(meta.Workflow)
	if wf.MaxFileSize > 0 && size > int64(wf.MaxFileSize) {
		return apiError(fiber.StatusRequestEntityTooLarge, "File is too large for this rule.")
	}
	if err := s.checkDisk(size); err != nil {
		return err
	}
	return s.admit(c)
}

// acceptFile stores the size bytes src gives as a new file and queues it:
// the request body, or a file on the server's disk (filepath). It answers
// only once the bytes are fsynced and the file's queued event is
// acknowledged by JetStream, so a 200 survives any crash that follows.
// readFailed maps a failure while reading or storing the bytes to the
// answer.
func (s *Server) acceptFile(c *fiber.Ctx, meta events.FileMeta, size int64, src io.Reader,
	readFailed func(error, zerolog.Logger) error) error {
	dataID := ids.New()
	setDataID(c, dataID)
	log := s.log.With().Str("data_id", dataID).Logger()
	uploadedAt := time.Now()
	h := hashing.New()
	defer h.Close()
	fc := &events.FileComplete{DataID: dataID, Size: size, Meta: meta,
		Priority: requestedPriority(c, events.PriorityNormal), UploadedAt: uploadedAt}
	if size <= events.InlineMax && s.inline.take(size) {
		defer s.inline.give(size)
		// A small file travels inside its events: its bytes become
		// durable with the event that accepts it, in one group commit
		// shared with the other uploads of the moment.
		fc.Data = make([]byte, size)
		if _, err := io.ReadFull(src, fc.Data); err != nil {
			return readFailed(err, log)
		}
		h.Write(fc.Data)
		fc.Hashes = h.Sums()
	} else {
		hw := &handoffHasher{h: h}
		if err := s.blobs.WriteAt(s.ctx, dataID, 0, io.TeeReader(src, hw), size); err != nil {
			s.discard(dataID)
			return readFailed(err, log)
		}
		if hw.stopped {
			// The digests could not keep up with the disk: the scanner
			// hashes the rest (all of it when no state was kept) while it
			// scans (events.FileComplete.HashState).
			fc.HashState, fc.HashedBytes = hw.state, hw.hashed
			log.Debug().Int64("hashed", hw.hashed).Int64("size", size).Msg("hashing handed to the scanner")
		} else {
			fc.Hashes = h.Sums()
		}
	}
	if err := s.joinUpload(&meta, dataID, fc.Data == nil); err != nil {
		return err // the batch closed while the body came in (batch.go)
	}
	if err := s.queueFile(fc, log); err != nil {
		return err
	}
	log.Info().Int64("size", size).Str("workflow", meta.Workflow).Str("sha256", fc.Hashes.SHA256).Msg("file accepted")
	s.opts.Metrics.Upload(metrics.UploadFile, size)
	return c.JSON(fiber.Map{"data_id": dataID})
}

// queueFile publishes the one durable event that makes a file accepted:
// the recorder writes its 255 record from it and queues it for the
// scanners. A file whose event is not stored leaves no bytes behind.
func (s *Server) queueFile(fc *events.FileComplete, log zerolog.Logger) error {
	ev := &result.Event{Kind: result.EventQueued, DataID: fc.DataID, File: fc}
	if err := s.b.PublishResult(s.ctx, ev, "queued-"+fc.DataID); err != nil {
		if fc.Data == nil && fc.DownloadFrom == "" {
			s.discard(fc.DataID)
		}
		return s.queueError(err, log)
	}
	return nil
}

// inlineBudget bounds the bytes of small files held in memory at once while
// they are committed inside their events (each is held a few times over:
// body, event JSON, the message on its way to JetStream). Past it, small
// files take the blob path like large ones, which streams.
const inlineBudget = 32 << 20

// byteBudget is a count of bytes in use against a limit.
type byteBudget struct{ used atomic.Int64 }

// take reserves n bytes if they fit.
func (b *byteBudget) take(n int64) bool {
	if b.used.Add(n) > inlineBudget {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *byteBudget) give(n int64) { b.used.Add(-n) }

// handoffHasher feeds an upload's bytes to the digests for as long as they
// keep up. The four digests cost about 5.6 ms of CPU per MB together, more
// than a fast disk takes to write it, so on a small host they would set
// the upload's pace; once they fall behind
// it stops, keeps their state, and the scanner hashes the rest while it
// reads the file to scan it anyway. The upload then runs at disk speed,
// and the hashing is done on the scanners, which scale out.
type handoffHasher struct {
	h       digester
	stopped bool
	state   []byte
	hashed  int64
}

// digester is what handoffHasher needs of a *hashing.Multi.
type digester interface {
	io.Writer
	Behind() bool
	State() ([]byte, error)
	Len() int64
}

func (w *handoffHasher) Write(p []byte) (int, error) {
	if w.stopped {
		return len(p), nil
	}
	if w.h.Behind() {
		state, err := w.h.State()
		if err == nil && w.h.Len() > 0 {
			w.state, w.hashed = state, w.h.Len()
		}
		// Without a state the scanner hashes from the start: hashed 0.
		w.stopped = true
		return len(p), nil
	}
	return w.h.Write(p)
}

// bodyLength is the declared body length. Uploads must say how long they
// are: a chunked body cannot be checked against limits before it is read.
// A client that sent a body we cannot frame may still be sending it, so
// the connection closes after the answer.
func bodyLength(c *fiber.Ctx) (int64, error) {
	n := c.Request().Header.ContentLength()
	if n < 0 || !declaresLength(&c.Request().Header) {
		closeAfter(c.Context())
		return 0, apiError(fiber.StatusLengthRequired, "Missing Content-Length header.")
	}
	return int64(n), nil
}

// declaresLength reports whether the request came with a Content-Length
// header. fasthttp gives a request without one (and without
// Transfer-Encoding) a length of 0, indistinguishable from an empty body
// but in the headers as received.
func declaresLength(h *fasthttp.RequestHeader) bool {
	for line := range bytes.Lines(h.RawHeaders()) {
		name, _, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(name)), fiber.HeaderContentLength) {
			return true
		}
	}
	return false
}

// chunkHeaders reads X-File-Size / X-File-ID. A declared size equal to
// the body is a whole file in one request (clients send it on every
// upload); anything else is the sequential-chunk protocol.
func chunkHeaders(c *fiber.Ctx) (declared int64, fileID string, err error) {
	if v := c.Get("X-File-Size"); v != "" {
		declared, err = strconv.ParseInt(v, 10, 64)
		if err != nil || declared <= 0 {
			return 0, "", apiError(fiber.StatusBadRequest, "Invalid X-File-Size header.")
		}
	}
	return declared, c.Get("X-File-ID"), nil
}

// checkDisk refuses an upload that would leave less than the reserve free.
func (s *Server) checkDisk(size int64) error {
	sr, ok := s.blobs.(blob.SpaceReporter)
	if !ok || s.opts.DiskReserve <= 0 {
		return nil
	}
	free, err := sr.FreeBytes()
	if err != nil {
		s.log.Warn().Err(err).Msg("free disk space unknown")
		return nil
	}
	if free-size < s.opts.DiskReserve {
		s.log.Warn().Int64("free", free).Int64("size", size).Int64("reserve", s.opts.DiskReserve).Msg("upload refused: disk reserve reached")
		return apiError(fiber.StatusInternalServerError, "Not enough disk space")
	}
	return nil
}

// queueError maps a failed publish (a result or upload event) to API.md's
// answer: the client may try again; the cause is ours and logged.
func (s *Server) queueError(err error, log zerolog.Logger) error {
	log.Error().Err(err).Msg("publishing to JetStream failed")
	return apiError(fiber.StatusServiceUnavailable, "Failed to request scan. Try again later.")
}

// bodyStream returns the request body as a reader that fills whole
// buffers, so hashing and disk writes work on large chunks. The connection
// (see clientConn) gives up on a client that stops sending for IdleTimeout.
func (s *Server) bodyStream(c *fiber.Ctx) *clientBody {
	var r io.Reader = c.Context().RequestBodyStream()
	if r == nil {
		r = bytes.NewReader(c.Body())
	}
	b := &clientBody{r: fullReader{r}, want: int64(c.Request().Header.ContentLength())}
	c.Locals(bodyKey, b)
	return b
}

// bodyKey keys (in the request's locals) the body a handler reads, for
// finishBody.
const bodyKey = "scangate.body"

// fullReader fills the whole buffer on every Read but the last.
type fullReader struct{ r io.Reader }

func (r fullReader) Read(p []byte) (int, error) {
	n, err := io.ReadFull(r.r, p)
	if errors.Is(err, io.ErrUnexpectedEOF) && n > 0 {
		err = nil // the short tail of the body; the next Read reports EOF
	}
	return n, err
}

// discard removes the bytes of an upload that was not accepted.
func (s *Server) discard(dataID string) {
	if err := s.blobs.Delete(context.Background(), dataID); err != nil {
		s.log.Warn().Err(err).Str("data_id", dataID).Msg("removing refused upload failed")
	}
}
