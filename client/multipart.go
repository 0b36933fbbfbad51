package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
)

// Defaults for multipart uploads. 8 MiB parts keep a retry cheap and stay
// well above scangate's min_part_size (64 KiB by default) and the 5 MiB
// minimum of pre-signed parts.
const (
	DefaultPartSize = 8 << 20
	DefaultParallel = 4
)

// Range is a byte range [Offset, Offset+Length) of a file; in JSON the
// array [offset, length].
type Range struct{ Offset, Length int64 }

// UnmarshalJSON reads [offset, length].
func (r *Range) UnmarshalJSON(b []byte) error {
	var a [2]int64
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	r.Offset, r.Length = a[0], a[1]
	return nil
}

// MarshalJSON writes [offset, length].
func (r Range) MarshalJSON() ([]byte, error) { return json.Marshal([2]int64{r.Offset, r.Length}) }

// Session is GET /file/multipart/{data_id}: what the server holds of a
// multipart upload.
type Session struct {
	DataID         string  `json:"data_id"`
	Status         string  `json:"status"` // uploading, complete, cancelled, timed_out
	TotalLength    int64   `json:"total_length"`
	ReceivedLength int64   `json:"received_length"`
	Ranges         []Range `json:"ranges"`
	Missing        []Range `json:"missing"` // what a resume sends
	CreatedAt      string  `json:"created_at"`
	ExpiresAt      string  `json:"expires_at"`
}

// Session statuses.
const (
	SessionUploading = "uploading"
	SessionComplete  = "complete"
	SessionCancelled = "cancelled"
	SessionTimedOut  = "timed_out"
)

// ErrSessionEnded is returned (wrapped) when a multipart session can take
// no more parts: unknown to the server, aborted, or past its time to live.
// A client resuming such a session starts a new one.
var ErrSessionEnded = errors.New("scangate: multipart session ended")

// MultipartOptions tune UploadMultipart.
type MultipartOptions struct {
	PartSize int64 // bytes per part (default DefaultPartSize)
	Parallel int   // parts in flight (default DefaultParallel)
	// DataID resumes this session: the server is asked what is missing,
	// and only that is sent. A complete session sends nothing. The
	// server's answer is its assembler's view, which may trail parts
	// answered a moment before; such parts are sent again, harmlessly.
	DataID string
	// OnSession is called once the session is known, before any part is
	// sent: with received 0 for a new session, with the bytes the server
	// already holds for a resumed one. Record dataID here to resume after
	// a crash; an error stops the upload.
	OnSession func(dataID string, received int64) error
}

// OpenMultipart opens a multipart session for a file of size bytes
// (POST /file/multipart) and returns its data_id.
func (c *Client) OpenMultipart(ctx context.Context, size int64, o *FileOptions) (string, error) {
	h := o.header()
	h.Set("total-length", strconv.FormatInt(size, 10))
	resp, err := c.exchange(ctx, &request{method: http.MethodPost, path: "/file/multipart", header: h})
	if err != nil {
		return "", err
	}
	var a dataIDAnswer
	if err := decode(resp, &a); err != nil {
		return "", err
	}
	if a.DataID == "" {
		return "", fmt.Errorf("scangate: POST /file/multipart answered without a data_id: %.200q", resp.body)
	}
	return a.DataID, nil
}

// MultipartStatus asks what a session holds and misses. An unknown
// session is ErrSessionEnded.
func (c *Client) MultipartStatus(ctx context.Context, dataID string) (*Session, error) {
	var s Session
	if err := c.getJSON(ctx, "/file/multipart/"+url.PathEscape(dataID), nil, &s); err != nil {
		return nil, sessionError(err)
	}
	return &s, nil
}

// AbortMultipart cancels a session (DELETE /file/multipart/{data_id});
// parts still arriving are cut off and the file's verdict becomes 19
// Cancelled.
func (c *Client) AbortMultipart(ctx context.Context, dataID string) error {
	_, err := c.exchange(ctx, &request{method: http.MethodDelete, path: "/file/multipart/" + url.PathEscape(dataID), idempotent: true})
	return err
}

// SendPart sends the bytes [off, off+n) of a total-byte file, read from r,
// as one part of a session (POST /file/multipart/{data_id} with
// content-range "<off>-<n>/<total>"). Parts are idempotent: it is retried
// on any failure, each attempt on the next server.
func (c *Client) SendPart(ctx context.Context, dataID string, r io.ReaderAt, off, n, total int64, progress func(int64)) error {
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Range", fmt.Sprintf("%d-%d/%d", off, n, total))
	_, err := c.exchange(ctx, &request{method: http.MethodPost, path: "/file/multipart/" + url.PathEscape(dataID), header: h,
		size: n, progress: progress, idempotent: true,
		body: func() (io.Reader, error) { return io.NewSectionReader(r, off, n), nil }})
	return sessionError(err)
}

// sessionError marks the answers that mean the session takes no more
// parts: 404 (unknown) and 410 (cancelled, timed out).
func sessionError(err error) error {
	if s := StatusCode(err); s == http.StatusNotFound || s == http.StatusGone {
		return fmt.Errorf("%w: %w", ErrSessionEnded, err)
	}
	return err
}

// UploadMultipart uploads a file of size bytes read from r as a multipart
// session: parts of o.PartSize, o.Parallel at a time, spread over every
// server. It returns the session's data_id, which is also the file's.
//
// With mo.DataID set it resumes: only the ranges the server reports
// missing are sent. A session that ended (ErrSessionEnded) is not
// replaced silently; the caller decides whether to start again.
func (c *Client) UploadMultipart(ctx context.Context, r io.ReaderAt, size int64, o *FileOptions, mo *MultipartOptions) (string, error) {
	var opts MultipartOptions
	if mo != nil {
		opts = *mo
	}
	if size <= 0 {
		return "", errors.New("scangate: an empty file cannot be scanned")
	}
	partSize := opts.PartSize
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	parallel := max(opts.Parallel, 0)
	if parallel == 0 {
		parallel = DefaultParallel
	}

	id := opts.DataID
	todo := []Range{{0, size}}
	var received int64
	if id != "" {
		s, err := c.MultipartStatus(ctx, id)
		if err != nil {
			return "", err
		}
		switch {
		case s.TotalLength != size:
			return "", fmt.Errorf("scangate: session %s is for %d bytes, the file has %d", id, s.TotalLength, size)
		case s.Status == SessionCancelled || s.Status == SessionTimedOut:
			return "", fmt.Errorf("%w: %s is %s", ErrSessionEnded, id, s.Status)
		case s.Status == SessionComplete:
			todo = nil
		default:
			todo = s.Missing
		}
		received = size
		for _, m := range todo {
			received -= m.Length
		}
	} else {
		var err error
		if id, err = c.OpenMultipart(ctx, size, o); err != nil {
			return "", err
		}
	}
	if opts.OnSession != nil {
		if err := opts.OnSession(id, received); err != nil {
			return id, err
		}
	}
	return id, c.sendParts(ctx, id, r, size, split(todo, partSize, size), parallel, o.progress())
}

// split cuts ranges into parts at multiples of size, as a first run cut
// the file, so that a resume with the same part size sends the very parts
// that were lost. A piece shorter than a part that does not end the file
// would be refused by the server (its minimum part size): it is joined to
// its neighbour in the range or, when the range has none, widened back
// over bytes the server already holds (parts may overlap).
func split(ranges []Range, size, total int64) []Range {
	var parts []Range
	for _, r := range ranges {
		end := r.Offset + r.Length
		var pieces []Range
		for off := r.Offset; off < end; {
			next := min((off/size+1)*size, end)
			pieces = append(pieces, Range{off, next - off})
			off = next
		}
		if len(pieces) > 1 && pieces[0].Length < size {
			pieces[1] = Range{pieces[0].Offset, pieces[0].Length + pieces[1].Length}
			pieces = pieces[1:]
		}
		if k := len(pieces) - 1; k > 0 && pieces[k].Length < size && pieces[k].Offset+pieces[k].Length < total {
			pieces[k-1].Length += pieces[k].Length
			pieces = pieces[:k]
		}
		if len(pieces) == 1 && pieces[0].Length < size && end < total {
			start := max(end-size, 0)
			pieces[0] = Range{start, end - start}
		}
		parts = append(parts, pieces...)
	}
	return parts
}

// sendParts sends parts with parallel workers; the first failure stops
// the others (their parts are simply missing on a resume).
func (c *Client) sendParts(ctx context.Context, id string, r io.ReaderAt, total int64, parts []Range, parallel int, progress func(int64)) error {
	if len(parts) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan Range)
	var wg sync.WaitGroup
	for range min(parallel, len(parts)) {
		wg.Go(func() {
			for p := range work {
				if err := c.SendPart(ctx, id, r, p.Offset, p.Length, total, progress); err != nil {
					cancel(fmt.Errorf("part %d-%d/%d: %w", p.Offset, p.Length, total, err))
					return
				}
			}
		})
	}
feed:
	for _, p := range parts {
		select {
		case work <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return context.Cause(ctx)
}
