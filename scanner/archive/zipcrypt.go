package archive

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// Traditional PKWARE encryption ("ZipCrypto", APPNOTE 6.1).

const zipCryptoHeaderLen = 12

type zipCryptoKeys struct{ k0, k1, k2 uint32 }

func newZipCryptoKeys(pw string) *zipCryptoKeys {
	k := &zipCryptoKeys{0x12345678, 0x23456789, 0x34567890}
	for i := 0; i < len(pw); i++ {
		k.update(pw[i])
	}
	return k
}

func crc32Byte(crc uint32, b byte) uint32 {
	return crc32.IEEETable[byte(crc)^b] ^ crc>>8
}

func (k *zipCryptoKeys) update(b byte) {
	k.k0 = crc32Byte(k.k0, b)
	k.k1 = (k.k1+k.k0&0xff)*134775813 + 1
	k.k2 = crc32Byte(k.k2, byte(k.k1>>24))
}

func (k *zipCryptoKeys) streamByte() byte {
	t := k.k2 | 2
	return byte((t * (t ^ 1)) >> 8)
}

func (k *zipCryptoKeys) decrypt(b []byte) {
	for i, c := range b {
		p := c ^ k.streamByte()
		k.update(p)
		b[i] = p
	}
}

// encrypt is the inverse of decrypt (used by the tests' writer).
func (k *zipCryptoKeys) encrypt(b []byte) {
	for i, p := range b {
		c := p ^ k.streamByte()
		k.update(p)
		b[i] = c
	}
}

type zipCryptoReader struct {
	r    io.Reader
	keys *zipCryptoKeys
}

func (z *zipCryptoReader) Read(p []byte) (int, error) {
	n, err := z.r.Read(p)
	z.keys.decrypt(p[:n])
	return n, err
}

// WinZip AES (https://www.winzip.com/en/support/aes-encryption/).

const (
	aesExtraID     = 0x9901
	aesVerifierLen = 2
	aesMACLen      = 10
	aesIterations  = 1000
)

type aesExtra struct {
	version  uint16 // 1 = AE-1 (CRC stored), 2 = AE-2 (no CRC)
	strength byte   // 1, 2, 3 = AES-128, -192, -256
	method   uint16 // the real compression method
}

func (a aesExtra) saltLen() int { return 4 + 4*int(a.strength) }
func (a aesExtra) keyLen() int  { return 8 + 8*int(a.strength) }

// parseAESExtra finds the AE-x extra field 0x9901.
func parseAESExtra(extra []byte) (aesExtra, bool) {
	for len(extra) >= 4 {
		tag := binary.LittleEndian.Uint16(extra)
		size := int(binary.LittleEndian.Uint16(extra[2:]))
		extra = extra[4:]
		if size > len(extra) {
			break
		}
		if tag == aesExtraID && size >= 7 {
			d := extra[:size]
			a := aesExtra{
				version:  binary.LittleEndian.Uint16(d),
				strength: d[4],
				method:   binary.LittleEndian.Uint16(d[5:]),
			}
			if string(d[2:4]) != "AE" || a.strength < 1 || a.strength > 3 || (a.version != 1 && a.version != 2) {
				return aesExtra{}, false
			}
			return a, true
		}
		extra = extra[size:]
	}
	return aesExtra{}, false
}

// aesKeys derives the AES and HMAC keys from pw and reports whether the
// password verifier matches.
func aesKeys(pw string, salt, verifier []byte, keyLen int) (encKey, macKey []byte, ok bool, err error) {
	dk, err := pbkdf2.Key(sha1.New, pw, salt, aesIterations, 2*keyLen+aesVerifierLen)
	if err != nil {
		return nil, nil, false, fmt.Errorf("archive: WinZip AES key derivation: %w", err)
	}
	if subtle.ConstantTimeCompare(dk[2*keyLen:], verifier) != 1 {
		return nil, nil, false, nil
	}
	return dk[:keyLen], dk[keyLen : 2*keyLen], true, nil
}

// aesReader decrypts the dataLen encrypted bytes that follow in r and then
// checks the 10-byte HMAC-SHA1 authentication code that ends the entry. With
// a nil encKey it only authenticates.
type aesReader struct {
	r      io.Reader
	left   int64
	stream *winzipCTR
	mac    hash.Hash
	err    error
}

func newAESReader(r io.Reader, dataLen int64, encKey, macKey []byte) (*aesReader, error) {
	a := &aesReader{r: r, left: dataLen, mac: hmac.New(sha1.New, macKey)}
	if encKey != nil {
		b, err := aes.NewCipher(encKey)
		if err != nil {
			return nil, err
		}
		a.stream = &winzipCTR{b: b, used: aes.BlockSize}
	}
	return a, nil
}

func (a *aesReader) Read(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	if a.left == 0 {
		var code [aesMACLen]byte
		if _, err := io.ReadFull(a.r, code[:]); err != nil {
			a.err = fmt.Errorf("%w: WinZip AES authentication code missing: %w", ErrCorrupt, err)
		} else if !hmac.Equal(code[:], a.mac.Sum(nil)[:aesMACLen]) {
			a.err = fmt.Errorf("%w: WinZip AES authentication code mismatch", ErrChecksum)
		} else {
			a.err = io.EOF
		}
		return 0, a.err
	}
	if int64(len(p)) > a.left {
		p = p[:a.left]
	}
	n, err := a.r.Read(p)
	a.left -= int64(n)
	a.mac.Write(p[:n])
	if a.stream != nil {
		a.stream.XORKeyStream(p[:n], p[:n])
	}
	if err == io.EOF {
		if a.left > 0 {
			err = io.ErrUnexpectedEOF
		} else {
			err = nil
		}
	}
	if err != nil {
		a.err = err
	}
	return n, err
}

// winzipCTR is AES in counter mode as WinZip uses it: the counter is a
// little-endian integer starting at 1 (Go's cipher.NewCTR counts big-endian).
type winzipCTR struct {
	b    cipher.Block
	ctr  uint64
	ks   [aes.BlockSize]byte
	used int
}

func (c *winzipCTR) XORKeyStream(dst, src []byte) {
	for len(src) > 0 {
		if c.used == aes.BlockSize {
			c.ctr++
			var blk [aes.BlockSize]byte
			binary.LittleEndian.PutUint64(blk[:], c.ctr)
			c.b.Encrypt(c.ks[:], blk[:])
			c.used = 0
		}
		n := subtle.XORBytes(dst, src, c.ks[c.used:])
		c.used += n
		dst, src = dst[n:], src[n:]
	}
}
