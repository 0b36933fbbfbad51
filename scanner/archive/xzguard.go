package archive

import (
	"encoding/binary"
	"fmt"
	"io"
)

// xzGuard hands an xz stream to the xz decoder and fails the read that
// would complete a block header asking for an LZMA2 dictionary above the
// limit: the decoder allocates whatever each block asks for, and a later
// block, or a later concatenated stream, may come after any amount of
// data. It follows the container the way the decoder reads it: stream
// header, blocks (header; LZMA2 chunks, whose headers give their sizes;
// padding; check), index, footer, stream padding. Where the input stops
// making sense it stops watching: the decoder rejects that input itself.
type xzGuard struct {
	r     io.Reader
	limit int64
	err   error

	next  func(*xzGuard, []byte) error // takes buf once it holds want bytes; nil when not watching
	buf   []byte
	want  int
	skip  int64  // bytes to pass over before gathering the next want
	block int64  // bytes of the current block so far, for its padding
	check int64  // size of the check field of the current stream
	index int64  // bytes of the current index so far
	vlis  uint64 // index integers still to read (1 for the record count)
	count bool   // the integer being read is the record count
	vli   uint64 // the integer being read
	shift uint
}

func newXzGuard(r io.Reader, limit int64) *xzGuard {
	g := &xzGuard{r: r, limit: limit}
	g.gather(12, (*xzGuard).streamHeader)
	return g
}

func (g *xzGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if ferr := g.feed(p[:n]); ferr != nil {
		// None of these bytes: the header must never reach the decoder whole.
		g.err = ferr
		return 0, ferr
	}
	return n, err
}

func (g *xzGuard) gather(n int, next func(*xzGuard, []byte) error) {
	g.want, g.next = n, next
}

func (g *xzGuard) feed(b []byte) error {
	for len(b) > 0 && g.next != nil {
		var k int
		if g.skip > 0 {
			k = int(min(g.skip, int64(len(b))))
			g.skip -= int64(k)
		} else {
			k = min(g.want-len(g.buf), len(b))
			g.buf = append(g.buf, b[:k]...)
		}
		b = b[k:]
		g.block += int64(k)
		g.index += int64(k)
		if g.skip == 0 && len(g.buf) == g.want {
			got := g.buf
			g.buf = g.buf[:0]
			if err := g.next(g, got); err != nil {
				return err
			}
		}
	}
	return nil
}

// xzCheckSizes are the check field sizes of the check types the decoder
// supports.
var xzCheckSizes = map[byte]int64{0x00: 0, 0x01: 4, 0x04: 8, 0x0a: 32}

func (g *xzGuard) streamHeader(h []byte) error {
	size, ok := xzCheckSizes[h[7]&0x0f]
	if string(h[:6]) != "\xfd7zXZ\x00" || !ok {
		g.next = nil
		return nil
	}
	g.check = size
	g.gather(1, (*xzGuard).blockOrIndex)
	return nil
}

func (g *xzGuard) blockOrIndex(b []byte) error {
	if b[0] == 0 { // the index indicator
		g.index, g.vlis, g.count, g.vli, g.shift = 1, 1, true, 0, 0
		g.gather(1, (*xzGuard).indexByte)
		return nil
	}
	g.block = 1
	g.gather(int(b[0])*4+3, (*xzGuard).blockHeader)
	return nil
}

func (g *xzGuard) blockHeader(h []byte) error {
	if dict, ok := xzBlockDictSize(h[:len(h)-4]); ok && dict > uint64(g.limit) {
		return fmt.Errorf("%w: xz dictionary of %d bytes in a later block exceeds the limit of %d", ErrMemoryBudget, dict, g.limit)
	}
	g.gather(1, (*xzGuard).chunk)
	return nil
}

// chunk reads an LZMA2 chunk's control byte.
func (g *xzGuard) chunk(c []byte) error {
	switch {
	case c[0] == 0: // end of the block's data: padding, check, then what follows
		g.skip = (4-g.block%4)%4 + g.check
		g.gather(1, (*xzGuard).blockOrIndex)
	case c[0] == 1 || c[0] == 2: // stored: 2 bytes of size - 1
		g.gather(2, func(g *xzGuard, h []byte) error {
			g.skip = int64(binary.BigEndian.Uint16(h)) + 1
			g.gather(1, (*xzGuard).chunk)
			return nil
		})
	case c[0] >= 0x80: // LZMA: unpacked and packed sizes - 1, then properties on a reset
		n := 4
		if c[0] >= 0xc0 {
			n = 5
		}
		g.gather(n, func(g *xzGuard, h []byte) error {
			g.skip = int64(binary.BigEndian.Uint16(h[2:])) + 1
			g.gather(1, (*xzGuard).chunk)
			return nil
		})
	default:
		g.next = nil
	}
	return nil
}

// indexByte reads the index's integers (the record count, then two per
// record) a byte at a time, then passes over its padding, CRC32 and the
// stream footer.
func (g *xzGuard) indexByte(b []byte) error {
	g.vli |= uint64(b[0]&0x7f) << g.shift
	g.shift += 7
	if b[0]&0x80 != 0 && g.shift < 63 {
		return nil
	}
	g.vlis--
	if g.count {
		g.vlis, g.count = min(g.vli, 1<<62)*2, false
	}
	g.vli, g.shift = 0, 0
	if g.vlis == 0 {
		g.skip = (4-g.index%4)%4 + 4 + 12
		g.gather(4, (*xzGuard).afterStream)
	}
	return nil
}

// afterStream reads 4 bytes after a stream: stream padding, or the start
// of another stream.
func (g *xzGuard) afterStream(b []byte) error {
	if binary.LittleEndian.Uint32(b) == 0 {
		return nil // padding: 4 more
	}
	g.buf = b
	g.gather(12, (*xzGuard).streamHeader)
	return nil
}
