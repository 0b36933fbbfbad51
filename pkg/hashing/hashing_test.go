package hashing

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/scangate/scangate/pkg/events"
)

// want is the digests of data computed by the standard library in one shot.
func want(data []byte) events.Hashes {
	m, s1, s256, s512 := md5.Sum(data), sha1.Sum(data), sha256.Sum256(data), sha512.Sum512(data)
	return events.Hashes{
		MD5:    hex.EncodeToString(m[:]),
		SHA1:   hex.EncodeToString(s1[:]),
		SHA256: hex.EncodeToString(s256[:]),
		SHA512: hex.EncodeToString(s512[:]),
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// chunkSizes cycles through writes below, at and above parallelMin, so a
// single stream mixes the sequential and the parallel path.
var chunkSizes = []int{1, 7, parallelMin - 1, 100, parallelMin, 3, parallelMin + 1, 200 << 10, 4096}

func TestMultiMatchesStdlib(t *testing.T) {
	// New runs the digests concurrently only when they can run in parallel;
	// cover both whatever machine this runs on.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	sizes := []int{0, 1, 64<<10 - 1, 64 << 10, 1<<20 + 7}
	for _, procs := range []int{1, 2} {
		runtime.GOMAXPROCS(procs)
		for _, size := range sizes {
			data := randomBytes(size, uint64(size)+1)
			for _, mode := range []string{"irregular chunks", "one write"} {
				t.Run(fmt.Sprintf("procs=%d/%d/%s", procs, size, mode), func(t *testing.T) {
					testMulti(t, data, mode == "one write")
				})
			}
		}
	}
}

func testMulti(t *testing.T, data []byte, oneWrite bool) {
	t.Helper()
	size := len(data)
	m := New()
	defer m.Close()
	if oneWrite {
		if n, err := m.Write(data); n != len(data) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(data))
		}
	} else {
		rest := data
		for i := 0; len(rest) > 0; i++ {
			c := min(chunkSizes[i%len(chunkSizes)], len(rest))
			if n, err := m.Write(rest[:c]); n != c || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, c)
			}
			rest = rest[c:]
		}
	}
	if got, w := m.Sums(), want(data); got != w {
		t.Errorf("size %d: Sums() =\n%+v\nwant\n%+v", size, got, w)
	}
	if m.Len() != int64(size) {
		t.Errorf("Len() = %d, want %d", m.Len(), size)
	}
}

// A caller reuses its buffer as soon as Write returns ("p is not retained"),
// as io.Copy does; the digests must be of what was in it during Write.
func TestMultiDoesNotRetainBuffer(t *testing.T) {
	data := randomBytes(4*parallelMin+123, 42)
	m := New()
	defer m.Close()
	if _, err := io.CopyBuffer(m, struct{ io.Reader }{bytes.NewReader(data)}, make([]byte, parallelMin*2)); err != nil {
		t.Fatal(err)
	}
	if got, w := m.Sums(), want(data); got != w {
		t.Errorf("Sums() = %+v, want %+v", got, w)
	}
}

func TestMultiSumsAfterClose(t *testing.T) {
	data := randomBytes(3*parallelMin, 7)
	m := New()
	m.Write(data)
	m.Close()
	if got, w := m.Sums(), want(data); got != w {
		t.Errorf("Sums() after Close = %+v, want %+v", got, w)
	}
	if m.Len() != int64(len(data)) {
		t.Errorf("Len() = %d, want %d", m.Len(), len(data))
	}
}

func TestAlgorithm(t *testing.T) {
	tests := []struct {
		in     string
		algo   string
		wantOK bool
	}{
		{strings.Repeat("a", 32), "md5", true},
		{strings.Repeat("0", 40), "sha1", true},
		{strings.Repeat("f", 64), "sha256", true},
		{strings.Repeat("9", 128), "sha512", true},
		{want(nil).SHA256, "sha256", true},
		{strings.ToUpper(want(nil).MD5), "md5", true}, // upper-case hex is still hex
		{"D41d8cd98f00B204e9800998ecf8427E", "md5", true},
		{"", "", false},
		{strings.Repeat("a", 31), "", false},
		{strings.Repeat("a", 33), "", false},
		{strings.Repeat("a", 39), "", false},
		{strings.Repeat("a", 63), "", false},
		{strings.Repeat("a", 65), "", false},
		{strings.Repeat("a", 127), "", false},
		{strings.Repeat("a", 256), "", false},
		{strings.Repeat("g", 32), "", false},
		{strings.Repeat("a", 31) + "z", "", false},
		{strings.Repeat("a", 31) + " ", "", false},
		{strings.Repeat("a", 30) + "é", "", false}, // 32 bytes, not hex
		{strings.Repeat("a", 62) + "..", "", false},
		{"../" + strings.Repeat("a", 29), "", false},
	}
	for _, tt := range tests {
		algo, ok := Algorithm(tt.in)
		if algo != tt.algo || ok != tt.wantOK {
			t.Errorf("Algorithm(%q) = %q, %v; want %q, %v", tt.in, algo, ok, tt.algo, tt.wantOK)
		}
	}
}

const benchChunk = 256 << 10

func BenchmarkMulti(b *testing.B) {
	buf := randomBytes(benchChunk, 1)
	m := New()
	defer m.Close()
	b.SetBytes(benchChunk)
	for b.Loop() {
		m.Write(buf)
	}
}

// BenchmarkSequentialFour is the baseline for BenchmarkMulti: the same four
// digests computed one after another.
func BenchmarkSequentialFour(b *testing.B) {
	buf := randomBytes(benchChunk, 1)
	w := io.MultiWriter(md5.New(), sha1.New(), sha256.New(), sha512.New())
	b.SetBytes(benchChunk)
	for b.Loop() {
		w.Write(buf)
	}
}
