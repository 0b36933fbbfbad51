package blob

import "os"

// writeBehindWindow is how many written bytes may sit in the page cache
// before the kernel is asked to start writing them out.
const writeBehindWindow = 8 << 20

// writeBehind writes at increasing offsets of f and, every
// writeBehindWindow bytes, starts the disk writing what it was given.
// Without it a large upload sits in the page cache (the kernel's own
// writeback starts only at a share of RAM, gigabytes on a big host) until
// the final fsync, which then writes all of it while the client waits: the
// disk idles while the bytes arrive and the network idles while they are
// written. Started early, the final fsync has only the last window left.
// Durability still comes from that fsync alone.
type writeBehind struct {
	f              *os.File
	off, unflushed int64
}

func newWriteBehind(f *os.File, off int64) *writeBehind {
	return &writeBehind{f: f, off: off, unflushed: off}
}

func (w *writeBehind) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	if w.off-w.unflushed >= writeBehindWindow {
		startWriteback(w.f, w.unflushed, w.off-w.unflushed)
		w.unflushed = w.off
	}
	return n, err
}
