package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/blob/storetest"
)

const key = "0123456789abcdef0123456789abcdef"

func newFS(t *testing.T) (*blob.FS, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "blobs")
	s, err := blob.NewFS(root)
	if err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	return s, root
}

func TestFSConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) blob.Store {
		s, _ := newFS(t)
		return s
	}, storetest.Options{ReportsGaps: false})
}

func readAll(t *testing.T, s blob.Store, k string) []byte {
	t.Helper()
	obj, err := s.Open(context.Background(), k)
	if err != nil {
		t.Fatalf("Open(%s): %v", k, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("ReadAll(%s): %v", k, err)
	}
	return b
}

// The fs store writes bytes in place: of overlapping parts with different
// bytes, the last write wins. (The JetStream store keeps the part with the
// earlier offset; parts of one file carry the same bytes, so the roles never
// see the difference.)
func TestFSOverlapLastWriteWins(t *testing.T) {
	s, _ := newFS(t)
	ctx := context.Background()
	if err := s.WriteAt(ctx, key, 0, strings.NewReader("aaaaaaaaaa"), 10); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(ctx, key, 3, strings.NewReader("BBBB"), 4); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, key); string(got) != "aaaBBBBaaa" {
		t.Errorf("content = %q, want aaaBBBBaaa", got)
	}
}

// One sparse file per key: a part far out allocates only its own blocks,
// and a hole reads as zeros (the fs store cannot report gaps).
func TestFSSparseFile(t *testing.T) {
	s, root := newFS(t)
	const off = 64 << 20
	if err := s.WriteAt(context.Background(), key, off, strings.NewReader("tail"), 4); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, key[:2], key)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != off+4 {
		t.Errorf("file size = %d, want %d", fi.Size(), off+4)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks*512 >= off/2 {
		t.Errorf("file allocates %d bytes for 4 bytes written at %d: not sparse", st.Blocks*512, off)
	}
	obj, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	buf := make([]byte, 8)
	if _, err := obj.ReadAt(buf, off-4); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, []byte("\x00\x00\x00\x00tail")) {
		t.Errorf("bytes around the part = %q, want a hole of zeros then tail", buf)
	}
}

// Keys shard over directories named by their first two characters.
func TestFSLayout(t *testing.T) {
	s, root := newFS(t)
	k := key + ".sanitized"
	if err := s.WriteAt(context.Background(), k, 0, strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "01", k)); err != nil {
		t.Errorf("blob not at <root>/01/<key>: %v", err)
	}
	if err := s.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "01", k)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file still there after Delete: %v", err)
	}
}

// Bad keys never reach the file system: nothing created in the root or
// beside it.
func TestFSBadKeysCreateNothing(t *testing.T) {
	s, root := newFS(t)
	outside := filepath.Dir(root)
	ctx := context.Background()
	for _, k := range []string{"../x", "../" + key, key + "/x", key[:16] + "/" + key[17:], "/" + key[1:], ""} {
		s.WriteAt(ctx, k, 0, strings.NewReader("x"), 1)
		s.Open(ctx, k)
		s.Delete(ctx, k)
	}
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
	for _, k := range []string{key, key + ".sanitized", key + ".a", key + ".5", key + "." + strings.Repeat("z", 16)} {
		if !blob.ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
}

func TestFreeBytes(t *testing.T) {
	s, _ := newFS(t)
	var sr blob.SpaceReporter = s
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
	if _, err := blob.NewFS(root); err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		t.Fatalf("root not created: %v", err)
	}
}

// FS satisfies Store.
var _ blob.Store = (*blob.FS)(nil)

// A write longer than the write-behind window, at an offset that is not
// page aligned and beside bytes already stored, lands exactly: starting
// writeback early must neither skip nor shift bytes.
func TestFSLargeWriteAtOffset(t *testing.T) {
	s, _ := newFS(t)
	ctx := context.Background()
	head := bytes.Repeat([]byte{0xAA}, 5000)
	if err := s.WriteAt(ctx, key, 0, bytes.NewReader(head), int64(len(head))); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3*(8<<20)+12345)
	for i := range big {
		big[i] = byte(i*31 + i>>13)
	}
	// A reader that returns short, odd-sized reads, as a network body does.
	r := io.LimitReader(&oddReader{b: big}, int64(len(big)))
	if err := s.WriteAt(ctx, key, int64(len(head)), r, int64(len(big))); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s, key)
	if want := append(bytes.Clone(head), big...); !bytes.Equal(got, want) {
		t.Fatalf("stored %d bytes differ from the %d written", len(got), len(want))
	}
}

type oddReader struct {
	b []byte
	n int
}

func (r *oddReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	r.n++
	k := min(len(p), len(r.b), 1000+r.n*7919%300000)
	copy(p, r.b[:k])
	r.b = r.b[k:]
	return k, nil
}

// A concatenation of more parts than it keeps open reads right from many
// goroutines at once, and a part that changed size after Concat makes Open
// fail rather than shift every byte after it.
func TestFSConcatManyPartsConcurrently(t *testing.T) {
	s, root := newFS(t)
	ctx := context.Background()
	var want []byte
	var parts []string
	for i := range 20 {
		data := bytes.Repeat([]byte{byte('a' + i)}, 1000+i)
		pk := blob.PartKey(key, i+1, "00000000")
		if err := s.WriteAt(ctx, pk, 0, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		want = append(want, data...)
		parts = append(parts, pk)
	}
	if err := s.Concat(ctx, key, parts); err != nil {
		t.Fatal(err)
	}
	obj, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			buf := make([]byte, 777)
			for off := int64(g * 97); off < int64(len(want)); off += 1313 {
				n, err := obj.ReadAt(buf, off)
				if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == int64(len(want))) {
					t.Errorf("ReadAt(%d): %v", off, err)
					return
				}
				if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
					t.Errorf("ReadAt(%d): wrong bytes", off)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := obj.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := obj.ReadAt(make([]byte, 1), 0); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("ReadAt after Close = %v, want fs.ErrClosed", err)
	}

	p := filepath.Join(root, key[:2], parts[3])
	if err := os.Truncate(p, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, key); err == nil || errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open with a part cut short = %v, want an error naming it", err)
	}
}
