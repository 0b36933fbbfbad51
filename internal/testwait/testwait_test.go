package testwait

import (
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	n := 0
	if !Until(time.Second, func() bool { n++; return n == 3 }) || n != 3 {
		t.Errorf("Until stopped after %d looks, want 3 and true", n)
	}
	if Until(30*time.Millisecond, func() bool { return false }) {
		t.Error("Until reported a condition that never held")
	}
}
