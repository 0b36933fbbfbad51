// Package hashing computes md5, sha1, sha256 and sha512 of a byte stream in a
// single pass. Each digest runs on its own goroutine over shared copies of
// the written bytes: the four are sequential by nature (no digest can be
// split), so the pass takes as long as the slowest one (sha512) instead of
// the sum, and on a machine with few cores the scheduler packs the fast
// three beside it. Large writes are hashed in the background: Write copies
// the bytes into a pooled buffer and returns, so the caller reads and
// stores the next bytes while the previous ones are hashed.
package hashing

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/scangate/scangate/pkg/events"
)

// parallelMin is the write size from which the digests run concurrently;
// below it the hand-off costs more than it saves.
const parallelMin = 64 << 10

// chunkMax caps one shared copy, so a single huge Write neither keeps a
// huge buffer in the pool nor holds its caller until all of it is hashed.
const chunkMax = 1 << 20

// queued is how many chunks a digest may lag behind the writer. The fast
// digests run ahead of sha512 by up to this much, which lets them fill the
// gaps the scheduler leaves; a Multi holds at most queued+1 chunks
// (chunkMax each) beyond its caller's memory.
const queued = 16

// digests is the number of digests; their order is that of State.
const digests = 4

// Multi is an io.Writer that feeds every byte to all four digests.
// It is not safe for concurrent use; Close must be called to stop its
// goroutines.
type Multi struct {
	md5, sha1, sha256, sha512 hash.Hash
	all                       [digests]hash.Hash
	work                      [digests]chan *chunk
	wg                        sync.WaitGroup // chunk deliveries not yet hashed
	parallel                  bool
	n                         int64
}

// chunk is a copy of written bytes, hashed by every digest and then
// returned to the pool by the last of them.
type chunk struct {
	b    []byte
	left atomic.Int32
}

var chunks = sync.Pool{New: func() any { return new(chunk) }}

// New returns a Multi ready for writing.
func New() *Multi {
	m := &Multi{md5: md5.New(), sha1: sha1.New(), sha256: sha256.New(), sha512: sha512.New()}
	m.all = [digests]hash.Hash{m.md5, m.sha1, m.sha256, m.sha512}
	if runtime.GOMAXPROCS(0) > 1 {
		m.parallel = true
		for i := range m.work {
			m.work[i] = make(chan *chunk, queued)
			go m.digest(i)
		}
	}
	return m
}

func (m *Multi) digest(i int) {
	h := m.all[i]
	for c := range m.work[i] {
		h.Write(c.b)
		if c.left.Add(-1) == 0 {
			chunks.Put(c)
		}
		m.wg.Done()
	}
}

// Write hashes p. p is not retained after Write returns: a large p is
// copied and hashed in the background (Sums, State and Close wait for it).
func (m *Multi) Write(p []byte) (int, error) {
	m.n += int64(len(p))
	if !m.parallel || len(p) < parallelMin {
		m.wg.Wait() // in order: earlier writes first
		for _, h := range m.all {
			h.Write(p)
		}
		return len(p), nil
	}
	for rest := p; len(rest) > 0; {
		k := min(len(rest), chunkMax)
		c := chunks.Get().(*chunk)
		c.b = append(c.b[:0], rest[:k]...)
		rest = rest[k:]
		c.left.Store(digests)
		m.wg.Add(digests)
		for _, w := range m.work {
			w <- c
		}
	}
	return len(p), nil
}

// Behind reports whether the digests are behind their writer: the queue of
// background writes is full, so the next large Write would wait for them.
// A caller that must not wait (an upload arriving faster than four digests
// can run) stops writing and hands the State on.
func (m *Multi) Behind() bool {
	if !m.parallel {
		return false
	}
	for _, w := range m.work {
		if len(w) == cap(w) {
			return true
		}
	}
	return false
}

// Len is the number of bytes hashed so far.
func (m *Multi) Len() int64 { return m.n }

// Sums returns the digests of everything written so far.
func (m *Multi) Sums() events.Hashes {
	m.wg.Wait()
	return events.Hashes{
		MD5:    hex.EncodeToString(m.md5.Sum(nil)),
		SHA1:   hex.EncodeToString(m.sha1.Sum(nil)),
		SHA256: hex.EncodeToString(m.sha256.Sum(nil)),
		SHA512: hex.EncodeToString(m.sha512.Sum(nil)),
	}
}

// Close stops the digests' goroutines. The digests stay readable.
func (m *Multi) Close() {
	m.wg.Wait()
	if m.parallel {
		for _, w := range m.work {
			close(w)
		}
		m.parallel = false
	}
}

// Algorithm names a hash by the length of its hex form, as GET /hash/{hash}
// receives it; ok is false for any other length or non-hex input.
func Algorithm(hexDigest string) (algo string, ok bool) {
	for i := 0; i < len(hexDigest); i++ {
		c := hexDigest[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return "", false
		}
	}
	switch len(hexDigest) {
	case 32:
		return "md5", true
	case 40:
		return "sha1", true
	case 64:
		return "sha256", true
	case 128:
		return "sha512", true
	}
	return "", false
}

// State is the digests' internal state after Len bytes, so hashing can
// stop in one process and carry on in another (an assembler hashes an
// upload's contiguous prefix as it grows; the scanner hashes the rest).
func (m *Multi) State() ([]byte, error) {
	m.wg.Wait()
	var out []byte
	for _, h := range m.all {
		b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return nil, err
		}
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return binary.AppendVarint(out, m.n), nil
}

// Restore returns a Multi that carries on from a State.
func Restore(state []byte) (*Multi, error) {
	m := New()
	for _, h := range m.all {
		l, k := binary.Uvarint(state)
		if k <= 0 || uint64(len(state)-k) < l {
			m.Close()
			return nil, errors.New("hashing: corrupt state")
		}
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state[k : k+int(l)]); err != nil {
			m.Close()
			return nil, fmt.Errorf("hashing: %w", err)
		}
		state = state[k+int(l):]
	}
	n, k := binary.Varint(state)
	if k <= 0 || n < 0 {
		m.Close()
		return nil, errors.New("hashing: corrupt state")
	}
	m.n = n
	return m, nil
}
