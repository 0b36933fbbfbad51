package engines

// ClamAV-format signature files: .hdb (md5 hashes), .hsb (sha1/sha256
// hashes) and .ndb (extended body signatures).
//
// Hex signatures may use hex bytes, "??" (any byte), nibble wildcards ("a?",
// "?a"), "*" (any number of bytes) and the jumps {n}, {n-m}, {-m} and {n-}.
// A signature needs a run of at least 2 literal bytes somewhere.
//
// Malformed lines stop loading with an error naming file:line, so a broken
// file is never half-used: wrong field count, empty name, bad numbers,
// odd-length hex, invalid characters, a jump at either end, a backwards
// range, no run of 2 literal bytes. Lines that are valid ClamAV but use a feature this
// engine does not implement are skipped, each with a warning naming
// file:line, so that a stock ClamAV database still loads:
//
//   - .ndb offsets other than "*", "n" and "n,maxshift": EOF-n, EP±n, Sx+n,
//     SL+n, SE, VI and the like;
//   - hex signature alternatives and anchors: (aa|bb), !(..), [n-m], (B), (L);
//   - a part between two unbounded jumps ("*" or "{n-}") that holds no
//     literal byte, or whose bounded jumps make it longer than 64 KiB.
//
// The .ndb target type is parsed and kept but not enforced: a signature for
// PE files (1), OLE2 (2), HTML (3) and so on matches any file, as if its
// target were 0.
//
// Blank lines and lines starting with # are skipped (ClamAV has no comments;
// this is a convenience for hand-written files).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// AnyOffset is BodySignature.Offset for a signature that may start anywhere.
const AnyOffset int64 = -1

// AnySize is HashSignature.Size for a hash that matches files of any size.
const AnySize int64 = -1

const (
	// sigMaxSegmentSpan bounds how far the parts of one segment (a stretch
	// of a hex signature between unbounded jumps) may spread. The matcher
	// keeps this much of the stream behind and ahead of a hit.
	sigMaxSegmentSpan = 64 << 10
	// sigMaxNumber bounds offsets, shifts and jump lengths.
	sigMaxNumber = 1 << 40
	// sigMaxLine bounds one line of a signature file.
	sigMaxLine = 1 << 20
)

// HashSignature is one line of a .hdb or .hsb file: a file whose hash (and
// size, unless Size is AnySize) is this is infected.
type HashSignature struct {
	Name   string
	Algo   string // "md5", "sha1" or "sha256"
	Digest string // lowercase hex
	Size   int64  // file size in bytes, or AnySize
	Source string // "file:line" it came from
}

// BodySignature is one .ndb signature: a ClamAV hex signature expected at an
// offset of the file's bytes.
type BodySignature struct {
	Name     string
	Target   int    // ClamAV target type; kept, not enforced (every target matches any file)
	Offset   int64  // where the signature starts, or AnyOffset
	MaxShift int64  // with an Offset: it may start anywhere in [Offset, Offset+MaxShift]
	Hex      string // the hex signature: hex bytes, ?? and nibble wildcards, *, {n}, {n-m}, {-m}, {n-}
	Source   string // "file:line" it came from, for messages
}

// SignatureSet is what signature files hold, ready for NewSignatures (body
// signatures) and HashEngine (hash signatures).
type SignatureSet struct {
	Body    []BodySignature
	Hashes  []HashSignature
	DefTime time.Time // newest modification time of the files loaded; zero if none
}

// LoadSignatureFiles loads ClamAV signature files, choosing the parser by
// extension (.hdb, .hsb, .ndb; any other is an error). It returns the set,
// the warnings for lines it skipped (each naming file:line), and the first
// error, which names the file and, for a malformed line, its line number.
func LoadSignatureFiles(paths []string) (*SignatureSet, []string, error) {
	set := &SignatureSet{}
	var warnings []string
	for _, p := range paths {
		ext := strings.ToLower(filepath.Ext(p))
		switch ext {
		case ".hdb", ".hsb", ".ndb":
		default:
			return nil, nil, fmt.Errorf("signatures: %s: unknown signature file type %q (want .hdb, .hsb or .ndb)", p, ext)
		}
		w, err := loadSignatureFile(set, p, ext)
		if err != nil {
			return nil, nil, fmt.Errorf("signatures: %w", err)
		}
		warnings = append(warnings, w...)
	}
	return set, warnings, nil
}

func loadSignatureFile(set *SignatureSet, path, ext string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a directory", path)
	}
	var warnings []string
	switch ext {
	case ".hdb":
		h, err := ParseHDB(f, path)
		if err != nil {
			return nil, err
		}
		set.Hashes = append(set.Hashes, h...)
	case ".hsb":
		h, err := ParseHSB(f, path)
		if err != nil {
			return nil, err
		}
		set.Hashes = append(set.Hashes, h...)
	case ".ndb":
		b, w, err := ParseNDB(f, path)
		if err != nil {
			return nil, err
		}
		set.Body = append(set.Body, b...)
		warnings = w
	}
	if mt := st.ModTime(); mt.After(set.DefTime) {
		set.DefTime = mt
	}
	return warnings, nil
}

// sigLines calls fn with each line of r that is neither blank nor a comment,
// trimmed, with its 1-based number. An error from fn is returned as
// "file:line: error".
func sigLines(r io.Reader, file string, fn func(text string, line int) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), sigMaxLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		if err := fn(text, line); err != nil {
			return fmt.Errorf("%s:%d: %w", file, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", file, line+1, err)
	}
	return nil
}

// ParseHDB parses a .hdb file: "md5:size:name" lines, size a decimal byte
// count or "*" (any size); further fields (ClamAV functionality levels) are
// ignored. file names the source in errors.
func ParseHDB(r io.Reader, file string) ([]HashSignature, error) {
	return parseHashFile(r, file, "md5")
}

// ParseHSB parses a .hsb file: "sha256:size:name" lines; a sha1 digest is
// recognized by its length, as ClamAV does. Otherwise as ParseHDB.
func ParseHSB(r io.Reader, file string) ([]HashSignature, error) {
	return parseHashFile(r, file, "sha")
}

func parseHashFile(r io.Reader, file, kind string) ([]HashSignature, error) {
	var out []HashSignature
	err := sigLines(r, file, func(text string, line int) error {
		f := strings.Split(text, ":")
		if len(f) < 3 || len(f) > 5 {
			return fmt.Errorf("want \"<hash>:<size|*>:<name>\", got %d fields", len(f))
		}
		digest := strings.ToLower(f[0])
		algo := ""
		switch {
		case kind == "md5" && len(digest) == 32:
			algo = "md5"
		case kind == "sha" && len(digest) == 40:
			algo = "sha1"
		case kind == "sha" && len(digest) == 64:
			algo = "sha256"
		case kind == "md5":
			return fmt.Errorf("hash %q: want an md5 digest (32 hex digits)", f[0])
		default:
			return fmt.Errorf("hash %q: want a sha1 (40) or sha256 (64 hex digits) digest", f[0])
		}
		if !isHex(digest) {
			return fmt.Errorf("hash %q: not hexadecimal", f[0])
		}
		size := AnySize
		if f[1] != "*" {
			n, err := parseSigNumber(f[1])
			if err != nil {
				return fmt.Errorf("size %q: want a byte count or *", f[1])
			}
			size = n
		}
		if f[2] == "" {
			return errors.New("empty signature name")
		}
		out = append(out, HashSignature{Name: f[2], Algo: algo, Digest: digest, Size: size,
			Source: fmt.Sprintf("%s:%d", file, line)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if hexVal(s[i]) < 0 {
			return false
		}
	}
	return true
}

func hexVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// parseSigNumber parses a non-negative decimal no larger than sigMaxNumber.
func parseSigNumber(s string) (int64, error) {
	if s == "" || len(s) > 15 {
		return 0, errors.New("bad number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("bad number")
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > sigMaxNumber {
		return 0, errors.New("bad number")
	}
	return n, nil
}

// sigUnsupported marks valid ClamAV syntax this engine does not implement:
// the line is skipped with a warning rather than failing the load.
type sigUnsupported struct{ msg string }

func (e *sigUnsupported) Error() string { return e.msg }

func unsupportedf(format string, a ...any) error {
	return &sigUnsupported{msg: fmt.Sprintf(format, a...)}
}

// ParseNDB parses a .ndb file: "name:target:offset:hexsig" lines, with
// optional ":min_flevel[:max_flevel]" fields that are ignored. It returns the
// signatures, a warning for each line skipped because it uses a ClamAV
// feature not implemented here (see the package notes in sigfile.go), and an
// error naming file:line for the first malformed line.
func ParseNDB(r io.Reader, file string) ([]BodySignature, []string, error) {
	var out []BodySignature
	var warnings []string
	err := sigLines(r, file, func(text string, line int) error {
		sig, err := parseNDBLine(text)
		var un *sigUnsupported
		if errors.As(err, &un) {
			warnings = append(warnings, fmt.Sprintf("%s:%d: skipped %q: %s", file, line, sig.Name, un.msg))
			return nil
		}
		if err != nil {
			return err
		}
		sig.Source = fmt.Sprintf("%s:%d", file, line)
		out = append(out, sig)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, warnings, nil
}

// parseNDBLine parses one .ndb line. The name is set even on error, for
// warnings.
func parseNDBLine(text string) (BodySignature, error) {
	f := strings.Split(text, ":")
	if len(f) < 4 || len(f) > 6 {
		return BodySignature{}, fmt.Errorf("want \"name:target:offset:hexsig[:min_flevel[:max_flevel]]\", got %d fields", len(f))
	}
	sig := BodySignature{Name: f[0], Hex: f[3]}
	if sig.Name == "" {
		return sig, errors.New("empty signature name")
	}
	t, err := parseSigNumber(f[1])
	if err != nil || t > 1<<16 {
		return sig, fmt.Errorf("target type %q: want a number (0 = any file)", f[1])
	}
	sig.Target = int(t)
	if sig.Offset, sig.MaxShift, err = parseNDBOffset(f[2]); err != nil {
		return sig, err
	}
	if _, err := compileBodySignature(sig); err != nil {
		return sig, err
	}
	return sig, nil
}

// sigRelativeOffset matches ClamAV's offsets relative to the end of the
// file, the entry point, sections and version information.
var sigRelativeOffset = regexp.MustCompile(`^(EOF-\d+|EP[+-]\d+|S\d+[+-]\d+|SL[+-]\d+|SE\d+|VI)(,\d+)?$`)

// parseNDBOffset parses "*", "n" or "n,maxshift".
func parseNDBOffset(s string) (offset, shift int64, err error) {
	if s == "*" {
		return AnyOffset, 0, nil
	}
	base, sh, hasShift := strings.Cut(s, ",")
	if offset, err = parseSigNumber(base); err != nil {
		if sigRelativeOffset.MatchString(s) {
			return 0, 0, unsupportedf("offset %q: only *, n and n,maxshift are supported", s)
		}
		return 0, 0, fmt.Errorf("offset %q: want *, n or n,maxshift", s)
	}
	if hasShift {
		if shift, err = parseSigNumber(sh); err != nil {
			return 0, 0, fmt.Errorf("offset %q: max shift %q is not a number", s, sh)
		}
	}
	return offset, shift, nil
}

// A hex signature compiles to segments separated by unbounded jumps ("*",
// "{n-}"). A segment is parts separated by bounded jumps ("{n}", "{n-m}",
// "{-m}"); a part is a run of masked bytes ("41", "??", "4?", "?1").

// sigByte matches b when b&mask == val.
type sigByte struct{ val, mask byte }

type sigPart []sigByte

func (p sigPart) matchAt(d []byte) bool {
	for i, m := range p {
		if d[i]&m.mask != m.val {
			return false
		}
	}
	return true
}

// sigGap is a jump of lo to hi bytes; hi < 0 means no upper bound.
type sigGap struct{ lo, hi int64 }

type sigSegment struct {
	parts []sigPart
	gaps  []sigGap // gaps[i] is between parts[i] and parts[i+1]; bounded

	// The anchor is a run of literal bytes (see measure); the stream is
	// searched for it and the rest of the segment is checked around it.
	anchor                 []byte
	anchorPart, anchorOff  int
	relMin, relMax         int64 // distance from the segment's start to the anchor's start
	rightMin, rightMax     int64 // distance from the anchor's end to the segment's end
	minLen, maxLen         int64
	longestLiteralFragment int
}

type sigCompiled struct {
	name          string
	offset, shift int64 // offset AnyOffset: anywhere
	segs          []sigSegment
	segGap        []int64 // segGap[k], k >= 1: least distance from the end of segment k-1 to the start of segment k
}

type sigToken struct {
	jump   bool
	b      sigByte
	lo, hi int64 // jump
}

// tokenizeHexSig splits a ClamAV hex signature into bytes and jumps.
func tokenizeHexSig(s string) ([]sigToken, error) {
	if s == "" {
		return nil, errors.New("empty hex signature")
	}
	var toks []sigToken
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '*':
			toks = append(toks, sigToken{jump: true, lo: 0, hi: -1})
			i++
			continue
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("hex signature: unterminated %q at position %d", "{", i)
			}
			lo, hi, err := parseSigJump(s[i+1 : i+end])
			if err != nil {
				return nil, fmt.Errorf("hex signature: jump %q at position %d: %w", s[i:i+end+1], i, err)
			}
			toks = append(toks, sigToken{jump: true, lo: lo, hi: hi})
			i += end + 1
			continue
		case '(', ')', '[', ']', '|', '!':
			return nil, unsupportedf("hex signature: %q at position %d: alternatives, negations, [n-m] and (B)/(L) anchors are not supported", c, i)
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("hex signature: odd number of hex digits (lone %q at position %d)", c, i)
		}
		d := s[i+1]
		hi, lo := hexVal(c), hexVal(d)
		var b sigByte
		switch {
		case c == '?' && d == '?':
			b = sigByte{0, 0}
		case c == '?' && lo >= 0:
			b = sigByte{byte(lo), 0x0f}
		case hi >= 0 && d == '?':
			b = sigByte{byte(hi << 4), 0xf0}
		case hi >= 0 && lo >= 0:
			b = sigByte{byte(hi<<4 | lo), 0xff}
		default:
			bad, at := c, i
			if hi >= 0 || c == '?' {
				bad, at = d, i+1
			}
			if bad == '*' || bad == '{' {
				return nil, fmt.Errorf("hex signature: odd number of hex digits before %q at position %d", bad, at)
			}
			return nil, fmt.Errorf("hex signature: invalid character %q at position %d", bad, at)
		}
		toks = append(toks, sigToken{b: b})
		i += 2
	}
	return toks, nil
}

// parseSigJump parses the inside of {n}, {n-m}, {-m} or {n-}.
func parseSigJump(s string) (lo, hi int64, err error) {
	a, b, ranged := strings.Cut(s, "-")
	if !ranged {
		n, err := parseSigNumber(s)
		if err != nil {
			return 0, 0, errors.New("want {n}, {n-m}, {-m} or {n-}")
		}
		return n, n, nil
	}
	if a == "" && b == "" {
		return 0, 0, errors.New("want {n}, {n-m}, {-m} or {n-}")
	}
	if a != "" {
		if lo, err = parseSigNumber(a); err != nil {
			return 0, 0, errors.New("want {n}, {n-m}, {-m} or {n-}")
		}
	}
	hi = -1
	if b != "" {
		if hi, err = parseSigNumber(b); err != nil {
			return 0, 0, errors.New("want {n}, {n-m}, {-m} or {n-}")
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("range %d-%d is backwards", lo, hi)
		}
	}
	return lo, hi, nil
}

// compileBodySignature checks a body signature and builds its matcher form.
// A *sigUnsupported error means valid ClamAV syntax not implemented here.
func compileBodySignature(sig BodySignature) (*sigCompiled, error) {
	if sig.Name == "" {
		return nil, errors.New("empty signature name")
	}
	if sig.Offset < AnyOffset || sig.Offset > sigMaxNumber || sig.MaxShift < 0 || sig.MaxShift > sigMaxNumber {
		return nil, fmt.Errorf("offset %d,%d out of range", sig.Offset, sig.MaxShift)
	}
	if sig.Offset == AnyOffset && sig.MaxShift != 0 {
		return nil, errors.New("a max shift needs an absolute offset")
	}
	toks, err := tokenizeHexSig(sig.Hex)
	if err != nil {
		return nil, err
	}
	if toks[0].jump {
		return nil, errors.New("hex signature starts with a jump")
	}
	if toks[len(toks)-1].jump {
		return nil, errors.New("hex signature ends with a jump")
	}
	c := &sigCompiled{name: sig.Name, offset: sig.Offset, shift: sig.MaxShift, segGap: []int64{0}}
	var seg sigSegment
	var part sigPart
	for i := 0; i < len(toks); {
		if !toks[i].jump {
			part = append(part, toks[i].b)
			i++
			continue
		}
		g := sigGap{}
		for ; i < len(toks) && toks[i].jump; i++ {
			g.lo += toks[i].lo
			if g.hi >= 0 && toks[i].hi >= 0 {
				g.hi += toks[i].hi
			} else {
				g.hi = -1
			}
		}
		if g.lo > sigMaxNumber {
			return nil, errors.New("hex signature: jumps too long")
		}
		seg.parts = append(seg.parts, part)
		part = nil
		if g.hi >= 0 {
			seg.gaps = append(seg.gaps, g)
			continue
		}
		c.segs = append(c.segs, seg)
		c.segGap = append(c.segGap, g.lo)
		seg = sigSegment{}
	}
	seg.parts = append(seg.parts, part)
	c.segs = append(c.segs, seg)

	longest := 0
	for k := range c.segs {
		c.segs[k].measure()
		longest = max(longest, c.segs[k].longestLiteralFragment)
	}
	if longest < 2 {
		return nil, errors.New("hex signature has no run of at least 2 literal bytes (it would match almost anything)")
	}
	for k := range c.segs {
		s := &c.segs[k]
		if len(s.anchor) == 0 {
			return nil, unsupportedf("hex signature: part %d (between unbounded jumps) has no literal byte", k+1)
		}
		if s.maxLen > sigMaxSegmentSpan {
			return nil, unsupportedf("hex signature: bounded jumps make part %d up to %d bytes long; the limit is %d (use * or {n-} for longer distances)", k+1, s.maxLen, sigMaxSegmentSpan)
		}
	}
	return c, nil
}

// sigMaxAnchor caps the bytes of an anchor given to the automaton; the rest
// of the segment is checked around each hit. (ClamAV's own automaton goes
// only 2-3 bytes deep.) Shorter anchors keep the automaton small.
const sigMaxAnchor = 8

// sigCommonByte marks byte values frequent in files (padding, NOPs,
// spaces), which make poor anchors.
func sigCommonByte(b byte) bool {
	switch b {
	case 0x00, 0xff, 0x20, 0x90, 0xcc, '0', 'A', 'a', 'e':
		return true
	}
	return false
}

// measure picks the segment's anchor, up to sigMaxAnchor literal bytes in a
// row (the longest possible, then the fewest common bytes, then the first),
// and works out its extents.
func (s *sigSegment) measure() {
	best, bestScore, bestPart, bestOff := 0, -1, 0, 0
	for pi, p := range s.parts {
		for i := 0; i < len(p); {
			if p[i].mask != 0xff {
				i++
				continue
			}
			j := i
			for j < len(p) && p[j].mask == 0xff {
				j++
			}
			s.longestLiteralFragment = max(s.longestLiteralFragment, j-i)
			w := min(j-i, sigMaxAnchor)
			for st := i; st+w <= j; st++ {
				score := 0
				for k := st; k < st+w; k++ {
					if !sigCommonByte(p[k].val) {
						score++
					}
				}
				if w > best || w == best && score > bestScore {
					best, bestScore, bestPart, bestOff = w, score, pi, st
				}
			}
			i = j
		}
	}
	if best == 0 {
		return
	}
	s.anchorPart, s.anchorOff = bestPart, bestOff
	s.anchor = make([]byte, best)
	for i := range s.anchor {
		s.anchor[i] = s.parts[bestPart][bestOff+i].val
	}
	var rmin, rmax int64
	for i := 0; i < bestPart; i++ {
		rmin += int64(len(s.parts[i])) + s.gaps[i].lo
		rmax += int64(len(s.parts[i])) + s.gaps[i].hi
	}
	s.relMin, s.relMax = rmin+int64(bestOff), rmax+int64(bestOff)
	tail := int64(len(s.parts[bestPart]) - bestOff - best)
	s.rightMin, s.rightMax = tail, tail
	for i := bestPart + 1; i < len(s.parts); i++ {
		s.rightMin += s.gaps[i-1].lo + int64(len(s.parts[i]))
		s.rightMax += s.gaps[i-1].hi + int64(len(s.parts[i]))
	}
	s.minLen = s.relMin + int64(best) + s.rightMin
	s.maxLen = s.relMax + int64(best) + s.rightMax
}
