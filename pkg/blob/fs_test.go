package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const key = "0123456789abcdef0123456789abcdef"

func newStore(t *testing.T) (*FS, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "blobs")
	s, err := NewFS(root)
	if err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	return s, root
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// checkContent opens key and checks that Size, a
// sequential read and ReadAt at a few offsets all agree with want.
func checkContent(t *testing.T, s *FS, key string, want []byte) {
	t.Helper()
	obj, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	defer obj.Close()
	if obj.Size() != int64(len(want)) {
		t.Errorf("Size() = %d, want %d", obj.Size(), len(want))
	}
	got, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("content differs: got %d bytes, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	for _, off := range []int{0, 1, len(want) / 3, len(want) - 5} {
		if off < 0 || off >= len(want) {
			continue
		}
		buf := make([]byte, min(5, len(want)-off))
		if _, err := obj.ReadAt(buf, int64(off)); err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
		if !bytes.Equal(buf, want[off:off+len(buf)]) {
			t.Errorf("ReadAt(%d) = %x, want %x", off, buf, want[off:off+len(buf)])
		}
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

func TestWriteAtPartsOutOfOrder(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	data := randomBytes(1<<20 + 333)
	// Unequal parts, written last first, with the middle ones swapped.
	bounds := []int{0, 1000, 300_000, 300_001, 700_000, len(data)}
	order := []int{4, 2, 3, 0, 1}
	for _, i := range order {
		lo, hi := bounds[i], bounds[i+1]
		if err := s.WriteAt(ctx, key, int64(lo), bytes.NewReader(data[lo:hi]), int64(hi-lo)); err != nil {
			t.Fatalf("WriteAt part %d [%d,%d): %v", i, lo, hi, err)
		}
	}
	checkContent(t, s, key, data)
}

func TestWriteAtOverlapRewriteWins(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if err := s.WriteAt(ctx, key, 0, strings.NewReader("aaaaaaaaaa"), 10); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(ctx, key, 3, strings.NewReader("BBBB"), 4); err != nil {
		t.Fatal(err)
	}
	checkContent(t, s, key, []byte("aaaBBBBaaa"))

	// Retrying the same range with the same bytes changes nothing.
	if err := s.WriteAt(ctx, key, 3, strings.NewReader("BBBB"), 4); err != nil {
		t.Fatal(err)
	}
	checkContent(t, s, key, []byte("aaaBBBBaaa"))
}

func TestWriteAtReadsOnlyN(t *testing.T) {
	s, _ := newStore(t)
	r := strings.NewReader("0123456789")
	if err := s.WriteAt(context.Background(), key, 0, r, 4); err != nil {
		t.Fatal(err)
	}
	checkContent(t, s, key, []byte("0123"))
	if r.Len() != 6 {
		t.Errorf("WriteAt consumed %d bytes of the reader, want 4", 10-r.Len())
	}
}

func TestWriteAtShortReader(t *testing.T) {
	s, _ := newStore(t)
	err := s.WriteAt(context.Background(), key, 0, strings.NewReader("short"), 10)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("WriteAt with 5 of 10 bytes = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestWriteAtNegativeRange(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if err := s.WriteAt(ctx, key, -1, strings.NewReader("x"), 1); err == nil {
		t.Error("WriteAt at offset -1 succeeded")
	}
	if err := s.WriteAt(ctx, key, 0, strings.NewReader("x"), -1); err == nil {
		t.Error("WriteAt of -1 bytes succeeded")
	}
}

func TestKeyWithSuffix(t *testing.T) {
	s, _ := newStore(t)
	k := key + ".sanitized"
	if err := s.WriteAt(context.Background(), k, 0, strings.NewReader("clean"), 5); err != nil {
		t.Fatalf("WriteAt(%s): %v", k, err)
	}
	checkContent(t, s, k, []byte("clean"))
	if _, err := s.Open(context.Background(), key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open of the bare data_id = %v, want ErrNotFound (a separate blob)", err)
	}
}

func TestOpenMissing(t *testing.T) {
	s, _ := newStore(t)
	if _, err := s.Open(context.Background(), key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of a missing key = %v, want ErrNotFound", err)
	}
}

func TestDelete(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete of a missing key = %v, want nil", err)
	}
	if err := s.WriteAt(ctx, key, 0, strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Open(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
}

func TestBadKeys(t *testing.T) {
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
		key + "." + strings.Repeat("a", 17),
		key + "\n",
		"/" + key[1:],
	}
	s, root := newStore(t)
	outside := filepath.Dir(root)
	ctx := context.Background()
	for _, k := range bad {
		if ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
		if err := s.WriteAt(ctx, k, 0, strings.NewReader("x"), 1); !errors.Is(err, ErrBadKey) {
			t.Errorf("WriteAt(%q) = %v, want ErrBadKey", k, err)
		}
		if _, err := s.Open(ctx, k); !errors.Is(err, ErrBadKey) {
			t.Errorf("Open(%q) = %v, want ErrBadKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, ErrBadKey) {
			t.Errorf("Delete(%q) = %v, want ErrBadKey", k, err)
		}
	}
	// Nothing was created: not in the root, not beside it.
	var created []string
	filepath.WalkDir(outside, func(p string, d fs.DirEntry, err error) error {
		if p != outside && p != root {
			created = append(created, p)
		}
		return err
	})
	if len(created) > 0 {
		t.Errorf("bad keys created files: %v", created)
	}
}

func TestValidKey(t *testing.T) {
	for _, k := range []string{key, key + ".sanitized", key + ".a", key + "." + strings.Repeat("z", 16)} {
		if !ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
}

// A reader that cancels the context after its first read, standing in for
// a client that hangs up mid-upload.
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

func TestWriteAtStopsOnCancelledContext(t *testing.T) {
	s, _ := newStore(t)

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
		const n = 64 << 20 // far more than one copy buffer
		err := s.WriteAt(ctx, key, 0, r, n)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WriteAt = %v, want context.Canceled", err)
		}
		if r.reads != 1 {
			t.Errorf("source read %d times after cancel, want 1", r.reads)
		}
	})
}

func TestFreeBytes(t *testing.T) {
	s, _ := newStore(t)
	var sr SpaceReporter = s
	free, err := sr.FreeBytes()
	if err != nil {
		t.Fatalf("FreeBytes: %v", err)
	}
	if free <= 0 {
		t.Errorf("FreeBytes = %d, want > 0", free)
	}
}

func TestNewFSCreatesRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b", "c")
	if _, err := NewFS(root); err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		t.Fatalf("root not created: %v", err)
	}
}

// FS satisfies Store.
var _ Store = (*FS)(nil)
