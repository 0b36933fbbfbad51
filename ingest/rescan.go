package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

// Rescans (MetaDefender Cloud style): the stored original of a file is
// scanned again, with today's engines and the file's workflow, as a new
// scan with a new data_id. Its result belongs to the file's owner, carries
// the file's metadata, and reports the file as its file_id (the original's
// data_id), which stays the same across rescans.
//
// A rescan is a new file for the pipeline: one `queued` result event,
// recorded and queued for the scanners like an upload's, at low priority
// unless an admin asks otherwise. A file larger than events.InlineMax is
// read from the original's blob (its work item names that blob, so the
// retention sweep keeps it until the rescan is done); a small one travels
// inside its events again, read from the copy the scanner kept in the
// originals bucket (scanner.keepOriginal) and checked against the
// original's sha256.

const (
	// maxRescanIDs bounds one POST /file/rescan: each id costs a lookup
	// before the answer.
	maxRescanIDs = 1000
	// maxRescanBody bounds the request body: maxRescanIDs ids with room
	// for whitespace.
	maxRescanBody = 256 << 10
	// rescanLookups bounds the ids looked up, and the rescans queued, at
	// once for one request.
	rescanLookups = 16
	// codeFileNotFound is MetaDefender Cloud's code for an unknown file_id.
	codeFileNotFound = 404007
)

const errRescanBody = `Invalid rescan request: want {"file_ids": ["id", ...]}.`

// rescanQueued is the answer for a file that is rescanned.
type rescanQueued struct {
	DataID        string `json:"data_id"`
	Status        string `json:"status"`
	InQueue       int64  `json:"in_queue"`
	QueuePriority string `json:"queue_priority"`
	FileID        string `json:"file_id"`
}

// rescanUnknown is the answer for an id that names no stored file the
// caller may see: unknown, another user's, never completely uploaded, or
// whose original is no longer stored.
type rescanUnknown struct {
	FileID string `json:"file_id"`
	Code   int    `json:"code"`
	Err    string `json:"err"`
	Status int    `json:"status"`
}

func unknownFile(id string) rescanUnknown {
	return rescanUnknown{FileID: id, Code: codeFileNotFound, Err: "Requested file id does not exist in our records",
		Status: fiber.StatusNotFound}
}

// postRescan is POST /file/rescan {"file_ids": [...]}: an answer per id,
// in request order. An id listed twice (or the data_id of an earlier
// rescan next to its file_id) is rescanned once; every mention gets the
// same answer.
func (s *Server) postRescan(c *fiber.Ctx) error {
	body, err := readSmallBody(c, maxRescanBody)
	if err != nil {
		return err
	}
	fileIDs, err := parseRescan(body)
	if err != nil {
		return err
	}
	answers, err := s.rescan(c, fileIDs)
	if err != nil {
		return err
	}
	return c.JSON(answers)
}

// getRescan is GET /file/{file_id}/rescan: one file, answered as by POST
// /file/rescan; an unknown one with status 404.
//
// The HEAD route fiber adds to every GET is refused: a GET that queues
// work is MetaDefender's API, but a HEAD (a link checker, a proxy probing)
// must not.
func (s *Server) getRescan(c *fiber.Ctx) error {
	if c.Method() == fiber.MethodHead {
		c.Set(fiber.HeaderAllow, fiber.MethodGet)
		return apiError(fiber.StatusMethodNotAllowed, "Method not allowed.")
	}
	answers, err := s.rescan(c, []string{c.Params("id")})
	if err != nil {
		return err
	}
	if _, unknown := answers[0].(rescanUnknown); unknown {
		c.Status(fiber.StatusNotFound)
	}
	return c.JSON(answers[0])
}

// parseRescan reads {"file_ids": [...]}: exactly one JSON object whose
// file_ids is an array of strings, of at most maxRescanIDs.
func parseRescan(body []byte) ([]string, error) {
	var req struct {
		FileIDs *[]string `json:"file_ids"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil || req.FileIDs == nil {
		return nil, apiError(fiber.StatusBadRequest, errRescanBody)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, apiError(fiber.StatusBadRequest, errRescanBody) // something after the object
	}
	if len(*req.FileIDs) > maxRescanIDs {
		return nil, apiError(fiber.StatusBadRequest, "Too many file ids: at most 1000 per request.")
	}
	return *req.FileIDs, nil
}

// rescanPriority is the queue a request's rescans go to: low, unless an
// admin asks for another with the priority header (high, normal or low).
// Anyone else's priority header is ignored: queue_priority says what they
// got.
func rescanPriority(c *fiber.Ctx) events.Priority {
	return requestedPriority(c, events.PriorityLow)
}

// requestedPriority is def, or the priority an admin's priority header
// names.
func requestedPriority(c *fiber.Ctx, def events.Priority) events.Priority {
	if !identity(c).Admin {
		return def
	}
	want := events.Priority(strings.ToLower(header(c, "priority")))
	for _, p := range events.Priorities {
		if want == p {
			return p
		}
	}
	return def
}

// storedFile is a file that can be rescanned: its record (as the caller
// may see it) and where its bytes are.
type storedFile struct {
	fileID string
	rec    *result.Record
	// small: its bytes travel inside the rescan's events (read again when
	// it is queued, so that a request holds at most rescanLookups small
	// files in memory at once); otherwise the rescan reads the blob fileID.
	small bool
}

// rescan answers each id in order, queueing one rescan per stored file.
// Nothing is queued unless every known file is admitted (the scan queue,
// the user's scan limit).
func (s *Server) rescan(c *fiber.Ctx, fileIDs []string) ([]any, error) {
	ctx, who := c.UserContext(), identity(c)
	found := make([]*storedFile, len(fileIDs))
	first := make([]int, len(fileIDs)) // where each id is first mentioned
	errs := make([]error, len(fileIDs))
	seen := map[string]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, rescanLookups)
	for i, id := range fileIDs {
		if at, dup := seen[id]; dup {
			first[i] = at
			continue
		}
		seen[id], first[i] = i, i
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			found[i], errs[i] = s.storedFile(ctx, who, id)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	// One rescan per stored file, whichever of its ids named it.
	byFile := map[string]*pendingRescan{}
	var order []*pendingRescan
	p := rescanPriority(c)
	now := time.Now()
	for _, f := range found {
		if f == nil || byFile[f.fileID] != nil {
			continue
		}
		q := &pendingRescan{file: f, fc: rescanOf(f, p, now)}
		q.answer = rescanQueued{DataID: q.fc.DataID, Status: "inqueue", QueuePriority: string(p), FileID: f.fileID}
		byFile[f.fileID] = q
		order = append(order, q)
	}
	if len(order) > 0 {
		if err := s.admitFiles(c, p, len(order)); err != nil {
			return nil, err
		}
		ahead := s.waitingAhead(ctx, p)
		for k, q := range order {
			q.answer.InQueue = ahead + int64(k)
		}
		if err := s.queueRescans(ctx, order); err != nil {
			return nil, err
		}
		s.log.Info().Str("user", who.User).Str("priority", string(p)).Int("ids", len(fileIDs)).
			Int("rescans", len(order)).Msg("rescans queued")
	}

	answers := make([]any, len(fileIDs))
	for i, id := range fileIDs {
		if f := found[first[i]]; f != nil && !byFile[f.fileID].gone {
			answers[i] = byFile[f.fileID].answer
		} else {
			answers[i] = unknownFile(id)
		}
	}
	return answers, nil
}

// pendingRescan is a rescan about to be queued, and its answer.
type pendingRescan struct {
	file   *storedFile
	fc     *events.FileComplete
	answer rescanQueued
	gone   bool // a small file's bytes were gone when it was queued
}

// rescanOf is the work of a rescan of f: a new data_id, the file's owner,
// workflow and metadata. Webhooks and batches are the original upload's
// business: a rescan calls no callbackurl or sanitizedurl and joins no
// batch (its result is polled, by data_id or by hash).
func rescanOf(f *storedFile, p events.Priority, now time.Time) *events.FileComplete {
	meta := f.rec.Meta
	meta.CallbackURL, meta.SanitizedURL, meta.Batch = "", "", ""
	fi := f.rec.Result.FileInfo
	fc := &events.FileComplete{DataID: ids.New(), Size: fi.FileSize, Meta: meta, Priority: p, UploadedAt: now,
		FileID: f.fileID}
	if h := (events.Hashes{MD5: fi.MD5, SHA1: fi.SHA1, SHA256: fi.SHA256, SHA512: fi.SHA512}); h.Complete() {
		fc.Hashes = h
	}
	return fc
}

// queueRescans publishes each rescan's queued event (through the group
// committer, several at once, so that they share fsyncs), a small file's
// with its bytes, read again here: a small file whose bytes went in the
// meantime (retention.originals ended) is answered as unknown after all. A
// failure leaves the ones already published queued; the client hears 503
// and may send the request again.
func (s *Server) queueRescans(ctx context.Context, order []*pendingRescan) error {
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	sem := make(chan struct{}, rescanLookups)
	for i, q := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if q.file.small {
				fi := q.file.rec.Result.FileInfo
				data, err := s.smallOriginal(ctx, q.file.fileID, fi.FileSize, fi.SHA256)
				if err != nil || data == nil {
					q.gone, errs[i] = data == nil && err == nil, err
					return
				}
				q.fc.Data = data
				defer func() { q.fc.Data = nil }() // held only while it is published
			}
			ev := &result.Event{Kind: result.EventQueued, DataID: q.fc.DataID, File: q.fc}
			errs[i] = s.b.PublishResult(ctx, ev, "queued-"+q.fc.DataID)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return s.queueError(err, s.log.With().Int("rescans", len(order)).Logger())
	}
	return nil
}

// waitingAhead is about how many files wait ahead of a new one at
// priority p (in_queue): from the admission's reading of the queue, at
// most queueCheckEvery old; 0 when unknown.
func (s *Server) waitingAhead(ctx context.Context, p events.Priority) int64 {
	q, ok := s.admission.queue(ctx, s.b, s.log)
	if !ok {
		return 0
	}
	var n uint64
	for _, other := range events.Priorities {
		n += q.Priorities[other].Waiting
		if other == p {
			break
		}
	}
	return int64(n)
}

// storedFile finds the file id names, as the caller may see it, and its
// stored bytes; nil when there is none to rescan. id may also be the
// data_id of an earlier rescan: its file is rescanned.
func (s *Server) storedFile(ctx context.Context, who auth.Identity, id string) (*storedFile, error) {
	if !ids.Valid(id) {
		return nil, nil
	}
	rec, err := s.lookup(ctx, id)
	if errors.Is(err, result.ErrNotFound) || err == nil && !who.Sees(rec.Meta.Username) {
		return nil, nil // another user's file is answered as an unknown one
	}
	if err != nil {
		return nil, err
	}
	res := &rec.Result
	switch code := res.ScanResults.ScanAllResultI; {
	case code == result.MultipartUploading, code == result.MultipartTimedOut:
		return nil, nil // never completely uploaded
	case rec.Final() && res.FileInfo.SHA256 == "":
		// Finished without its bytes ever being hashed: an upload
		// aborted before it was complete. (A file that was complete
		// is hashed at upload or by its scan.)
		return nil, nil
	}
	f := &storedFile{fileID: res.FileID, rec: rec}
	if !ids.Valid(f.fileID) {
		f.fileID = id
	}
	size := res.FileInfo.FileSize
	if size <= 0 {
		return nil, nil
	}
	if size <= events.InlineMax {
		data, err := s.smallOriginal(ctx, f.fileID, size, res.FileInfo.SHA256)
		if data == nil || err != nil {
			return nil, err
		}
		f.small = true
		return f, nil
	}
	obj, err := s.blobs.Open(ctx, f.fileID)
	if errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrIncomplete) {
		return nil, nil // past retention.originals
	}
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	if obj.Size() != size {
		s.log.Warn().Str("data_id", f.fileID).Int64("stored", obj.Size()).Int64("size", size).
			Msg("stored original has the wrong length; not rescanned")
		return nil, nil
	}
	return f, nil
}

// smallOriginal reads the bytes of a small file: the copy kept after its
// scan (bus.KeepOriginal), its blob when it had one (a sequential upload,
// or one that came while too many small files were in memory), or, while
// it is still on its way to a scanner or in its scan, its bytes in its
// events. It returns nil when none of them holds bytes of the expected
// length and sha256 (past retention.originals, or a copy that was lost).
//
// After the first look at the copy, where a scanned file's bytes are, the
// places are read in the order the file moves through them: its accepted
// event in RESULTS (compacted only after its work item is in FILES), its
// work item (acknowledged only after the copy is kept), then the copy
// again. A file that moves on while it is looked for is found further on.
func (s *Server) smallOriginal(ctx context.Context, fileID string, size int64, sha string) ([]byte, error) {
	good := func(b []byte) bool {
		if int64(len(b)) != size {
			return false
		}
		sum := sha256.Sum256(b)
		return sha == "" || hex.EncodeToString(sum[:]) == strings.ToLower(sha)
	}
	kept := func() ([]byte, error) {
		b, err := s.b.Original(ctx, fileID)
		if err != nil || !good(b) {
			return nil, err
		}
		return b, nil
	}
	if b, err := kept(); b != nil || err != nil {
		return b, err
	}
	if b, err := s.readBlob(ctx, fileID, size); err != nil || b != nil && good(b) {
		return b, err
	}
	ev, err := s.b.FirstResultEvent(ctx, fileID)
	switch {
	case err == nil && ev.File != nil && good(ev.File.Data):
		return ev.File.Data, nil
	case err != nil && !errors.Is(err, bus.ErrNoEvent):
		return nil, err
	}
	fc, err := s.b.QueuedFile(ctx, fileID)
	switch {
	case err == nil && good(fc.Data):
		return fc.Data, nil
	case err != nil && !errors.Is(err, bus.ErrNoEvent):
		return nil, err
	}
	return kept()
}

// readBlob reads a whole blob of at most size bytes; nil when it is not
// stored.
func (s *Server) readBlob(ctx context.Context, key string, size int64) ([]byte, error) {
	obj, err := s.blobs.Open(ctx, key)
	if errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrIncomplete) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	if obj.Size() != size {
		return nil, nil
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(obj, b); err != nil {
		return nil, err
	}
	return b, nil
}
