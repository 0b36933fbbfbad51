package ingest

import (
	"errors"
	"io"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/localfile"
	"github.com/scangate/scangate/pkg/names"
	"github.com/scangate/scangate/pkg/netguard"
)

// postSource is POST /file whose bytes are not in the body: a file on the
// server's disk (header filepath) or a URL a scanner fetches (header
// downloadfrom). Every check happens before anything is stored.
func (s *Server) postSource(c *fiber.Ctx) error {
	link, local := c.Get("downloadfrom") != "", c.Get("filepath") != ""
	// A body (or a chunked one, length -1) would be a second file: refuse
	// rather than guess which one the client meant. The connection closes
	// after the answer when the body cannot be drained (finishBody).
	if c.Request().Header.ContentLength() != 0 {
		if link {
			return apiError(fiber.StatusBadRequest, "Both body data and download link were given.")
		}
		return apiError(fiber.StatusBadRequest, "Both body data and file path were given.")
	}
	if link && local {
		return apiError(fiber.StatusBadRequest, "Both file path and download link were given.")
	}
	if c.Get("X-File-ID") != "" {
		return apiError(fiber.StatusBadRequest, "X-File-ID cannot be combined with filepath or downloadfrom.")
	}
	if link {
		return s.postDownload(c)
	}
	return s.postLocal(c)
}

// postLocal scans a file already on the server's disk, inside one of the
// allowed directories (sources.filepath.allowed_dirs). The file is opened
// once, its type and size are taken from the open file, and that same open
// file is read: a path swapped for a symlink or another file after the
// check is never what gets read. Its bytes then take the path of a body:
// size limit, hashing, the blob store (or its event, when small), the
// queued event.
func (s *Server) postLocal(c *fiber.Ctx) error {
	if !s.opts.LocalFiles.Enabled() {
		return apiError(fiber.StatusBadRequest, "filepath is not enabled on this server.")
	}
	p := header(c, "filepath")
	meta, err := s.fileMeta(c)
	if err != nil {
		return err
	}
	f, size, err := s.opts.LocalFiles.Open(p)
	if err != nil {
		return s.localError(err)
	}
	defer f.Close()
	if size == 0 {
		return apiError(fiber.StatusUnprocessableEntity, "File is empty.")
	}
	if meta.DisplayName == "" {
		meta.DisplayName = names.Display(path.Base(p))
	}
	if meta.OriginalFilePath == "" {
		meta.OriginalFilePath = names.ClientPath(p)
	}
	if err := s.admitFile(c, meta, size); err != nil {
		return err
	}
	src := &localBody{f: f, want: size}
	return s.acceptFile(c, meta, size, fullReader{src}, func(err error, log zerolog.Logger) error {
		switch {
		case errors.Is(src.err, errFileShrank):
			log.Warn().Int64("read", src.got).Int64("size", size).Msg("local file shrank while it was read")
			return apiError(fiber.StatusConflict, "The file changed while it was read.")
		case src.err != nil:
			log.Error().Err(src.err).Msg("reading local file failed")
			return apiError(fiber.StatusInternalServerError, "Could not read the file.")
		}
		return s.storeError(err, &clientBody{}, log) // the store failed, not the file
	})
}

// localError answers a filepath that cannot be scanned. Outside the
// allowed directories nothing is looked up, so the answer there says
// nothing about what exists.
func (s *Server) localError(err error) error {
	s.log.Debug().Err(err).Msg("filepath refused")
	switch {
	case errors.Is(err, localfile.ErrNotAllowed):
		return apiError(fiber.StatusForbidden, "Access to this file path is not allowed.")
	case errors.Is(err, localfile.ErrNotFound):
		return apiError(fiber.StatusNotFound, "File path not found.")
	case errors.Is(err, localfile.ErrNotRegular):
		return apiError(fiber.StatusBadRequest, "File path is not a regular file.")
	}
	s.log.Error().Err(err).Msg("opening local file failed")
	return apiError(fiber.StatusInternalServerError, "Could not read the file.")
}

// errFileShrank: a local file ended before the size its open handle
// reported (it was truncated while being read).
var errFileShrank = errors.New("file shrank while it was read")

// localBody reads a local file of a known size, telling a file that
// failed or shrank from a failure of the store it is copied to.
type localBody struct {
	f         *os.File
	want, got int64
	err       error
}

func (b *localBody) Read(p []byte) (int, error) {
	n, err := b.f.Read(p)
	b.got += int64(n)
	switch {
	case err == io.EOF && b.got < b.want:
		b.err = errFileShrank
	case err != nil && err != io.EOF:
		b.err = err
	}
	return n, err
}

// postDownload accepts a URL for a scanner to fetch. The client gets its
// data_id at once, as MetaDefender answers; the fetch happens on the
// scanner that takes the file from the work queue, so a process that dies
// mid-download leaves the file to a peer, and a failed fetch becomes the
// file's Failed verdict with its reason. Here the URL is only checked: an
// http(s) URL without credentials, and no literal loopback, private or
// link-local address unless allowed. Names are checked on the address the
// scanner actually connects to, at every redirect.
func (s *Server) postDownload(c *fiber.Ctx) error {
	if !s.opts.DownloadFrom {
		return apiError(fiber.StatusBadRequest, "downloadfrom is not enabled on this server.")
	}
	raw := strings.TrimSpace(c.Get("downloadfrom"))
	// Clients percent-encode header values; a URL sent whole-encoded
	// ("https%3A%2F%2F...") is decoded. One sent as it is must not be:
	// decoding its escapes ("%26" in a query) would change what it names.
	if !strings.Contains(raw, "://") {
		raw = percentDecode(raw)
	}
	u, err := netguard.CheckURL(raw)
	if err == nil && !s.opts.AllowPrivateDownloads && netguard.LiteralForbidden(u) {
		err = netguard.ErrForbidden
	}
	if err != nil {
		return apiError(fiber.StatusBadRequest, "Download link is invalid.")
	}
	meta, err := s.fileMeta(c)
	if err != nil {
		return err
	}
	if meta.DisplayName == "" {
		meta.DisplayName = names.Display(urlName(u))
	}
	// The size is known only once fetched (the scanner enforces the
	// workflow's limit); the disk must not already be below its reserve.
	if err := s.checkDisk(0); err != nil {
		return err
	}
	if err := s.admit(c); err != nil {
		return err
	}
	dataID := ids.New()
	setDataID(c, dataID)
	log := s.log.With().Str("data_id", dataID).Logger()
	fc := &events.FileComplete{DataID: dataID, Meta: meta, Priority: events.PriorityNormal,
		UploadedAt: time.Now(), DownloadFrom: raw}
	if err := s.joinUpload(&meta, dataID, false); err != nil {
		return err // its batch closed meanwhile (batch.go); nothing was stored
	}
	if err := s.queueFile(fc, log); err != nil {
		return err
	}
	// Without the query: signed URLs carry their credentials there.
	log.Info().Str("url", netguard.Redact(raw)).Str("workflow", meta.Workflow).Msg("download accepted")
	return c.JSON(fiber.Map{"data_id": dataID})
}

// urlName is the last segment of a URL's path, the file's name when the
// client gives none.
func urlName(u *url.URL) string {
	name := path.Base(u.Path)
	if name == "/" || name == "." {
		return ""
	}
	return name
}
