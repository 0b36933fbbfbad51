package archive

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/scangate/scangate/scanner/archive/archivetest"
)

// A 7z coder that declares a huge dictionary (or PPMd model) is refused
// before anything that size is allocated, whether it decodes a file or the
// archive's own header.
func Test7zDictionaryOverBudget(t *testing.T) {
	const budget = 64 << 20
	bomb := func(id, props []byte, size uint64, packed []byte, hdr bool) []byte {
		return archivetest.SevenZip("bomb.bin", id, props, size, packed, hdr)
	}
	lzma2 := []byte{archivetest.LZMA2Dict3GiB}
	tests := []struct {
		name string
		data []byte
	}{
		{"lzma2 file", bomb(archivetest.LZMA2, lzma2, 3<<30, []byte{0}, false)},
		{"lzma2 header", bomb(archivetest.LZMA2, lzma2, 3<<30, []byte{0}, true)},
		{"lzma file", bomb(archivetest.LZMA, archivetest.LZMAProps(1<<30), 1<<30, make([]byte, 16), false)},
		{"ppmd file", bomb(archivetest.PPMd, archivetest.PPMdProps(6, 1<<30), 1<<30, make([]byte, 16), false)},
		// A zstd frame declaring a 1 GiB window, then an empty last block.
		{"zstd file", bomb(archivetest.Zstd, nil, 1<<30, []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa0, 0x01, 0x00, 0x00}, false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			o := walkBytes(t, Kind7z, tt.data, Options{MaxDictSize: budget})
			runtime.ReadMemStats(&after)
			err := o.err
			if err == nil && len(o.errs) == 1 {
				err = o.errs[0].err
			}
			if !errors.Is(err, ErrMemoryBudget) {
				t.Errorf("walk error %v, entry errors %v; want one ErrMemoryBudget", o.err, o.errs)
			}
			for _, e := range o.entries {
				if e.data != "" {
					t.Errorf("entry %s delivered %d bytes", e.name, len(e.data))
				}
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 2*budget {
				t.Errorf("walk allocated %d MiB, budget %d MiB", d>>20, budget>>20)
			}
		})
	}
}

// An encrypted 7z folder whose decoder is over the budget is reported as
// such, not as a password that does not work; the folders within the
// budget open with the password.
func Test7zEncryptedOverBudget(t *testing.T) {
	o := walkBytes(t, Kind7z, fixture(t, "enc_blocks.7z"), Options{Passwords: []string{"infected"}, MaxDictSize: 8 << 10})
	if o.err != nil || len(o.errs) == 0 || len(o.entries) == 0 {
		t.Fatalf("walk error %v, entry errors %v, entries %q; want some of each", o.err, o.errs, o.names())
	}
	for _, e := range o.errs {
		if !errors.Is(e.err, ErrMemoryBudget) || errors.Is(e.err, ErrEncrypted) {
			t.Errorf("%s: %v, want ErrMemoryBudget", e.name, e.err)
		}
	}
	for _, e := range o.entries {
		if e.readErr != nil || !strings.HasPrefix(e.data, "file ") {
			t.Errorf("%s: %.20q, %v", e.name, e.data, e.readErr)
		}
	}
}

// A RAR entry whose dictionary is over the budget is refused with
// ErrMemoryBudget, encrypted or not (not as a password that fails). The
// RAR reader refuses it while moving to the entry, so a plain one ends
// the walk.
func TestRarDictionaryOverBudget(t *testing.T) {
	// RAR 5 compression information: method 3 and a 4 GiB dictionary, for
	// a declared 4 GiB of output.
	plain := rarEntry{name: "plain.bin", data: []byte("data"), comp: 3<<7 | 15<<10, unpacked: 4 << 30}
	enc := plain
	enc.name, enc.password = "enc.bin", "infected"
	for _, e := range []rarEntry{plain, enc} {
		o := walkBytes(t, KindRar, makeRar5(t, []rarEntry{e}, ""), Options{Passwords: []string{"infected"}, MaxDictSize: 16 << 20})
		err := o.err
		if err == nil && len(o.errs) == 1 {
			err = o.errs[0].err
		}
		if !errors.Is(err, ErrMemoryBudget) || errors.Is(err, ErrEncrypted) || len(o.entries) != 0 {
			t.Errorf("%s: walk error %v, entry errors %v, entries %q; want one ErrMemoryBudget", e.name, o.err, o.errs, o.names())
		}
	}
}

// A ZipCrypto entry whose zstd window is over the budget is refused with
// ErrMemoryBudget, not as a password that fails the CRC.
func TestZipCryptoWindowOverBudget(t *testing.T) {
	data := bytes.Repeat([]byte("zstd window "), 1<<17)
	var frame bytes.Buffer
	zw, _ := zstd.NewWriter(&frame, zstd.WithWindowSize(8<<20), zstd.WithSingleSegment(false))
	zw.Write(data)
	zw.Close()
	z := makeZip(t, []zentry{{name: "a", data: data, method: zipZstd, enc: "zipcrypto", password: "pw", compressed: frame.Bytes()}})
	o := walkBytes(t, KindZip, z, Options{Passwords: []string{"pw"}, MaxDictSize: 1 << 20})
	if o.err != nil || len(o.errs) != 1 || !errors.Is(o.errs[0].err, ErrMemoryBudget) || errors.Is(o.errs[0].err, ErrEncrypted) {
		t.Errorf("walk error %v, entry errors %v; want ErrMemoryBudget", o.err, o.errs)
	}
	// Within the budget, the password opens it.
	o = walkBytes(t, KindZip, z, Options{Passwords: []string{"pw"}, MaxDictSize: 8 << 20})
	wantContent(t, o, "a", string(data))
}

// The 7z methods whose decoders are capped still decode. A dictionary
// declared far above the budget is no obstacle when the content is small:
// no decoder needs a dictionary larger than what it writes.
func Test7zMethodsWithinBudget(t *testing.T) {
	payload := bytes.Repeat([]byte("seven zip method "), 500)
	var classic bytes.Buffer // properties (lc=3 lp=0 pb=2, dictionary), size, stream
	lw, err := lzma.WriterConfig{DictCap: 1 << 20, Size: int64(len(payload))}.NewWriter(&classic)
	if err != nil {
		t.Fatal(err)
	}
	lw.Write(payload)
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	var lzma2 bytes.Buffer
	l2w, err := lzma.Writer2Config{DictCap: 1 << 20}.NewWriter2(&lzma2)
	if err != nil {
		t.Fatal(err)
	}
	l2w.Write(payload)
	if err := l2w.Close(); err != nil {
		t.Fatal(err)
	}
	// PPMd has no Go encoder: this stream (order 7, 64 KiB model) is the
	// test data of github.com/stangelandcl/ppmd (MIT).
	ppmdText := "PPMD variant H with 7-zip extensions decompressor for go.\nPPMD7 in 7-zip source code.\n" +
		"Ported to go from C# SharpCompress https://github.com/adamhathcock/sharpcompress\n"
	ppmdStream, _ := hex.DecodeString("005001e2de412208822be4cd546b1b6367a4c13d31a177577b91d54d75d248d4b9c0" +
		"e7857d4fe73bab4c55863c511f860c5fb67ba0227c0ad31f1b0e852a78d607de7b3337db8324fcc708d05db711294a" +
		"130cb7bf7784959d7cbdb42ad03a8abaadc54da83ea5eed5c6ea1b8f683cd0015eabbbe2524800")

	tests := []struct {
		name   string
		id     []byte
		props  []byte
		want   string
		packed []byte
	}{
		{"lzma", archivetest.LZMA, archivetest.LZMAProps(3 << 30), string(payload), classic.Bytes()[13:]},
		{"lzma2", archivetest.LZMA2, []byte{archivetest.LZMA2Dict3GiB}, string(payload), lzma2.Bytes()},
		{"zstd", archivetest.Zstd, nil, string(payload), zstdBytes(t, payload)},
		{"ppmd", archivetest.PPMd, archivetest.PPMdProps(7, 64<<10), ppmdText, ppmdStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := archivetest.SevenZip("a.txt", tt.id, tt.props, uint64(len(tt.want)), tt.packed, false)
			o := walkBytes(t, Kind7z, data, Options{MaxDictSize: 16 << 20})
			if o.err != nil || len(o.errs) != 0 {
				t.Fatal(o.err, o.errs)
			}
			wantContent(t, o, "a.txt", tt.want)
		})
	}
}

// xzWithDict returns the xz stream s with its first block header asking
// for the dictionary of LZMA2 property byte prop.
func xzWithDict(t *testing.T, s []byte, prop byte) []byte {
	t.Helper()
	s = bytes.Clone(s)
	hdr := s[12 : 12+(int(s[12])+1)*4]
	i := bytes.Index(hdr, []byte{0x21, 0x01}) // LZMA2 filter, one property byte
	if i < 0 {
		t.Fatal("no LZMA2 filter in the block header")
	}
	hdr[i+2] = prop
	binary.LittleEndian.PutUint32(hdr[len(hdr)-4:], crc32.ChecksumIEEE(hdr[:len(hdr)-4]))
	return s
}

// Every block of an xz file is held to the budget, not just the first: a
// later block, here the first of a second concatenated stream, asking for
// a 4 GiB dictionary ends the entry with ErrMemoryBudget, unallocated.
func TestXzLaterBlockOverBudget(t *testing.T) {
	const budget = 16 << 20
	payload := bytes.Repeat([]byte("xz block "), 2000)
	var multi bytes.Buffer // small blocks, then stream padding and a second stream
	xw, err := xz.WriterConfig{DictCap: 1 << 20, BlockSize: 4 << 10}.NewWriter(&multi)
	if err != nil {
		t.Fatal(err)
	}
	xw.Write(payload)
	if err := xw.Close(); err != nil {
		t.Fatal(err)
	}
	one := bytes.Clone(multi.Bytes())
	multi.Write(make([]byte, 8))
	multi.Write(one)
	o := walkBytes(t, KindXz, multi.Bytes(), Options{Name: "a.xz", MaxDictSize: budget})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatal(o.err, o.errs)
	}
	wantContent(t, o, "a", string(payload)+string(payload))

	hostile := append(bytes.Clone(one), xzWithDict(t, one, 40)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	o = walkBytes(t, KindXz, hostile, Options{Name: "b.xz", MaxDictSize: budget})
	runtime.ReadMemStats(&after)
	if o.err != nil || len(o.errs) != 1 || !errors.Is(o.errs[0].err, ErrMemoryBudget) {
		t.Errorf("walk error %v, entry errors %v; want ErrMemoryBudget for the entry", o.err, o.errs)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 2*budget {
		t.Errorf("walk allocated %d MiB, budget %d MiB", d>>20, budget>>20)
	}
}
