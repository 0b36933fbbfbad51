package blob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// A concatenated blob of the fs store is a manifest file beside where the
// blob's own file would be: "<key>.parts.json", naming its parts and their
// sizes in order. The name is not a valid key, so no WriteAt, Open or
// Delete of another key can reach it. The parts stay where they are: the
// file is read through them, never copied. (copy_file_range would copy on
// most file systems, a second write of every byte; only reflink-capable
// ones share extents.)

// manifestSuffix ends the name of a concatenation's manifest.
const manifestSuffix = ".parts.json"

type fsManifest struct {
	Parts []fsManifestPart `json:"parts"`
}

type fsManifestPart struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

func (s *FS) manifestPath(key string) string { return s.path(key) + manifestSuffix }

// Concat writes key's manifest: to a temporary file, fsynced, then renamed
// over any earlier one and the directory fsynced, so a crash leaves the
// old manifest or the new one, never half of one. A plain file at key goes
// once the manifest is in place.
func (s *FS) Concat(_ context.Context, key string, parts []string) error {
	if !ValidKey(key) {
		return ErrBadKey
	}
	m := fsManifest{Parts: make([]fsManifestPart, 0, len(parts))}
	for _, pk := range parts {
		if !ValidKey(pk) || pk == key {
			return ErrBadKey
		}
		fi, err := os.Stat(s.path(pk))
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob fs: concat %s: part %s: %w", key, pk, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("blob fs: concat %s: %w", key, err)
		}
		m.Parts = append(m.Parts, fsManifestPart{Key: pk, Size: fi.Size()})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	p := s.manifestPath(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return fmt.Errorf("blob fs: concat %s: %w", key, err)
	}
	tmp := p + ".tmp"
	if err := writeSynced(tmp, raw); err != nil {
		return fmt.Errorf("blob fs: concat %s: %w", key, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("blob fs: concat %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("blob fs: concat %s: sync dir: %w", key, err)
	}
	if err := os.Remove(s.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob fs: concat %s: %w", key, err)
	}
	return nil
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readManifest reads key's manifest; ErrNotFound when it has none.
func (s *FS) readManifest(key string) (*fsManifest, error) {
	raw, err := os.ReadFile(s.manifestPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("blob fs: %w", err)
	}
	var m fsManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("blob fs: manifest of %s: %w", key, err)
	}
	for _, p := range m.Parts {
		if !ValidKey(p.Key) || p.Size < 0 {
			return nil, fmt.Errorf("blob fs: manifest of %s names %q", key, p.Key)
		}
	}
	return &m, nil
}

// openConcat opens a concatenation. Every part must be there with the size
// the manifest gives it (a part that changed would shift every byte after
// it); the parts' files are opened as reads reach them.
func (s *FS) openConcat(key string) (Object, error) {
	m, err := s.readManifest(key)
	if err != nil {
		return nil, err
	}
	o := &fsConcat{handles: map[int]*fsHandle{}}
	for _, p := range m.Parts {
		fi, err := os.Stat(s.path(p.Key))
		if err != nil {
			return nil, fmt.Errorf("blob fs: %s: part %s: %w", key, p.Key, err)
		}
		if fi.Size() != p.Size {
			return nil, fmt.Errorf("blob fs: %s: part %s has %d bytes, the manifest %d", key, p.Key, fi.Size(), p.Size)
		}
		if p.Size == 0 {
			continue
		}
		o.parts = append(o.parts, fsPart{path: s.path(p.Key), off: o.size, size: p.Size})
		o.size += p.Size
	}
	return o, nil
}

// deleteConcat deletes the parts of key's manifest, then the manifest: a
// Delete cut short can be repeated, since the manifest still names what
// is left.
func (s *FS) deleteConcat(key string) error {
	m, err := s.readManifest(key)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, p := range m.Parts {
		if err := s.Delete(context.Background(), p.Key); err != nil {
			return err
		}
	}
	if err := os.Remove(s.manifestPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob fs: %w", err)
	}
	return nil
}

// listConcat reports the concatenation whose manifest is the file name in
// dir, if it is one: its length is the sum of its parts, its last write
// that of the manifest.
func (s *FS) listConcat(dir, name string, fn func(Info) error) error {
	key, ok := strings.CutSuffix(name, manifestSuffix)
	if !ok || !ValidKey(key) || key[:2] != filepath.Base(dir) {
		return nil
	}
	fi, err := os.Stat(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blob fs: list: %w", err)
	}
	m, err := s.readManifest(key)
	if errors.Is(err, ErrNotFound) {
		return nil // deleted since the directory was read
	}
	if err != nil {
		return err
	}
	var size int64
	for _, p := range m.Parts {
		size += p.Size
	}
	return fn(Info{Key: key, Size: size, ModTime: fi.ModTime()})
}

type fsPart struct {
	path      string
	off, size int64
}

// fsHandleCap bounds the part files a concatenation keeps open: reads in
// order need one at a time, and a file of a thousand parts must not hold
// a thousand descriptors.
const fsHandleCap = 8

type fsHandle struct {
	f    *os.File
	refs int
	used uint64 // when last acquired, for eviction
	dead bool   // evicted or closed while in use: closed at its last release
}

// fsConcat reads a concatenation's parts as one blob. ReadAt is safe for
// concurrent use, like an *os.File's.
type fsConcat struct {
	parts []fsPart
	size  int64

	mu      sync.Mutex
	handles map[int]*fsHandle
	tick    uint64
	closed  bool

	readMu sync.Mutex // Read's position
	pos    int64
}

func (o *fsConcat) Size() int64 { return o.size }

func (o *fsConcat) partAt(off int64) int {
	return sort.Search(len(o.parts), func(i int) bool { return o.parts[i].off+o.parts[i].size > off })
}

func (o *fsConcat) acquire(i int) (*fsHandle, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, fs.ErrClosed
	}
	h := o.handles[i]
	if h == nil {
		f, err := os.Open(o.parts[i].path)
		if err != nil {
			return nil, fmt.Errorf("blob fs: part of a concatenation: %w", err)
		}
		h = &fsHandle{f: f}
		o.handles[i] = h
		if len(o.handles) > fsHandleCap {
			o.evict(i)
		}
	}
	o.tick++
	h.refs++
	h.used = o.tick
	return h, nil
}

// evict closes the least recently used handle nobody is reading through
// (keep is the one just opened).
func (o *fsConcat) evict(keep int) {
	victim := -1
	for i, h := range o.handles {
		if i != keep && h.refs == 0 && (victim < 0 || h.used < o.handles[victim].used) {
			victim = i
		}
	}
	if victim >= 0 {
		o.handles[victim].f.Close()
		delete(o.handles, victim)
	}
}

func (o *fsConcat) release(h *fsHandle) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h.refs--
	if h.refs == 0 && h.dead {
		h.f.Close()
	}
}

// readPart fills p from part i at offset off within it.
func (o *fsConcat) readPart(i int, p []byte, off int64) (int, error) {
	h, err := o.acquire(i)
	if err != nil {
		return 0, err
	}
	defer o.release(h)
	n, err := h.f.ReadAt(p, off)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err == io.EOF {
		err = fmt.Errorf("blob fs: part %s ended early: %w", o.parts[i].path, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (o *fsConcat) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("blob fs: negative offset %d", off)
	}
	n := 0
	for n < len(p) && off < o.size {
		i := o.partAt(off)
		part := o.parts[i]
		want := min(int64(len(p)-n), part.off+part.size-off)
		k, err := o.readPart(i, p[n:n+int(want)], off-part.off)
		n += k
		off += int64(k)
		if err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Read reads from one part at a time (a short read at each part's end).
func (o *fsConcat) Read(p []byte) (int, error) {
	o.readMu.Lock()
	defer o.readMu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if o.pos >= o.size {
		return 0, io.EOF
	}
	i := o.partAt(o.pos)
	part := o.parts[i]
	want := min(int64(len(p)), part.off+part.size-o.pos)
	n, err := o.readPart(i, p[:want], o.pos-part.off)
	o.pos += int64(n)
	return n, err
}

func (o *fsConcat) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	for i, h := range o.handles {
		if h.refs == 0 {
			h.f.Close()
		} else {
			h.dead = true
		}
		delete(o.handles, i)
	}
	return nil
}

var _ Concatenator = (*FS)(nil)
