package archive

// Test-only writers: zip with ZipCrypto / WinZip AES encryption and RAR 5
// (stored files, optional AES-256 file and header encryption). Every test
// input is built here, in Go, at test time.

import (
	"archive/zip"
	"bytes"
	"cmp"
	"compress/flate"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"testing"
)

// zentry describes one zip entry to write.
type zentry struct {
	name   string
	data   []byte
	method uint16      // zip.Store, zip.Deflate, or any registered method
	mode   fs.FileMode // non-zero: SetMode (directories, symlinks)

	enc         string // "", "zipcrypto", "aes"
	password    string
	aesStrength byte   // 1, 2, 3 (default 3 = AES-256)
	aesVersion  uint16 // 1 = AE-1, 2 = AE-2 (default 2)
	descriptor  bool   // set flag bit 3 (ZipCrypto then checks the mod time byte)

	compressed []byte  // the compressed bytes, before encryption (any method)
	rawBody    []byte  // the compressed bytes as written (unencrypted entries: any method)
	crc        *uint32 // overrides the CRC-32 written
	tamper     func(body []byte)
}

var testModTime uint16 = 0x6b5d // an MS-DOS time

func compressDeflate(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	fw, err := flate.NewWriter(&b, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	fw.Close()
	return b.Bytes()
}

// makeZip writes a zip archive.
func makeZip(t testing.TB, entries []zentry, setup ...func(*zip.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range setup {
		f(zw)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, e := range entries {
		fh := &zip.FileHeader{Name: e.name, Method: e.method}
		if e.mode != 0 {
			fh.SetMode(e.mode)
		}
		if e.enc == "" && e.rawBody == nil && e.crc == nil {
			w, err := zw.CreateHeader(fh)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(e.data)
			continue
		}
		crc := crc32.ChecksumIEEE(e.data)
		var comp []byte
		switch {
		case e.rawBody != nil && e.enc == "":
		case e.compressed != nil:
			comp = e.compressed
		case e.method == zip.Store:
			comp = bytes.Clone(e.data)
		case e.method == zip.Deflate:
			comp = compressDeflate(t, e.data)
		default:
			t.Fatalf("test writer: method %d", e.method)
		}
		fh.ModifiedTime, fh.ModifiedDate = testModTime, 0x5821
		fh.UncompressedSize64 = uint64(len(e.data))
		switch e.enc {
		case "zipcrypto":
			fh.Flags |= 1
			check := byte(crc >> 24)
			if e.descriptor {
				fh.Flags |= 8
				check = byte(testModTime >> 8)
			}
			hdr := make([]byte, 12)
			for i := range 11 {
				hdr[i] = byte(rng.Uint32())
			}
			hdr[11] = check
			body := append(hdr, comp...)
			newZipCryptoKeys(e.password).encrypt(body)
			comp = body
		case "aes":
			fh.Flags |= 1
			strength, version := e.aesStrength, e.aesVersion
			if strength == 0 {
				strength = 3
			}
			if version == 0 {
				version = 2
			}
			ae := aesExtra{version: version, strength: strength, method: e.method}
			extra := make([]byte, 11)
			binary.LittleEndian.PutUint16(extra, aesExtraID)
			binary.LittleEndian.PutUint16(extra[2:], 7)
			binary.LittleEndian.PutUint16(extra[4:], version)
			copy(extra[6:], "AE")
			extra[8] = strength
			binary.LittleEndian.PutUint16(extra[9:], e.method)
			fh.Extra = extra
			fh.Method = zipAES
			if version == 2 {
				crc = 0
			}
			comp = winzipAESEncrypt(t, e.password, ae, comp, rng)
		}
		if e.crc != nil {
			crc = *e.crc
		}
		if e.rawBody != nil {
			comp = e.rawBody
		}
		if e.tamper != nil {
			e.tamper(comp)
		}
		fh.CRC32 = crc
		fh.CompressedSize64 = uint64(len(comp))
		w, err := zw.CreateRaw(fh)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(comp)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// winzipAESEncrypt returns salt | verifier | AES-CTR(data) | HMAC-SHA1[:10].
func winzipAESEncrypt(t testing.TB, pw string, ae aesExtra, data []byte, rng *rand.Rand) []byte {
	salt := make([]byte, ae.saltLen())
	for i := range salt {
		salt[i] = byte(rng.Uint32())
	}
	kl := ae.keyLen()
	dk, err := pbkdf2.Key(sha1.New, pw, salt, aesIterations, 2*kl+2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := aes.NewCipher(dk[:kl])
	ct := make([]byte, len(data))
	(&winzipCTR{b: b, used: aes.BlockSize}).XORKeyStream(ct, data)
	mac := hmac.New(sha1.New, dk[kl:2*kl])
	mac.Write(ct)
	out := append(append(salt, dk[2*kl:]...), ct...)
	return append(out, mac.Sum(nil)[:aesMACLen]...)
}

// RAR 5 writer (https://www.rarlab.com/technote.htm), stored files only.

type rarEntry struct {
	name     string
	data     []byte
	dir      bool
	password string // encrypt the data with AES-256 when set
	attr     uint64 // Unix mode (default 0o100644, or 0o40755 for dir)
	comp     uint64 // compression information (default 0: stored)
	unpacked uint64 // declared unpacked size (default len(data))
}

const rarTestKdf = 10 // log2 of PBKDF2 iterations (RAR uses 15; fewer keeps tests fast)

func rarVint(v uint64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, b|0x80)
			continue
		}
		return append(out, b)
	}
}

// rar5Keys mirrors RAR 5's PBKDF2-HMAC-SHA256 chain: the data key, the hash
// key and the 12-byte password check value.
func rar5Keys(pw string, salt []byte) (key, check []byte) {
	prf := hmac.New(sha256.New, []byte(pw))
	prf.Write(salt)
	prf.Write([]byte{0, 0, 0, 1})
	u := prf.Sum(nil)
	t := bytes.Clone(u)
	var keys [][]byte
	for _, iter := range []int{1<<rarTestKdf - 1, 16, 16} {
		for range iter {
			prf.Reset()
			prf.Write(u)
			u = prf.Sum(u[:0])
			for j := range u {
				t[j] ^= u[j]
			}
		}
		keys = append(keys, bytes.Clone(t))
	}
	pc := bytes.Clone(keys[2][:8])
	for i, v := range keys[2][8:] {
		pc[i&7] ^= v
	}
	sum := sha256.Sum256(pc)
	return keys[0], append(pc, sum[:4]...)
}

func aesCBC(key, iv, data []byte) []byte {
	b, _ := aes.NewCipher(key)
	out := make([]byte, (len(data)+15)/16*16)
	copy(out, data)
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, out)
	return out
}

// makeRar5 writes a RAR 5 archive; hdrPassword encrypts the headers too
// (rar -hp).
func makeRar5(t testing.TB, entries []rarEntry, hdrPassword string) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var out bytes.Buffer
	out.WriteString("Rar!\x1a\x07\x01\x00")
	block := func(body []byte) []byte {
		sized := append(rarVint(uint64(len(body))), body...)
		b := binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(sized))
		return append(b, sized...)
	}
	var hdrKey []byte
	writeHeader := func(body []byte) {
		b := block(body)
		if hdrKey != nil {
			iv := random(16)
			out.Write(iv)
			out.Write(aesCBC(hdrKey, iv, b))
			return
		}
		out.Write(b)
	}
	if hdrPassword != "" {
		salt := random(16)
		key, check := rar5Keys(hdrPassword, salt)
		body := append(rarVint(4), rarVint(0)...) // type 4 (encryption), flags
		body = append(body, rarVint(0)...)        // version
		body = append(body, rarVint(1)...)        // password check present
		body = append(body, rarTestKdf)
		body = append(body, salt...)
		body = append(body, check...)
		out.Write(block(body))
		hdrKey = key
	}
	// main archive header: type 1, no flags, archive flags 0
	writeHeader([]byte{1, 0, 0})
	for _, e := range entries {
		data := e.data
		var extra []byte
		if e.password != "" {
			salt, iv := random(16), random(16)
			key, check := rar5Keys(e.password, salt)
			rec := append(rarVint(1), rarVint(0)...) // type 1 (crypt), version 0
			rec = append(rec, rarVint(1)...)         // check present
			rec = append(rec, rarTestKdf)
			rec = append(append(append(rec, salt...), iv...), check...)
			extra = append(rarVint(uint64(len(rec))), rec...)
			data = aesCBC(key, iv, e.data)
		}
		hflags := uint64(0)
		if extra != nil {
			hflags |= 1
		}
		if !e.dir {
			hflags |= 2
		}
		body := append(rarVint(2), rarVint(hflags)...)
		if extra != nil {
			body = append(body, rarVint(uint64(len(extra)))...)
		}
		if !e.dir {
			body = append(body, rarVint(uint64(len(data)))...)
		}
		fflags, attr := uint64(4), uint64(0o100644)
		if e.dir {
			fflags, attr = 1, 0o40755
		}
		if e.attr != 0 {
			attr = e.attr
		}
		body = append(body, rarVint(fflags)...)
		body = append(body, rarVint(cmp.Or(e.unpacked, uint64(len(e.data))))...)
		body = append(body, rarVint(attr)...)
		if !e.dir {
			body = binary.LittleEndian.AppendUint32(body, crc32.ChecksumIEEE(e.data))
		}
		body = append(body, rarVint(e.comp)...)
		body = append(body, rarVint(1)...) // host OS: Unix
		body = append(body, rarVint(uint64(len(e.name)))...)
		body = append(body, e.name...)
		body = append(body, extra...)
		writeHeader(body)
		if !e.dir {
			out.Write(data)
		}
	}
	writeHeader([]byte{5, 0, 0}) // end of archive
	return out.Bytes()
}

// readAllLimited is io.ReadAll for tests, bounded.
func readAllLimited(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, 64<<20))
}
