package client

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// presignedPath is where pre-signed part uploads live (BioT style).
const presignedPath = "/file/v1/files/upload/parts"

// MinPresignedPart is the smallest pre-signed part the server takes by
// default, the last part excepted.
const MinPresignedPart = 5 << 20

// PresignedOptions tune UploadPresigned.
type PresignedOptions struct {
	Name     string // file name (required by the server)
	MimeType string // default application/octet-stream
	PartSize int64  // default DefaultPartSize; at least MinPresignedPart
	Parallel int    // parts in flight (default DefaultParallel)
	Progress func(delta int64)
}

// PresignedUpload is the answer to the completion of a pre-signed upload.
type PresignedUpload struct {
	ID          string `json:"id"`      // the upload's id
	DataID      string `json:"data_id"` // the file's scan
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	DownloadURL string `json:"downloadUrl"`
}

// SignedURL is one part's pre-signed URL.
type SignedURL struct {
	SignedURL      string `json:"signedUrl"`
	PartNumber     int    `json:"partNumber"`
	ExpirationTime string `json:"expirationTime"`
}

type presignedAnswer struct {
	ID         string      `json:"id"`
	Name       string      `json:"name"`
	MimeType   string      `json:"mimeType"`
	Parts      int         `json:"parts"`
	SignedURLs []SignedURL `json:"signedUrls"`
}

// PartETag is what the completion names for each part.
type PartETag struct {
	PartNumber int    `json:"partNumber"`
	ETag       string `json:"etag"`
}

// UploadPresigned uploads a file through pre-signed part URLs: it asks for
// one URL per part (POST /file/v1/files/upload/parts), PUTs the parts in
// parallel (each PUT is idempotent and retried; an expired URL is
// replaced by a fresh one), then completes the upload with the parts'
// ETags, which starts the scan.
//
// A server without pre-signed uploads answers 404: the error is an *Error
// with StatusCode 404.
func (c *Client) UploadPresigned(ctx context.Context, r io.ReaderAt, size int64, o *PresignedOptions) (*PresignedUpload, error) {
	var opts PresignedOptions
	if o != nil {
		opts = *o
	}
	if size <= 0 {
		return nil, errors.New("scangate: an empty file cannot be scanned")
	}
	if opts.MimeType == "" {
		opts.MimeType = "application/octet-stream"
	}
	partSize := opts.PartSize
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	if partSize < MinPresignedPart && partSize < size {
		return nil, fmt.Errorf("scangate: pre-signed parts must be at least %d bytes", MinPresignedPart)
	}
	n := int((size + partSize - 1) / partSize)

	var start presignedAnswer
	resp, err := c.presignedCall(ctx, http.MethodPost, "", map[string]any{"name": opts.Name, "mimeType": opts.MimeType, "parts": n}, false)
	if err != nil {
		return nil, err
	}
	if err := decode(resp, &start); err != nil {
		return nil, err
	}
	if start.ID == "" || len(start.SignedURLs) < n {
		return nil, fmt.Errorf("scangate: %d signed URLs for %d parts", len(start.SignedURLs), n)
	}
	u := &presignedParts{c: c, id: start.ID, base: resp.base}
	u.setURLs(start.SignedURLs)

	etags := make([]PartETag, n)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan int)
	var wg sync.WaitGroup
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	for range min(parallel, n) {
		wg.Go(func() {
			for i := range work {
				off := int64(i) * partSize
				tag, err := u.put(ctx, i, r, off, min(partSize, size-off), opts.Progress)
				if err != nil {
					cancel(fmt.Errorf("part %d: %w", i+1, err))
					return
				}
				etags[i] = PartETag{PartNumber: u.number(i), ETag: tag}
			}
		})
	}
feed:
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}

	resp, err = c.presignedCall(ctx, http.MethodPost, "/"+url.PathEscape(start.ID)+"/complete", map[string]any{"parts": etags}, false)
	if err != nil {
		return nil, err
	}
	var done PresignedUpload
	if err := decode(resp, &done); err != nil {
		return nil, err
	}
	return &done, nil
}

// CancelPresigned cancels an incomplete pre-signed upload.
func (c *Client) CancelPresigned(ctx context.Context, id string) error {
	_, err := c.exchange(ctx, &request{method: http.MethodDelete, path: presignedPath + "/" + url.PathEscape(id) + "/cancel", idempotent: true})
	return err
}

func (c *Client) presignedCall(ctx context.Context, method, sub string, in any, idempotent bool) (*response, error) {
	return c.sendJSON(ctx, method, presignedPath+sub, in, idempotent)
}

// presignedParts holds the signed URLs of an upload, replaced as they
// expire.
type presignedParts struct {
	c    *Client
	id   string
	base *url.URL
	mu   sync.Mutex
	urls []SignedURL // sorted by part number
	gen  int         // bumped on every refresh
}

func (u *presignedParts) setURLs(urls []SignedURL) {
	slices.SortFunc(urls, func(a, b SignedURL) int { return a.PartNumber - b.PartNumber })
	u.urls = urls
	u.gen++
}

func (u *presignedParts) number(i int) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.urls[i].PartNumber
}

// target is part i's URL, resolved against the server that issued it.
func (u *presignedParts) target(i int) (string, int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	ref, err := url.Parse(u.urls[i].SignedURL)
	if err != nil {
		return "", 0, err
	}
	if u.base != nil {
		ref = u.base.ResolveReference(ref)
	}
	return ref.String(), u.gen, nil
}

// refresh asks for fresh URLs (POST .../{id} {"parts": n}) unless another
// worker already did since gen.
func (u *presignedParts) refresh(ctx context.Context, gen int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.gen != gen {
		return nil
	}
	var a presignedAnswer
	resp, err := u.c.presignedCall(ctx, http.MethodPost, "/"+url.PathEscape(u.id), map[string]any{"parts": len(u.urls)}, true)
	if err != nil {
		return err
	}
	if err := decode(resp, &a); err != nil {
		return err
	}
	if len(a.SignedURLs) < len(u.urls) {
		return fmt.Errorf("scangate: %d fresh URLs for %d parts", len(a.SignedURLs), len(u.urls))
	}
	u.setURLs(a.SignedURLs)
	return nil
}

// put PUTs part i and returns its ETag, checked against the bytes sent
// when it has the length of an md5 or sha256 digest.
func (u *presignedParts) put(ctx context.Context, i int, r io.ReaderAt, off, n int64, progress func(int64)) (string, error) {
	for refreshed := false; ; refreshed = true {
		target, gen, err := u.target(i)
		if err != nil {
			return "", err
		}
		var m5, s256 hash.Hash
		h := http.Header{}
		h.Set("Content-Type", "application/octet-stream")
		resp, err := u.c.exchange(ctx, &request{method: http.MethodPut, abs: target, header: h, size: n, progress: progress, idempotent: true,
			body: func() (io.Reader, error) {
				m5, s256 = md5.New(), sha256.New()
				return io.TeeReader(io.NewSectionReader(r, off, n), io.MultiWriter(m5, s256)), nil
			}})
		if s := StatusCode(err); !refreshed && (s == http.StatusForbidden || s == http.StatusUnauthorized || s == http.StatusGone) {
			// Most likely an expired URL: get fresh ones, try once more.
			if err := u.refresh(ctx, gen); err != nil {
				return "", err
			}
			continue
		}
		if err != nil {
			return "", err
		}
		tag := strings.Trim(strings.TrimPrefix(resp.header.Get("ETag"), "W/"), `"`)
		if tag == "" {
			return "", errors.New("scangate: part answered without an ETag")
		}
		var want string
		switch len(tag) {
		case 2 * md5.Size:
			want = hex.EncodeToString(m5.Sum(nil))
		case 2 * sha256.Size:
			want = hex.EncodeToString(s256.Sum(nil))
		}
		if want != "" && !strings.EqualFold(tag, want) {
			return "", fmt.Errorf("scangate: part at %d: ETag %s, the bytes sent digest to %s", off, tag, want)
		}
		return tag, nil
	}
}
