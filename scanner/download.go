package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/netguard"
	"github.com/scangate/scangate/pkg/result"
)

// Files submitted by URL (POST /file with header downloadfrom) are fetched
// here, by the scanner that took the file from the work queue, into the
// blob store under the file's data_id; the scan then reads them like any
// upload. Fetching on the scanner rather than in ingest means the work item
// is what holds the download: a scanner that dies mid-download leaves the
// item unacknowledged, and the peer it is redelivered to starts over. And
// ingest stays what it is, a tier that answers at once and holds no work.

// downloadDefaults fill in what a scanner built without a sources
// configuration (tests, tools) would otherwise lack.
var downloadDefaults = config.DownloadFromConfig{
	MaxSize: 1 << 30, ConnectTimeout: 10 * time.Second, Timeout: 5 * time.Minute, MaxRedirects: 5, MaxConcurrent: 4,
}

// withDownloadDefaults returns o with every unset limit at its default.
func withDownloadDefaults(o config.DownloadFromConfig) config.DownloadFromConfig {
	d := downloadDefaults
	if o.MaxSize <= 0 {
		o.MaxSize = d.MaxSize
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = d.ConnectTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = d.MaxConcurrent
	}
	return o
}

// fetchError is a download that failed for a reason the client may hear:
// the reason never holds the addresses a name resolved to or was refused
// at (netguard.Describe); those go to the log with the cause.
type fetchError struct {
	reason string
	err    error
}

func (e *fetchError) Error() string { return "Download failed: " + e.reason }
func (e *fetchError) Unwrap() error { return e.err }

func failFetch(err error, format string, a ...any) error {
	return &fetchError{reason: fmt.Sprintf(format, a...), err: err}
}

// fetcher GETs user-supplied URLs through the SSRF guard: each URL, the
// first and every redirect's, must be an http(s) URL without credentials
// and, unless private targets are allowed, not a literal loopback, private
// or link-local address; and dial checks the address actually connected
// to, whatever a name resolved to.
type fetcher struct {
	client       *http.Client
	allowPrivate bool
	maxRedirects int
}

// newFetcher builds the fetcher; dial, when not nil, replaces the guarded
// dialer (tests map names to local servers with it).
func newFetcher(o config.DownloadFromConfig, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *fetcher {
	if dial == nil {
		dial = netguard.NewDialer(o.AllowPrivateTargets, o.ConnectTimeout).DialContext
	}
	transport := &http.Transport{
		// No proxy from the environment: the guard would check the
		// proxy's address, and the proxy would reach private targets.
		Proxy:               nil,
		DialContext:         dial,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: o.ConnectTimeout,
		// The bytes stored are the bytes served: no transparent gunzip
		// (which would also let a small response expand without bound).
		DisableCompression: true,
		MaxIdleConns:       16,
		IdleConnTimeout:    30 * time.Second,
	}
	return &fetcher{
		client: &http.Client{
			Transport: transport,
			// Redirects are followed by get, one checked hop at a time.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		allowPrivate: o.AllowPrivateTargets,
		maxRedirects: o.MaxRedirects,
	}
}

// get requests raw, following up to maxRedirects redirects, and returns the
// final 200 response. ctx bounds the whole exchange, the body included.
func (f *fetcher) get(ctx context.Context, raw string) (*http.Response, error) {
	cur := raw
	for hop := 0; ; hop++ {
		u, err := netguard.CheckURL(cur)
		if err != nil {
			if hop == 0 {
				return nil, failFetch(err, "the URL is not an http or https URL scangate may fetch")
			}
			return nil, failFetch(err, "the target redirected to a URL scangate does not fetch")
		}
		if !f.allowPrivate && netguard.LiteralForbidden(u) {
			return nil, failFetch(fmt.Errorf("%w: %s", netguard.ErrForbidden, u.Hostname()), "%s", netguard.Describe(netguard.ErrForbidden))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, failFetch(err, "the URL is invalid")
		}
		req.Header.Set("User-Agent", "scangate")
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := f.client.Do(req)
		if err != nil {
			return nil, failFetch(err, "%s", netguard.Describe(err))
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
			http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			loc := resp.Header.Get("Location")
			discardBody(resp)
			if loc == "" {
				return nil, failFetch(nil, "the target answered %d without a Location", resp.StatusCode)
			}
			if hop >= f.maxRedirects {
				return nil, failFetch(nil, "the target redirected more than %d times", f.maxRedirects)
			}
			next, err := u.Parse(loc)
			if err != nil {
				return nil, failFetch(err, "the target redirected to an invalid URL")
			}
			cur = next.String()
		case http.StatusOK:
			return resp, nil
		default:
			discardBody(resp)
			return nil, failFetch(nil, "the target answered HTTP %d", resp.StatusCode)
		}
	}
}

// discardBody reads a little of a body that is not wanted, so the
// connection may be reused, and closes it.
func discardBody(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}

// segmentSize is how much of a body of unknown length (chunked) is held
// before it is written: a store write needs its length up front.
const segmentSize = 4 << 20

var segments = sync.Pool{New: func() any { b := make([]byte, segmentSize); return &b }}

// fetchInto downloads raw into key of store and returns its size. At most
// limit bytes are taken: a larger file fails, announced (Content-Length)
// or not. Failures of the download are *fetchError; failures of the store
// wrap blob.ErrUnavailable, so the file is tried again rather than failed.
func (f *fetcher) fetchInto(ctx context.Context, raw string, limit int64, store blob.Store, key string) (int64, error) {
	resp, err := f.get(ctx, raw)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	tooLarge := func() error {
		return failFetch(nil, "the file is larger than the limit of %s", humanize.IBytes(uint64(limit)))
	}
	body := &sourceBody{r: resp.Body}
	readFailed := func() error {
		if errors.Is(body.err, io.ErrUnexpectedEOF) {
			return failFetch(body.err, "the target closed the connection before sending the whole file")
		}
		return failFetch(body.err, "%s", netguard.Describe(body.err))
	}
	switch n := resp.ContentLength; {
	case n > limit:
		return 0, tooLarge()
	case n == 0:
		return 0, failFetch(nil, "the target sent an empty file")
	case n > 0:
		if err := store.WriteAt(ctx, key, 0, body, n); err != nil {
			if body.err != nil || errors.Is(err, io.ErrUnexpectedEOF) {
				if body.err == nil {
					body.err = io.ErrUnexpectedEOF
				}
				return 0, readFailed()
			}
			return 0, fmt.Errorf("store download: %w: %w", blob.ErrUnavailable, err)
		}
		return n, nil
	}
	// No length announced: store it a segment at a time.
	bp := segments.Get().(*[]byte)
	defer segments.Put(bp)
	buf := *bp
	var off int64
	for {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			if off+int64(n) > limit {
				return 0, tooLarge()
			}
			if err := store.WriteAt(ctx, key, off, bytes.NewReader(buf[:n]), int64(n)); err != nil {
				return 0, fmt.Errorf("store download: %w: %w", blob.ErrUnavailable, err)
			}
			off += int64(n)
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			if body.err != nil {
				return 0, readFailed()
			}
			if off == 0 {
				return 0, failFetch(nil, "the target sent an empty file")
			}
			return off, nil
		case err != nil:
			return 0, readFailed()
		}
	}
}

// sourceBody records why reading a response body failed, telling a target
// that stopped sending from a store that failed to write.
type sourceBody struct {
	r   io.Reader
	err error
}

func (b *sourceBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// download fetches the bytes of a file submitted by URL into the blob
// store, under the downloads' own limits: at most MaxConcurrent at once on
// this scanner, each within Timeout (so a slow or stalled server cannot
// hold a worker slot for long) and the workflow's max_file_size (MaxSize
// when it has none). On success fc and rec have the file's size; a failed
// download is a *fetchError, the file's Failed verdict and its reason.
func (s *Scanner) download(ctx context.Context, msg jetstream.Msg, fc *events.FileComplete, rec *result.Record, log zerolog.Logger) error {
	if fc.DownloadFrom == "" {
		return nil // the bytes came with the upload
	}
	// The scan's heartbeat starts once the bytes are here: until then the
	// work item is kept here, or a peer would start the same download.
	defer bus.KeepAlive(msg, bus.ScanKeepAlive)()
	o := s.opts.Downloads
	if !o.Enabled {
		return failFetch(nil, "downloadfrom is not enabled on this server")
	}
	wf, ok := s.opts.Workflows.Get(fc.Meta.Workflow)
	if !ok {
		return fmt.Errorf("workflow %q is no longer configured", fc.Meta.Workflow)
	}
	select {
	case s.downloads <- struct{}{}:
		defer func() { <-s.downloads }()
	case <-ctx.Done():
		return ctx.Err()
	}
	// Bytes an earlier attempt left (its scanner died mid-download) go
	// first: this attempt writes from offset 0, and the file must end
	// where this download ends.
	if err := s.blobs.Delete(ctx, fc.DataID); err != nil {
		return fmt.Errorf("drop an earlier attempt's bytes: %w: %w", blob.ErrUnavailable, err)
	}
	dctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	started := time.Now()
	n, err := s.fetch.fetchInto(dctx, fc.DownloadFrom, o.Limit(wf.MaxFileSize), s.blobs, fc.DataID)
	if err != nil {
		if ctx.Err() == nil && errors.Is(dctx.Err(), context.DeadlineExceeded) {
			// Whatever the read or the store said, time ran out: the
			// file's verdict, not a store failure to try again.
			log.Debug().Err(err).Msg("download timed out")
			err = failFetch(context.DeadlineExceeded, "the download did not finish within %s", o.Timeout)
		}
		// What a failed or cancelled download left is of no use: the
		// file's verdict is decided. (Any other failure hands the file to
		// a later attempt, which deletes before it writes.)
		var fe *fetchError
		if errors.As(err, &fe) || errors.Is(context.Cause(ctx), errCancelled) {
			dropCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if derr := s.blobs.Delete(dropCtx, fc.DataID); derr != nil {
				log.Warn().Err(derr).Msg("removing a failed download's bytes failed")
			}
			stop()
		}
		// The cause, with any address, is for the operator only.
		log.Warn().Err(errors.Unwrap(err)).Str("url", netguard.Redact(fc.DownloadFrom)).Str("reason", err.Error()).Msg("download failed")
		return err
	}
	fc.Size = n
	rec.Result.FileInfo.FileSize = n
	log.Info().Int64("size", n).Dur("took", time.Since(started)).Str("url", netguard.Redact(fc.DownloadFrom)).Msg("downloaded")
	return nil
}
