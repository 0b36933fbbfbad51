// Package blob stores file bytes behind one interface, so the roles never
// care whether bytes live on a local disk or in a JetStream object store.
package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"strconv"
	"time"
)

// Store keeps the bytes of uploads, stored originals and sanitized outputs.
type Store interface {
	// WriteAt stores exactly n bytes read from r at offset off of key,
	// durably: when it returns nil the bytes survive a crash. Writing the
	// same range again overwrites it (retried parts). A short r is
	// io.ErrUnexpectedEOF and the range must be written again.
	WriteAt(ctx context.Context, key string, off int64, r io.Reader, n int64) error
	// Open returns the bytes of key for reading.
	Open(ctx context.Context, key string) (Object, error)
	// Delete releases key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Object is stored bytes, read sequentially or at offsets.
type Object interface {
	io.Reader
	io.ReaderAt
	io.Closer
	Size() int64
}

// Bytes is an Object over bytes already in memory: a file small enough to
// travel inside its events (events.InlineMax).
func Bytes(b []byte) Object { return bytesObject{bytes.NewReader(b)} }

type bytesObject struct{ *bytes.Reader }

func (bytesObject) Close() error { return nil }

// PrefixOpener is implemented by stores whose Open refuses a blob with
// gaps: OpenPrefix reads from offset 0 up to the first gap.
type PrefixOpener interface {
	OpenPrefix(ctx context.Context, key string) (Object, error)
}

// OpenPrefix opens the contiguous prefix of key: with a store that reads
// through gaps (sparse files) that is simply Open.
func OpenPrefix(ctx context.Context, s Store, key string) (Object, error) {
	if p, ok := s.(PrefixOpener); ok {
		return p.OpenPrefix(ctx, key)
	}
	return s.Open(ctx, key)
}

// Sectioner is implemented by objects whose ReadAt is costly for a long
// run of reads in order (each call reopens what holds the bytes).
type Sectioner interface {
	Section(off, n int64) io.Reader
}

// Section reads n bytes of obj from off, in order: the object's own
// sequential reader where it has one, else ReadAt.
func Section(obj Object, off, n int64) io.Reader {
	if s, ok := obj.(Sectioner); ok {
		return s.Section(off, n)
	}
	return io.NewSectionReader(obj, off, n)
}

// Info describes one stored blob.
type Info struct {
	Key     string
	Size    int64     // its length: the end of the furthest bytes written
	ModTime time.Time // when it was last written
}

// Lister is implemented by stores that can tell what they hold, so that
// blobs past their retention can be found and deleted.
type Lister interface {
	// List calls fn for every blob, in no particular order, and stops at
	// the first error fn returns (which it returns). A blob written or
	// deleted while List runs may or may not be listed.
	List(ctx context.Context, fn func(Info) error) error
}

// SpaceReporter is implemented by stores on a local disk.
type SpaceReporter interface {
	// FreeBytes is the space still available to the store.
	FreeBytes() (int64, error)
}

// ErrUnavailable marks a read or write the store could not do just now (its
// backing servers are between leaders, or one is gone): trying again later
// may succeed, and the bytes are not known to be lost.
var ErrUnavailable = errors.New("blob store unavailable")

// ErrNotFound is returned by Open for a key that holds nothing.
var ErrNotFound = errors.New("blob not found")

// ErrBadKey is returned for keys that are not a data_id, optionally with a
// short suffix ("<data_id>.sanitized"): keys become file names and object
// names, so nothing else gets in.
var ErrBadKey = errors.New("invalid blob key")

var keyRE = regexp.MustCompile(`^[0-9a-f]{32}(\.[a-z0-9]{1,16})?$`)

// ValidKey reports whether key may name a blob.
func ValidKey(key string) bool { return keyRE.MatchString(key) }

// SanitizedKey is the key of dataID's sanitized output.
func SanitizedKey(dataID string) string { return dataID + ".sanitized" }

// Concatenator is implemented by stores that can make one blob of several
// without copying a byte: a pre-signed upload stores each part whole under
// a key of its own (parts arrive by number, their offsets unknown until
// the client names the last), and at complete the parts become the file.
type Concatenator interface {
	// Concat makes key read as the blobs parts, one after another, durably:
	// once it returns nil, Open(key) yields their bytes in order (Size is
	// their sum), also after a crash. Calling it again with the same parts
	// is harmless; a missing part is an error that leaves key as it was.
	// Delete(key) deletes the parts too. A part must not be written again
	// once it is concatenated, nor key written with WriteAt.
	Concat(ctx context.Context, key string, parts []string) error
}

// PartKey is the blob that holds part n of a pre-signed upload as one
// PUT delivered it. version tells apart the PUTs of one part: a re-PUT
// writes a new blob and never touches the bytes an earlier PUT stored,
// which stay whole until the replacement is recorded.
func PartKey(dataID string, n int, version string) string {
	return dataID + ".p" + strconv.Itoa(n) + "x" + version
}
