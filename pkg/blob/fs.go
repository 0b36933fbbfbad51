package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// FS keeps one sparse file per key under a root directory. A part is
// written at its own offset, so a finished multipart upload already is the
// assembled file: no copy, no concatenation.
type FS struct {
	root string
}

// NewFS returns a store rooted at dir, creating it if needed.
func NewFS(dir string) (*FS, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("blob fs: %w", err)
	}
	return &FS{root: dir}, nil
}

// path shards keys over 256 directories so no directory grows huge.
func (s *FS) path(key string) string { return filepath.Join(s.root, key[:2], key) }

// Copy buffers: large writes use large buffers (fewer system calls); small
// ones small buffers, since a buffer is held for as long as its client
// takes to send the bytes, and a thousand slow small uploads must not pin
// a quarter of a MiB each.
var (
	copyBufs      = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
	smallCopyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
)

// smallWrite is the size below which a write uses a small buffer.
const smallWrite = 1 << 20

func (s *FS) WriteAt(ctx context.Context, key string, off int64, r io.Reader, n int64) error {
	if !ValidKey(key) {
		return ErrBadKey
	}
	if off < 0 || n < 0 {
		return fmt.Errorf("blob fs: negative range %d+%d", off, n)
	}
	p := s.path(key)
	f, created, err := s.open(p)
	if err != nil {
		return fmt.Errorf("blob fs: %w", err)
	}
	defer f.Close()
	pool := &copyBufs
	if n < smallWrite {
		pool = &smallCopyBufs
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	w := newWriteBehind(f, off)
	copied, err := io.CopyBuffer(w, io.LimitReader(ctxReader{ctx, r}, n), *bp)
	if err != nil {
		return fmt.Errorf("blob fs: write %s: %w", key, err)
	}
	if copied != n {
		return io.ErrUnexpectedEOF
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blob fs: sync %s: %w", key, err)
	}
	// A new file's name lives in its directory: sync that too, or the
	// fsynced bytes could be unreachable after a power loss.
	if created {
		if err := syncDir(filepath.Dir(p)); err != nil {
			return fmt.Errorf("blob fs: sync dir of %s: %w", key, err)
		}
	}
	return nil
}

// open opens the blob file for writing, creating it (and its shard
// directory, durably) when needed; created reports a new file.
func (s *FS) open(p string) (f *os.File, created bool, err error) {
	f, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err == nil {
		return f, true, nil
	}
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(p, os.O_WRONLY, 0o640)
		return f, false, err
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	dir := filepath.Dir(p)
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, false, err
	}
	if err := syncDir(s.root); err != nil {
		return nil, false, err
	}
	f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o640)
	return f, err == nil, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *FS) Open(_ context.Context, key string) (Object, error) {
	if !ValidKey(key) {
		return nil, ErrBadKey
	}
	f, err := os.Open(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		// No file of its own: a concatenation of parts (Concat), if any.
		// Only a missing file costs this second look.
		return s.openConcat(key)
	}
	if err != nil {
		return nil, fmt.Errorf("blob fs: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob fs: %w", err)
	}
	return &fsObject{File: f, size: st.Size()}, nil
}

func (s *FS) Delete(_ context.Context, key string) error {
	if !ValidKey(key) {
		return ErrBadKey
	}
	err := os.Remove(s.path(key))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob fs: %w", err)
	}
	return s.deleteConcat(key)
}

// List walks the shard directories. A file's modification time is its
// last write: every WriteAt writes through the file.
func (s *FS) List(ctx context.Context, fn func(Info) error) error {
	shards, err := os.ReadDir(s.root)
	if err != nil {
		return fmt.Errorf("blob fs: list: %w", err)
	}
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := os.ReadDir(filepath.Join(s.root, sh.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("blob fs: list: %w", err)
		}
		for _, e := range entries {
			key := e.Name()
			if strings.HasSuffix(key, manifestSuffix) && e.Type().IsRegular() {
				if err := s.listConcat(filepath.Join(s.root, sh.Name()), key, fn); err != nil {
					return err
				}
				continue
			}
			// Only what WriteAt creates: anything else in the tree is
			// not a blob (and not ours to report, or to delete).
			if !ValidKey(key) || key[:2] != sh.Name() || !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since the directory was read
			}
			if err != nil {
				return fmt.Errorf("blob fs: list: %w", err)
			}
			if err := fn(Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// FreeBytes is the space available to an unprivileged writer on the store's disk.
func (s *FS) FreeBytes() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.root, &st); err != nil {
		return 0, fmt.Errorf("blob fs: statfs: %w", err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

type fsObject struct {
	*os.File
	size int64
}

func (o *fsObject) Size() int64 { return o.size }

// ctxReader stops a copy when its context ends (a cancelled upload, a
// server shutting down) instead of waiting for the client.
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

// FS satisfies Store and Lister.
var (
	_ Store  = (*FS)(nil)
	_ Lister = (*FS)(nil)
)
