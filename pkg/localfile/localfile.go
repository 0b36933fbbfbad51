// Package localfile opens files on the server's own disk for scanning in
// place (the filepath header of POST /file), confined to the directories the
// operator allowed.
//
// The confinement is the kernel's, not string checks on a path that could
// change before it is opened: the path is resolved beneath an open handle on
// the allowed directory, every symbolic link is refused wherever it appears
// (one pointing inside as much as one pointing out: the path a client names
// is the file scanned, nothing else), and the file is opened once. Its type
// and size come from that same open file, so what was checked is what is
// read.
package localfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	// ErrNotAllowed: the path is not inside an allowed directory, climbs
	// with "..", passes a symbolic link, or scangate may not read it.
	ErrNotAllowed = errors.New("path is not allowed")
	// ErrNotFound: nothing is at the path.
	ErrNotFound = errors.New("no such file")
	// ErrNotRegular: the path names a directory, device, fifo or socket.
	ErrNotRegular = errors.New("not a regular file")
)

// Dirs are the directories whose files may be opened. A nil *Dirs allows
// nothing.
type Dirs struct {
	dirs []dir // longest path first, so the innermost directory matches
}

type dir struct {
	path string   // cleaned, as configured
	f    *os.File // the directory, opened once: paths resolve beneath it
}

// OpenDirs opens the allowed directories (absolute paths). None: nil, and
// every Open is refused. A directory that cannot be opened is an error: an
// operator who allowed a path wants to hear at start-up that it is wrong.
func OpenDirs(paths []string) (*Dirs, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	d := &Dirs{}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			d.Close()
			return nil, fmt.Errorf("allowed directory %q is not an absolute path", p)
		}
		p = filepath.Clean(p)
		// The configured path itself may pass symlinks (an operator's
		// /srv/scans -> /mnt/volume): that is trusted configuration.
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("allowed directory %s: %w", p, err)
		}
		d.dirs = append(d.dirs, dir{path: p, f: os.NewFile(uintptr(fd), p)})
	}
	slices.SortFunc(d.dirs, func(a, b dir) int { return len(b.path) - len(a.path) })
	return d, nil
}

// Enabled reports whether any directory is allowed.
func (d *Dirs) Enabled() bool { return d != nil && len(d.dirs) > 0 }

// Close releases the directories.
func (d *Dirs) Close() error {
	if d == nil {
		return nil
	}
	var errs []error
	for _, x := range d.dirs {
		errs = append(errs, x.f.Close())
	}
	d.dirs = nil
	return errors.Join(errs...)
}

// Open opens the regular file at the absolute path p for reading and
// returns it with its size. Errors wrap ErrNotAllowed, ErrNotFound or
// ErrNotRegular, or are the system's (an I/O error).
func (d *Dirs) Open(p string) (*os.File, int64, error) {
	if !d.Enabled() {
		return nil, 0, ErrNotAllowed
	}
	if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
		return nil, 0, fmt.Errorf("%w: not an absolute path", ErrNotAllowed)
	}
	// The kernel refuses a ".." that climbs out of the directory; one that
	// stays inside names a file by a detour, and is refused as well, so a
	// path is read exactly as it is written.
	if slices.Contains(strings.Split(p, "/"), "..") {
		return nil, 0, fmt.Errorf("%w: \"..\" in the path", ErrNotAllowed)
	}
	p = filepath.Clean(p) // only "." and repeated or trailing slashes go
	for _, x := range d.dirs {
		rel, ok := strings.CutPrefix(p, x.path)
		if !ok || rel != "" && rel[0] != '/' && x.path != "/" {
			continue
		}
		rel = strings.TrimLeft(rel, "/")
		if rel == "" {
			return nil, 0, fmt.Errorf("%w: an allowed directory itself", ErrNotRegular)
		}
		return openIn(int(x.f.Fd()), rel, p)
	}
	return nil, 0, fmt.Errorf("%w: outside the allowed directories", ErrNotAllowed)
}

// openFlags open a file for reading without side effects: O_NONBLOCK so
// that a fifo does not wait for a writer (it is refused after the fstat),
// O_NOCTTY so that a terminal does not become ours, O_NOFOLLOW so that the
// last component is never a symlink.
const openFlags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openIn opens rel beneath dirfd (openBeneath: the platform's way), then
// checks the open file: a regular file, whose size is returned.
func openIn(dirfd int, rel, name string) (*os.File, int64, error) {
	fd, err := openBeneath(dirfd, rel)
	if err != nil {
		return nil, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("fstat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, 0, ErrNotRegular
	}
	// Blocking reads from here on: O_NONBLOCK was for the open alone.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), st.Size, nil
}

// openWalk opens rel beneath dirfd one component at a time, each with
// O_NOFOLLOW relative to the directory opened just before: a symlink
// anywhere fails its own step, and no step can leave the directory (".."
// is refused). It needs nothing newer than openat, so it is what
// runs where openat2 is missing.
func openWalk(dirfd int, rel string) (int, error) {
	var parts []string
	for part := range strings.SplitSeq(rel, "/") {
		switch part {
		case "", ".":
		case "..":
			// Open refuses it first; the walk holds on its own too.
			return -1, fmt.Errorf("%w: \"..\" in the path", ErrNotAllowed)
		default:
			parts = append(parts, part)
		}
	}
	if len(parts) == 0 {
		return -1, ErrNotRegular
	}
	cur := dirfd
	for _, part := range parts[:len(parts)-1] {
		fd, err := openat(cur, part, dirFlags|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			err = classify(cur, part, err)
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	last := parts[len(parts)-1]
	fd, err := openat(cur, last, openFlags)
	if err != nil {
		err = classify(cur, last, err)
	}
	if cur != dirfd {
		unix.Close(cur)
	}
	return fd, err
}

func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// classify turns an open's error into one of the package's. Whether the
// step was a symlink is looked up again only to word the error: the open
// itself already refused it.
func classify(dirfd int, name string, err error) error {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%w: a symbolic link in the path", ErrNotAllowed)
	}
	return mapErrno(err)
}

// mapErrno maps what open says to the package's errors.
func mapErrno(err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EMLINK):
		return fmt.Errorf("%w: a symbolic link in the path", ErrNotAllowed)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: resolves outside the allowed directory", ErrNotAllowed)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w: permission denied", ErrNotAllowed)
	case errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w: %w", ErrNotRegular, err) // a socket, or a device without a driver
	}
	return err
}
