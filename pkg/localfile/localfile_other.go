//go:build unix && !linux

package localfile

import "golang.org/x/sys/unix"

// dirFlags open the directories of a path in openWalk.
const dirFlags = unix.O_RDONLY

// openBeneath opens rel beneath dirfd one component at a time (openWalk):
// openat2 is Linux's.
func openBeneath(dirfd int, rel string) (int, error) { return openWalk(dirfd, rel) }
