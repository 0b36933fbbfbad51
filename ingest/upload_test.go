package ingest

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/scangate/scangate/pkg/hashing"
)

// behindAfter is a hashing.Multi that reports itself behind once it has
// taken n bytes: on a loaded machine whether the real one falls behind is
// a matter of timing, and this test is about what happens when it does.
type behindAfter struct {
	*hashing.Multi
	n int64
}

func (b behindAfter) Behind() bool { return b.Len() >= b.n }

// An upload that arrives faster than the digests run stops feeding them
// and hands their state on; hashing the rest from that state (what the
// scanner does) gives the digests of the whole file.
func TestHashingHandedOnWhenBehind(t *testing.T) {
	data := make([]byte, 8<<20)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < len(data); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	h := hashing.New()
	defer h.Close()
	hw := &handoffHasher{h: behindAfter{h, 3 << 20}}
	sink := struct{ io.Writer }{io.Discard} // no ReadFrom: the copy goes through the 256 KiB buffer
	if _, err := io.CopyBuffer(sink, io.TeeReader(bytes.NewReader(data), hw), make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	if !hw.stopped || hw.hashed != 3<<20 {
		t.Fatalf("stopped %v after %d bytes, want a hand-off after 3 MiB", hw.stopped, hw.hashed)
	}
	rest, err := hashing.Restore(hw.state)
	if err != nil {
		t.Fatal(err)
	}
	defer rest.Close()
	rest.Write(data[hw.hashed:])
	got := rest.Sums()
	md, s1, s256, s512 := md5.Sum(data), sha1.Sum(data), sha256.Sum256(data), sha512.Sum512(data)
	if got.MD5 != hex.EncodeToString(md[:]) || got.SHA1 != hex.EncodeToString(s1[:]) ||
		got.SHA256 != hex.EncodeToString(s256[:]) || got.SHA512 != hex.EncodeToString(s512[:]) {
		t.Errorf("digests from the handed-on state differ from the file's")
	}
}
