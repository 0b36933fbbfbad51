// Package storetest is the conformance suite every blob.Store passes: the
// behaviour the roles rely on, whatever holds the bytes.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/scangate/scangate/pkg/blob"
)

// Options describe what a store can tell that others cannot.
type Options struct {
	// ReportsGaps: the store keeps parts apart and Open of a blob with bytes
	// no part covers fails with blob.ErrIncomplete. (A sparse file cannot
	// tell a hole from zeros.)
	ReportsGaps bool
}

const key = "0123456789abcdef0123456789abcdef"

// Run runs the suite; newStore returns a fresh, empty store for each test.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store, opts Options) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"PartsOutOfOrder", testPartsOutOfOrder},
		{"PartsInParallel", testPartsInParallel},
		{"OverlappingAndRetriedParts", testOverlappingAndRetried},
		{"SmallReads", testSmallReads},
		{"ReadsOnlyN", testReadsOnlyN},
		{"ShortReader", func(t *testing.T, s blob.Store) { testShortReader(t, s, opts) }},
		{"ReaderError", testReaderError},
		{"NegativeRange", testNegativeRange},
		{"KeysWithSuffix", testKeysWithSuffix},
		{"OpenMissing", testOpenMissing},
		{"Delete", testDelete},
		{"BadKeys", testBadKeys},
		{"CancelledContext", testCancelledContext},
		{"LargeStreamedPart", testLargeStreamedPart},
		{"ZeroLength", testZeroLength},
		{"ReadAtSemantics", testReadAtSemantics},
		{"List", testList},
		{"Concat", testConcat},
		{"Gaps", func(t *testing.T, s blob.Store) {
			if !opts.ReportsGaps {
				t.Skip("store does not report gaps")
			}
			testGaps(t, s)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// write writes data[lo:hi] at lo, failing the test on error.
func write(t *testing.T, s blob.Store, k string, data []byte, lo, hi int) {
	t.Helper()
	if err := s.WriteAt(context.Background(), k, int64(lo), bytes.NewReader(data[lo:hi]), int64(hi-lo)); err != nil {
		t.Fatalf("WriteAt(%s, [%d,%d)): %v", k, lo, hi, err)
	}
}

func open(t *testing.T, s blob.Store, k string) blob.Object {
	t.Helper()
	obj, err := s.Open(context.Background(), k)
	if err != nil {
		t.Fatalf("Open(%s): %v", k, err)
	}
	t.Cleanup(func() { obj.Close() })
	return obj
}

// checkContent opens k and checks Size, a sequential read (by sha256) and
// ReadAt at the start, around every boundary (part edges), at random
// offsets and over the end against want.
func checkContent(t *testing.T, s blob.Store, k string, want []byte, boundaries ...int) {
	t.Helper()
	obj := open(t, s, k)
	if obj.Size() != int64(len(want)) {
		t.Errorf("Size() = %d, want %d", obj.Size(), len(want))
	}
	h := sha256.New()
	n, err := io.Copy(h, obj)
	if err != nil {
		t.Fatalf("reading %s: %v", k, err)
	}
	if got, exp := h.Sum(nil), sha256.Sum256(want); n != int64(len(want)) || !bytes.Equal(got, exp[:]) {
		got, _ := io.ReadAll(io.NewSectionReader(obj, 0, obj.Size()))
		t.Fatalf("content of %s differs: read %d bytes, want %d; first difference at %d", k, n, len(want), firstDiff(got, want))
	}
	if m, err := obj.Read(make([]byte, 1)); m != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v; want 0, io.EOF", m, err)
	}

	checkAt := func(off, n int) {
		t.Helper()
		buf := make([]byte, n)
		got, err := obj.ReadAt(buf, int64(off))
		end := min(off+n, len(want))
		if got != end-off {
			t.Errorf("ReadAt(%d bytes at %d) read %d, want %d (err %v)", n, off, got, end-off, err)
			return
		}
		if end-off < n && err != io.EOF {
			t.Errorf("ReadAt(%d bytes at %d) past the end: err %v, want io.EOF", n, off, err)
		}
		if end-off == n && err != nil && err != io.EOF {
			t.Errorf("ReadAt(%d bytes at %d): %v", n, off, err)
		}
		if !bytes.Equal(buf[:got], want[off:end]) {
			t.Errorf("ReadAt(%d bytes at %d) differs from byte %d", n, off, off+firstDiff(buf[:got], want[off:end]))
		}
	}
	if len(want) == 0 {
		return
	}
	checkAt(0, min(5, len(want)))
	checkAt(1, min(4096, len(want)-1))
	for _, b := range boundaries {
		if b > 3 && b+3 < len(want) {
			checkAt(b-3, 6)
			checkAt(b, 1)
			checkAt(b-1, 1)
		}
	}
	r := rand.New(rand.NewPCG(uint64(len(want)), 7))
	for range 12 {
		off := r.IntN(len(want))
		checkAt(off, 1+r.IntN(min(64<<10, len(want)-off)))
	}
	checkAt(max(0, len(want)-3), 10)
	if len(want) <= 4<<20 {
		checkAt(0, len(want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func testPartsOutOfOrder(t *testing.T, s blob.Store) {
	data := randomBytes(1<<20+333, 1)
	// Unequal parts (one of a single byte), written last first, with the
	// middle ones swapped.
	bounds := []int{0, 1000, 300_000, 300_001, 700_000, len(data)}
	for _, i := range []int{4, 2, 3, 0, 1} {
		write(t, s, key, data, bounds[i], bounds[i+1])
	}
	checkContent(t, s, key, data, bounds...)
}

func testPartsInParallel(t *testing.T, s blob.Store) {
	data := randomBytes(3<<20+7, 2)
	bounds := []int{0}
	r := rand.New(rand.NewPCG(3, 3))
	for last := 0; last < len(data); {
		last = min(len(data), last+1+r.IntN(600_000))
		bounds = append(bounds, last)
	}
	var wg sync.WaitGroup
	for i := range len(bounds) - 1 {
		wg.Go(func() {
			lo, hi := bounds[i], bounds[i+1]
			if err := s.WriteAt(context.Background(), key, int64(lo), bytes.NewReader(data[lo:hi]), int64(hi-lo)); err != nil {
				t.Errorf("WriteAt [%d,%d): %v", lo, hi, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	checkContent(t, s, key, data, bounds...)
}

// Parts that overlap (as when a client re-splits a file) and ranges written
// again (retried parts, some at the same time) carry the same bytes: the
// blob is the file, whatever the store keeps of the overlap.
func testOverlappingAndRetried(t *testing.T, s blob.Store) {
	data := randomBytes(200_000, 4)
	ranges := [][2]int{
		{90_000, 200_000},
		{40_000, 90_000},  // overlaps the next
		{0, 50_000},       //
		{60_000, 70_000},  // inside another part
		{90_000, 150_000}, // same offset as a longer part
		{0, 50_000},       // retried
		{199_999, 200_000},
	}
	for _, rg := range ranges {
		write(t, s, key, data, rg[0], rg[1])
	}
	checkContent(t, s, key, data, 40_000, 50_000, 60_000, 70_000, 90_000, 150_000, 199_999)

	// The same range retried concurrently.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := s.WriteAt(context.Background(), key, 10_000, bytes.NewReader(data[10_000:120_000]), 110_000); err != nil {
				t.Errorf("concurrent retry: %v", err)
			}
		})
	}
	wg.Wait()
	checkContent(t, s, key, data, 10_000, 40_000, 50_000, 90_000, 120_000, 150_000)
}

// smallReader returns at most max bytes per Read, like a network body.
type smallReader struct {
	r   io.Reader
	max int
}

func (s smallReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.max)]) }

func testSmallReads(t *testing.T, s blob.Store) {
	data := randomBytes(300_000, 5)
	if err := s.WriteAt(context.Background(), key, 0, smallReader{bytes.NewReader(data[:200_001]), 777}, 200_001); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(context.Background(), key, 200_001, iotest.HalfReader(bytes.NewReader(data[200_001:])), int64(len(data)-200_001)); err != nil {
		t.Fatal(err)
	}
	checkContent(t, s, key, data, 200_001)
}

func testReadsOnlyN(t *testing.T, s blob.Store) {
	r := strings.NewReader("0123456789")
	if err := s.WriteAt(context.Background(), key, 0, r, 4); err != nil {
		t.Fatal(err)
	}
	checkContent(t, s, key, []byte("0123"))
	if r.Len() != 6 {
		t.Errorf("WriteAt consumed %d bytes of the reader, want 4", 10-r.Len())
	}
}

func testShortReader(t *testing.T, s blob.Store, opts Options) {
	ctx := context.Background()
	data := []byte("0123456789abcdefghijABCDEFGHIJ")

	// A first attempt that falls short, then the retry.
	err := s.WriteAt(ctx, key, 0, bytes.NewReader(data[:5]), 10)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("WriteAt with 5 of 10 bytes = %v, want io.ErrUnexpectedEOF", err)
	}
	write(t, s, key, data, 0, 10)
	checkContent(t, s, key, data[:10])

	// A short part between good ones: gap-reporting stores say the blob is
	// incomplete until the part is written again.
	write(t, s, key, data, 20, 30)
	err = s.WriteAt(ctx, key, 10, bytes.NewReader(data[10:15]), 10)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("WriteAt with 5 of 10 bytes = %v, want io.ErrUnexpectedEOF", err)
	}
	if opts.ReportsGaps {
		if obj, err := s.Open(ctx, key); !errors.Is(err, blob.ErrIncomplete) {
			if err == nil {
				obj.Close()
			}
			t.Errorf("Open after a short part = %v, want ErrIncomplete", err)
		}
	}
	write(t, s, key, data, 10, 20)
	checkContent(t, s, key, data, 10, 20)

	// A retry of a stored range that falls short leaves the stored bytes.
	err = s.WriteAt(ctx, key, 10, bytes.NewReader(data[10:13]), 10)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short retry = %v, want io.ErrUnexpectedEOF", err)
	}
	checkContent(t, s, key, data, 10, 20)
}

func testReaderError(t *testing.T, s blob.Store) {
	boom := errors.New("client went away")
	r := io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom))
	if err := s.WriteAt(context.Background(), key, 0, r, 10); !errors.Is(err, boom) {
		t.Fatalf("WriteAt from a failing reader = %v, want %v", err, boom)
	}
}

func testNegativeRange(t *testing.T, s blob.Store) {
	ctx := context.Background()
	if err := s.WriteAt(ctx, key, -1, strings.NewReader("x"), 1); err == nil {
		t.Error("WriteAt at offset -1 succeeded")
	}
	if err := s.WriteAt(ctx, key, 0, strings.NewReader("x"), -1); err == nil {
		t.Error("WriteAt of -1 bytes succeeded")
	}
}

// Keys with a suffix are separate blobs, whatever the suffix looks like
// (a numeric one could pass for an offset).
func testKeysWithSuffix(t *testing.T, s blob.Store) {
	ctx := context.Background()
	other := "fedcba9876543210fedcba9876543210"
	if err := s.WriteAt(ctx, key+".sanitized", 0, strings.NewReader("clean"), 5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open of the bare data_id = %v, want ErrNotFound (a separate blob)", err)
	}
	blobs := map[string][]byte{
		key:                []byte("the original file"),
		key + ".sanitized": []byte("clean"),
		key + ".5":         []byte("numeric suffix"),
		key + ".0":         []byte("zero"),
		other:              []byte("another file"),
	}
	for k, v := range blobs {
		// Two parts each, so part names of one key could pass for another's.
		write(t, s, k, v, 0, 2)
		write(t, s, k, v, 2, len(v))
	}
	for k, v := range blobs {
		checkContent(t, s, k, v, 2)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open after Delete = %v, want ErrNotFound", err)
	}
	for k, v := range blobs {
		if k != key {
			checkContent(t, s, k, v, 2)
		}
	}
}

func testOpenMissing(t *testing.T, s blob.Store) {
	if _, err := s.Open(context.Background(), key); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Open of a missing key = %v, want ErrNotFound", err)
	}
}

func testDelete(t *testing.T, s blob.Store) {
	ctx := context.Background()
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete of a missing key = %v, want nil", err)
	}
	data := randomBytes(100_000, 6)
	write(t, s, key, data, 50_000, 100_000)
	write(t, s, key, data, 0, 50_000)
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Open(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
	// The key starts afresh: nothing of the old blob shows through.
	write(t, s, key, data, 0, 1000)
	checkContent(t, s, key, data[:1000])
}

func testBadKeys(t *testing.T, s blob.Store) {
	bad := []string{
		"",
		"../x",
		"../" + key,
		key[:31],
		key + "0",
		strings.ToUpper(key),
		"0123456789ABCDEF0123456789abcdef",
		key[:16] + "/" + key[17:],
		key + "/x",
		key + ".",
		key + ".Sanitized",
		key + ".a.b",
		key + ".*",
		key + ".>",
		key + "." + strings.Repeat("a", 17),
		key + "\n",
		"/" + key[1:],
	}
	ctx := context.Background()
	for _, k := range bad {
		if blob.ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
		if err := s.WriteAt(ctx, k, 0, strings.NewReader("x"), 1); !errors.Is(err, blob.ErrBadKey) {
			t.Errorf("WriteAt(%q) = %v, want ErrBadKey", k, err)
		}
		if _, err := s.Open(ctx, k); !errors.Is(err, blob.ErrBadKey) {
			t.Errorf("Open(%q) = %v, want ErrBadKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, blob.ErrBadKey) {
			t.Errorf("Delete(%q) = %v, want ErrBadKey", k, err)
		}
	}
}

// cancellingReader cancels the context during its first read, standing in
// for a client that hangs up mid-upload.
type cancellingReader struct {
	cancel context.CancelFunc
	reads  int
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	r.reads++
	r.cancel()
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func testCancelledContext(t *testing.T, s blob.Store) {
	t.Run("cancelled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := s.WriteAt(ctx, key, 0, strings.NewReader("data"), 4)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WriteAt = %v, want context.Canceled", err)
		}
	})
	t.Run("cancelled during", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := &cancellingReader{cancel: cancel}
		const n = 64 << 20 // far more than one copy buffer or chunk
		err := s.WriteAt(ctx, key, 0, r, n)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WriteAt = %v, want context.Canceled", err)
		}
		if r.reads != 1 {
			t.Errorf("source read %d times after cancel, want 1", r.reads)
		}
	})
	t.Run("usable after", func(t *testing.T) {
		// What a failed write left is unspecified (the fs store keeps the
		// bytes it got); Delete clears it.
		if err := s.Delete(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		write(t, s, key, []byte("after"), 0, 5)
		checkContent(t, s, key, []byte("after"))
	})
}

// genReader yields the bytes [off, end) of a fixed pseudo-random sequence
// (byte i is genByte(seed, i)) without ever holding them.
type genReader struct {
	seed     uint64
	off, end int64
}

func genWord(seed uint64, w int64) uint64 {
	x := seed ^ uint64(w)*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func genByte(seed uint64, i int64) byte { return byte(genWord(seed, i>>3) >> (8 * (i & 7))) }

func (g *genReader) Read(p []byte) (int, error) {
	if g.off >= g.end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), g.end-g.off)]
	i := 0
	for ; i < len(p) && (g.off+int64(i))&7 != 0; i++ {
		p[i] = genByte(g.seed, g.off+int64(i))
	}
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], genWord(g.seed, (g.off+int64(i))>>3))
	}
	for ; i < len(p); i++ {
		p[i] = genByte(g.seed, g.off+int64(i))
	}
	g.off += int64(len(p))
	return len(p), nil
}

// A part of several MiB, streamed from a generator: neither the test nor
// (by the Store contract) the store holds it whole.
func testLargeStreamedPart(t *testing.T, s blob.Store) {
	const seed, head, size = 11, 1000, 24<<20 + 123
	ctx := context.Background()
	// A small first part, then the big one from its offset on.
	if err := s.WriteAt(ctx, key, 0, &genReader{seed: seed, end: head}, head); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(ctx, key, head, &genReader{seed: seed, off: head, end: size}, size-head); err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	io.Copy(want, &genReader{seed: seed, end: size})

	obj := open(t, s, key)
	if obj.Size() != size {
		t.Errorf("Size() = %d, want %d", obj.Size(), size)
	}
	got := sha256.New()
	if n, err := io.Copy(got, obj); err != nil || n != size {
		t.Fatalf("read %d bytes, %v; want %d", n, err, size)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("content differs (sha256)")
	}
	for _, off := range []int64{0, head - 2, head, 5<<20 + 3, size - 100, size - 1} {
		buf := make([]byte, 64)
		n, err := obj.ReadAt(buf, off)
		exp := min(64, size-off)
		if int64(n) != exp || (exp < 64 && err != io.EOF) || (exp == 64 && err != nil && err != io.EOF) {
			t.Errorf("ReadAt(64 at %d) = %d, %v; want %d", off, n, err, exp)
			continue
		}
		for i := range n {
			if buf[i] != genByte(seed, off+int64(i)) {
				t.Errorf("ReadAt(64 at %d): byte %d differs", off, off+int64(i))
				break
			}
		}
	}
}

func testZeroLength(t *testing.T, s blob.Store) {
	if err := s.WriteAt(context.Background(), key, 0, strings.NewReader(""), 0); err != nil {
		t.Fatalf("WriteAt of an empty file: %v", err)
	}
	obj := open(t, s, key)
	if obj.Size() != 0 {
		t.Errorf("Size() = %d, want 0", obj.Size())
	}
	if b, err := io.ReadAll(obj); err != nil || len(b) != 0 {
		t.Errorf("ReadAll = %q, %v; want empty", b, err)
	}
	if n, err := obj.ReadAt(make([]byte, 4), 0); n != 0 || err != io.EOF {
		t.Errorf("ReadAt = %d, %v; want 0, io.EOF", n, err)
	}
}

func testReadAtSemantics(t *testing.T, s blob.Store) {
	data := randomBytes(500_000, 8)
	bounds := []int{0, 100_000, 250_000, 250_010, len(data)}
	for i := range len(bounds) - 1 {
		write(t, s, key, data, bounds[i], bounds[i+1])
	}
	obj := open(t, s, key)

	if n, err := obj.ReadAt(make([]byte, 4), int64(len(data))); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
	}
	if n, err := obj.ReadAt(make([]byte, 4), int64(len(data))+10); n != 0 || err != io.EOF {
		t.Errorf("ReadAt past the end = %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := obj.ReadAt(make([]byte, 4), -1); err == nil {
		t.Error("ReadAt at -1 succeeded")
	}

	// ReadAt leaves the sequential position alone: read a little, ReadAt
	// elsewhere, and the sequential read carries on where it was.
	first := make([]byte, 1000)
	if _, err := io.ReadFull(obj, first); err != nil {
		t.Fatal(err)
	}
	if _, err := obj.ReadAt(make([]byte, 300_000), 120_000); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(first, rest...); !bytes.Equal(got, data) {
		t.Errorf("sequential read interleaved with ReadAt differs at %d", firstDiff(got, data))
	}

	// Concurrent ReadAt, as io.ReaderAt allows.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 4 {
				off := r.IntN(len(data))
				buf := make([]byte, min(1+r.IntN(200_000), len(data)-off))
				n, err := obj.ReadAt(buf, int64(off))
				if n != len(buf) || (err != nil && err != io.EOF) {
					t.Errorf("concurrent ReadAt(%d at %d) = %d, %v", len(buf), off, n, err)
					return
				}
				if !bytes.Equal(buf, data[off:off+n]) {
					t.Errorf("concurrent ReadAt(%d at %d) differs", len(buf), off)
					return
				}
			}
		})
	}
	wg.Wait()

	obj.Close()
	if _, err := obj.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close succeeded")
	}
}

func testGaps(t *testing.T, s blob.Store) {
	ctx := context.Background()
	data := randomBytes(30_000, 10)
	incomplete := func(what string) {
		t.Helper()
		obj, err := s.Open(ctx, key)
		if err == nil {
			obj.Close()
		}
		if !errors.Is(err, blob.ErrIncomplete) {
			t.Errorf("Open with %s = %v, want ErrIncomplete", what, err)
		} else if !strings.Contains(err.Error(), "incomplete") {
			t.Errorf("error %q does not say the blob is incomplete", err)
		}
	}
	write(t, s, key, data, 10_000, 20_000)
	incomplete("the start missing")
	write(t, s, key, data, 0, 5_000)
	write(t, s, key, data, 25_000, 30_000)
	incomplete("two holes")
	write(t, s, key, data, 4_000, 19_000)
	incomplete("one hole")
	write(t, s, key, data, 20_000, 25_000)
	checkContent(t, s, key, data, 4_000, 5_000, 10_000, 19_000, 20_000, 25_000)
}

// clockSlack allows for the coarse clocks stores stamp writes with (a file
// system's timestamps lag the wall clock by up to a tick).
const clockSlack = 100 * time.Millisecond

// list returns what the store lists, by key, failing on a key listed twice.
func list(t *testing.T, s blob.Store) map[string]blob.Info {
	t.Helper()
	l, ok := s.(blob.Lister)
	if !ok {
		t.Fatalf("%T does not list its blobs (blob.Lister): retention could never delete them", s)
	}
	out := map[string]blob.Info{}
	err := l.List(context.Background(), func(i blob.Info) error {
		if _, dup := out[i.Key]; dup {
			t.Errorf("%s listed twice", i.Key)
		}
		out[i.Key] = i
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return out
}

// List reports every blob once, with its length and its last write, and
// nothing deleted: what retention decides on.
func testList(t *testing.T, s blob.Store) {
	ctx := context.Background()
	if got := list(t, s); len(got) != 0 {
		t.Fatalf("an empty store lists %v", got)
	}
	other := "fedcba9876543210fedcba9876543210"
	blobs := map[string][]byte{
		key:                randomBytes(70_000, 11),
		key + ".sanitized": []byte("clean"),
		key + ".5":         []byte("numeric suffix"), // part names of one key must not pass for another's
		other:              []byte("another file"),
	}
	start := time.Now()
	for k, v := range blobs {
		write(t, s, k, v, len(v)/2, len(v)) // the end first: the length is the furthest byte
		write(t, s, k, v, 0, len(v)/2)
	}
	got := list(t, s)
	end := time.Now()
	if len(got) != len(blobs) {
		t.Errorf("listed %d blobs, want %d: %v", len(got), len(blobs), got)
	}
	for k, v := range blobs {
		i, ok := got[k]
		if !ok {
			t.Errorf("%s not listed", k)
			continue
		}
		if i.Size != int64(len(v)) {
			t.Errorf("%s: size %d, want %d", k, i.Size, len(v))
		}
		if i.ModTime.Before(start.Add(-clockSlack)) || i.ModTime.After(end.Add(clockSlack)) {
			t.Errorf("%s: modified %v, want between %v and %v", k, i.ModTime, start, end)
		}
	}

	// The modification time is the last write, whichever part it was.
	first := got[other].ModTime
	rewrite := time.Now()
	write(t, s, other, blobs[other], 0, 3)
	after := list(t, s)[other].ModTime
	if after.Before(first) || after.Before(rewrite.Add(-clockSlack)) {
		t.Errorf("after a rewrite at %v: modified %v (was %v), want the rewrite's time", rewrite, after, first)
	}

	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	got = list(t, s)
	if _, ok := got[key]; ok || len(got) != len(blobs)-1 {
		t.Errorf("after Delete(%s): %v", key, got)
	}

	// fn's error stops the listing and is List's.
	stop := errors.New("stop")
	calls := 0
	err := s.(blob.Lister).List(ctx, func(blob.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with a failing fn: %v after %d calls, want %v after 1", err, calls, stop)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.(blob.Lister).List(cancelled, func(blob.Info) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context: %v, want context.Canceled", err)
	}
}

// Concat makes one blob of several without copying: it reads as the parts
// in order, through Read, ReadAt and sections, it is listed with their
// total length, concatenating again changes nothing, and Delete takes the
// parts with it.
func testConcat(t *testing.T, s blob.Store) {
	c, ok := s.(blob.Concatenator)
	if !ok {
		t.Skip("store does not concatenate")
	}
	ctx := context.Background()
	sizes := []int{70_000, 1, 33_333}
	var want []byte
	var parts []string
	var bounds []int
	for i, n := range sizes {
		data := randomBytes(n, uint64(20+i))
		pk := blob.PartKey(key, i+1, "0badc0de")
		// The first part in two writes: a part is whatever its blob holds.
		if i == 0 {
			write(t, s, pk, data, n/2, n)
			write(t, s, pk, data, 0, n/2)
		} else {
			write(t, s, pk, data, 0, n)
		}
		want = append(want, data...)
		parts = append(parts, pk)
		bounds = append(bounds, len(want))
	}
	missing := blob.PartKey(key, 9, "0badc0de")
	if err := c.Concat(ctx, key, append(slices.Clone(parts), missing)); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Concat with a missing part = %v, want ErrNotFound", err)
	}
	if _, err := s.Open(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open after a refused Concat = %v, want ErrNotFound", err)
	}
	for range 2 { // again: nothing changes
		if err := c.Concat(ctx, key, parts); err != nil {
			t.Fatalf("Concat: %v", err)
		}
		checkContent(t, s, key, want, bounds...)
	}
	obj := open(t, s, key)
	sec, err := io.ReadAll(blob.Section(obj, 69_990, 20))
	if err != nil || !bytes.Equal(sec, want[69_990:70_010]) {
		t.Errorf("a section across parts = %v, %v", sec, err)
	}
	if i, ok := list(t, s)[key]; !ok || i.Size != int64(len(want)) {
		t.Errorf("listed as %+v (%v), want size %d", i, ok, len(want))
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, k := range append(parts, key) {
		if _, err := s.Open(ctx, k); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Open(%s) after Delete of the concatenation = %v, want ErrNotFound", k, err)
		}
	}
	if got := list(t, s); len(got) != 0 {
		t.Errorf("after Delete the store lists %v", got)
	}
}
