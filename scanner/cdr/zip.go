package cdr

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/gabriel-vasile/mimetype"
	kflate "github.com/klauspost/compress/flate"
)

// Limits shared by the archive sanitizers (zip and OOXML). The byte budget
// is shared by every nesting level of one top-level Sanitize call, so a
// zip of zips cannot multiply it.
const (
	MaxArchiveUncompressed int64 = 1 << 30 // total bytes decompressed per top-level call
	MaxArchiveMembers            = 10000   // members per archive
	MaxArchiveDepth              = 5       // nesting levels of zip archives (the top one is 1)

	spoolMemLimit = 32 << 20 // members above this are spooled to a temp file
	sniffLen      = 3072     // bytes given to mimetype for member detection
)

// ErrArchiveLimit is returned when an archive exceeds the member count or
// the decompressed-size budget (zip bomb).
var ErrArchiveLimit = errors.New("cdr: archive exceeds size or member limits")

var errTooDeep = errors.New("cdr: archive nesting too deep")

// archiveBudget is MaxArchiveUncompressed; tests lower it.
var archiveBudget = MaxArchiveUncompressed

func init() {
	Register(zipSanitizer{}, "application/zip", "application/x-zip-compressed")
}

// ---- shared helpers -------------------------------------------------------

type budgetKey struct{}
type depthKey struct{}

type budget struct{ left int64 }

// withBudget returns the budget carried by ctx, attaching a fresh one for a
// top-level call.
func withBudget(ctx context.Context) (context.Context, *budget) {
	if b, ok := ctx.Value(budgetKey{}).(*budget); ok {
		return ctx, b
	}
	b := &budget{left: archiveBudget}
	return context.WithValue(ctx, budgetKey{}, b), b
}

func (b *budget) take(n int64) error {
	b.left -= n
	if b.left < 0 {
		return ErrArchiveLimit
	}
	return nil
}

// checkDeclared rejects archives whose declared sizes or member count
// already exceed the limits (the actual bytes are counted while reading;
// archive/zip refuses members that inflate past their declared size).
func checkDeclared(zr *zip.Reader, b *budget) error {
	if len(zr.File) > MaxArchiveMembers {
		return fmt.Errorf("%w: %d members", ErrArchiveLimit, len(zr.File))
	}
	var total uint64
	for _, f := range zr.File {
		total += f.UncompressedSize64
		if f.UncompressedSize64 > uint64(archiveBudget) || total > uint64(b.left) {
			return fmt.Errorf("%w: declared uncompressed size over %d bytes", ErrArchiveLimit, b.left)
		}
	}
	return nil
}

// budgetReader charges every byte read to the budget and honours ctx.
type budgetReader struct {
	ctx context.Context
	r   io.Reader
	b   *budget
}

func (r *budgetReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if e := r.b.take(int64(n)); e != nil {
		return n, e
	}
	return n, err
}

// openMember opens a zip member for reading, charged to the budget.
func openMember(ctx context.Context, f *zip.File, b *budget) (io.ReadCloser, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&budgetReader{ctx: ctx, r: rc, b: b}, rc}, nil
}

func newZipReader(in io.ReaderAt, size int64) (*zip.Reader, error) {
	zr, err := zip.NewReader(in, size)
	if errors.Is(err, zip.ErrInsecurePath) {
		err = nil // names are never used as paths here
	}
	if zr != nil {
		zr.RegisterDecompressor(zip.Deflate, newInflater)
	}
	return zr, err
}

// newZipWriter is a zip.Writer deflating with klauspost/compress (about
// twice as fast as compress/flate), writers pooled like archive/zip does.
func newZipWriter(w io.Writer) *zip.Writer {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, newDeflater)
	return zw
}

var deflaters, inflaters sync.Pool

type pooledDeflater struct{ *kflate.Writer }

func (d pooledDeflater) Close() error {
	err := d.Writer.Close()
	deflaters.Put(d.Writer)
	return err
}

func newDeflater(w io.Writer) (io.WriteCloser, error) {
	if fw, ok := deflaters.Get().(*kflate.Writer); ok {
		fw.Reset(w)
		return pooledDeflater{fw}, nil
	}
	fw, err := kflate.NewWriter(w, 5)
	if err != nil {
		return nil, err
	}
	return pooledDeflater{fw}, nil
}

type pooledInflater struct {
	io.ReadCloser
	done bool
}

func (r *pooledInflater) Close() error {
	if r.done {
		return nil
	}
	r.done = true
	err := r.ReadCloser.Close()
	inflaters.Put(r.ReadCloser)
	return err
}

func newInflater(r io.Reader) io.ReadCloser {
	if fr, ok := inflaters.Get().(io.ReadCloser); ok {
		if fr.(kflate.Resetter).Reset(r, nil) == nil {
			return &pooledInflater{ReadCloser: fr}
		}
	}
	return &pooledInflater{ReadCloser: kflate.NewReader(r)}
}

// spool collects bytes in memory up to spoolMemLimit, then in a temp file
// (created with os.CreateTemp; member names never reach the filesystem).
type spool struct {
	buf bytes.Buffer
	f   *os.File
	n   int64
}

func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && s.buf.Len()+len(p) > spoolMemLimit {
		f, err := os.CreateTemp("", "scangate-cdr-*")
		if err != nil {
			return 0, err
		}
		s.f = f
		if _, err := s.buf.WriteTo(f); err != nil {
			return 0, err
		}
		s.buf = bytes.Buffer{}
	}
	var n int
	var err error
	if s.f != nil {
		n, err = s.f.Write(p)
	} else {
		n, err = s.buf.Write(p)
	}
	s.n += int64(n)
	return n, err
}

func (s *spool) readerAt() io.ReaderAt {
	if s.f != nil {
		return s.f
	}
	return bytes.NewReader(s.buf.Bytes())
}

func (s *spool) reader() io.Reader { return io.NewSectionReader(s.readerAt(), 0, s.n) }

func (s *spool) Close() error {
	if s.f != nil {
		name := s.f.Name()
		s.f.Close()
		s.f = nil
		return os.Remove(name)
	}
	s.buf = bytes.Buffer{}
	return nil
}

// removedSet keeps Result.Removed ordered and without duplicates.
type removedSet struct {
	list []string
	seen map[string]bool
}

func (r *removedSet) add(what string) {
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if !r.seen[what] {
		r.seen[what] = true
		r.list = append(r.list, what)
	}
}

// ---- zip sanitizer -------------------------------------------------------

// zipSanitizer rebuilds a zip archive member by member. Each member is
// spooled (memory up to 32 MiB, else a temp file), its type detected with
// mimetype from the first 3072 bytes, and passed through the sanitizer
// registered for that type (nested zips recurse up to MaxArchiveDepth).
//
// Result.Action is Sanitized when every member was sanitized or is a
// passive type (plain text, CSV, JSON, empty). It is SanitizedPartially
// when a member was dropped (encrypted, symlink, unreadable, nested too
// deep, or its sanitizer failed), or was copied as-is because no sanitizer
// exists for its type. Member names are kept, cleaned of zip-slip tricks
// (leading "/", "..", ".", drive letters, backslashes, NUL and control
// characters) and de-duplicated; a sanitized .docm/.xlsm/.pptm (etc.)
// member is renamed to the macro-free extension matching its new content.
// Exceeding ErrArchiveLimit anywhere fails the whole call.
type zipSanitizer struct{}

// passiveMIMEs carry no active content and may be copied unchanged.
var passiveMIMEs = map[string]bool{
	"text/plain":                true,
	"text/csv":                  true,
	"text/tab-separated-values": true,
	"application/json":          true,
	"inode/x-empty":             true,
}

// macroFreeExt renames sanitized macro-enabled Office members.
var macroFreeExt = map[string]string{
	"docm": "docx", "dotm": "dotx", "xlsm": "xlsx", "xltm": "xltx", "xlam": "xlsx",
	"pptm": "pptx", "potm": "potx", "ppsm": "ppsx", "ppam": "pptx",
}

func (zipSanitizer) Sanitize(ctx context.Context, in io.ReaderAt, size int64, w io.Writer) (Result, error) {
	depth, _ := ctx.Value(depthKey{}).(int)
	if depth >= MaxArchiveDepth {
		return Result{}, errTooDeep
	}
	ctx, b := withBudget(ctx)
	zr, err := newZipReader(in, size)
	if err != nil {
		return Result{}, fmt.Errorf("cdr: zip: %w", err)
	}
	if err := checkDeclared(zr, b); err != nil {
		return Result{}, err
	}
	childCtx := context.WithValue(ctx, depthKey{}, depth+1)

	var removed removedSet
	partial := false
	drop := func(why string) { partial = true; removed.add(why) }
	used := map[string]bool{}
	zw := newZipWriter(w)

	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		name := cleanMemberName(f.Name)
		if name == "" {
			if !strings.HasSuffix(f.Name, "/") {
				drop("member with invalid name")
			}
			continue
		}
		if f.FileInfo().IsDir() || strings.HasSuffix(f.Name, "/") {
			dir := name + "/"
			if !used[strings.ToLower(dir)] {
				used[strings.ToLower(dir)] = true
				if _, err := zw.CreateHeader(&zip.FileHeader{Name: dir, Method: zip.Store, Modified: f.Modified}); err != nil {
					return Result{}, err
				}
			}
			continue
		}
		if f.Flags&0x1 != 0 {
			drop("encrypted member")
			continue
		}
		if f.Mode()&(fs.ModeSymlink|fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
			drop("special file member")
			continue
		}

		res, out, err := sanitizeMember(ctx, childCtx, f, b)
		if err != nil {
			if out != nil {
				out.Close()
			}
			if errors.Is(err, ErrArchiveLimit) || ctx.Err() != nil {
				return Result{}, err
			}
			if errors.Is(err, errTooDeep) {
				drop("archive nested too deep")
			} else {
				drop("unsanitizable member")
			}
			continue
		}
		if res.Action != Sanitized {
			partial = true
		}
		for _, r := range res.Removed {
			removed.add(r)
		}
		if ext := strings.ToLower(strings.TrimPrefix(path.Ext(name), ".")); res.ConvertedTo != "" && macroFreeExt[ext] == res.ConvertedTo {
			name = name[:len(name)-len(ext)] + res.ConvertedTo
		}
		name = uniqueName(name, used)
		method := f.Method
		if method != zip.Store {
			method = zip.Deflate
		}
		mw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: f.Modified})
		if err == nil {
			_, err = io.Copy(mw, out.reader())
		}
		out.Close()
		if err != nil {
			return Result{}, err
		}
	}
	if err := zw.Close(); err != nil {
		return Result{}, err
	}
	act := Sanitized
	if partial {
		act = SanitizedPartially
	}
	return Result{Action: act, ConvertedTo: "zip", Removed: removed.list}, nil
}

// sanitizeMember spools member f, sanitizes it and returns the clean bytes
// in a spool the caller must Close. Result.Action is SanitizedPartially
// for a non-passive type copied as-is.
func sanitizeMember(ctx, childCtx context.Context, f *zip.File, b *budget) (Result, *spool, error) {
	in := &spool{}
	defer in.Close()
	rc, err := openMember(ctx, f, b)
	if err != nil {
		return Result{}, nil, err
	}
	_, err = io.Copy(in, rc)
	rc.Close()
	if err != nil {
		return Result{}, nil, err
	}
	head := make([]byte, min(in.n, sniffLen))
	if _, err := in.readerAt().ReadAt(head, 0); err != nil && err != io.EOF {
		return Result{}, nil, err
	}
	mime, _, _ := strings.Cut(mimetype.Detect(head).String(), ";")
	mime = strings.ToLower(strings.TrimSpace(mime))
	if in.n == 0 {
		mime = "inode/x-empty"
	}
	var s Sanitizer
	var ok bool
	if mime == "application/zip" && isOOXML(in.readerAt(), in.n) {
		s, ok = ooxmlSanitizer{}, true
	} else {
		s, ok = For(mime)
	}
	out := &spool{}
	if !ok {
		if _, err := io.Copy(out, in.reader()); err != nil {
			return Result{}, out, err
		}
		if passiveMIMEs[mime] {
			return Result{Action: Sanitized}, out, nil
		}
		return Result{Action: SanitizedPartially}, out, nil
	}
	res, err := s.Sanitize(childCtx, in.readerAt(), in.n, out)
	return res, out, err
}

// isOOXML reports whether a zip looks like an OPC package whose first
// entries did not let mimetype recognise it.
func isOOXML(in io.ReaderAt, size int64) bool {
	zr, err := newZipReader(in, size)
	if err != nil {
		return false
	}
	for _, f := range zr.File {
		if f.Name == "[Content_Types].xml" {
			return true
		}
	}
	return false
}

// cleanMemberName makes a member name safe to extract anywhere: forward
// slashes only, no NUL or control characters, no leading "/", no drive
// letter, no "." or ".." components. It returns "" if nothing is left.
func cleanMemberName(n string) string {
	n = strings.Map(func(r rune) rune {
		switch {
		case r == '\\':
			return '/'
		case r < 0x20 || r == 0x7f:
			return -1
		}
		return r
	}, n)
	parts := strings.Split(n, "/")
	out := parts[:0]
	for i, p := range parts {
		if p == "" || p == "." || p == ".." {
			continue
		}
		if i == 0 && len(p) == 2 && p[1] == ':' {
			continue // C:
		}
		out = append(out, p)
	}
	return strings.Join(out, "/")
}

// uniqueName returns name, or name with " (n)" before the extension if a
// member of that name (case-insensitively) was already written.
func uniqueName(name string, used map[string]bool) string {
	cand := name
	ext := path.Ext(name)
	for i := 2; used[strings.ToLower(cand)]; i++ {
		cand = fmt.Sprintf("%s (%d)%s", strings.TrimSuffix(name, ext), i, ext)
	}
	used[strings.ToLower(cand)] = true
	return cand
}
