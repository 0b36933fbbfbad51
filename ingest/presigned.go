package ingest

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/metrics"
	"github.com/scangate/scangate/pkg/names"
	"github.com/scangate/scangate/pkg/presign"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/session"
)

// Pre-signed part uploads, BioT style: the client asks for signed URLs,
// PUTs each part to its URL (any node, any order, no apikey: the URL is
// the credential), then completes with the part numbers and the ETags its
// PUTs were answered with. Each PUT stores its part whole in a blob of its
// own and publishes a numbered-part event to the upload's assembler, which
// decides in stream order which PUT of a part counts and, at complete,
// makes the file the concatenation of the parts (assembler/presigned.go).

// presignedPath is the root of the routes.
const presignedPath = "/file/v1/files/upload/parts"

// PresignedOptions configure pre-signed part uploads.
type PresignedOptions struct {
	// Key signs the part URLs; every ingest node of a deployment must
	// share it. Empty: a random key of this process (one node, tests).
	Key []byte
	// URLTTL is how long a URL is valid (default 1h), never past the
	// upload's own deadline.
	URLTTL time.Duration
	// MinPartSize: a part smaller than this is refused at complete unless
	// it is the last (default 5 MiB).
	MinPartSize int64
	// MaxParts is the highest part number (default 1000).
	MaxParts int
	// BaseURL is where clients reach the API, for the URLs; empty: the
	// scheme and host of the request.
	BaseURL string
	// Now is the clock URLs are signed and checked by (nil: time.Now).
	Now func() time.Time
}

func (o PresignedOptions) withDefaults() PresignedOptions {
	if len(o.Key) == 0 {
		o.Key = make([]byte, 32)
		_, _ = rand.Read(o.Key)
	}
	if o.URLTTL <= 0 {
		o.URLTTL = time.Hour
	}
	if o.MinPartSize <= 0 {
		o.MinPartSize = 5 << 20
	}
	if o.MaxParts <= 0 {
		o.MaxParts = 1000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.BaseURL = strings.TrimSuffix(o.BaseURL, "/")
	return o
}

var (
	errUploadNotFound  = apiError(fiber.StatusNotFound, "Upload not found.")
	errUploadCompleted = apiError(fiber.StatusConflict, "Upload already completed.")
	errSignatureBad    = apiError(fiber.StatusForbidden, "Signed URL is invalid.")
	errSignatureOld    = apiError(fiber.StatusForbidden, "Signed URL has expired.")
	errPartEmpty       = apiError(fiber.StatusUnprocessableEntity, "Part is empty.")
)

// newSigner signs with key; a key too short to sign with (the config
// refuses one) is replaced by a random one, valid on this node only.
func newSigner(key []byte, log zerolog.Logger) *presign.Signer {
	sg, err := presign.New(key)
	if err != nil {
		log.Error().Err(err).Msg("pre-signed part URLs are signed with a random key of this process")
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		sg, _ = presign.New(key)
	}
	return sg
}

// maxPresignedBody bounds the JSON bodies of these routes: a complete that
// lists max_parts parts with their ETags.
const maxPresignedBody = 1 << 20

func (s *Server) presignedRoutes(r fiber.Router) {
	r.Post(presignedPath, s.postPresigned)
	r.Post(presignedPath+"/:id", s.postPresignedURLs)
	r.Get(presignedPath+"/:id", s.getPresigned)
	r.Put(presignedPath+"/:id", s.putPresignedReport)
	r.Put(presignedPath+"/:id/:partNumber", s.putPresignedPart)
	r.Post(presignedPath+"/:id/complete", s.completePresigned)
	r.Delete(presignedPath+"/:id/cancel", s.cancelPresigned)
}

// signedPart is what a verified part URL grants: one part of one upload.
type signedPart struct {
	id   string
	part int
}

// signedPartKey keys (in the request's locals) the signedPart the
// authentication middleware verified.
const signedPartKey = "scangate.signed-part"

// signedPartRequest reports whether the request is a PUT to a part URL:
// those are judged by their signature alone, never by an apikey.
func signedPartRequest(c *fiber.Ctx) (id, part string, ok bool) {
	if c.Method() != fiber.MethodPut {
		return "", "", false
	}
	rest, ok := strings.CutPrefix(strings.TrimPrefix(c.Path(), "/v4"), presignedPath+"/")
	if !ok {
		return "", "", false
	}
	id, part, ok = strings.Cut(rest, "/")
	return id, part, ok && id != "" && part != "" && !strings.Contains(part, "/")
}

// checkSignedPart lets a part PUT through only with a valid, unexpired
// signature over its upload id, part number and expiry (constant-time
// comparison). A refusal is decided before the body is read.
func (s *Server) checkSignedPart(c *fiber.Ctx, id, partStr string) error {
	part, err := strconv.Atoi(partStr)
	if err == nil && ids.Valid(id) && part >= 1 {
		err = s.partSigner.Verify(id, part, c.Query(presign.ParamExpires), c.Query(presign.ParamSignature), s.presign.Now())
	} else {
		err = presign.ErrInvalid
	}
	if err != nil {
		if c.Request().Header.ContentLength() > preReadBody {
			c.Locals(bodyKey, &clientBody{err: errRefusedUnread}) // close rather than read a refused body
		}
		if errors.Is(err, presign.ErrExpired) {
			return errSignatureOld
		}
		s.log.Info().Str("data_id", truncate(id, 64)).Str("remote", c.IP()).Msg("part URL with an invalid signature refused")
		return errSignatureBad
	}
	c.Locals(signedPartKey, signedPart{id: id, part: part})
	return c.Next()
}

// presignedRequest is the body of POST /file/v1/files/upload/parts and
// POST .../{id}.
type presignedRequest struct {
	Name     string `json:"name"`
	MimeType string `json:"mimeType"`
	Parts    *int   `json:"parts"`
}

// readJSON reads a small JSON body into v, whatever its Content-Type.
func readJSON(c *fiber.Ctx, v any, want string) error {
	body, err := readSmallBody(c, maxPresignedBody)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return apiError(fiber.StatusBadRequest, "Invalid request body: want "+want+".")
	}
	return nil
}

// urlCount checks the number of URLs asked for.
func (s *Server) urlCount(n *int) (int, error) {
	if n == nil || *n < 1 || *n > s.presign.MaxParts {
		return 0, apiError(fiber.StatusBadRequest, fmt.Sprintf("parts must be a whole number from 1 to %d.", s.presign.MaxParts))
	}
	return *n, nil
}

// postPresigned is POST /file/v1/files/upload/parts: open an upload and
// sign URLs for parts 1..parts. Every POST /file header applies (rule,
// callbackurl, metadata, ...); the display name is the body's name, or the
// filename header without one.
func (s *Server) postPresigned(c *fiber.Ctx) error {
	var req presignedRequest
	if err := readJSON(c, &req, `{"name","mimeType","parts"}`); err != nil {
		return err
	}
	n, err := s.urlCount(req.Parts)
	if err != nil {
		return err
	}
	meta, err := s.fileMeta(c)
	if err != nil {
		return err
	}
	if req.Name != "" {
		meta.DisplayName = names.Display(req.Name)
	}
	wf, _ := s.opts.Workflows.Get(meta.Workflow)
	if !wf.Multipart.Enabled {
		return apiError(fiber.StatusForbidden, "Multipart upload is not enabled for this rule.")
	}
	if err := s.admit(c); err != nil {
		return err
	}
	now := time.Now()
	sess, err := s.openUpload(c.UserContext(), &events.UploadEvent{Kind: events.UploadOpen, DataID: ids.New(), Meta: &meta,
		CreatedAt: now, ExpiresAt: now.Add(wf.Multipart.TTL),
		Presigned: &events.PresignedOpen{Name: truncate(req.Name, names.MaxBytes), MimeType: truncate(req.MimeType, names.MaxBytes)}})
	if err != nil {
		return err
	}
	setDataID(c, sess.DataID)
	return sendJSON(c, s.urlsAnswer(c, sess, n))
}

// postPresignedURLs is POST .../{id}: URLs for parts 1..parts, all fresh —
// for URLs that expired, or more of them for an upload of unknown length.
func (s *Server) postPresignedURLs(c *fiber.Ctx) error {
	sess, err := s.ownPresigned(c)
	if err != nil {
		return err
	}
	var req presignedRequest
	if err := readJSON(c, &req, `{"parts"}`); err != nil {
		return err
	}
	n, err := s.urlCount(req.Parts)
	if err != nil {
		return err
	}
	if err := presignedOpen(sess); err != nil {
		return err
	}
	return sendJSON(c, s.urlsAnswer(c, sess, n))
}

// signedURL is one entry of signedUrls.
type signedURL struct {
	SignedURL      string `json:"signedUrl"`
	PartNumber     int    `json:"partNumber"`
	ExpirationTime string `json:"expirationTime"`
}

// urlsAnswer signs URLs for parts 1..n of sess. They expire after URLTTL,
// or with the upload if that comes first: a URL never promises more time
// than the upload has.
func (s *Server) urlsAnswer(c *fiber.Ctx, sess *session.Session, n int) urlsAnswer {
	exp := s.presign.Now().Add(s.presign.URLTTL)
	if sess.ExpiresAt.Before(exp) {
		exp = sess.ExpiresAt
	}
	exp = time.Unix(exp.Unix(), 0) // what the signature covers
	base := s.publicBase(c)
	if s.presign.BaseURL == "" && strings.HasPrefix(c.Path(), "/v4/") {
		base += "/v4"
	}
	urls := make([]signedURL, n)
	for i := range urls {
		part := i + 1
		urls[i] = signedURL{
			SignedURL:      base + presignedPath + "/" + sess.DataID + "/" + strconv.Itoa(part) + "?" + s.partSigner.Query(sess.DataID, part, exp),
			PartNumber:     part,
			ExpirationTime: exp.UTC().Format(time.RFC3339),
		}
	}
	pr := sess.Presigned
	return urlsAnswer{Name: pr.Name, MimeType: pr.MimeType, ID: sess.DataID, Parts: n, SignedURLs: urls}
}

// urlsAnswer is the body that hands out URLs, its fields in BioT's order.
type urlsAnswer struct {
	Name       string      `json:"name"`
	MimeType   string      `json:"mimeType"`
	ID         string      `json:"id"`
	Parts      int         `json:"parts"`
	SignedURLs []signedURL `json:"signedUrls"`
}

// sendJSON answers v as JSON with "&" and "<" left as they are: the URLs
// carry their query in plain sight, for clients that read them by eye.
func sendJSON(c *fiber.Ctx, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// publicBase is where the client reaches the API: presigned.base_url, or
// the scheme and host it used (through a proxy, X-Forwarded-Proto and
// X-Forwarded-Host). The URLs go back to the client that asked, so a host
// it made up misleads only itself; the scheme is http or https, nothing
// else.
func (s *Server) publicBase(c *fiber.Ctx) string {
	if s.presign.BaseURL != "" {
		return s.presign.BaseURL
	}
	scheme := "http"
	if c.Protocol() == "https" {
		scheme = "https"
	}
	return scheme + "://" + c.Hostname()
}

// ownPresigned is the pre-signed upload {id} of the request's user.
// Another user's upload, an unknown id and an upload of another kind all
// get the same answer.
func (s *Server) ownPresigned(c *fiber.Ctx) (*session.Session, error) {
	id := c.Params("id")
	if !ids.Valid(id) {
		return nil, errUploadNotFound
	}
	sess, err := s.ownSession(c, id)
	if errors.Is(err, session.ErrNotFound) || err == nil && sess.Presigned == nil {
		return nil, errUploadNotFound
	}
	if err != nil {
		return nil, err
	}
	setDataID(c, id)
	return sess, nil
}

// presignedOpen refuses what only an upload still taking parts accepts.
func presignedOpen(sess *session.Session) error {
	if err := refuseClosed(sess); err != nil {
		return err
	}
	if sess.Status == session.Complete {
		return errUploadCompleted
	}
	return nil
}

// partView is one part in the status view.
type partView struct {
	PartNumber int    `json:"partNumber"`
	ETag       string `json:"etag"`
	Size       int64  `json:"size"`
}

// presignedView is GET .../{id} (and the answer to a progress report):
// the parts stored, by number, with their ETags and sizes, and the ETags
// the client reported.
func presignedView(sess *session.Session) statusView {
	pr := sess.Presigned
	parts := make([]partView, len(pr.Parts))
	for i, p := range pr.Parts {
		parts[i] = partView{p.Number, p.ETag, p.Size}
	}
	reported := pr.Reported
	if reported == nil {
		reported = []events.PartTag{}
	}
	status := sess.Status
	if status == session.Uploading && !time.Now().Before(sess.ExpiresAt) {
		status = session.TimedOut // the expire event is on its way
	}
	return statusView{ID: sess.DataID, Name: pr.Name, MimeType: pr.MimeType, Status: status, Size: sess.ReceivedLength,
		Parts: parts, Reported: reported, CreatedAt: result.FormatTime(sess.CreatedAt), ExpiresAt: result.FormatTime(sess.ExpiresAt)}
}

// statusView is the body of GET .../{id}.
type statusView struct {
	ID        string           `json:"id"`
	Name      string           `json:"name"`
	MimeType  string           `json:"mimeType"`
	Status    string           `json:"status"` // uploading | complete | cancelled | timed_out
	Size      int64            `json:"size"`   // bytes of the parts stored; the file's size once complete
	Parts     []partView       `json:"parts"`
	Reported  []events.PartTag `json:"reported"`
	CreatedAt string           `json:"created_at"`
	ExpiresAt string           `json:"expires_at"`
}

// getPresigned is GET .../{id}: the upload's status.
func (s *Server) getPresigned(c *fiber.Ctx) error {
	sess, err := s.ownPresigned(c)
	if err != nil {
		return err
	}
	return c.JSON(presignedView(sess))
}

// partsBody is the body of a progress report and of complete.
type partsBody struct {
	Parts []events.PartTag `json:"parts"`
}

// readPartTags reads and checks a part list: numbers within range, each
// once, each with an ETag (quotes, as the ETag header carries them, and
// case do not matter).
func (s *Server) readPartTags(c *fiber.Ctx) ([]events.PartTag, error) {
	var body partsBody
	if err := readJSON(c, &body, `{"parts":[{"partNumber","etag"}]}`); err != nil {
		return nil, err
	}
	seen := make(map[int]bool, len(body.Parts))
	for i := range body.Parts {
		t := &body.Parts[i]
		if t.PartNumber < 1 || t.PartNumber > s.presign.MaxParts {
			return nil, apiError(fiber.StatusBadRequest, fmt.Sprintf("partNumber must be from 1 to %d.", s.presign.MaxParts))
		}
		if seen[t.PartNumber] {
			return nil, apiError(fiber.StatusBadRequest, fmt.Sprintf("Part %d is listed twice.", t.PartNumber))
		}
		seen[t.PartNumber] = true
		t.ETag = normalizeETag(t.ETag)
		switch {
		case t.ETag == "":
			return nil, apiError(fiber.StatusBadRequest, fmt.Sprintf("Part %d has no etag.", t.PartNumber))
		case len(t.ETag) > 128:
			return nil, apiError(fiber.StatusBadRequest, fmt.Sprintf("Part %d: etag is too long.", t.PartNumber))
		}
	}
	return body.Parts, nil
}

// normalizeETag takes an ETag as a client may hand it back: the header's
// value with its quotes (and a weak prefix), or the bare digest.
func normalizeETag(v string) string {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "W/")
	v = strings.TrimSuffix(strings.TrimPrefix(v, `"`), `"`)
	return strings.ToLower(v)
}

// applyPresigned publishes ev to the upload's assembler and waits until it
// has applied it (or the upload ended), so that the answer says what the
// assembler decided.
func (s *Server) applyPresigned(c *fiber.Ctx, sess *session.Session, ev *events.UploadEvent, msgID string) (*session.Session, uint64, error) {
	log := s.log.With().Str("data_id", sess.DataID).Str("event", ev.Kind).Logger()
	seq, err := s.b.PublishUpload(s.ctx, sess.Partition, ev, msgID)
	if err != nil {
		return nil, 0, s.queueError(err, log)
	}
	applied, err := s.waitView(c.UserContext(), sess.DataID, func(v *session.Session) bool {
		return v.Seq >= seq || v.Status != session.Uploading
	})
	if err != nil {
		log.Error().Err(err).Msg("upload event not applied in time; is an assembler running?")
		return nil, 0, apiError(fiber.StatusServiceUnavailable, "Failed to request scan. Try again later.")
	}
	return applied, seq, nil
}

// putPresignedReport is PUT .../{id}: the client reports the ETags it
// holds. They are kept (GET .../{id} shows them) and a complete with an
// empty list uses them.
func (s *Server) putPresignedReport(c *fiber.Ctx) error {
	sess, err := s.ownPresigned(c)
	if err != nil {
		return err
	}
	tags, err := s.readPartTags(c)
	if err != nil {
		return err
	}
	if err := presignedOpen(sess); err != nil {
		return err
	}
	ev := &events.UploadEvent{Kind: events.UploadReport, DataID: sess.DataID, PartTags: tags}
	applied, _, err := s.applyPresigned(c, sess, ev, "report-"+ids.New())
	if err != nil {
		return err
	}
	if err := presignedOpen(applied); err != nil {
		return err
	}
	return c.JSON(presignedView(applied))
}

// putPresignedPart is PUT <signedUrl>: one part, stored whole under a blob
// key of its own, so a re-PUT (or two PUTs racing on two nodes) never
// mixes bytes with an earlier one; the assembler keeps the latest it
// applies. Answered 200 with the part's ETag (hex md5, quoted, as S3 does)
// once the bytes are durable and the event is in the stream.
func (s *Server) putPresignedPart(c *fiber.Ctx) error {
	sp, ok := c.Locals(signedPartKey).(signedPart)
	if !ok {
		return errSignatureBad // never routed here without a verified signature
	}
	setDataID(c, sp.id)
	if sp.part > s.presign.MaxParts {
		return apiError(fiber.StatusBadRequest, fmt.Sprintf("partNumber must be from 1 to %d.", s.presign.MaxParts))
	}
	size, err := bodyLength(c)
	if err != nil {
		return err
	}
	if size == 0 {
		return errPartEmpty
	}
	sess, _, err := s.sessions.Get(c.UserContext(), sp.id)
	if errors.Is(err, session.ErrNotFound) || err == nil && sess.Presigned == nil {
		return errUploadNotFound
	}
	if err != nil {
		return err
	}
	if err := presignedOpen(sess); err != nil {
		return err
	}
	wf, _ := s.opts.Workflows.Get(sess.Meta.Workflow)
	if wf.MaxFileSize > 0 && size > int64(wf.MaxFileSize) {
		return apiError(fiber.StatusRequestEntityTooLarge, "File is too large for this rule.")
	}
	if err := s.checkDisk(size); err != nil {
		return err
	}
	key := blob.PartKey(sp.id, sp.part, ids.New()[:8])
	log := s.log.With().Str("data_id", sp.id).Int("part", sp.part).Int64("len", size).Logger()
	etag, err := s.receiveHashed(c, sess, key, 0, size, md5.New(), log)
	if err != nil {
		return err
	}
	ev := &events.UploadEvent{Kind: events.UploadNumberedPart, DataID: sp.id, PartNumber: sp.part, Len: size, ETag: etag, Staged: key}
	if _, err := s.b.PublishUpload(s.ctx, sess.Partition, ev, "part-"+key); err != nil {
		s.discard(key)
		return s.queueError(err, log)
	}
	log.Debug().Str("etag", etag).Msg("part stored")
	s.opts.Metrics.Upload(metrics.UploadPart, size)
	c.Set(fiber.HeaderETag, `"`+etag+`"`)
	c.Status(fiber.StatusOK)
	return nil
}

// completePresigned is POST .../{id}/complete: the file is the listed parts
// in part-number order, each checked against its ETag. The assembler
// decides, in stream order with the parts; the answer reports its
// decision. A complete repeated after success is answered as the first.
func (s *Server) completePresigned(c *fiber.Ctx) error {
	sess, err := s.ownPresigned(c)
	if err != nil {
		return err
	}
	tags, err := s.readPartTags(c)
	if err != nil {
		return err
	}
	if sess.Status == session.Complete {
		return s.completeAnswer(c, sess)
	}
	if err := refuseClosed(sess); err != nil {
		return err
	}
	wf, _ := s.opts.Workflows.Get(sess.Meta.Workflow)
	ev := &events.UploadEvent{Kind: events.UploadComplete, DataID: sess.DataID, PartTags: tags,
		MinPartSize: s.presign.MinPartSize, MaxSize: int64(wf.MaxFileSize)}
	applied, seq, err := s.applyPresigned(c, sess, ev, "complete-"+ids.New())
	if err != nil {
		return err
	}
	if applied.Status == session.Complete {
		s.log.Info().Str("data_id", sess.DataID).Int("parts", len(applied.Presigned.Parts)).Int64("size", applied.TotalLength).
			Msg("pre-signed upload complete")
		return s.completeAnswer(c, applied)
	}
	if err := refuseClosed(applied); err != nil {
		return err
	}
	if r, ok := applied.Presigned.Refusal(seq); ok {
		return apiError(r.Status, r.Err)
	}
	return apiError(fiber.StatusServiceUnavailable, "Failed to request scan. Try again later.")
}

// completeAnswer is the 200 of complete. The file is scanned under the
// upload's id, and polled like any file at downloadUrl (GET /file/{id}):
// scangate hands back results, never an unscanned file.
func (s *Server) completeAnswer(c *fiber.Ctx, sess *session.Session) error {
	base := s.publicBase(c)
	return c.JSON(struct {
		ID          string `json:"id"`
		DataID      string `json:"data_id"`
		Name        string `json:"name"`
		Size        int64  `json:"size"`
		DownloadURL string `json:"downloadUrl"`
	}{sess.DataID, sess.DataID, sess.Presigned.Name, sess.TotalLength, base + "/file/" + sess.DataID})
}

// cancelPresigned is DELETE .../{id}/cancel: only while the upload is
// incomplete (409 after). Parts streaming in on any node are cut off, the
// stored parts are released, and the file's verdict becomes 19 Cancelled.
func (s *Server) cancelPresigned(c *fiber.Ctx) error {
	sess, err := s.ownPresigned(c)
	if err != nil {
		return err
	}
	id := sess.DataID
	if sess.Status == session.Cancelled {
		return c.JSON(map[string]string{id: "cancelled"}) // a repeated cancel
	}
	if err := presignedOpen(sess); err != nil {
		return err
	}
	if _, err := s.b.PublishUpload(c.UserContext(), sess.Partition, &events.UploadEvent{Kind: events.UploadAbort, DataID: id}, "abort-"+id); err != nil {
		return s.queueError(err, s.log.With().Str("data_id", id).Logger())
	}
	if err := s.b.NC.Publish(events.AbortSubject(id), nil); err != nil {
		s.log.Warn().Err(err).Str("data_id", id).Msg("abort broadcast failed; parts in flight finish and are refused")
	}
	ended, err := s.waitView(c.UserContext(), id, func(v *session.Session) bool { return v.Status != session.Uploading })
	if err != nil {
		s.log.Warn().Err(err).Str("data_id", id).Msg("cancel not applied in time; answering from the log")
	} else if ended.Status != session.Cancelled {
		// The complete (or the expiry) reached the log first.
		if err := presignedOpen(ended); err != nil {
			return err
		}
	}
	s.log.Info().Str("data_id", id).Msg("pre-signed upload cancelled")
	return c.JSON(map[string]string{id: "cancelled"})
}
