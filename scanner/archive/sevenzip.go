package archive

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/bodgit/sevenzip"
)

// probePassword is a password nobody uses: decoding the start of a 7z
// folder with it and with the empty password gives the same bytes exactly
// when the folder is not encrypted.
const probePassword = "\x00scangate-archive-probe\x00"

// sevenZipWalk is the state of one 7z walk.
type sevenZipWalk struct {
	*walker
	r      io.ReaderAt
	size   int64
	base   *sevenzip.Reader
	hdrEnc bool                        // headers were encrypted: base has the password
	probe  *sevenzip.Reader            // opened with probePassword, lazily
	byPw   map[string]*sevenzip.Reader // one reader per tried password
	folder map[int]*folderState
	count  map[int]int // files per folder (solid blocks hold several)
}

type folderState struct {
	z         *sevenzip.Reader // reader that decodes this folder; nil if none
	encrypted bool
	err       error // why no password worked
}

func (w *walker) walk7z(r io.ReaderAt, size int64) error {
	defer enter7z(w.opts.MaxDictSize)()
	s := &sevenZipWalk{walker: w, r: r, size: size, byPw: map[string]*sevenzip.Reader{},
		folder: map[int]*folderState{}, count: map[int]int{}}
	z, err := sevenzip.NewReader(r, size)
	if err != nil {
		if cerr := w.ctx.Err(); cerr != nil {
			return cerr
		}
		if errors.Is(err, ErrMemoryBudget) { // the header's own decoder
			return fmt.Errorf("7z: %w", err)
		}
		var re *sevenzip.ReadError
		if !errors.As(err, &re) || !re.Encrypted {
			return fmt.Errorf("%w: 7z: %w", ErrCorrupt, err)
		}
		// Encrypted headers: any failure with a password means a wrong one.
		for _, pw := range w.opts.Passwords {
			if z, err = sevenzip.NewReaderWithPassword(r, size, pw); err == nil {
				break
			}
			if cerr := w.ctx.Err(); cerr != nil {
				return cerr
			}
			if errors.Is(err, ErrMemoryBudget) {
				return fmt.Errorf("7z: %w", err)
			}
		}
		if z == nil {
			if len(w.opts.Passwords) == 0 {
				return fmt.Errorf("%w: 7z with encrypted headers, no password given", ErrEncrypted)
			}
			return fmt.Errorf("%w: 7z with encrypted headers", ErrEncrypted)
		}
		s.hdrEnc = true
	}
	s.base = z
	for _, f := range z.File {
		if f.UncompressedSize > 0 {
			s.count[f.Stream]++
		}
	}
	for i, f := range z.File {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		skip, special := skipSpecial(f.Mode(), f.UncompressedSize)
		if skip {
			w.res.Skipped++
			continue
		}
		if err := s.entry(i, f, special); err != nil {
			return err
		}
	}
	return nil
}

// entry walks the i-th file.
func (s *sevenZipWalk) entry(i int, f *sevenzip.File, special bool) error {
	e := Entry{Name: SanitizeName(f.Name), Size: int64(f.UncompressedSize), Special: special}
	if e.Size < 0 {
		e.Size = -1
	}
	if f.UncompressedSize == 0 { // empty file: no folder, nothing to decode
		return s.deliver(e, bytes.NewReader(nil))
	}
	st, pre, rc, err := s.folderFor(i, f)
	if err != nil {
		return err // ctx
	}
	e.Encrypted = st.encrypted
	if st.z == nil {
		s.entryError(e.Name, st.err)
		return nil
	}
	if rc == nil {
		if rc, err = st.z.File[i].Open(); err != nil {
			if cerr := s.ctx.Err(); cerr != nil {
				return cerr
			}
			s.entryError(e.Name, classify(err))
			return nil
		}
	}
	body := io.MultiReader(bytes.NewReader(pre), rc)
	err = s.deliver(e, newCheckedReader(io.NopCloser(body), f.UncompressedSize, crcFor(f.CRC32), f.CRC32, nil))
	rc.Close()
	return err
}

func crcFor(want uint32) hash.Hash32 {
	if want == 0 { // 0 also means "no CRC stored"
		return nil
	}
	return crc32.NewIEEE()
}

// folderFor decides which reader decodes file i's folder (and whether it
// is encrypted) the first time the folder is met. When it has already
// started decoding file i with the base reader it returns those bytes (pre)
// and the open reader (rc) to continue from.
func (s *sevenZipWalk) folderFor(i int, f *sevenzip.File) (st *folderState, pre []byte, rc io.ReadCloser, err error) {
	if st := s.folder[f.Stream]; st != nil {
		return st, nil, nil, nil
	}
	st = &folderState{}
	s.folder[f.Stream] = st
	if s.hdrEnc { // the header password decodes the contents too
		st.z, st.encrypted = s.base, true
		return st, nil, nil, nil
	}
	// Probe with no password.
	rc, err = s.base.File[i].Open()
	var basePre []byte
	var baseErr error
	if err != nil {
		baseErr = err
	} else {
		basePre, baseErr = readProbe(rc, f.UncompressedSize)
	}
	if cerr := s.ctx.Err(); cerr != nil {
		if rc != nil {
			rc.Close()
		}
		return nil, nil, nil, cerr
	}
	if errors.Is(baseErr, ErrMemoryBudget) { // too big to decode, whatever the password
		if rc != nil {
			rc.Close()
		}
		st.err = baseErr
		return st, nil, nil, nil
	}
	encrypted := is7zEncrypted(baseErr)
	if !encrypted {
		// Same outcome with another password? Then the folder is not
		// encrypted. (An encrypted folder decoded with a wrong key may even
		// end cleanly after 0 bytes, so errors are compared too.)
		probePre, probeErr := s.probeFolder(i, f)
		if cerr := s.ctx.Err(); cerr != nil {
			if rc != nil {
				rc.Close()
			}
			return nil, nil, nil, cerr
		}
		encrypted = is7zEncrypted(probeErr) || (baseErr == nil) != (probeErr == nil) || !bytes.Equal(basePre, probePre)
	}
	if !encrypted {
		st.z = s.base
		if baseErr != nil {
			if rc != nil {
				rc.Close()
			}
			// A corrupt folder: let the normal open/read report it.
			return st, nil, nil, nil
		}
		return st, basePre, rc, nil
	}
	if rc != nil {
		rc.Close()
	}
	st.encrypted = true
	if len(s.opts.Passwords) == 0 {
		st.err = fmt.Errorf("%w: 7z, no password given", ErrEncrypted)
		return st, nil, nil, nil
	}
	var lastErr error
	for _, pw := range s.opts.Passwords {
		// Verify with a throwaway reader: bodgit/sevenzip v1.6.5 corrupts a
		// folder's stored AES IV when it derives a key that is not in its
		// cache yet (aes7z calculateKey appends the password to the salt
		// slice, which aliases the IV in the coder properties), so the
		// same Reader cannot open that folder a second time. The delivery
		// reader then opens each folder once, and by then the key is
		// cached.
		z, err := sevenzip.NewReaderWithPassword(s.r, s.size, pw)
		if err == nil {
			err = s.verifyFile(z.File[i])
		}
		if err == nil {
			z, err = s.readerFor(pw)
		}
		if cerr := s.ctx.Err(); cerr != nil {
			return nil, nil, nil, cerr
		}
		if err == nil {
			st.z = z
			return st, nil, nil, nil
		}
		lastErr = err
	}
	st.err = fmt.Errorf("%w: 7z (%v)", ErrEncrypted, lastErr)
	return st, nil, nil, nil
}

// probeFolder decodes the start of file i with probePassword. The probe
// reader is dropped after a solid folder so that its pooled decoders (and
// their dictionaries) do not pile up.
func (s *sevenZipWalk) probeFolder(i int, f *sevenzip.File) ([]byte, error) {
	if s.probe == nil {
		z, err := sevenzip.NewReaderWithPassword(s.r, s.size, probePassword)
		if err != nil {
			return nil, err
		}
		s.probe = z
	}
	if s.count[f.Stream] > 1 {
		defer func() { s.probe = nil }()
	}
	rc, err := s.probe.File[i].Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readProbe(rc, f.UncompressedSize)
}

func (s *sevenZipWalk) readerFor(pw string) (*sevenzip.Reader, error) {
	if z := s.byPw[pw]; z != nil {
		return z, nil
	}
	z, err := sevenzip.NewReaderWithPassword(s.r, s.size, pw)
	if err != nil {
		return nil, err
	}
	s.byPw[pw] = z
	return z, nil
}

// verifyFile decodes f (up to maxVerifyBytes) and checks its CRC.
func (s *sevenZipWalk) verifyFile(f *sevenzip.File) error {
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	c := newCheckedReader(io.NopCloser(rc), f.UncompressedSize, crcFor(f.CRC32), f.CRC32, nil)
	if f.UncompressedSize > maxVerifyBytes {
		c.crc = nil
	}
	return s.verify(c)
}

// readProbe reads the first probeSize bytes (at most size) of rc.
func readProbe(rc io.Reader, size uint64) ([]byte, error) {
	buf := make([]byte, min(size, probeSize))
	n, err := io.ReadFull(rc, buf)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = fmt.Errorf("%w: 7z entry shorter than declared", ErrCorrupt)
	}
	return buf[:n], err
}

func is7zEncrypted(err error) bool {
	var re *sevenzip.ReadError
	return errors.As(err, &re) && re.Encrypted
}
