package e2e

import (
	"math/rand/v2"
	"testing"
)

// The benchmarks' generator adds a shift to every byte eight at a time;
// it must give exactly the bytes of adding it one byte at a time, or the
// uploads would not be the bytes their baselines hashed.
func TestAddToBytesMatchesByteLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 7, 8, 9, 64, 1000} {
		for _, k := range []byte{0, 1, 0x7f, 0x80, 0xff, byte(rng.Uint32())} {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			want := make([]byte, n)
			for i := range b {
				want[i] = b[i] + k
			}
			addToBytes(b, k)
			if string(b) != string(want) {
				t.Fatalf("n=%d k=%#x: got %x, want %x", n, k, b, want)
			}
		}
	}
}
