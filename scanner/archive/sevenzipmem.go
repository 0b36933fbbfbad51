package archive

// Memory caps for 7z decoders.
//
// bodgit/sevenzip allocates whatever a folder's coder properties declare
// (an LZMA2 property byte of 39 asks for a 3 GiB dictionary, and every
// reader that opens the folder allocates it again) and has no option to
// refuse. It does let a program replace the decompressor of a method,
// process-wide: the methods whose memory the archive decides are
// registered again here, and check the declared size against the limit
// before allocating anything.
//
// The registry tells a decompressor nothing about the walk it decodes for,
// so the limit is the smallest MaxDictSize among the 7z walks in progress
// (DefaultMaxDictSize when there is none). A scanner gives every walk the
// same budget, so that is each walk's own.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/bodgit/sevenzip"
	"github.com/stangelandcl/ppmd"
	"github.com/ulikunitz/xz/lzma"
)

func init() {
	sevenzip.RegisterDecompressor([]byte{0x03, 0x01, 0x01}, newLZMA7z)
	sevenzip.RegisterDecompressor([]byte{0x21}, newLZMA27z)
	sevenzip.RegisterDecompressor([]byte{0x03, 0x04, 0x01}, newPPMd7z)
	sevenzip.RegisterDecompressor([]byte{0x04, 0xf7, 0x11, 0x01}, newZstd7z)
}

var sevenZipWalks = struct {
	sync.Mutex
	limits map[int64]int // MaxDictSize -> number of 7z walks in progress with it
}{limits: map[int64]int{}}

// enter7z counts a 7z walk with the given limit in, until leave is called.
func enter7z(limit int64) (leave func()) {
	w := &sevenZipWalks
	w.Lock()
	w.limits[limit]++
	w.Unlock()
	return func() {
		w.Lock()
		if w.limits[limit]--; w.limits[limit] == 0 {
			delete(w.limits, limit)
		}
		w.Unlock()
	}
}

// sevenZipLimit is the most memory a 7z decoder built now may take.
func sevenZipLimit() int64 {
	w := &sevenZipWalks
	w.Lock()
	defer w.Unlock()
	if len(w.limits) == 0 {
		return DefaultMaxDictSize
	}
	limit := int64(math.MaxInt64)
	for l := range w.limits {
		limit = min(limit, l)
	}
	return limit
}

func check7zMemory(what string, need uint64) error {
	if limit := sevenZipLimit(); need > uint64(limit) {
		return fmt.Errorf("%w: 7z %s of %d bytes exceeds the limit of %d", ErrMemoryBudget, what, need, limit)
	}
	return nil
}

// sevenZipDecoder is a decompressor that closes its input along with
// itself, as sevenzip expects.
type sevenZipDecoder struct {
	io.Reader
	in      io.Closer
	release func() // frees the decoder's own resources; may be nil
}

func (d sevenZipDecoder) Close() error {
	if d.release != nil {
		d.release()
	}
	return d.in.Close()
}

func oneInput(method string, in []io.ReadCloser) error {
	if len(in) != 1 {
		return fmt.Errorf("%w: 7z %s coder with %d inputs", ErrCorrupt, method, len(in))
	}
	return nil
}

// dictNeed is what an LZMA or LZMA2 decoder really allocates for a
// declared dictionary: never more than the unpacked size, since no match
// reaches further back than the start of the output.
func dictNeed(dict, unpacked uint64) uint64 {
	return max(min(dict, unpacked), lzma.MinDictCap)
}

func newLZMA7z(p []byte, size uint64, in []io.ReadCloser) (io.ReadCloser, error) {
	if err := oneInput("LZMA", in); err != nil {
		return nil, err
	}
	if len(p) != 5 {
		return nil, fmt.Errorf("%w: 7z LZMA coder with %d property bytes", ErrCorrupt, len(p))
	}
	if err := check7zMemory("LZMA dictionary", dictNeed(uint64(binary.LittleEndian.Uint32(p[1:])), size)); err != nil {
		return nil, err
	}
	// The classic LZMA header is the coder properties and the size.
	hdr := binary.LittleEndian.AppendUint64(append([]byte(nil), p...), size)
	// The library's default cap (2 GiB) would refuse a large declared
	// dictionary even when the size, checked above, keeps it small.
	r, err := lzma.ReaderConfig{DictCap: lzma.MaxDictCap}.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(hdr), in[0])))
	if err != nil {
		return nil, fmt.Errorf("7z LZMA: %w", err)
	}
	return sevenZipDecoder{Reader: r, in: in[0]}, nil
}

func newLZMA27z(p []byte, size uint64, in []io.ReadCloser) (io.ReadCloser, error) {
	if err := oneInput("LZMA2", in); err != nil {
		return nil, err
	}
	if len(p) != 1 || p[0] > 40 {
		return nil, fmt.Errorf("%w: 7z LZMA2 coder properties %x", ErrCorrupt, p)
	}
	dict := uint64(math.MaxUint32)
	if p[0] < 40 {
		dict = uint64(2|p[0]&1) << (p[0]/2 + 11)
	}
	need := dictNeed(dict, size)
	if err := check7zMemory("LZMA2 dictionary", need); err != nil {
		return nil, err
	}
	r, err := lzma.Reader2Config{DictCap: int(need)}.NewReader2(in[0])
	if err != nil {
		return nil, fmt.Errorf("7z LZMA2: %w", err)
	}
	return sevenZipDecoder{Reader: r, in: in[0]}, nil
}

func newPPMd7z(p []byte, size uint64, in []io.ReadCloser) (io.ReadCloser, error) {
	if err := oneInput("PPMd", in); err != nil {
		return nil, err
	}
	if len(p) != 5 || size > math.MaxInt {
		return nil, fmt.Errorf("%w: 7z PPMd coder properties %x, size %d", ErrCorrupt, p, size)
	}
	// Unlike a dictionary, the model size is part of the format (a smaller
	// model decodes differently), so it cannot be trimmed to the output.
	mem := binary.LittleEndian.Uint32(p[1:])
	if err := check7zMemory("PPMd model", uint64(mem)); err != nil {
		return nil, err
	}
	r, err := ppmd.NewH7zReader(in[0], int(p[0]), int(mem), int(size))
	if err != nil {
		return nil, fmt.Errorf("7z PPMd: %w", err)
	}
	return sevenZipDecoder{Reader: &r, in: in[0]}, nil
}

func newZstd7z(_ []byte, _ uint64, in []io.ReadCloser) (io.ReadCloser, error) {
	if err := oneInput("zstd", in); err != nil {
		return nil, err
	}
	d, err := newZstd(in[0], sevenZipLimit())
	if err != nil {
		return nil, fmt.Errorf("7z zstd: %w", err)
	}
	return sevenZipDecoder{Reader: d, in: in[0], release: func() { d.Close() }}, nil
}
