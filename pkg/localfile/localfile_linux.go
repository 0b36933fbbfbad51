package localfile

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// dirFlags open the directories of a path in openWalk: O_PATH needs only
// search permission, as resolving a path does.
const dirFlags = unix.O_PATH

// noOpenat2 is set once openat2 turns out to be missing (Linux before 5.6,
// or a seccomp profile that answers ENOSYS for it).
var noOpenat2 atomic.Bool

// openBeneath opens rel beneath dirfd with openat2: RESOLVE_BENEATH makes
// the kernel refuse any resolution that leaves dirfd (an absolute path, a
// "..", a symlink pointing out), RESOLVE_NO_SYMLINKS refuses every symlink
// on the way, and RESOLVE_NO_MAGICLINKS the /proc kind. Where openat2 is
// unavailable, openWalk gives the same answers one component at a time.
func openBeneath(dirfd int, rel string) (int, error) {
	if !noOpenat2.Load() {
		how := &unix.OpenHow{
			Flags:   openFlags,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		}
		for attempt := 0; ; attempt++ {
			fd, err := unix.Openat2(dirfd, rel, how)
			switch {
			case err == nil:
				return fd, nil
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN && attempt < 3:
				// A rename raced the resolution; the kernel asks to retry.
				continue
			case err == unix.ENOSYS:
				noOpenat2.Store(true)
				return openWalk(dirfd, rel)
			case err == unix.EPERM:
				// A seccomp profile that forbids openat2 says EPERM, which
				// a real refusal may say too: the walk gives the answer.
				return openWalk(dirfd, rel)
			default:
				return -1, mapErrno(err)
			}
		}
	}
	return openWalk(dirfd, rel)
}
