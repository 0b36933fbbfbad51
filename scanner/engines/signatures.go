package engines

// The signature engine matches every body signature in one streaming pass.
//
// Each signature is compiled (sigfile.go) into segments separated by
// unbounded jumps ("*", "{n-}"); a segment is parts separated by bounded
// jumps ("{n-m}"), and a part is a run of masked bytes. Up to 8 bytes of
// the longest literal run of every segment (its anchor) go into one
// Aho–Corasick automaton; every hit is checked against the whole segment
// (see verify: the positions each part may take within the bounded jumps
// are walked outwards from the anchor).
//
// The stream is read into a buffer that keeps, besides the new chunk, the
// last left+overlap bytes already searched and holds back the last right
// bytes from the search until more arrive (left and right being the furthest
// a segment reaches before and after its anchor, overlap the longest anchor
// less one). So every anchor hit is found exactly once, also across chunk
// boundaries, and the whole segment around it is in the buffer when it is
// checked: memory is a few chunks, whatever the file's size.
//
// Segments are chained greedily: per signature and segment the scan keeps
// one number, the earliest position where the segment may start (the
// earliest end of the previous segment found so far, plus the jump's
// minimum). Choosing the earliest end never loses a match, so this state is
// exact and bounded by the signature's own size. A hit for a segment whose
// predecessor has not been found yet is dropped; hits come in stream order,
// and a predecessor always ends before its successor's anchor does.
//
// Signatures with an absolute offset and a single segment that ends within
// the first 256 KiB are checked directly on the head of the file instead of
// through the automaton; when every signature is such (or is otherwise
// anchored and already decided) the engine stops reading early.
//
// Limits: a segment spans at most 64 KiB (longer bounded jumps are refused
// at load); checking a hit costs up to the segment's span, so a segment with
// wide bounded jumps around an anchor that occurs very often is slow; a
// segment whose only literal bytes stand alone has a one-byte anchor, which
// hits on every occurrence of that byte once the segment before it is found.

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dense "github.com/BobuSumisu/aho-corasick"
	sparse "github.com/petar-dambovaliev/aho-corasick"

	"github.com/scangate/scangate/pkg/result"
)

// builtinDefTime dates the built-in signature set; bump it with the set.
const builtinDefTime = "2026-11-21T00:00:00.000Z"

// eicar is the EICAR anti-virus test file. It is assembled at run time so
// that scangate's own source and binary are not flagged by virus scanners.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-" + `TEST-FILE!$H+H*`)
}

// EICARName is the threat name reported for the EICAR test file.
const EICARName = "EICAR-Test-File"

const (
	sigChunk   = 256 << 10 // bytes read and searched at a time
	sigHeadCap = 256 << 10 // anchored signatures ending within this are checked on the head
	// sigDenseMaxStates picks the automaton. Up to this many states (some
	// 4,000 signatures of 8-byte anchors or more, as prefixes are shared)
	// it is github.com/BobuSumisu/aho-corasick, a full 256-way transition
	// table: 2 KiB a state, so at most 64 MiB, searching at hundreds of
	// MB/s. Beyond, it is the NFA of github.com/petar-dambovaliev/aho-corasick,
	// whose sparse states take little memory but search about 5 times slower.
	sigDenseMaxStates = 32 << 10
)

// sigAutomaton finds every occurrence of every anchor, overlapping ones too.
type sigAutomaton interface {
	// walk calls fn with the pattern and the end (exclusive) of each
	// occurrence in hay, in order of end.
	walk(hay []byte, fn func(pattern, end int))
}

type sigDense struct{ t *dense.Trie }

func (a sigDense) walk(hay []byte, fn func(pattern, end int)) {
	a.t.Walk(hay, func(end, _, pattern int64) bool {
		fn(int(pattern), int(end)+1)
		return true
	})
}

type sigSparse struct{ ac sparse.AhoCorasick }

func (a sigSparse) walk(hay []byte, fn func(pattern, end int)) {
	it := a.ac.IterOverlappingByte(hay)
	for m := it.Next(); m != nil; m = it.Next() {
		fn(m.Pattern(), m.End())
	}
}

// Signatures matches body signatures while the file streams past.
type Signatures struct {
	sigs    []*sigCompiled
	segBase []int // index of a signature's first segment in sigScan.minStart
	nSegs   int

	ac       sigAutomaton
	hasAC    bool
	patterns [][]byte   // the automaton's patterns: distinct anchors
	users    [][]sigRef // per pattern: the segments anchored on it

	head    []int // signatures checked on the head of the file
	headLen int64

	acAnchored []int   // anchored signatures matched through the automaton
	deadline   []int64 // per signature: searched this far, an anchored first segment is decided
	unanchored int     // signatures that stay undecided until EOF

	left, right, overlap int64
	bufCap               int
	pool                 sync.Pool
	info                 Info
}

type sigRef struct{ sig, seg int }

// sigOptions are knobs for tests.
type sigOptions struct {
	chunk   int   // 0: sigChunk
	headCap int64 // 0: sigHeadCap; <0: no head checks
	dense   int   // 0: by size, 1: dense, 2: sparse automaton
}

// NewSignatures returns the engine with its built-in signature (EICAR) plus
// the body signatures of the sets given; nil sets are skipped, so
// NewSignatures() and NewSignatures(nil) give the built-ins only. DefTime is
// the newest DefTime of the sets, or the built-ins' date. A signature that
// does not compile is an error naming its Source.
func NewSignatures(sets ...*SignatureSet) (*Signatures, error) {
	return newSignatures(sigOptions{}, sets...)
}

func newSignatures(o sigOptions, sets ...*SignatureSet) (*Signatures, error) {
	if o.chunk <= 0 {
		o.chunk = sigChunk
	}
	if o.headCap == 0 {
		o.headCap = sigHeadCap
	}
	body := []BodySignature{{Name: EICARName, Offset: 0, Hex: hex.EncodeToString(eicar()), Source: "built-in"}}
	var defTime time.Time
	for _, set := range sets {
		if set == nil {
			continue
		}
		body = append(body, set.Body...)
		if set.DefTime.After(defTime) {
			defTime = set.DefTime
		}
	}
	s := &Signatures{info: Info{ID: "signatures", Name: "Signatures", Version: "2.0.0", DefTime: builtinDefTime, Loaded: time.Now()}}
	if !defTime.IsZero() {
		s.info.DefTime = result.FormatTime(defTime)
	}
	s.deadline = make([]int64, len(body))
	patterns := map[string]int{}
	var pats [][]byte
	for i, b := range body {
		c, err := compileBodySignature(b)
		if err != nil {
			src := b.Source
			if src == "" {
				src = "signature " + strconv.Quote(b.Name)
			}
			return nil, fmt.Errorf("signatures: %s: %w", src, err)
		}
		s.sigs = append(s.sigs, c)
		s.segBase = append(s.segBase, s.nSegs)
		s.nSegs += len(c.segs)
		seg0 := &c.segs[0]
		switch {
		case c.offset != AnyOffset && len(c.segs) == 1 && o.headCap > 0 && c.offset+c.shift+seg0.maxLen <= o.headCap:
			s.head = append(s.head, i)
			s.headLen = max(s.headLen, c.offset+c.shift+seg0.maxLen)
			continue
		case c.offset != AnyOffset:
			s.acAnchored = append(s.acAnchored, i)
			s.deadline[i] = c.offset + c.shift + seg0.relMax + int64(len(seg0.anchor))
		default:
			s.unanchored++
		}
		for k := range c.segs {
			seg := &c.segs[k]
			id, ok := patterns[string(seg.anchor)]
			if !ok {
				id = len(pats)
				patterns[string(seg.anchor)] = id
				pats = append(pats, seg.anchor)
				s.users = append(s.users, nil)
			}
			s.users[id] = append(s.users[id], sigRef{i, k})
			s.left = max(s.left, seg.relMax)
			s.right = max(s.right, seg.rightMax)
			s.overlap = max(s.overlap, int64(len(seg.anchor)-1))
		}
	}
	s.patterns = pats
	if len(pats) > 0 {
		if o.dense == 1 || o.dense == 0 && sigTrieStates(pats) <= sigDenseMaxStates {
			s.ac = sigDense{dense.NewTrieBuilder().AddPatterns(pats).Build()}
		} else {
			b := sparse.NewAhoCorasickBuilder(sparse.Opts{MatchKind: sparse.StandardMatch})
			s.ac = sigSparse{b.BuildByte(pats)}
		}
		s.hasAC = true
		s.bufCap = int(s.left+s.overlap+s.right) + o.chunk
	}
	s.bufCap = max(s.bufCap, int(s.headLen), 1)
	s.pool.New = func() any {
		return &sigScan{s: s, buf: make([]byte, 0, s.bufCap), minStart: make([]int64, s.nSegs)}
	}
	return s, nil
}

// sigTrieStates counts the states of a trie of pats: one per distinct
// prefix, and the root.
func sigTrieStates(pats [][]byte) int {
	sorted := slices.Clone(pats)
	slices.SortFunc(sorted, bytes.Compare)
	n := 1
	for i, p := range sorted {
		common := 0
		if i > 0 {
			prev := sorted[i-1]
			for common < len(p) && common < len(prev) && p[common] == prev[common] {
				common++
			}
		}
		n += len(p) - common
	}
	return n
}

func (s *Signatures) Info() Info { return s.info }

// Len is the number of body signatures, the built-in ones included.
func (s *Signatures) Len() int { return len(s.sigs) }

// ScanStream reports the first signature found as Infected. It reads to EOF
// unless every signature is anchored and already decided.
func (s *Signatures) ScanStream(ctx context.Context, _ *Input, r io.Reader) (Finding, error) {
	if err := ctx.Err(); err != nil {
		return Finding{}, err
	}
	st := s.pool.Get().(*sigScan)
	defer s.pool.Put(st)
	st.reset()

	var base, total, scanned int64 // stream positions: of buf[0], read, searched
	headDone := len(s.head) == 0
	buf := st.buf[:0]
	zeroReads := 0
	for {
		n, rerr := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		total += int64(n)
		eof := errors.Is(rerr, io.EOF)
		if rerr != nil && !eof {
			return Finding{}, rerr
		}
		if n == 0 && !eof {
			if zeroReads++; zeroReads > 100 {
				return Finding{}, io.ErrNoProgress
			}
		} else {
			zeroReads = 0
		}
		if !headDone && (eof || total >= s.headLen) {
			// Nothing has been dropped from buf yet: base is 0.
			st.checkHead(buf[:min(int64(len(buf)), s.headLen)])
			headDone = true
		}
		if s.hasAC && (eof || len(buf) == cap(buf)) {
			limit := total - s.right
			if eof {
				limit = total
			}
			if limit > scanned {
				st.search(buf, base, scanned, limit)
				scanned = limit
			}
			if keep := max(0, scanned-s.overlap-s.left); keep > base {
				m := copy(buf, buf[keep-base:])
				buf = buf[:m]
				base = keep
			}
		}
		if st.found {
			return Finding{Code: result.Infected, Threat: s.sigs[st.bestSig].name}, nil
		}
		if eof || headDone && s.allDecided(st, scanned) {
			return Finding{Code: result.NoThreat}, ctx.Err()
		}
		if err := ctx.Err(); err != nil {
			return Finding{}, err
		}
	}
}

// allDecided reports whether no signature can match any more, given that
// the head checks are done and the stream has been searched up to scanned.
func (s *Signatures) allDecided(st *sigScan, scanned int64) bool {
	if s.unanchored > 0 {
		return false
	}
	for _, i := range s.acAnchored {
		if scanned < s.deadline[i] {
			return false
		}
		if len(s.sigs[i].segs) > 1 && st.minStart[s.segBase[i]+1] >= 0 {
			return false // first segment found: the rest may be anywhere
		}
	}
	return true
}

// sigScan is the state of one ScanStream call.
type sigScan struct {
	s        *Signatures
	buf      []byte
	minStart []int64 // per segment (index segBase+k, k >= 1): earliest start, -1 until reachable
	cur, nxt []int64 // scratch for verify

	found   bool
	bestEnd int64
	bestSig int
}

func (st *sigScan) reset() {
	for i := range st.minStart {
		st.minStart[i] = -1
	}
	st.found, st.bestEnd, st.bestSig = false, 0, 0
}

// record notes that signature i matched, ending at end. Among matches found
// in the same step, the one ending first wins, then the one loaded first.
func (st *sigScan) record(end int64, i int) {
	if !st.found || end < st.bestEnd || end == st.bestEnd && i < st.bestSig {
		st.found, st.bestEnd, st.bestSig = true, end, i
	}
}

// checkHead checks the head-anchored signatures against the file's first
// bytes (all of them, if the file is shorter than headLen).
func (st *sigScan) checkHead(head []byte) {
	for _, i := range st.s.head {
		c := st.s.sigs[i]
		seg := &c.segs[0]
		lo, hi := c.offset, c.offset+c.shift
		from := lo + seg.relMin
		to := min(int64(len(head)), hi+seg.relMax+int64(len(seg.anchor)))
		for from+int64(len(seg.anchor)) <= to {
			j := bytes.Index(head[from:to], seg.anchor)
			if j < 0 {
				break
			}
			at := from + int64(j)
			if end, ok := st.verify(seg, at, lo, hi, head, 0); ok {
				st.record(end, i)
				break
			}
			from = at + 1
		}
	}
}

// search runs the automaton over the stream from scanned-overlap to limit
// and handles every anchor hit that ends after scanned. buf holds the stream
// from base on.
func (st *sigScan) search(buf []byte, base, scanned, limit int64) {
	s := st.s
	from := max(scanned-s.overlap, 0)
	s.ac.walk(buf[from-base:limit-base], func(pattern, end int) {
		e := from + int64(end)
		if e <= scanned {
			return // found by the previous search
		}
		at := e - int64(len(s.patterns[pattern]))
		for _, ref := range s.users[pattern] {
			st.hit(ref, at, buf, base)
		}
	})
}

// hit handles the anchor of segment ref.seg of signature ref.sig found at
// stream position at.
func (st *sigScan) hit(ref sigRef, at int64, buf []byte, base int64) {
	s := st.s
	c := s.sigs[ref.sig]
	seg := &c.segs[ref.seg]
	lo, hi := int64(0), int64(math.MaxInt64)
	switch {
	case ref.seg > 0:
		if lo = st.minStart[s.segBase[ref.sig]+ref.seg]; lo < 0 {
			return // the previous segment has not been found
		}
	case c.offset != AnyOffset:
		lo, hi = c.offset, c.offset+c.shift
	}
	if at-seg.relMin < lo || at-seg.relMax > hi {
		return
	}
	// Skip a hit that cannot improve on what is known.
	earliestEnd := at + int64(len(seg.anchor)) + seg.rightMin
	last := ref.seg == len(c.segs)-1
	next := s.segBase[ref.sig] + ref.seg + 1
	if last {
		if st.found && earliestEnd > st.bestEnd {
			return
		}
	} else if cur := st.minStart[next]; cur >= 0 && earliestEnd+c.segGap[ref.seg+1] >= cur {
		return
	}
	end, ok := st.verify(seg, at, lo, hi, buf, base)
	if !ok {
		return
	}
	if last {
		st.record(end, ref.sig)
		return
	}
	if v := end + c.segGap[ref.seg+1]; st.minStart[next] < 0 || v < st.minStart[next] {
		st.minStart[next] = v
	}
}

// verify checks segment seg around its anchor at stream position at: the
// parts before the anchor must fit with the segment starting in [lo, hi],
// and the parts after it must fit. It returns the earliest end. buf holds
// the stream from base on; parts reaching outside it do not match.
func (st *sigScan) verify(seg *sigSegment, at, lo, hi int64, buf []byte, base int64) (int64, bool) {
	bufEnd := base + int64(len(buf))
	partAt := func(p sigPart, pos int64) bool {
		return pos >= base && pos+int64(len(p)) <= bufEnd && p.matchAt(buf[pos-base:])
	}
	a := seg.anchorPart
	pa := at - int64(seg.anchorOff)
	if !partAt(seg.parts[a], pa) {
		return 0, false
	}

	// Before the anchor: walk back part by part, keeping every position
	// each part may take (positions ascend, so the candidate ranges are
	// merged as they are walked).
	if a == 0 {
		if pa < lo || pa > hi {
			return 0, false
		}
	} else {
		cur := append(st.cur[:0], pa)
		ok := false
		for i := a - 1; i >= 0 && !ok; i-- {
			p, g, pl := seg.parts[i], seg.gaps[i], int64(len(seg.parts[i]))
			nxt := st.nxt[:0]
			done := int64(math.MinInt64)
			for _, pp := range cur {
				qa, qb := pp-pl-g.hi, pp-pl-g.lo
				if i == 0 {
					qa, qb = max(qa, lo), min(qb, hi)
				}
				for q := max(qa, done+1, base); q <= qb; q++ {
					if partAt(p, q) {
						if i == 0 {
							ok = true
							break
						}
						nxt = append(nxt, q)
					}
				}
				done = max(done, qb)
				if ok {
					break
				}
			}
			if len(nxt) == 0 && !ok {
				st.cur, st.nxt = cur, nxt
				return 0, false
			}
			cur, nxt = nxt, cur
			st.cur, st.nxt = cur, nxt
		}
	}

	// After the anchor: the same forwards; the earliest end is wanted.
	if a == len(seg.parts)-1 {
		return pa + int64(len(seg.parts[a])), true
	}
	cur := append(st.cur[:0], pa)
	for i := a + 1; i < len(seg.parts); i++ {
		p, g, prev := seg.parts[i], seg.gaps[i-1], int64(len(seg.parts[i-1]))
		pl := int64(len(p))
		lastPart := i == len(seg.parts)-1
		nxt := st.nxt[:0]
		done := int64(math.MinInt64)
	walk:
		for _, pp := range cur {
			qa, qb := pp+prev+g.lo, pp+prev+g.hi
			for q := max(qa, done+1); q <= qb; q++ {
				if q+pl > bufEnd {
					break walk
				}
				if partAt(p, q) {
					nxt = append(nxt, q)
					if lastPart {
						break walk
					}
				}
			}
			done = max(done, qb)
		}
		cur, nxt = nxt, cur
		st.cur, st.nxt = cur, nxt
		if len(cur) == 0 {
			return 0, false
		}
	}
	return cur[0] + int64(len(seg.parts[len(seg.parts)-1])), true
}

// HashSignatures reports files whose md5, sha1 or sha256 (and size, unless
// the signature says any size) is in a .hdb or .hsb file. It is the hash
// half of a SignatureSet; wire it beside the Signatures engine.
type HashSignatures struct {
	byDigest map[string][]hashSigEntry // lowercase hex → entries
	n        int
	info     Info
}

type hashSigEntry struct {
	size int64
	name string
}

// HashEngine returns the engine for the set's hash signatures, or nil when
// the set (or s itself) has none.
func (s *SignatureSet) HashEngine() *HashSignatures {
	if s == nil || len(s.Hashes) == 0 {
		return nil
	}
	h := &HashSignatures{byDigest: make(map[string][]hashSigEntry, len(s.Hashes)),
		info: Info{ID: "signature-hashes", Name: "SignatureHashes", Version: "2.0.0", DefTime: builtinDefTime, Loaded: time.Now()}}
	if !s.DefTime.IsZero() {
		h.info.DefTime = result.FormatTime(s.DefTime)
	}
	for _, sig := range s.Hashes {
		d := strings.ToLower(sig.Digest)
		h.byDigest[d] = append(h.byDigest[d], hashSigEntry{size: sig.Size, name: sig.Name})
		h.n++
	}
	return h
}

func (h *HashSignatures) Info() Info { return h.info }

// Len is the number of hash signatures.
func (h *HashSignatures) Len() int { return h.n }

func (h *HashSignatures) ScanHashes(ctx context.Context, in *Input) (Finding, error) {
	for _, d := range []string{in.Hashes.SHA256, in.Hashes.SHA1, in.Hashes.MD5} {
		if d == "" {
			continue
		}
		for _, e := range h.byDigest[strings.ToLower(d)] {
			if e.size == AnySize || e.size == in.Size {
				return Finding{Code: result.Infected, Threat: e.name}, nil
			}
		}
	}
	return Finding{Code: result.NoThreat}, ctx.Err()
}
