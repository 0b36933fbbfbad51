package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/nwaples/rardecode/v2"
)

// rarCursor is one sequential pass over a rar archive. Each password
// candidate gets its own cursor (rardecode takes one password per reader),
// advanced in step with the main one only when an encrypted entry needs it.
type rarCursor struct {
	rd  *rardecode.Reader
	idx int // index of hdr among all file headers, -1 before the first
	hdr *rardecode.FileHeader
	err error // sticky: this cursor is unusable
}

func (c *rarCursor) next() error {
	if c.err != nil {
		return c.err
	}
	h, err := c.rd.Next()
	if err != nil {
		c.hdr, c.err = nil, err
		return err
	}
	c.hdr = h
	c.idx++
	return nil
}

type rarWalk struct {
	*walker
	r       io.ReaderAt
	size    int64
	cursors map[int]*rarCursor // by index into Passwords
	sticky  int                // the password that worked last
	rar4    bool               // RAR 1.5-4.x format: no password check value
}

// open starts a pass with the given password (nil: none) and reads the
// first file header (hdr stays nil for an empty archive).
func (s *rarWalk) open(pw *string) (*rarCursor, error) {
	opts := []rardecode.Option{rardecode.MaxDictionarySize(s.opts.MaxDictSize)}
	if pw != nil {
		opts = append(opts, rardecode.Password(*pw))
	}
	rd, err := rardecode.NewReader(io.NewSectionReader(s.r, 0, s.size), opts...)
	if err != nil {
		return nil, err
	}
	c := &rarCursor{rd: rd, idx: -1}
	if err := c.next(); err != nil && err != io.EOF {
		return nil, err
	}
	return c, nil
}

func (w *walker) walkRar(r io.ReaderAt, size int64) error {
	s := &rarWalk{walker: w, r: r, size: size, cursors: map[int]*rarCursor{}}
	var sig [7]byte
	if _, err := r.ReadAt(sig[:], 0); err == nil && string(sig[:]) == "Rar!\x1a\x07\x00" {
		s.rar4 = true
	}
	main, err := s.open(nil)
	hdrEnc := false
	if err != nil {
		if cerr := w.ctx.Err(); cerr != nil {
			return cerr
		}
		if !errors.Is(err, rardecode.ErrArchiveEncrypted) {
			return fmt.Errorf("rar: %w", classifyStructure(err))
		}
		// Encrypted headers: any failure with a password means a wrong one
		// (RAR 5 checks the password; RAR 3/4 fails its header CRC).
		for i := range w.opts.Passwords {
			if main, err = s.open(&w.opts.Passwords[i]); err == nil {
				break
			}
			if cerr := w.ctx.Err(); cerr != nil {
				return cerr
			}
		}
		if main == nil {
			if len(w.opts.Passwords) == 0 {
				return fmt.Errorf("%w: rar with encrypted headers, no password given", ErrEncrypted)
			}
			return fmt.Errorf("%w: rar with encrypted headers", ErrEncrypted)
		}
		hdrEnc = true
	}
	for main.hdr != nil {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		h := main.hdr
		size := uint64(max(h.UnPackedSize, 0))
		if h.UnKnownSize {
			size = 1 // unknown: may hold data
		}
		skip, special := skipSpecial(h.Mode(), size)
		if h.IsDir || h.LinkType != 0 || skip {
			// RAR 5 links (LinkType) keep their target in the header.
			w.res.Skipped++
		} else {
			e := Entry{Name: SanitizeName(h.Name), Size: h.UnPackedSize, Encrypted: h.Encrypted, Special: special}
			if h.UnKnownSize || e.Size < 0 {
				e.Size = -1
			}
			var body io.Reader = main.rd
			var openErr error
			if h.Encrypted && !hdrEnc {
				body, openErr = s.openEncrypted(main.idx, h)
				if openErr == nil && s.rar4 {
					body = rar4EncryptedBody{body}
				}
			}
			if openErr != nil {
				if cerr := w.ctx.Err(); cerr != nil {
					return cerr
				}
				w.entryError(e.Name, openErr)
			} else if err := w.deliver(e, body); err != nil {
				return err
			}
		}
		if err := main.next(); err != nil {
			if err == io.EOF {
				return nil
			}
			if cerr := w.ctx.Err(); cerr != nil {
				return cerr
			}
			return fmt.Errorf("rar: %w", classifyStructure(err))
		}
	}
	return nil
}

// openEncrypted finds a password that decodes entry idx: the start of the
// entry is decoded (RAR 5 checks the password before any data; RAR 3/4 has
// no check, a wrong password shows as a decode or CRC error) and handed to
// fn followed by the rest.
func (s *rarWalk) openEncrypted(idx int, h *rardecode.FileHeader) (io.Reader, error) {
	n := len(s.opts.Passwords)
	if n == 0 {
		return nil, fmt.Errorf("%w: rar, no password given", ErrEncrypted)
	}
	var lastErr error
	for j := range n {
		k := (s.sticky + j) % n
		c := s.cursors[k]
		if c == nil {
			var err error
			if c, err = s.open(&s.opts.Passwords[k]); err != nil {
				c = &rarCursor{err: err}
			}
			s.cursors[k] = c
		}
		for c.err == nil && c.idx < idx {
			c.next()
		}
		if c.err != nil {
			if cerr := s.ctx.Err(); cerr != nil {
				return nil, cerr
			}
			if errors.Is(c.err, rardecode.ErrDictionaryTooLarge) { // too big, whatever the password
				return nil, classify(c.err)
			}
			lastErr = c.err
			continue
		}
		if c.idx != idx || c.hdr.Name != h.Name {
			c.err = errors.New("rar: passes out of step")
			continue
		}
		pre := make([]byte, probeSize)
		m, err := io.ReadFull(ctxReader{ctx: s.ctx, r: c.rd}, pre)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = nil // the whole entry fitted (and passed its checksum)
		}
		if cerr := s.ctx.Err(); cerr != nil {
			return nil, cerr
		}
		if err != nil {
			lastErr = err
			continue
		}
		s.sticky = k
		return io.MultiReader(bytes.NewReader(pre[:m]), c.rd), nil
	}
	if lastErr != nil && !errors.Is(lastErr, rardecode.ErrBadPassword) {
		return nil, fmt.Errorf("%w: rar (%v)", ErrEncrypted, lastErr)
	}
	return nil, fmt.Errorf("%w: rar", ErrEncrypted)
}

// classifyStructure labels an error that broke the walk itself.
func classifyStructure(err error) error {
	err = classify(err)
	if errors.Is(err, ErrChecksum) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// rar4EncryptedBody labels data errors in a RAR 3/4 encrypted entry as
// ErrEncrypted too: that format has no password check value, so a wrong
// password that got past the first probeSize bytes only shows as a decode
// or CRC error later.
type rar4EncryptedBody struct{ r io.Reader }

func (b rar4EncryptedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		if err = classify(err); !errors.Is(err, ErrEncrypted) {
			err = fmt.Errorf("%w (RAR 3/4 has no password check, so this may be a wrong password): %w", ErrEncrypted, err)
		}
	}
	return n, err
}
