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

// An upload that arrives faster than the digests run stops feeding them
// and hands their state on; hashing the rest from that state (what the
// scanner does) gives the digests of the whole file.
func TestHashingHandedOnWhenBehind(t *testing.T) {
	data := make([]byte, 96<<20)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < len(data); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	h := hashing.New()
	defer h.Close()
	hw := &handoffHasher{h: h}
	// 256 KiB writes, as the blob store's copy buffer makes them: a copy
	// is far quicker than sha512 of it, so the digests fall behind.
	sink := struct{ io.Writer }{io.Discard} // no ReadFrom: the copy goes through the 256 KiB buffer
	if _, err := io.CopyBuffer(sink, io.TeeReader(bytes.NewReader(data), hw), make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	if !hw.stopped {
		t.Fatal("the digests kept up with 96 MiB of copying; nothing was handed on")
	}
	if hw.hashed <= 0 || hw.hashed >= int64(len(data)) {
		t.Fatalf("handed on after %d of %d bytes", hw.hashed, len(data))
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
