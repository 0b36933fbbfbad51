//go:build unix && !linux

package localfile

// withoutOpenat2 runs f: every open walks where there is no openat2.
func withoutOpenat2(f func()) { f() }
