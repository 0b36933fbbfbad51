package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
)

// FileOptions are the headers POST /file and POST /file/multipart share.
// Values are percent-encoded where needed, as the server expects.
type FileOptions struct {
	Filename        string // the display name (header filename)
	Rule            string // workflow name(s), comma-separated
	UserAgent       string // header user_agent: picks a workflow when no rule is given
	CallbackURL     string // webhook for the final result
	SanitizedURL    string // webhook for the sanitized file
	Batch           string // batch_id to join
	Metadata        string // a JSON object, echoed in the result
	Source          string // client id, recorded
	ArchivePassword string
	Header          http.Header // any other header, sent as it is

	// Progress, when set, is told the bytes sent as they go. A failed
	// attempt reports its bytes back as a negative delta, so the sum is
	// always what the server has (or is receiving).
	Progress func(delta int64)
}

func (o *FileOptions) header() http.Header {
	h := http.Header{}
	if o == nil {
		return h
	}
	for k, v := range o.Header {
		h[k] = append([]string(nil), v...)
	}
	set := func(name, v string) {
		if v != "" {
			h.Set(name, headerValue(v))
		}
	}
	set("filename", o.Filename)
	set("rule", o.Rule)
	set("user_agent", o.UserAgent)
	set("callbackurl", o.CallbackURL)
	set("sanitizedurl", o.SanitizedURL)
	set("batch", o.Batch)
	set("metadata", o.Metadata)
	set("source", o.Source)
	set("archivepwd", o.ArchivePassword)
	return h
}

func (o *FileOptions) progress() func(int64) {
	if o == nil {
		return nil
	}
	return o.Progress
}

type dataIDAnswer struct {
	DataID string `json:"data_id"`
}

// Upload sends a whole file in one POST /file and returns its data_id.
// The body is streamed from r, which must yield exactly size bytes; it is
// never held in memory. A refused attempt is repeated only as the package
// documentation describes, and only if r can be read again: r is an
// io.Seeker, or nothing was read from it yet.
func (c *Client) Upload(ctx context.Context, r io.Reader, size int64, o *FileOptions) (string, error) {
	if size <= 0 {
		return "", errors.New("scangate: an empty file cannot be scanned")
	}
	body, err := rereadable(r)
	if err != nil {
		return "", err
	}
	resp, err := c.exchange(ctx, &request{method: http.MethodPost, path: "/file", header: o.header(),
		body: body, size: size, progress: o.progress()})
	if err != nil {
		return "", err
	}
	var a dataIDAnswer
	if err := decode(resp, &a); err != nil {
		return "", err
	}
	if a.DataID == "" {
		return "", fmt.Errorf("scangate: POST /file answered without a data_id: %.200q", resp.body)
	}
	return a.DataID, nil
}

// UploadFile uploads the file at path whole (see Upload). o.Filename
// defaults to the file's base name.
func (c *Client) UploadFile(ctx context.Context, path string, o *FileOptions) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	opts := FileOptions{}
	if o != nil {
		opts = *o
	}
	if opts.Filename == "" {
		opts.Filename = filepath.Base(path)
	}
	return c.Upload(ctx, f, st.Size(), &opts)
}

// rereadable returns a body source for each attempt: r itself the first
// time, r rewound after that when it can seek, an error when it cannot
// and was already read from.
func rereadable(r io.Reader) (func() (io.Reader, error), error) {
	seeker, canSeek := r.(io.Seeker)
	var start int64
	if canSeek {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			canSeek = false
		}
	}
	cr := &countingReader{r: r}
	first := true
	return func() (io.Reader, error) {
		switch {
		case first:
			first = false
		case canSeek:
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return nil, fmt.Errorf("scangate: rewinding the body for a retry: %w", err)
			}
		case cr.n > 0:
			return nil, errors.New("scangate: the body cannot be sent again (not an io.Seeker)")
		}
		return cr, nil
	}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// UploadChunked sends a file with the sequential chunk protocol: the first
// POST /file declares X-File-Size, the next ones name the session with
// X-File-ID, and the server appends them in arrival order. It returns the
// data_id the last chunk was answered with: when the same bytes were
// already scanned under the same workflow, the server answers with the
// earlier data_id and runs no new scan.
//
// Chunks are appended, not placed, so a chunk is repeated only when the
// server certainly did not take it (see the package documentation).
// Prefer UploadMultipart where the server has it: its parts can be
// retried whatever happened, sent in parallel and resumed.
func (c *Client) UploadChunked(ctx context.Context, r io.ReaderAt, size, chunkSize int64, o *FileOptions) (string, error) {
	if size <= 0 {
		return "", errors.New("scangate: an empty file cannot be scanned")
	}
	if chunkSize <= 0 {
		chunkSize = DefaultPartSize
	}
	var id string
	for off := int64(0); off < size; off += chunkSize {
		n := min(chunkSize, size-off)
		h := o.header()
		if off == 0 {
			h.Set("X-File-Size", strconv.FormatInt(size, 10))
		} else {
			h.Set("X-File-ID", id)
		}
		resp, err := c.exchange(ctx, &request{method: http.MethodPost, path: "/file", header: h, size: n, progress: o.progress(),
			body: func() (io.Reader, error) { return io.NewSectionReader(r, off, n), nil }})
		if err != nil {
			return "", fmt.Errorf("chunk at %d: %w", off, err)
		}
		var a dataIDAnswer
		if err := decode(resp, &a); err != nil {
			return "", err
		}
		if a.DataID == "" {
			return "", fmt.Errorf("scangate: chunk at %d answered without a data_id: %.200q", off, resp.body)
		}
		id = a.DataID
	}
	return id, nil
}
