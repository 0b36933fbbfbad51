// Package archive opens archives safely and streams their entries so the
// scanner can scan every child.
//
// The package never touches the filesystem: no temporary files are written
// and entry names are only ever strings (a hostile name such as
// "../../evil" or "/etc/passwd" is reported as text and nothing else).
// Everything is streamed: an entry's bytes are handed to the caller through
// an io.Reader and are never buffered whole in memory.
//
// Supported formats (see Kind): zip, tar, gzip, bzip2, xz, zstd, 7z, rar.
// Passwords (Options.Passwords) are tried for encrypted zip entries
// (traditional PKWARE ZipCrypto and WinZip AES-128/192/256, AE-1 and AE-2),
// 7z (encrypted contents and encrypted headers) and rar (RAR 5 and RAR 3/4
// encryption, including encrypted headers).
//
// The single-stream compressors (gzip, bzip2, xz, zstd) yield exactly one
// entry, the decompressed stream; a .tar.gz is therefore a gzip with one
// child that is itself a tar, and the caller recurses.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime/debug"
	"strings"
	"unicode/utf8"
)

// Kind names an archive format.
type Kind string

// The supported archive formats.
const (
	KindZip   Kind = "zip"
	KindTar   Kind = "tar"
	KindGzip  Kind = "gzip"
	KindBzip2 Kind = "bzip2"
	KindXz    Kind = "xz"
	KindZstd  Kind = "zstd"
	Kind7z    Kind = "7z"
	KindRar   Kind = "rar"
)

// Kinds lists every supported Kind.
var Kinds = []Kind{KindZip, KindTar, KindGzip, KindBzip2, KindXz, KindZstd, Kind7z, KindRar}

// NeedsReaderAt reports whether the format needs random access (zip and 7z
// keep their directory at the end) rather than a sequential stream. Walk
// always takes an io.ReaderAt; for the other formats it reads it front to
// back exactly once (rar may also seek forward to skip entries' data).
func (k Kind) NeedsReaderAt() bool { return k == KindZip || k == Kind7z }

// IsCompressor reports whether k is a single-stream compressor (gzip,
// bzip2, xz, zstd) whose only entry is the decompressed stream.
func (k Kind) IsCompressor() bool {
	switch k {
	case KindGzip, KindBzip2, KindXz, KindZstd:
		return true
	}
	return false
}

// DetectLen is the number of leading bytes Detect needs to recognise every
// format (a tar header's "ustar" magic sits at offset 257).
const DetectLen = 262

// Detect identifies an archive from its first bytes (magic numbers; tar by
// the "ustar" magic at offset 257, so pass at least DetectLen bytes to
// recognise tar). It returns ok=false for anything else, including old V7
// tar files, which carry no magic. Note that zip-based documents (docx,
// xlsx, jar, apk, ...) are zips: deciding whether to extract those is the
// caller's business.
func Detect(head []byte) (Kind, bool) {
	has := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	switch {
	case has(0, "PK\x03\x04"), has(0, "PK\x05\x06"), has(0, "PK\x07\x08PK\x03\x04"):
		return KindZip, true
	case has(0, "7z\xbc\xaf\x27\x1c"):
		return Kind7z, true
	case has(0, "Rar!\x1a\x07\x00"), has(0, "Rar!\x1a\x07\x01\x00"):
		return KindRar, true
	case has(0, "\xfd7zXZ\x00"):
		return KindXz, true
	case has(0, "\x28\xb5\x2f\xfd"):
		return KindZstd, true
	case has(0, "\x1f\x8b\x08"):
		return KindGzip, true
	case len(head) >= 4 && has(0, "BZh") && head[3] >= '1' && head[3] <= '9':
		// A block magic (pi) or the end-of-stream magic (sqrt(pi)) follows.
		if len(head) < 10 || has(4, "\x31\x41\x59\x26\x53\x59") || has(4, "\x17\x72\x45\x38\x50\x90") {
			return KindBzip2, true
		}
	case has(257, "ustar"):
		return KindTar, true
	}
	return "", false
}

// Entry describes one regular file inside an archive.
type Entry struct {
	// Name is the path inside the archive as stored, for display and error
	// messages only. It is sanitised (invalid UTF-8 replaced, control and
	// bidirectional-override characters removed) but otherwise kept as
	// text: "../../x" stays "../../x". Never use it as a filesystem path.
	Name string
	// Size is the declared uncompressed size, -1 if unknown. It comes from
	// the archive's metadata and may lie; the body is nevertheless cut at
	// that size for zip and 7z (zip also reports a mismatch as an error).
	Size int64
	// Encrypted is true when the entry was encrypted (and a password from
	// Options.Passwords opened it: encrypted entries that no password opens
	// are reported to OnError and never passed to fn).
	Encrypted bool
	// Special is true for an entry that the archive marks as a symlink,
	// device, fifo or socket but that carries data (zip, 7z and RAR 3/4
	// store a symlink's target as its data). It is passed to fn anyway:
	// extractors that ignore Unix modes (Windows Explorer, 7-Zip on
	// Windows, ...) write such an entry out as a regular file, so hiding a
	// payload as a "symlink" must not hide it from the scanner.
	Special bool
}

// Errors reported through Options.OnError or returned by Walk. Test them
// with errors.Is: the actual errors wrap them with details.
var (
	// ErrEncrypted: an encrypted entry (or an archive with encrypted
	// headers) that none of the given passwords opens.
	ErrEncrypted = errors.New("archive: encrypted and no given password works")
	// ErrUnsupported: something this package cannot read, e.g. a zip
	// compression method or a multi-volume archive.
	ErrUnsupported = errors.New("archive: unsupported")
	// ErrMemoryBudget: decoding would need a dictionary, window or model
	// larger than Options.MaxDictSize. It is refused before that memory is
	// allocated.
	ErrMemoryBudget = errors.New("archive: decoding needs more memory than the budget allows")
	// ErrChecksum: an entry's data does not match its stored checksum (or
	// its WinZip AES authentication code).
	ErrChecksum = errors.New("archive: checksum mismatch")
	// ErrCorrupt: the archive or an entry is malformed.
	ErrCorrupt = errors.New("archive: corrupt")
)

// Options tune Walk.
type Options struct {
	// Name is the archive's display name. It names the single entry of a
	// gzip/bzip2/xz/zstd stream when the stream carries no name of its own
	// ("a.tar.gz" -> "a.tar", "x.bz2" -> "x").
	Name string
	// Passwords are tried in order for encrypted zip entries (ZipCrypto,
	// WinZip AES), 7z and rar archives. The empty password is never tried
	// unless listed.
	Passwords []string
	// OnError, if set, is called for each entry that could not be read
	// (encrypted with no working password, corrupt data, unsupported
	// method, ...). entry is the sanitised entry name. Walk goes on with
	// the next entry where the format allows.
	OnError func(entry string, err error)
	// MaxDictSize caps, in bytes, the memory one decoder may ask for: the
	// window or dictionary of zstd, xz, rar and 7z's LZMA and LZMA2, and
	// the model of 7z's PPMd (0 means DefaultMaxDictSize). Streams that
	// need more are reported as ErrMemoryBudget instead of allocating that
	// memory. For 7z, whose decoders are registered process-wide, the cap
	// is the smallest MaxDictSize among the 7z walks in progress.
	MaxDictSize int64
}

// DefaultMaxDictSize is the default Options.MaxDictSize: 256 MiB, above the
// largest presets of xz (64 MiB), zstd --ultra -22 (128 MiB) and 7-Zip/WinRAR
// defaults.
const DefaultMaxDictSize = 256 << 20

// maxVerifyBytes bounds the trial decompression that checks a ZipCrypto or
// 7z password candidate against the entry's CRC before any byte reaches fn.
// Entries that decompress to more than this are accepted on the strength of
// the password check byte(s) plus a clean first maxVerifyBytes; their CRC is
// still checked at the end of the real read.
const maxVerifyBytes = 64 << 20

// probeSize is how much of an entry is decoded up front to tell a wrong
// password from a right one (7z, rar) before fn sees any byte.
const probeSize = 16 << 10

// Result summarises a walk.
type Result struct {
	// Entries counts the regular-file entries passed to fn.
	Entries int
	// Skipped counts the entries that are not passed to fn because they are
	// not files and carry no data (directories, tar links and devices, RAR 5
	// links, empty zip/7z symlinks...).
	Skipped int
	// Encrypted counts the encrypted entries that no password opened; each
	// was reported to OnError with an error wrapping ErrEncrypted.
	Encrypted int
	// Errors counts every OnError call (Encrypted ones included). An entry
	// whose data turned out corrupt after fn started reading it counts in
	// both Entries and Errors.
	Errors int
}

// Walk calls fn for every regular-file entry of the archive, in archive
// order, with a reader of the entry's uncompressed bytes. body is valid only
// until fn returns; fn may stop reading early (Walk then skips the rest).
//
// r and size give the archive bytes. For zip and 7z they are read at random;
// for the other formats Walk reads them sequentially through an
// io.NewSectionReader. The single-stream compressors (gzip, bzip2, xz,
// zstd) yield exactly one entry, the decompressed stream, named after the
// gzip header's name or else opts.Name without the compressor extension.
// Directories, and links/devices that carry no data (tar links and
// devices, RAR 5 redirections, empty zip/7z specials) are skipped; a
// zip/7z/RAR 3-4 symlink or device entry that does carry data is passed
// to fn with Entry.Special set (see there).
//
// Per-entry problems (wrong or missing password, corrupt data, unsupported
// method) are reported to opts.OnError and the walk goes on where the format
// allows. That includes an error met while fn reads body: if fn returns
// that very error (or swallows it), it is reported to OnError and the walk
// continues; any other error returned by fn stops the walk and is returned
// as is. A broken archive structure is returned as an error (wrapping
// ErrCorrupt when Walk itself detects it); an archive whose headers are
// encrypted with no working password returns an error wrapping
// ErrEncrypted. When ctx is done Walk stops (also inside body reads) and
// returns ctx.Err(). The Result is valid whatever the error.
func Walk(ctx context.Context, kind Kind, r io.ReaderAt, size int64, opts Options, fn func(e Entry, body io.Reader) error) (res Result, err error) {
	if r == nil || size < 0 {
		return res, fmt.Errorf("%w: no archive data", ErrCorrupt)
	}
	if fn == nil {
		return res, errors.New("archive: nil fn")
	}
	if opts.MaxDictSize <= 0 {
		opts.MaxDictSize = DefaultMaxDictSize
	}
	w := &walker{ctx: ctx, kind: kind, opts: opts, fn: fn}
	defer func() {
		if p := recover(); p != nil {
			if w.inFn {
				panic(p) // fn's own panic: not ours to hide
			}
			res, err = w.res, &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	ra := ctxReaderAt{ctx: ctx, r: r}
	switch kind {
	case KindZip:
		err = w.walkZip(ra, size)
	case KindTar:
		err = w.walkTar(io.NewSectionReader(ra, 0, size))
	case KindGzip, KindBzip2, KindXz, KindZstd:
		err = w.walkStream(io.NewSectionReader(ra, 0, size))
	case Kind7z:
		err = w.walk7z(ra, size)
	case KindRar:
		err = w.walkRar(ra, size)
	default:
		err = fmt.Errorf("%w: archive kind %q", ErrUnsupported, kind)
	}
	if cerr := ctx.Err(); cerr != nil {
		err = cerr
	}
	return w.res, err
}

// walker carries the state of one Walk.
type walker struct {
	ctx  context.Context
	kind Kind
	opts Options
	fn   func(Entry, io.Reader) error
	res  Result
	inFn bool
}

// entryError reports a per-entry problem.
func (w *walker) entryError(name string, err error) {
	w.res.Errors++
	if errors.Is(err, ErrEncrypted) {
		w.res.Encrypted++
	}
	if w.opts.OnError != nil {
		w.opts.OnError(name, err)
	}
}

// deliver hands one entry to fn and sorts out what fn's error means. It
// returns a non-nil error only when the walk must stop.
func (w *walker) deliver(e Entry, body io.Reader) error {
	b := &bodyReader{ctx: w.ctx, r: body}
	w.res.Entries++
	w.inFn = true
	err := w.fn(e, b)
	w.inFn = false
	berr := b.err
	b.r, b.err = nil, errBodyClosed
	if cerr := w.ctx.Err(); cerr != nil {
		return cerr
	}
	if err != nil && (berr == nil || !errors.Is(err, berr)) {
		return err // fn's own decision to stop
	}
	if berr != nil {
		w.entryError(e.Name, berr)
	}
	return nil
}

var errBodyClosed = errors.New("archive: entry body read after fn returned")

// bodyReader is what fn reads: it stops on ctx, remembers the first data
// error so Walk can attribute it to the entry, and turns a decoder panic on
// hostile data into an error.
type bodyReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (n int, err error) {
	if b.err != nil {
		return 0, b.err
	}
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	defer func() {
		if v := recover(); v != nil {
			n, err = 0, &PanicError{Value: v, Stack: debug.Stack()}
			b.err = err
		}
	}()
	n, err = b.r.Read(p)
	if err != nil && err != io.EOF {
		if cerr := b.ctx.Err(); cerr != nil {
			return n, cerr
		}
		err = classify(err)
		b.err = err
	}
	return n, err
}

// PanicError is a panic inside a format decoder, caught and turned into an
// error (a bug there, triggered by hostile input, must not kill the
// caller). Walk returns it, or reports it to OnError, like any other
// error; it carries the stack for the caller's log.
type PanicError struct {
	Value any    // what the decoder panicked with
	Stack []byte // the goroutine's stack where it was recovered
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("archive: decoder panic: %v", e.Value)
}

func (e *PanicError) Unwrap() error { return ErrCorrupt }

// ctxReaderAt fails reads once ctx is done, so that decoders working on
// hostile input stop soon after cancellation.
type ctxReaderAt struct {
	ctx context.Context
	r   io.ReaderAt
}

func (c ctxReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.ReadAt(p, off)
}

// ctxReader is ctxReaderAt for streams used outside fn (verification).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// SanitizeName makes an entry name safe to display and log: invalid UTF-8
// becomes U+FFFD; NUL, other C0/C1 control characters, DEL and the Unicode
// bidirectional controls (used to disguise "exe.txt" as "txt.exe") are
// removed. Everything else, "../" and leading "/" included, is kept.
func SanitizeName(s string) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || dropRune(r) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if dropRune(r) {
			return -1
		}
		return r
	}, s)
}

func dropRune(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// skipSpecial says whether an entry of mode m with the given declared size
// is left out of a zip/7z/rar walk: directories always, other non-regular
// entries only when they carry no data.
func skipSpecial(m fs.FileMode, size uint64) (skip, special bool) {
	switch {
	case m.IsDir():
		return true, false
	case m.IsRegular():
		return false, false
	}
	return size == 0, true
}
