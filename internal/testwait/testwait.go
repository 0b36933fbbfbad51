// Package testwait is how scangate's tests wait for something they can
// observe (a KV entry, a consumer's count, a probe's answer): they look
// again until it holds or a deadline passes. It is the one place a test
// pauses, and the pause only spaces the looks: what a test asserts is the
// condition, never how long it took, so a slow machine makes a test slower,
// never wrong.
package testwait

import "time"

// Every paces the looks.
const Every = 10 * time.Millisecond

// Until reports whether cond held within timeout, looking every Every. The
// caller fails the test with its own words when it did not.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(Every)
	}
	return true
}
