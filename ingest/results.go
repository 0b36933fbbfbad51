package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/hashing"
	"github.com/scangate/scangate/pkg/health"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/netguard"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/stats"
)

// notFound is the lookup answer existing clients rely on: 200 with
// {"<id>": "Not Found"}.
func notFound(c *fiber.Ctx, id string) error {
	return c.JSON(map[string]string{id: "Not Found"})
}

// getFile is GET /file/{data_id}.
func (s *Server) getFile(c *fiber.Ctx) error {
	id := c.Params("id")
	if !ids.Valid(id) {
		return notFound(c, id)
	}
	return s.sendResult(c, id, id)
}

func (s *Server) sendResult(c *fiber.Ctx, dataID, lookupKey string) error {
	ctx := c.UserContext()
	raw, _, err := s.results.GetRaw(ctx, dataID)
	if errors.Is(err, result.ErrNotFound) {
		rec, err := s.pending(ctx, dataID)
		if errors.Is(err, result.ErrNotFound) || err == nil && !sees(c, rec.Meta.Username) {
			return notFound(c, lookupKey)
		}
		if err != nil {
			return err
		}
		return c.JSON(rec.Result)
	}
	if err != nil {
		return err
	}
	body, owner, err := result.OwnedResultJSON(raw)
	if err != nil {
		return err
	}
	if !sees(c, owner) {
		return notFound(c, lookupKey)
	}
	// Only the result's own top-level field says it is an archive; the
	// client's metadata is data, never a signal (it may hold any key).
	var top struct {
		ExtractedFiles json.RawMessage `json:"extracted_files"`
	}
	if err := json.Unmarshal(body, &top); err != nil {
		return err
	}
	if len(top.ExtractedFiles) > 0 && !bytes.Equal(top.ExtractedFiles, []byte("null")) {
		return s.sendArchiveResult(c, body)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(body)
}

// lookup returns a file's record: the recorder's, or the one its first
// result event makes while the recorder has yet to apply it (a client
// polling right after its upload was accepted).
func (s *Server) lookup(ctx context.Context, dataID string) (*result.Record, error) {
	rec, _, err := s.results.Get(ctx, dataID)
	if errors.Is(err, result.ErrNotFound) {
		return s.pending(ctx, dataID)
	}
	return rec, err
}

// lookupOwn is lookup for the request's user: another user's file is
// result.ErrNotFound, exactly like an unknown one.
func (s *Server) lookupOwn(c *fiber.Ctx, dataID string) (*result.Record, error) {
	rec, err := s.lookup(c.UserContext(), dataID)
	if err == nil && !sees(c, rec.Meta.Username) {
		return nil, result.ErrNotFound
	}
	return rec, err
}

// getOwn is the recorder's record of dataID for the request's user:
// another user's file is result.ErrNotFound.
func (s *Server) getOwn(c *fiber.Ctx, dataID string) (*result.Record, uint64, error) {
	rec, rev, err := s.results.Get(c.UserContext(), dataID)
	if err == nil && !sees(c, rec.Meta.Username) {
		return nil, 0, result.ErrNotFound
	}
	return rec, rev, err
}

// pending is the record of a file the recorder has not written yet, made
// from the oldest event in its log. The recorder acknowledges (removes) an
// event only after writing its record, so a miss in both means unknown — after one
// more look at the record, which may have been written in between.
func (s *Server) pending(ctx context.Context, dataID string) (*result.Record, error) {
	ev, err := s.b.FirstResultEvent(ctx, dataID)
	if errors.Is(err, bus.ErrNoEvent) {
		rec, _, err := s.results.Get(ctx, dataID)
		return rec, err
	}
	if err != nil {
		return nil, err
	}
	if rec := result.Apply(nil, ev); rec != nil {
		return rec, nil
	}
	return nil, result.ErrNotFound
}

// sendArchiveResult fills extracted_files.files_in_archive with the page
// the query asks for (first, size: default 0 and 50, size at most 2000).
func (s *Server) sendArchiveResult(c *fiber.Ctx, body []byte) error {
	var res result.Result
	if err := json.Unmarshal(body, &res); err != nil {
		return err
	}
	ef := res.ExtractedFiles
	if ef == nil {
		return c.JSON(res)
	}
	first, size := c.QueryInt("first", 0), c.QueryInt("size", 50)
	if first < 0 || size < 0 {
		return apiError(fiber.StatusBadRequest, "first and size must not be negative.")
	}
	size = min(size, 2000)
	ef.FirstIndex, ef.PageSize, ef.FilesInArchive = first, size, []result.ArchiveFile{}
	end := min(first+size, ef.FilesExtractedCount)
	for p := first / result.ChildPageSize; first < end && p <= (end-1)/result.ChildPageSize; p++ {
		e, err := s.b.Results.Get(c.UserContext(), result.ChildrenKey(res.DataID, p))
		if err != nil {
			return fmt.Errorf("child page %d of %s: %w", p, res.DataID, err)
		}
		var page []result.ArchiveFile
		if err := json.Unmarshal(e.Value(), &page); err != nil {
			return err
		}
		for i, f := range page {
			if idx := p*result.ChildPageSize + i; idx >= first && idx < end {
				ef.FilesInArchive = append(ef.FilesInArchive, f)
			}
		}
	}
	return c.JSON(res)
}

// getExtractionErrors is GET /file/{data_id}/extraction-errors: the
// problems met extracting an archive and its nested archives.
func (s *Server) getExtractionErrors(c *fiber.Ctx) error {
	id := c.Params("id")
	if !ids.Valid(id) {
		return apiError(fiber.StatusNotFound, "Not found")
	}
	rec, _, err := s.getOwn(c, id)
	if errors.Is(err, result.ErrNotFound) {
		return apiError(fiber.StatusNotFound, "Not found")
	}
	if err != nil {
		return err
	}
	if !rec.Final() {
		return apiError(fiber.StatusConflict, "The file is still being processed.")
	}
	var xe result.ExtractionErrors
	if e, err := s.b.Results.Get(c.UserContext(), result.ErrorsKey(id)); err == nil {
		if err := json.Unmarshal(e.Value(), &xe); err != nil {
			return err
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	type archiveErrors struct {
		DataID      string                   `json:"data_id"`
		DisplayName string                   `json:"display_name"`
		Errors      []result.ExtractionError `json:"errors"`
	}
	root := archiveErrors{DataID: id, DisplayName: rec.Result.FileInfo.DisplayName, Errors: []result.ExtractionError{}}
	nested := []*archiveErrors{}
	byID := map[string]*archiveErrors{}
	for _, e := range xe.Errors {
		if e.DataID == id {
			root.Errors = append(root.Errors, e)
			continue
		}
		a := byID[e.DataID]
		if a == nil {
			a = &archiveErrors{DataID: e.DataID, DisplayName: e.Archive}
			byID[e.DataID] = a
			nested = append(nested, a)
		}
		a.Errors = append(a.Errors, e)
	}
	return c.JSON(fiber.Map{"total": xe.Total, "root_archive": root, "nested_archives": nested})
}

// getEngines is GET /stat/engines: every engine of every live scanner.
func (s *Server) getEngines(c *fiber.Ctx) error {
	list, err := stats.Engines(c.UserContext(), s.b.Nodes)
	if err != nil {
		return err
	}
	return c.JSON(list)
}

// getNodes is GET /stat/nodes: one entry per live scanner.
func (s *Server) getNodes(c *fiber.Ctx) error {
	list, err := stats.Nodes(c.UserContext(), s.b.Nodes, time.Now())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"statuses": list})
}

// getHash is GET /hash/{md5|sha1|sha256|sha512}: the latest result of a
// file with that hash.
func (s *Server) getHash(c *fiber.Ctx) error {
	h := c.Params("hash")
	algo, ok := hashing.Algorithm(h)
	if !ok {
		return apiError(fiber.StatusBadRequest, "Invalid hash format")
	}
	dataID, err := s.findHash(c, algo, h)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return notFound(c, h)
	}
	if err != nil {
		return err
	}
	return s.sendResult(c, dataID, h)
}

// findHash looks a digest up in the index of the request's user: the
// index is per user (one key per user and digest) rather than one entry
// filtered on read, because one shared "latest" entry would answer a
// user with nothing once anyone else sent the same bytes. Admins see
// every user's files: the most recently indexed of them.
func (s *Server) findHash(c *fiber.Ctx, algo, h string) (string, error) {
	ctx := c.UserContext()
	id := identity(c)
	keys := []string{events.HashKey(algo, h, auth.Token(id.User))}
	if id.Admin {
		all, err := s.b.Hashes.ListKeysFiltered(ctx, events.HashKeys(algo, h))
		if err != nil {
			return "", err
		}
		keys = keys[:0]
		for k := range all.Keys() {
			keys = append(keys, k)
		}
	}
	if id.Admin || id.User == config.AnonymousUser {
		keys = append(keys, events.LegacyHashKey(algo, h)) // indexed before the index was per user
	}
	var latest jetstream.KeyValueEntry
	for _, k := range keys {
		e, err := s.b.Hashes.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return "", err
		}
		if latest == nil || e.Revision() > latest.Revision() {
			latest = e
		}
		if !id.Admin {
			break // the user's own entry comes first
		}
	}
	if latest == nil {
		return "", jetstream.ErrKeyNotFound
	}
	return string(latest.Value()), nil
}

// cancelFile is POST /file/{data_id}/cancel. The cancel is a result event:
// once it is durable, scanners are told to stop, and the answer reports
// what the recorder decided — a verdict that reached the log first wins
// (409), exactly as every reader of the result will see it. A file still
// uploading is aborted like DELETE /file/multipart/{data_id}.
func (s *Server) cancelFile(c *fiber.Ctx) error {
	id := c.Params("id")
	if !ids.Valid(id) {
		return apiError(fiber.StatusNotFound, "Not found")
	}
	ctx := c.UserContext()
	rec, err := s.lookupOwn(c, id)
	if errors.Is(err, result.ErrNotFound) {
		return apiError(fiber.StatusNotFound, "Not found")
	}
	if err != nil {
		return err
	}
	if rec.Final() {
		return cancelAnswer(c, id, rec)
	}
	if rec.Result.ScanResults.ScanAllResultI == result.MultipartUploading {
		return s.deleteMultipart(c)
	}
	if err := s.requestCancel(ctx, id); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, viewWait)
	defer cancel()
	final, err := s.results.Wait(wctx, id, (*result.Record).Final)
	if err != nil {
		// The cancel is in the file's log and will be applied in order.
		s.log.Warn().Err(err).Str("data_id", id).Msg("cancel not recorded in time; answering from the log")
		return c.JSON(map[string]string{id: "cancelled"})
	}
	s.log.Info().Str("data_id", id).Int("verdict", final.Result.ScanResults.ScanAllResultI).Msg("cancel requested")
	return cancelAnswer(c, id, final)
}

// requestCancel cancels a file that is not final: the cancel goes into the
// file's result log (the durable decision, applied in order: a verdict
// that is there first wins), then scanners are told to stop. Shared by a
// file's cancel and a batch's.
func (s *Server) requestCancel(ctx context.Context, id string) error {
	ev := &result.Event{Kind: result.EventClosed, DataID: id, Code: result.Cancelled, At: time.Now()}
	if err := s.b.PublishResult(ctx, ev, "cancel-"+id); err != nil {
		return s.queueError(err, s.log.With().Str("data_id", id).Logger())
	}
	if err := s.b.NC.Publish(events.CancelSubject(id), nil); err != nil {
		s.log.Warn().Err(err).Str("data_id", id).Msg("cancel broadcast failed; a running scan finishes and its verdict is ignored")
	}
	return nil
}

// cancelAnswer answers a cancel of a file whose result is final.
func cancelAnswer(c *fiber.Ctx, id string, rec *result.Record) error {
	if rec.Result.ScanResults.ScanAllResultI == result.Cancelled {
		return c.JSON(map[string]string{id: "cancelled"}) // a repeated cancel gets the same answer
	}
	return apiError(fiber.StatusConflict, "Scan already finished.")
}

// getWebhook is GET /file/webhook/{data_id}: the callback delivery state.
func (s *Server) getWebhook(c *fiber.Ctx) error {
	id := c.Params("id")
	if !ids.Valid(id) {
		return apiError(fiber.StatusNotFound, "No callback url set.")
	}
	ctx := c.UserContext()
	// The webhook belongs to the file's owner: the file's record says who.
	rec, err := s.lookupOwn(c, id)
	if errors.Is(err, result.ErrNotFound) || (err == nil && rec.Meta.CallbackURL == "") {
		return apiError(fiber.StatusNotFound, "No callback url set.")
	}
	if err != nil {
		return err
	}
	if e, err := s.b.Webhooks.Get(ctx, id); err == nil {
		var st map[string]any
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return err
		}
		if u, ok := st["url"].(string); ok {
			st["url"] = netguard.Redact(u)
		}
		return c.JSON(st)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	// Not attempted yet (still scanning, or queued for the notifier).
	return c.JSON(fiber.Map{"data_id": id, "url": netguard.Redact(rec.Meta.CallbackURL), "request_time": "", "status_code": 0,
		"attempts": 0, "next_attempt": "", "state": "pending"})
}

// getRules is GET /file/rules, filtered by the user_agent header.
func (s *Server) getRules(c *fiber.Ctx) error {
	type rule struct {
		Name        string `json:"name"`
		MaxFileSize int64  `json:"max_file_size"`
		Multipart   bool   `json:"multipart"`
	}
	out := []rule{}
	for _, w := range s.opts.Workflows.Available(header(c, "user_agent")) {
		out = append(out, rule{Name: w.Name, MaxFileSize: int64(w.MaxFileSize), Multipart: w.Multipart.Enabled})
	}
	return c.JSON(out)
}

// ReadyChecks are this node's readiness conditions: the bus, the disk
// reserve, and those of the other roles in its process (Options.ReadyChecks).
// The ops address answers /readyz with the same checks.
func (s *Server) ReadyChecks() []health.Check {
	checks := append(health.Bus(s.b), health.Check{Name: "disk", Run: func(context.Context) error { return s.checkDisk(0) }})
	return append(checks, s.opts.ReadyChecks...)
}

// readyz is GET /readyz: 200 when this node can take uploads (NATS and
// JetStream answer, the disk has room, the engines of a scanner in this
// process answer), else 503.
func (s *Server) readyz(c *fiber.Ctx) error {
	status, body := health.Run(c.UserContext(), s.ReadyChecks()).Answer(c.Query("verbose") == "true")
	return c.Status(status).JSON(body)
}

// livez is GET /livez: the process answers.
func (s *Server) livez(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) }

// version is GET /version.
func (s *Server) version(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"product_id": "scangate", "version": s.opts.Version})
}

// replayWebhook is POST /file/webhook/{data_id}/replay: deliveries that
// settled (delivered, gone, or failed after max_attempts) start again from
// attempt zero. An admin operation: it sends data again to a receiver.
func (s *Server) replayWebhook(c *fiber.Ctx) error {
	if err := requireAdmin(c); err != nil {
		return err
	}
	id := c.Params("id")
	if !ids.Valid(id) {
		return apiError(fiber.StatusNotFound, "No callback url set.")
	}
	ctx := c.UserContext()
	rec, rev, err := s.results.Get(ctx, id)
	if errors.Is(err, result.ErrNotFound) || (err == nil && rec.Meta.CallbackURL == "" && rec.Meta.SanitizedURL == "") {
		return apiError(fiber.StatusNotFound, "No callback url set.")
	}
	if err != nil {
		return err
	}
	if !rec.Final() {
		return apiError(fiber.StatusConflict, "The file is still being processed.")
	}
	for _, key := range []string{id, id + ".sanitized"} {
		e, err := s.b.Webhooks.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		var st struct {
			State string `json:"state"`
		}
		if json.Unmarshal(e.Value(), &st) == nil && st.State == "pending" {
			return apiError(fiber.StatusConflict, "A delivery is still in progress.")
		}
		if err := s.b.Webhooks.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
			return apiError(fiber.StatusConflict, "A delivery is still in progress.")
		}
	}
	done := &events.ScanDone{DataID: id, Revision: rev, CallbackURL: rec.Meta.CallbackURL, SanitizedURL: rec.Meta.SanitizedURL}
	if err := s.b.ReplayScanDone(ctx, done); err != nil {
		return err
	}
	s.log.Info().Str("data_id", id).Msg("webhook replay requested")
	return c.JSON(map[string]string{id: "replaying"})
}
