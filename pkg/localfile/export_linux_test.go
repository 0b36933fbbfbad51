package localfile

// withoutOpenat2 runs f as on a kernel without openat2.
func withoutOpenat2(f func()) {
	was := noOpenat2.Swap(true)
	defer noOpenat2.Store(was)
	f()
}
