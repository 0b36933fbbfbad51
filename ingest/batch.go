package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/scangate/scangate/pkg/batch"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/kvjson"
	"github.com/scangate/scangate/pkg/names"
	"github.com/scangate/scangate/pkg/result"
)

// Batches (MetaDefender Cluster): POST /file/batch opens one, files join it
// with the batch header, and it is closed, cancelled, listed and reported
// on, signed, under /file/batch/{id}.
//
// Ingest is the one writer of the batch and of the joins (KV batches):
// every change of the batch is a compare-and-set, so of two nodes racing
// one wins and the other reads what won; a join is written once, and only
// while the batch record is still at the revision that says "open". The
// recorder writes each member's summary (KV batchfiles) with its result
// record; ingest only reads them.

var (
	// errBatchNotFound answers every batch endpoint for an unknown batch,
	// and for another user's batch, which must not be told apart.
	errBatchNotFound = apiError(fiber.StatusNotFound, "Batch not found.")
	// Uploads into a batch that cannot take them.
	errBatchUnknown = apiError(fiber.StatusBadRequest, "Batch not found.")
	errBatchClosed  = apiError(fiber.StatusBadRequest, "Batch is closed.")
	// errBatchUploading: a close while an upload of the batch is incomplete.
	errBatchUploading = apiError(fiber.StatusConflict, "A multipart upload in this batch is incomplete.")
)

const (
	// maxUserData bounds the user-data a batch keeps (it comes back in
	// every status and report).
	maxUserData = 4 << 10
	// batchPageSize and maxBatchPageSize: files_in_batch per page, as
	// MetaDefender pages them, and the most one request may ask for.
	batchPageSize    = 50
	maxBatchPageSize = 2000
	// joinSettle is how long after its join a file is still expected to
	// show up among the members: its accepting event is published right
	// after the join, and the recorder applies it within milliseconds. A
	// join older than this without a member is an upload that failed
	// after it joined (its node died, JetStream refused the event); it is
	// not in the batch.
	joinSettle = viewWait
	// cancelsInFlight bounds the member cancels a batch cancel sends at once.
	cancelsInFlight = 64
)

func (s *Server) batches() kvjson.Store[batch.Batch] {
	return kvjson.Store[batch.Batch]{KV: s.b.Batches, Name: "batches"}
}

// readBatch reads a batch, and the revision it is at, from the leader of
// its stream. A KV get may be answered by any replica (a direct get), and
// on a cluster a replica can be a moment behind: a batch another ingest has
// just created would look unknown, one it has just closed still open. The
// leader has applied every write it acknowledged.
func (s *Server) readBatch(ctx context.Context, id string) (*batch.Batch, uint64, error) {
	js, err := s.b.NC.JetStream()
	if err != nil {
		return nil, 0, err
	}
	m, err := js.GetLastMsg(bus.BucketStream(events.BucketBatches), bucketSubject(events.BucketBatches, id), nats.Context(ctx))
	if errors.Is(err, nats.ErrMsgNotFound) || err == nil && m.Header.Get(kvOperation) != "" {
		return nil, 0, fmt.Errorf("batch %s: %w", id, kvjson.ErrNotFound) // none, or deleted
	}
	if err != nil {
		return nil, 0, fmt.Errorf("batch %s: %w", id, err)
	}
	var b batch.Batch
	if err := json.Unmarshal(m.Data, &b); err != nil {
		return nil, 0, fmt.Errorf("batch %s: %w", id, err)
	}
	return &b, m.Sequence, nil
}

// kvOperation is the header a KV delete or purge marker carries.
const kvOperation = "KV-Operation"

// ownBatch is the batch id for the request's user: another user's batch
// is errBatchNotFound, like an unknown one.
func (s *Server) ownBatch(c *fiber.Ctx, id string) (*batch.Batch, uint64, error) {
	if !ids.Valid(id) {
		return nil, 0, errBatchNotFound
	}
	b, rev, err := s.readBatch(c.UserContext(), id)
	if errors.Is(err, kvjson.ErrNotFound) || err == nil && !sees(c, b.Owner) {
		return nil, 0, errBatchNotFound
	}
	return b, rev, err
}

// openBatch is the batch a file asks to join (header batch): the caller's,
// and still open. It is checked before any byte of the file is stored;
// joinBatch checks again, atomically, when the file is accepted.
func (s *Server) openBatch(c *fiber.Ctx, id string) (*batch.Batch, error) {
	if !ids.Valid(id) {
		return nil, apiError(fiber.StatusBadRequest, "Invalid batch id.")
	}
	b, _, err := s.ownBatch(c, id)
	switch {
	case errors.Is(err, errBatchNotFound):
		return nil, errBatchUnknown
	case err != nil:
		return nil, err
	case b.Closed || b.Cancelled:
		return nil, errBatchClosed
	}
	return b, nil
}

// joinBatch makes dataID a member of batchID ("": none) before the file is
// accepted. The join is written on condition that the batch record is
// still at the revision this read found open (JetStream checks the
// record's last sequence as it stores the join); a close or cancel moves
// the record on. So of a join and a close racing, the one JetStream stores
// first wins, and nothing else: a file whose join came first is in the
// batch however late its upload is answered, and one whose join came
// second is refused (errBatchClosed) and its bytes released by the caller.
// Joins do not move the record, so files joining at once never conflict
// with one another on a single server; on a cluster a join that meets
// another in flight is refused by JetStream and simply tried again.
func (s *Server) joinBatch(ctx context.Context, batchID, dataID string) error {
	if batchID == "" {
		return nil
	}
	deadline := time.Now().Add(viewWait)
	for {
		b, rev, err := s.readBatch(ctx, batchID)
		switch {
		case errors.Is(err, kvjson.ErrNotFound):
			return errBatchUnknown // expired meanwhile
		case err != nil:
			return err
		case b.Closed || b.Cancelled:
			return errBatchClosed
		}
		data, err := json.Marshal(batch.Join{DataID: dataID, JoinedAt: time.Now().UTC()})
		if err != nil {
			return err
		}
		msg := nats.NewMsg(bucketSubject(events.BucketBatches, events.BatchMemberKey(batchID, dataID)))
		msg.Data = data
		msg.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, bucketSubject(events.BucketBatches, batchID))
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
		_, err = s.b.JS.PublishMsg(ctx, msg)
		if err == nil {
			return nil
		}
		if !kvjson.IsConflict(err) || time.Now().After(deadline) {
			return fmt.Errorf("join batch %s: %w", batchID, err)
		}
		// The batch moved on (the next read says how) or another join
		// was in flight: look again after a pause that sets racing joins
		// apart, unless the request is gone meanwhile.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(1+rand.IntN(5)) * time.Millisecond):
		}
	}
}

// joinUpload joins a whole-file upload to its batch just before the file is
// accepted; a refused join releases the stored bytes (stored: the file has
// a blob), so a refusal leaves nothing behind.
func (s *Server) joinUpload(meta *events.FileMeta, dataID string, stored bool) error {
	err := s.joinBatch(s.ctx, meta.Batch, dataID)
	if err != nil && stored {
		s.discard(dataID)
	}
	return err
}

// bucketSubject is the subject a KV bucket stores key under.
func bucketSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// postBatch is POST /file/batch: a new batch for the caller. Its rule
// (header rule, or the workflow user_agent selects) is the one its files
// get when they name none: OPSWAT's client sends neither with the files
// of a batch.
func (s *Server) postBatch(c *fiber.Ctx) error {
	ua := truncate(header(c, "user_agent"), names.MaxBytes)
	rule := header(c, "rule")
	if rule == "" {
		rule = header(c, "workflow") // deprecated alias, as for files
	}
	wf, err := s.opts.Workflows.Select(rule, ua)
	if err != nil {
		return apiError(fiber.StatusBadRequest, "Unknown rule.")
	}
	b := &batch.Batch{
		BatchID:   ids.New(),
		Owner:     identity(c).User,
		Workflow:  wf.Name,
		UserAgent: strings.ToValidUTF8(ua, "\uFFFD"),
		UserData:  strings.ToValidUTF8(truncate(header(c, "user-data"), maxUserData), "\uFFFD"),
		CreatedAt: time.Now().UTC(),
	}
	if _, err := s.batches().Put(c.UserContext(), b.BatchID, b, 0); err != nil {
		return err
	}
	s.log.Info().Str("batch_id", b.BatchID).Str("user", b.Owner).Str("workflow", b.Workflow).Msg("batch created")
	return c.JSON(fiber.Map{"batch_id": b.BatchID})
}

// getBatch is GET /file/batch/{id}: the batch's status and a page of its
// files (query first, size).
func (s *Server) getBatch(c *fiber.Ctx) error {
	b, _, err := s.ownBatch(c, c.Params("id"))
	if err != nil {
		return err
	}
	return s.sendBatchStatus(c, b, false)
}

// closeBatch is POST /file/batch/{id}/close: no file joins it any more. It
// is refused (409) while a multipart or chunked upload of the batch is
// incomplete, as far as the joins stored before the close show: a session
// whose join JetStream stores in the moment between that look and the
// close is still in the batch (its join came first) and the batch verdict
// waits for it like for any member. A repeated close answers like the first.
func (s *Server) closeBatch(c *fiber.Ctx) error {
	ctx := c.UserContext()
	for {
		b, rev, err := s.ownBatch(c, c.Params("id"))
		if err != nil {
			return err
		}
		if b.Closed {
			return s.sendBatchStatus(c, b, true)
		}
		members, err := s.members(ctx, b.BatchID, true)
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.Uploading() {
				return errBatchUploading
			}
		}
		b.Closed, b.ClosedAt = true, time.Now().UTC()
		if _, err := s.batches().Put(ctx, b.BatchID, b, rev); errors.Is(err, kvjson.ErrConflict) {
			continue // closed or cancelled meanwhile: answer from what won
		} else if err != nil {
			return err
		}
		s.log.Info().Str("batch_id", b.BatchID).Int("files", len(members)).Msg("batch closed")
		return s.sendBatchStatus(c, b, true)
	}
}

// cancelBatch is POST /file/batch/{id}/cancel: the batch is closed and
// marked cancelled, then every member still uploading, queued or scanning
// is cancelled the way POST /file/{id}/cancel cancels a file (verdict 19).
// The batch is closed first, so no file joins while its members are
// cancelled. A repeated cancel repeats the member cancels, which change
// nothing twice.
func (s *Server) cancelBatch(c *fiber.Ctx) error {
	ctx := c.UserContext()
	var b *batch.Batch
	for {
		cur, rev, err := s.ownBatch(c, c.Params("id"))
		if err != nil {
			return err
		}
		b = cur
		if b.Cancelled {
			break
		}
		b.Cancelled = true
		if !b.Closed {
			b.Closed, b.ClosedAt = true, time.Now().UTC()
		}
		if _, err := s.batches().Put(ctx, b.BatchID, b, rev); errors.Is(err, kvjson.ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		break
	}
	members, err := s.members(ctx, b.BatchID, true)
	if err != nil {
		return err
	}
	// Many at once, so that their events share group commits: a batch of
	// thousands of running files is cancelled in a few commits, not one
	// fsync after another.
	var wg sync.WaitGroup
	sem := make(chan struct{}, cancelsInFlight)
	errs := make(chan error, len(members))
	n := 0
	for _, m := range members {
		if m.Final() {
			continue
		}
		n++
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs <- s.cancelMember(ctx, m)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err // the cancels that went out stand; a retry repeats the rest
		}
	}
	s.log.Info().Str("batch_id", b.BatchID).Int("files", len(members)).Int("cancelled", n).Msg("batch cancelled")
	return c.JSON(map[string]string{b.BatchID: "cancelled"})
}

// cancelMember cancels one member file that is not final. Its summary may
// be a moment behind its record, so an upload is both aborted (its
// session's bytes released) and cancelled in its result log, whichever it
// turns out to be: each is ignored where it does not apply.
func (s *Server) cancelMember(ctx context.Context, m *batch.Member) error {
	if m.Uploading() {
		abort := &events.UploadEvent{Kind: events.UploadAbort, DataID: m.DataID}
		if _, err := s.b.PublishUpload(ctx, events.Partition(m.DataID, s.b.Opts.Partitions), abort, "abort-"+m.DataID); err != nil {
			return s.queueError(err, s.log.With().Str("data_id", m.DataID).Logger())
		}
		if err := s.b.NC.Publish(events.AbortSubject(m.DataID), nil); err != nil {
			s.log.Warn().Err(err).Str("data_id", m.DataID).Msg("abort broadcast failed; parts in flight finish and are refused")
		}
	}
	return s.requestCancel(ctx, m.DataID)
}

// members lists a batch's members in the order they joined, each with its
// summary. A join without a summary is a file whose accepting event the
// recorder has yet to apply (milliseconds), or an upload that failed
// after it joined; it is left out. With settle, the list waits for the
// first kind (up to joinSettle after their join), so that a close or a
// cancel sees every file accepted before it.
func (s *Server) members(ctx context.Context, batchID string, settle bool) ([]*batch.Member, error) {
	var joins []batch.Join
	err := watchAll(ctx, s.b.Batches, events.BatchMembers(batchID), func(e jetstream.KeyValueEntry) bool {
		var j batch.Join
		if e != nil && json.Unmarshal(e.Value(), &j) == nil && ids.Valid(j.DataID) {
			joins = append(joins, j)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("batch %s joins: %w", batchID, err)
	}
	summaries := make(map[string]*batch.Member, len(joins))
	var until time.Time // how long to wait for summaries still missing
	pending := func() bool {
		now, some := time.Now(), false
		for _, j := range joins {
			if d := j.JoinedAt.Add(joinSettle); summaries[j.DataID] == nil && now.Before(d) {
				if d.After(until) {
					until = d
				}
				some = true
			}
		}
		return some
	}
	loaded := false
	err = watchAll(ctx, s.b.BatchFiles, events.BatchMembers(batchID), func(e jetstream.KeyValueEntry) bool {
		if e == nil {
			loaded = true // every current summary is in
		} else {
			var m batch.Member
			if json.Unmarshal(e.Value(), &m) == nil {
				summaries[m.DataID] = &m
			}
			if !loaded {
				return true
			}
		}
		return settle && pending()
	}, withUpdates(&until))
	if err != nil {
		return nil, fmt.Errorf("batch %s members: %w", batchID, err)
	}
	out := make([]*batch.Member, 0, len(joins))
	seen := make(map[string]bool, len(joins))
	for _, j := range joins {
		if m := summaries[j.DataID]; m != nil && !seen[j.DataID] {
			seen[j.DataID] = true
			out = append(out, m)
		}
	}
	return out, nil
}

// watchOpts adjust watchAll.
type watchOpts struct {
	// until, when set, keeps the watch on past the current values, for
	// updates, until the time it points to (read at every step: each can
	// move it).
	until *time.Time
}

func withUpdates(until *time.Time) func(*watchOpts) {
	return func(o *watchOpts) { o.until = until }
}

// watchAll hands fn the current value of every key of kv that filter
// matches, in the order they were last written, and then nil. With
// withUpdates it goes on with later writes while fn returns true and the
// time allows; otherwise it ends at the nil. Deletes are skipped.
func watchAll(ctx context.Context, kv jetstream.KeyValue, filter string, fn func(jetstream.KeyValueEntry) bool, opts ...func(*watchOpts)) error {
	var o watchOpts
	for _, f := range opts {
		f(&o)
	}
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	initial := true
	for {
		if !initial {
			if o.until == nil {
				return nil
			}
			d := time.Until(*o.until)
			if d <= 0 {
				return nil
			}
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			if !initial {
				return nil
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch ended")
			}
			if e == nil {
				initial = false
			}
			if !fn(e) {
				return nil
			}
		}
	}
}

// batchStatus is the answer of GET /file/batch/{id} and of a close: every
// field OPSWAT's client parses, with its JSON type.
type batchStatus struct {
	BatchID     string           `json:"batch_id"`
	IsClosed    bool             `json:"is_closed"`
	UserData    string           `json:"user_data"`
	BatchFiles  batchFiles       `json:"batch_files"`
	ProcessInfo batchProcessInfo `json:"process_info"`
	ScanResults batchScanResults `json:"scan_results"`
}

type batchFiles struct {
	BatchCount   int                  `json:"batch_count"`
	FilesInBatch []result.ArchiveFile `json:"files_in_batch"` // a batch's file has an archive member's fields
	FirstIndex   int                  `json:"first_index"`
	PageSize     int                  `json:"page_size"`
}

type batchProcessInfo struct {
	Result              string `json:"result"`
	BlockedReason       string `json:"blocked_reason"`
	Profile             string `json:"profile"`
	UserAgent           string `json:"user_agent"`
	FileTypeSkippedScan bool   `json:"file_type_skipped_scan"`
}

type batchScanResults struct {
	BatchID        string `json:"batch_id"`
	ScanAllResultI int    `json:"scan_all_result_i"`
	ScanAllResultA string `json:"scan_all_result_a"`
	StartTime      string `json:"start_time"`
	TotalTime      int64  `json:"total_time"`
	TotalAVs       int    `json:"total_avs"`
}

// batchTimes are the batch's start_time (when it was created) and
// total_time: -1 while a member runs, else until the last member finished.
func batchTimes(b *batch.Batch, v batch.Verdict) (string, int64) {
	switch {
	case v.Result == result.Processing:
		return result.FormatTime(b.CreatedAt), -1
	case v.End.IsZero():
		return result.FormatTime(b.CreatedAt), 0
	}
	return result.FormatTime(b.CreatedAt), max(0, v.End.Sub(b.CreatedAt).Milliseconds())
}

// sendBatchStatus answers the batch's status with the page of files the
// query asks for (first, size: default 0 and 50, size at most 2000).
func (s *Server) sendBatchStatus(c *fiber.Ctx, b *batch.Batch, settle bool) error {
	first, size := c.QueryInt("first", 0), c.QueryInt("size", batchPageSize)
	if first < 0 || size < 0 {
		return apiError(fiber.StatusBadRequest, "first and size must not be negative.")
	}
	size = min(size, maxBatchPageSize)
	members, err := s.members(c.UserContext(), b.BatchID, settle)
	if err != nil {
		return err
	}
	v := batch.Fold(members)
	start, total := batchTimes(b, v)
	st := batchStatus{
		BatchID:  b.BatchID,
		IsClosed: b.Closed,
		UserData: b.UserData,
		BatchFiles: batchFiles{BatchCount: len(members), FilesInBatch: []result.ArchiveFile{},
			FirstIndex: first, PageSize: size},
		ProcessInfo: batchProcessInfo{Result: v.Result, BlockedReason: v.BlockedReason, Profile: b.Workflow, UserAgent: b.UserAgent},
		ScanResults: batchScanResults{BatchID: b.BatchID, ScanAllResultI: v.Code, ScanAllResultA: result.CodeName(v.Code),
			StartTime: start, TotalTime: total, TotalAVs: v.TotalAVs},
	}
	lo := min(first, len(members))
	for _, m := range members[lo : lo+min(size, len(members)-lo)] {
		f := result.ArchiveFile{DataID: m.DataID, DisplayName: m.DisplayName, FileSize: m.FileSize, FileType: m.FileType,
			FileTypeDescription: m.FileTypeDescription, ScanAllResultI: m.ScanAllResultI, ScanAllResultA: m.ScanAllResultA,
			DetectedBy: m.DetectedBy, ScannedWith: m.ScannedWith, ProgressPercentage: m.ProgressPercentage}
		f.ProcessInfo.BlockedReason, f.ProcessInfo.ProgressPercentage, f.ProcessInfo.Result = m.BlockedReason, m.ProgressPercentage, m.Result
		st.BatchFiles.FilesInBatch = append(st.BatchFiles.FilesInBatch, f)
	}
	return c.JSON(st)
}

// batchReport is the signed report: the batch, its verdict and every
// file, with the sha256 that says which bytes were scanned.
type batchReport struct {
	BatchID     string            `yaml:"batch_id"`
	Username    string            `yaml:"username"`
	UserData    string            `yaml:"user_data"`
	Rule        string            `yaml:"rule"`
	UserAgent   string            `yaml:"user_agent"`
	CreatedAt   string            `yaml:"created_at"`
	ClosedAt    string            `yaml:"closed_at"`
	IsClosed    bool              `yaml:"is_closed"`
	IsCancelled bool              `yaml:"is_cancelled"`
	ProcessInfo reportProcessInfo `yaml:"process_info"`
	ScanResults reportScanResults `yaml:"scan_results"`
	BatchCount  int               `yaml:"batch_count"`
	Files       []reportFile      `yaml:"files"`
	GeneratedAt string            `yaml:"generated_at"`
	GeneratedBy string            `yaml:"generated_by"`
}

type reportProcessInfo struct {
	Result        string `yaml:"result"`
	BlockedReason string `yaml:"blocked_reason"`
}

type reportScanResults struct {
	ScanAllResultI int    `yaml:"scan_all_result_i"`
	ScanAllResultA string `yaml:"scan_all_result_a"`
	StartTime      string `yaml:"start_time"`
	TotalTime      int64  `yaml:"total_time"`
	TotalAVs       int    `yaml:"total_avs"`
}

type reportFile struct {
	DataID             string `yaml:"data_id"`
	DisplayName        string `yaml:"display_name"`
	FileSize           int64  `yaml:"file_size"`
	FileType           string `yaml:"file_type"`
	SHA256             string `yaml:"sha256"`
	UploadTimestamp    string `yaml:"upload_timestamp"`
	ScanAllResultI     int    `yaml:"scan_all_result_i"`
	ScanAllResultA     string `yaml:"scan_all_result_a"`
	Result             string `yaml:"result"`
	BlockedReason      string `yaml:"blocked_reason"`
	ProgressPercentage int    `yaml:"progress_percentage"`
	StartTime          string `yaml:"start_time"`
	TotalTime          int64  `yaml:"total_time"`
}

// getBatchCertificate is GET /file/batch/{id}/certificate: the batch
// report as YAML, then a second YAML document with its signature and the
// signing certificate (see batch.Signer.Envelope for the exact bytes
// signed). It reports the batch as it is when asked; a report of a closed
// batch whose files are all final no longer changes.
func (s *Server) getBatchCertificate(c *fiber.Ctx) error {
	b, _, err := s.ownBatch(c, c.Params("id"))
	if err != nil {
		return err
	}
	members, err := s.members(c.UserContext(), b.BatchID, false)
	if err != nil {
		return err
	}
	v := batch.Fold(members)
	start, total := batchTimes(b, v)
	rep := batchReport{
		BatchID: b.BatchID, Username: b.Owner, UserData: b.UserData, Rule: b.Workflow, UserAgent: b.UserAgent,
		CreatedAt: result.FormatTime(b.CreatedAt), IsClosed: b.Closed, IsCancelled: b.Cancelled,
		ProcessInfo: reportProcessInfo{Result: v.Result, BlockedReason: v.BlockedReason},
		ScanResults: reportScanResults{ScanAllResultI: v.Code, ScanAllResultA: result.CodeName(v.Code),
			StartTime: start, TotalTime: total, TotalAVs: v.TotalAVs},
		BatchCount:  len(members),
		Files:       make([]reportFile, 0, len(members)),
		GeneratedAt: result.FormatTime(time.Now()),
		GeneratedBy: strings.TrimSpace("scangate " + s.opts.Version),
	}
	if b.Closed {
		rep.ClosedAt = result.FormatTime(b.ClosedAt)
	}
	for _, m := range members {
		rep.Files = append(rep.Files, reportFile{DataID: m.DataID, DisplayName: m.DisplayName, FileSize: m.FileSize,
			FileType: m.FileType, SHA256: m.SHA256, UploadTimestamp: m.UploadTimestamp, ScanAllResultI: m.ScanAllResultI,
			ScanAllResultA: m.ScanAllResultA, Result: m.Result, BlockedReason: m.BlockedReason,
			ProgressPercentage: m.ProgressPercentage, StartTime: m.StartTime, TotalTime: m.TotalTime})
	}
	var doc bytes.Buffer
	enc := yaml.NewEncoder(&doc)
	enc.SetIndent(2)
	if err := enc.Encode(&rep); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	body, err := s.signer.Envelope(doc.Bytes())
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	return c.Send(body)
}
