package scanner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/names"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/scanner/archive"
	"github.com/scangate/scangate/scanner/engines"
	"github.com/scangate/scangate/scanner/filetype"
)

// extraction is the state of one top-level archive's extraction, shared by
// its nested archives: limits count across the whole tree.
type extraction struct {
	s       *Scanner
	wf      *config.Workflow
	root    *events.FileComplete
	limits  config.ArchiveConfig
	budget  int64 // max_size, and max_expansion × the root's size, whichever is smaller
	files   atomic.Int64
	bytes   atomic.Int64
	limit   atomic.Int64 // first limit verdict hit (0 none)
	mu      sync.Mutex
	errs    []result.ExtractionError
	nerrs   int
	started time.Time
}

var errLimit = errors.New("archive limit reached")

func (x *extraction) hit(code int) error {
	x.limit.CompareAndSwap(0, int64(code))
	return errLimit
}

func (x *extraction) addError(archiveName, dataID, entry string, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.nerrs++
	if len(x.errs) < result.MaxExtractionErrors {
		x.errs = append(x.errs, result.ExtractionError{Archive: archiveName, DataID: dataID, Entry: entry, Error: err.Error()})
	}
}

// counted enforces the size and expansion budgets while bytes stream out
// of an archive.
type counted struct {
	r io.Reader
	x *extraction
}

func (c counted) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	total := c.x.bytes.Add(int64(n))
	if total > int64(c.x.limits.MaxSize) {
		return n, c.x.hit(result.ExceededSize)
	}
	if total > c.x.budget {
		return n, c.x.hit(result.ExceededExpansion)
	}
	return n, err
}

// childOutcome is what a parent learns of one child.
type childOutcome struct {
	summary result.ArchiveFile
	code    int
}

// extractArchive scans every file in the archive obj (size bytes, kind),
// each as a child with its own data_id and result, recursing into nested
// archives. It returns the verdict codes the archive itself earns (its
// children's verdicts, limits, encryption) and the extracted_files summary.
func (x *extraction) extractArchive(ctx context.Context, parentID, name string, kind archive.Kind, obj io.ReaderAt, size int64, depth int) (map[int]bool, *result.ExtractedFiles, error) {
	codes := map[int]bool{}
	if depth > x.limits.MaxDepth {
		codes[result.ExceededDepth] = true
		return codes, nil, nil
	}
	var pages [][]result.ArchiveFile
	var page []result.ArchiveFile
	count := 0
	worst, worstID := result.NoThreat, "" // the most severe child so far (the first, to begin with)
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		b, err := json.Marshal(page)
		if err != nil {
			return err
		}
		if _, err := x.s.b.Results.Put(ctx, result.ChildrenKey(parentID, len(pages)), b); err != nil {
			return fmt.Errorf("store child summaries: %w", err)
		}
		pages = append(pages, page)
		page = nil
		return nil
	}
	opts := archive.Options{Name: name, Passwords: x.root.Meta.ArchivePasswords, MaxDictSize: x.s.memoryBudget(),
		OnError: func(entry string, err error) {
			err = x.s.decoderPanic(parentID, err)
			codes[errorCode(err)] = true
			x.addError(name, parentID, entry, err)
		}}
	err := x.walk(ctx, parentID, kind, obj, size, opts, func(e archive.Entry, body io.Reader) error {
		if n := x.files.Add(1); n > int64(x.limits.MaxFiles) {
			return x.hit(result.ExceededFileNumber)
		}
		out, err := x.scanChild(ctx, name, e, counted{body, x}, depth)
		if err != nil {
			return err
		}
		codes[out.code] = true
		if worstID == "" || out.code != worst && result.Worse(worst, out.code) == out.code {
			worst, worstID = out.code, out.summary.DataID
		}
		page = append(page, out.summary)
		count++
		if len(page) == result.ChildPageSize {
			return flush()
		}
		return nil
	})
	if ferr := flush(); ferr != nil && err == nil {
		err = ferr
	}
	switch {
	case errors.Is(err, errLimit):
		codes[int(x.limit.Load())] = true
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil && x.limit.Load() == result.ExceededTimeout:
		codes[result.ExceededTimeout] = true
	case errors.Is(err, archive.ErrEncrypted), err != nil && ctx.Err() == nil:
		codes[errorCode(err)] = true
		x.addError(name, parentID, "", err)
	case err != nil:
		return nil, nil, err
	}
	ef := &result.ExtractedFiles{FilesExtractedCount: count, WorstDataID: worstID, FilesInArchive: []result.ArchiveFile{}}
	return codes, ef, nil
}

// walkArchive is archive.Walk; tests replace it to make extraction panic.
var walkArchive = archive.Walk

// walk runs walkArchive over the archive dataID and turns a panic into a
// logged error, so that no archive takes the process down: one that
// escapes the walk (from scanning a child, or a decoder the archive
// package could not guard) or one the archive package recovered.
func (x *extraction) walk(ctx context.Context, dataID string, kind archive.Kind, obj io.ReaderAt, size int64,
	opts archive.Options, fn func(archive.Entry, io.Reader) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = x.s.recovered(dataID, "archive extraction", v, debug.Stack())
		}
	}()
	_, err = walkArchive(ctx, kind, obj, size, opts, fn)
	return x.s.decoderPanic(dataID, err)
}

// errorCode is the verdict an extraction error earns the archive. A
// decoder that would need more memory than the budget is a size limit
// (13 Exceeded Archive Size: the archive is too large to open safely, not
// broken); a panic is Failed, like any scan that went wrong.
func errorCode(err error) int {
	switch {
	case errors.Is(err, errPanic):
		return result.Failed
	case errors.Is(err, archive.ErrEncrypted):
		return result.Encrypted
	case errors.Is(err, archive.ErrMemoryBudget):
		return result.ExceededSize
	}
	return result.ExtractionFailed
}

// scanChild scans one extracted file: hashes, file type and engines on
// its stream; a nested archive is stored first (formats like zip need
// random access) and extracted in turn.
func (x *extraction) scanChild(ctx context.Context, archiveName string, e archive.Entry, body io.Reader, depth int) (childOutcome, error) {
	s := x.s
	id := ids.New()
	start := time.Now()
	br := bufio.NewReaderSize(body, filetype.HeadSize)
	head, _ := br.Peek(filetype.HeadSize)
	head = append([]byte(nil), head...)
	ft := filetype.Detect(head)
	display := names.ArchivePath(e.Name)
	meta := events.FileMeta{DisplayName: display, Workflow: x.wf.Name, ArchivePasswords: x.root.Meta.ArchivePasswords,
		Username: x.root.Meta.Username} // children belong to whoever sent the archive
	rec := result.New(id, 0, events.Hashes{}, meta, x.root.UploadedAt, result.InProgress)
	rec.Result.FileInfo.FileType, rec.Result.FileInfo.FileTypeDescription, rec.Result.FileInfo.FileTypeExtension = ft.MIME, ft.Description, ft.Extension

	kind, isArchive := archive.Detect(head)
	var r io.Reader = br
	var nested io.ReaderAt
	var nestedSize int64
	if isArchive {
		if depth+1 > x.limits.MaxDepth {
			isArchive = false // scanned as a plain file; the depth verdict comes below
		} else {
			// Store the nested archive, then read it back for the engines
			// and the extraction.
			n, err := storeStream(ctx, s, id, br)
			if err != nil {
				return childOutcome{}, err
			}
			obj, err := s.blobs.Open(ctx, id)
			if err != nil {
				return childOutcome{}, err
			}
			defer obj.Close()
			defer s.blobs.Delete(context.WithoutCancel(ctx), id)
			nested, nestedSize, r = obj, n, blob.Section(obj, 0, n)
		}
	}

	in := &engines.Input{DataID: id, DisplayName: display, MIME: ft.MIME, Size: e.Size}
	details, hashes, size, err := s.runEngines(ctx, x.wf, in, r, nil, nil)
	if err != nil {
		return childOutcome{}, err
	}
	codes := stepCodes(x.wf, display, head)
	if depth+1 > x.limits.MaxDepth && kind != "" {
		codes[result.ExceededDepth] = true
	}
	var ef *result.ExtractedFiles
	if isArchive {
		sub, subEF, err := x.extractArchive(ctx, id, display, kind, nested, nestedSize, depth+1)
		if err != nil {
			return childOutcome{}, err
		}
		for c := range sub {
			codes[c] = true
		}
		ef = subEF
	}
	fi := &rec.Result.FileInfo
	fi.FileSize, fi.MD5, fi.SHA1, fi.SHA256, fi.SHA512 = size, hashes.MD5, hashes.SHA1, hashes.SHA256, hashes.SHA512
	rec.Result.ScanResults.StartTime = result.FormatTime(start)
	rec.Result.ExtractedFiles = ef
	code := conclude(rec, x.wf, details, codes, start)
	if _, err := s.results.Put(ctx, rec, 0); err != nil && !errors.Is(err, result.ErrConflict) {
		return childOutcome{}, err
	}
	sum := result.ArchiveFile{DataID: id, DisplayName: display, FileSize: size, FileType: ft.MIME,
		FileTypeDescription: ft.Description, ScanAllResultI: code, ScanAllResultA: result.CodeName(code),
		DetectedBy: rec.Result.ScanResults.TotalDetectedAVs, ScannedWith: rec.Result.ScanResults.TotalAVs,
		ProgressPercentage: 100}
	sum.ProcessInfo.Result = rec.Result.ProcessInfo.Result
	sum.ProcessInfo.BlockedReason = rec.Result.ProcessInfo.BlockedReason
	sum.ProcessInfo.ProgressPercentage = 100
	return childOutcome{summary: sum, code: code}, nil
}

// storeStream writes a stream of unknown length into the blob store in
// 1 MiB steps and returns its length.
func storeStream(ctx context.Context, s *Scanner, key string, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if werr := s.blobs.WriteAt(ctx, key, off, bytes.NewReader(buf[:n]), int64(n)); werr != nil {
				return off, werr
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return off, nil
		}
		if err != nil {
			return off, err
		}
	}
}
