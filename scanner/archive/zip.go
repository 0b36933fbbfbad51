package archive

import (
	"archive/zip"
	"bufio"
	"compress/bzip2"
	"compress/flate"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Zip compression methods (APPNOTE 4.4.5) and general purpose flags.
const (
	zipStore   = 0
	zipDeflate = 8
	zipBzip2   = 12
	zipZstd    = 93
	zipXz      = 95
	zipAES     = 99

	zipFlagEncrypted      = 0x0001
	zipFlagDataDescriptor = 0x0008
	zipFlagStrongEncrypt  = 0x0040
)

var zipMethodNames = map[uint16]string{
	1: "shrink", 6: "implode", 9: "deflate64", 10: "PKWARE DCL implode",
	14: "lzma", 18: "IBM TERSE", 19: "IBM LZ77", 97: "wavpack", 98: "ppmd",
}

func (w *walker) walkZip(r io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		if cerr := w.ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%w: zip: %w", ErrCorrupt, err)
	}
	for _, m := range []uint16{zipBzip2, zipZstd, zipXz} {
		zr.RegisterDecompressor(m, func(r io.Reader) io.ReadCloser {
			rc, err := w.zipDecompressor(m, r)
			if err != nil {
				return errReadCloser{err}
			}
			return rc
		})
	}
	for _, f := range zr.File {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		skip, special := skipSpecial(f.Mode(), f.UncompressedSize64)
		if skip || strings.HasSuffix(f.Name, "/") {
			w.res.Skipped++
			continue
		}
		e := Entry{Name: SanitizeName(f.Name), Size: -1, Encrypted: f.Flags&zipFlagEncrypted != 0, Special: special}
		if f.UncompressedSize64 <= math.MaxInt64 {
			e.Size = int64(f.UncompressedSize64)
		}
		var rc io.ReadCloser
		if e.Encrypted {
			rc, err = w.openZipEncrypted(f)
		} else {
			rc, err = f.Open()
		}
		if err != nil {
			if cerr := w.ctx.Err(); cerr != nil {
				return cerr
			}
			if errors.Is(err, zip.ErrAlgorithm) {
				err = fmt.Errorf("%w: zip compression method %d %s", ErrUnsupported, f.Method, zipMethodNames[f.Method])
			}
			w.entryError(e.Name, classify(err))
			continue
		}
		err = w.deliver(e, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// zipDecompressor returns a decompressor for the zip methods this package
// reads: store, deflate, bzip2, zstd and xz.
func (w *walker) zipDecompressor(method uint16, r io.Reader) (io.ReadCloser, error) {
	switch method {
	case zipStore:
		return io.NopCloser(r), nil
	case zipDeflate:
		return flate.NewReader(r), nil
	case zipBzip2:
		return io.NopCloser(bzip2.NewReader(r)), nil
	case zipZstd:
		return newZstd(r, w.opts.MaxDictSize)
	case zipXz:
		xr, err := w.newXz(r)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(xr), nil
	}
	return nil, fmt.Errorf("%w: zip compression method %d %s", ErrUnsupported, method, zipMethodNames[method])
}

// newZstd returns a single-goroutine, low-memory zstd decoder whose window
// is capped at limit. (One goroutine also keeps a decoder panic where
// Walk can recover it.)
func newZstd(r io.Reader, limit int64) (io.ReadCloser, error) {
	d, err := zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(limit)))
	if err != nil {
		return nil, err
	}
	return d.IOReadCloser(), nil
}

// newXz returns an xz decoder whose blocks' LZMA2 dictionaries must fit
// MaxDictSize (the xz library allocates whatever a block header asks
// for): the first block's is checked up front, so that an oversized
// stream yields no entry at all; xzGuard checks every block as the
// decoder reaches it.
func (w *walker) newXz(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 2048)
	head, _ := br.Peek(12 + 1024)
	if dict, ok := xzFirstDictSize(head); ok && dict > uint64(w.opts.MaxDictSize) {
		return nil, fmt.Errorf("%w: xz dictionary of %d bytes exceeds the limit of %d", ErrMemoryBudget, dict, w.opts.MaxDictSize)
	}
	return xz.NewReader(newXzGuard(br, w.opts.MaxDictSize))
}

// xzFirstDictSize reads the LZMA2 dictionary size from the first block
// header of an xz stream.
func xzFirstDictSize(b []byte) (uint64, bool) {
	if len(b) < 13 || string(b[:6]) != "\xfd7zXZ\x00" || b[12] == 0 {
		return 0, false
	}
	hdrLen := (int(b[12]) + 1) * 4
	if len(b) < 12+hdrLen {
		return 0, false
	}
	return xzBlockDictSize(b[12+1 : 12+hdrLen-4]) // without the size byte and the CRC32
}

// xzBlockDictSize reads the LZMA2 dictionary size from a block header
// without its size byte and CRC32.
func xzBlockDictSize(h []byte) (uint64, bool) {
	if len(h) < 1 {
		return 0, false
	}
	flags := h[0]
	h = h[1:]
	vli := func() (uint64, bool) {
		var v uint64
		for i := 0; i < 9 && i < len(h); i++ {
			v |= uint64(h[i]&0x7f) << (7 * i)
			if h[i]&0x80 == 0 {
				h = h[i+1:]
				return v, true
			}
		}
		return 0, false
	}
	if flags&0x40 != 0 {
		if _, ok := vli(); !ok {
			return 0, false
		}
	}
	if flags&0x80 != 0 {
		if _, ok := vli(); !ok {
			return 0, false
		}
	}
	for range int(flags&3) + 1 {
		id, ok := vli()
		if !ok {
			return 0, false
		}
		n, ok := vli()
		if !ok || uint64(len(h)) < n {
			return 0, false
		}
		props := h[:n]
		h = h[n:]
		if id == 0x21 && n == 1 {
			bits := props[0] & 0x3f
			if bits > 40 {
				return math.MaxUint64, true
			}
			if bits == 40 {
				return math.MaxUint32, true
			}
			return uint64(2|(bits&1)) << (bits/2 + 11), true
		}
	}
	return 0, false
}

// openZipEncrypted returns the decrypted, decompressed and checked body of
// an encrypted zip entry, trying every password.
func (w *walker) openZipEncrypted(f *zip.File) (io.ReadCloser, error) {
	if f.Flags&zipFlagStrongEncrypt != 0 {
		return nil, fmt.Errorf("%w: PKWARE strong encryption is not supported (%w)", ErrEncrypted, ErrUnsupported)
	}
	if len(w.opts.Passwords) == 0 {
		return nil, fmt.Errorf("%w: no password given", ErrEncrypted)
	}
	if f.Method == zipAES {
		return w.openZipAES(f)
	}
	return w.openZipCrypto(f)
}

// openZipCrypto handles traditional PKWARE encryption. A password must pass
// the check byte, then a trial decompression with CRC check (bounded by
// maxVerifyBytes): the check byte alone lets 1 wrong password in 256 through.
func (w *walker) openZipCrypto(f *zip.File) (io.ReadCloser, error) {
	if f.CompressedSize64 < zipCryptoHeaderLen {
		return nil, fmt.Errorf("%w: ZipCrypto entry shorter than its 12-byte header", ErrCorrupt)
	}
	var lastErr error
	for _, pw := range w.opts.Passwords {
		rc, ok, err := w.openZipCryptoWith(f, pw)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		err = w.verify(rc)
		rc.Close()
		if cerr := w.ctx.Err(); cerr != nil {
			return nil, cerr
		}
		if err := classify(err); errors.Is(err, ErrMemoryBudget) {
			// A wrong password decrypts to noise, which does not declare
			// a huge window: this one worked, and the data is too big.
			return nil, err
		}
		if err != nil {
			lastErr = err
			continue
		}
		rc, _, err = w.openZipCryptoWith(f, pw)
		return rc, err
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w: ZipCrypto (a password passed the check byte but not the CRC: %v)", ErrEncrypted, lastErr)
	}
	return nil, fmt.Errorf("%w: ZipCrypto", ErrEncrypted)
}

// openZipCryptoWith opens f with pw; ok=false when the check byte says the
// password is wrong.
func (w *walker) openZipCryptoWith(f *zip.File, pw string) (io.ReadCloser, bool, error) {
	raw, err := f.OpenRaw()
	if err != nil {
		return nil, false, err
	}
	var hdr [zipCryptoHeaderLen]byte
	if _, err := io.ReadFull(raw, hdr[:]); err != nil {
		return nil, false, err
	}
	keys := newZipCryptoKeys(pw)
	keys.decrypt(hdr[:])
	check := hdr[zipCryptoHeaderLen-1]
	if check != byte(f.CRC32>>24) && (f.Flags&zipFlagDataDescriptor == 0 || check != byte(f.ModifiedTime>>8)) {
		return nil, false, nil
	}
	dec, err := w.zipDecompressor(f.Method, &zipCryptoReader{r: raw, keys: keys})
	if err != nil {
		return nil, false, err
	}
	return newCheckedReader(dec, f.UncompressedSize64, crc32.NewIEEE(), f.CRC32, nil), true, nil
}

// openZipAES handles WinZip AES (AE-1, AE-2). A password must match the
// 2-byte verifier and the HMAC-SHA1 authentication code over the encrypted
// data (checked in a first pass over the raw bytes, and again while
// streaming).
func (w *walker) openZipAES(f *zip.File) (io.ReadCloser, error) {
	ae, ok := parseAESExtra(f.Extra)
	if !ok {
		return nil, fmt.Errorf("%w: WinZip AES entry without a valid 0x9901 extra field", ErrCorrupt)
	}
	saltLen, keyLen := ae.saltLen(), ae.keyLen()
	if f.CompressedSize64 < uint64(saltLen+aesVerifierLen+aesMACLen) {
		return nil, fmt.Errorf("%w: WinZip AES entry too short", ErrCorrupt)
	}
	dataLen := int64(f.CompressedSize64) - int64(saltLen+aesVerifierLen+aesMACLen)
	raw, err := f.OpenRaw()
	if err != nil {
		return nil, err
	}
	head := make([]byte, saltLen+aesVerifierLen)
	if _, err := io.ReadFull(raw, head); err != nil {
		return nil, err
	}
	salt, verifier := head[:saltLen], head[saltLen:]
	var lastErr error
	for _, pw := range w.opts.Passwords {
		encKey, macKey, ok, err := aesKeys(pw, salt, verifier, keyLen)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if err := w.verifyAESMac(f, int64(saltLen+aesVerifierLen), dataLen, macKey); err != nil {
			if cerr := w.ctx.Err(); cerr != nil {
				return nil, cerr
			}
			lastErr = err
			continue
		}
		raw, err := f.OpenRaw()
		if err != nil {
			return nil, err
		}
		if _, err := io.CopyN(io.Discard, raw, int64(saltLen+aesVerifierLen)); err != nil {
			return nil, err
		}
		ar, err := newAESReader(raw, dataLen, encKey, macKey)
		if err != nil {
			return nil, err
		}
		dec, err := w.zipDecompressor(ae.method, ar)
		if err != nil {
			return nil, err
		}
		var crc hash.Hash32
		if ae.version == 1 { // AE-2 stores no CRC
			crc = crc32.NewIEEE()
		}
		atEOF := func() error {
			// Read any encrypted bytes the decompressor left, so that the
			// authentication code is checked.
			_, err := io.Copy(io.Discard, ar)
			return err
		}
		return newCheckedReader(dec, f.UncompressedSize64, crc, f.CRC32, atEOF), nil
	}
	if lastErr != nil {
		// The 2-byte verifier matched but the data does not authenticate:
		// far more likely corrupt or tampered data than a wrong password.
		return nil, fmt.Errorf("WinZip AES: %w", lastErr)
	}
	return nil, fmt.Errorf("%w: WinZip AES-%d", ErrEncrypted, keyLen*8)
}

// verifyAESMac checks the HMAC-SHA1 authentication code of an AES entry.
func (w *walker) verifyAESMac(f *zip.File, skip, dataLen int64, macKey []byte) error {
	raw, err := f.OpenRaw()
	if err != nil {
		return err
	}
	if _, err := io.CopyN(io.Discard, raw, skip); err != nil {
		return err
	}
	ar, err := newAESReader(raw, dataLen, nil, macKey)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, ctxReader{ctx: w.ctx, r: ar})
	return err
}

// verify reads up to maxVerifyBytes of rc and reports any error.
func (w *walker) verify(rc io.Reader) error {
	_, err := io.Copy(io.Discard, io.LimitReader(ctxReader{ctx: w.ctx, r: rc}, maxVerifyBytes))
	return err
}

// checkedReader enforces an entry's declared size and checks its CRC-32
// (if crc is set) and an optional extra check at the end.
type checkedReader struct {
	r       io.ReadCloser
	size    uint64
	n       uint64
	crc     hash.Hash32
	wantCRC uint32
	atEOF   func() error
	err     error
}

func newCheckedReader(r io.ReadCloser, size uint64, crc hash.Hash32, wantCRC uint32, atEOF func() error) *checkedReader {
	return &checkedReader{r: r, size: size, crc: crc, wantCRC: wantCRC, atEOF: atEOF}
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if rest := c.size - c.n; uint64(len(p)) > rest {
		// Ask for one byte more than declared, to notice a longer stream.
		if rest < math.MaxInt {
			p = p[:rest+1]
		}
	}
	n, err := c.r.Read(p)
	c.n += uint64(n)
	if c.n > c.size {
		n -= int(c.n - c.size)
		c.n = c.size
		err = fmt.Errorf("%w: entry is longer than its declared size %d", ErrCorrupt, c.size)
	}
	if c.crc != nil {
		c.crc.Write(p[:n])
	}
	if err == io.EOF {
		switch {
		case c.n != c.size:
			err = fmt.Errorf("%w: entry is shorter (%d bytes) than its declared size %d: %w", ErrCorrupt, c.n, c.size, io.ErrUnexpectedEOF)
		case c.crc != nil && c.crc.Sum32() != c.wantCRC:
			err = fmt.Errorf("%w: CRC-32 %08x, want %08x", ErrChecksum, c.crc.Sum32(), c.wantCRC)
		case c.atEOF != nil:
			if e := c.atEOF(); e != nil {
				err = e
			}
		}
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *checkedReader) Close() error { return c.r.Close() }

type errReadCloser struct{ err error }

func (e errReadCloser) Read([]byte) (int, error) { return 0, e.err }
func (e errReadCloser) Close() error             { return nil }
