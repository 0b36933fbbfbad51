// Package rangeset keeps the set of byte ranges received for one multipart
// upload: parts arrive in parallel, out of order, overlapping and retried, and
// the set answers how much is new, how much is covered, what is still missing
// and whether the file is complete.
//
// A Set is a sorted slice of merged, non-overlapping, non-adjacent half-open
// intervals [Off, Off+Len), all inside [0, math.MaxInt64]. It is not safe for
// concurrent use; callers serialise access (one session, one lock).
package rangeset

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
)

// Range is the half-open byte interval [Off, Off+Len). In JSON it is the
// two-element array [off, len], as in the API's "ranges" and "missing".
type Range struct{ Off, Len int64 }

// End returns Off+Len, the first byte after the range.
func (r Range) End() int64 { return r.Off + r.Len }

// MarshalJSON encodes r as [off, len].
func (r Range) MarshalJSON() ([]byte, error) {
	return r.appendJSON(make([]byte, 0, 24)), nil
}

func (r Range) appendJSON(b []byte) []byte {
	b = append(b, '[')
	b = strconv.AppendInt(b, r.Off, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.Len, 10)
	return append(b, ']')
}

// UnmarshalJSON decodes [off, len]: exactly two JSON integers (no fractions,
// exponents or quoted numbers) that fit in an int64. It checks the shape only;
// Set.UnmarshalJSON checks that the range is valid. JSON null is a no-op.
func (r *Range) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("rangeset: range must be a [offset, length] array: %w", err)
	}
	if len(raw) != 2 {
		return fmt.Errorf("rangeset: range must have 2 elements, got %d", len(raw))
	}
	off, err := strconv.ParseInt(string(raw[0]), 10, 64)
	if err != nil {
		return errors.New("rangeset: range offset is not an int64")
	}
	n, err := strconv.ParseInt(string(raw[1]), 10, 64)
	if err != nil {
		return errors.New("rangeset: range length is not an int64")
	}
	*r = Range{Off: off, Len: n}
	return nil
}

// Set is a set of byte offsets stored as sorted, merged intervals. The zero
// value is an empty set ready to use. In JSON it is an array of Range.
//
// Copying a Set value shares its storage: Add on either copy may corrupt the
// other. Use Clone for an independent copy.
type Set struct {
	r       []Range // sorted by Off; r[i].End() < r[i+1].Off (no overlap, no adjacency)
	covered int64   // sum of r[i].Len
}

// valid reports whether [off, off+n) is a non-empty range that fits in int64.
func valid(off, n int64) bool {
	return off >= 0 && n > 0 && n <= math.MaxInt64-off
}

// Add merges [off, off+n) into the set and returns how many of its bytes were
// not covered before. n <= 0, off < 0 or off+n overflowing int64 change
// nothing and return 0.
//
// It costs two binary searches plus the k intervals it merges, and one
// memmove of the slice tail when an interval is inserted or k > 1 intervals
// collapse into one; appending past the end (in-order uploads) is O(1)
// amortised.
func (s *Set) Add(off, n int64) (added int64) {
	if !valid(off, n) {
		return 0
	}
	end := off + n
	r := s.r
	// Fast path: strictly after the last interval (not even touching it).
	if len(r) == 0 || off > r[len(r)-1].End() {
		s.r = append(r, Range{Off: off, Len: n})
		s.covered += n
		return n
	}
	// i: first interval that ends at or after off (overlaps or touches on the left).
	i := sort.Search(len(r), func(k int) bool { return r[k].End() >= off })
	// j: first interval at or after i that starts strictly after end; r[i:j]
	// all overlap or touch [off, end) and merge with it.
	j := i + sort.Search(len(r)-i, func(k int) bool { return r[i+k].Off > end })
	if i == j {
		s.r = slices.Insert(r, i, Range{Off: off, Len: n})
		s.covered += n
		return n
	}
	lo, hi := min(off, r[i].Off), max(end, r[j-1].End())
	var old int64
	for _, x := range r[i:j] {
		old += x.Len
	}
	// The merged interval is the union of [off,end) and r[i:j], so its
	// length minus what r[i:j] already covered is exactly the new bytes.
	added = (hi - lo) - old
	r[i] = Range{Off: lo, Len: hi - lo}
	s.r = slices.Delete(r, i+1, j)
	s.covered += added
	return added
}

// Covered returns the total number of bytes in the set.
func (s *Set) Covered() int64 { return s.covered }

// Complete reports whether every byte of [0, total) is in the set. The empty
// range (total <= 0) is trivially complete.
func (s *Set) Complete(total int64) bool {
	if total <= 0 {
		return true
	}
	return len(s.r) > 0 && s.r[0].Off == 0 && s.r[0].Len >= total
}

// PrefixEnd returns the end of the contiguous run of bytes starting at offset
// 0, or 0 when byte 0 is not in the set. Bytes [0, PrefixEnd()) are all present.
func (s *Set) PrefixEnd() int64 {
	if len(s.r) > 0 && s.r[0].Off == 0 {
		return s.r[0].Len
	}
	return 0
}

// Missing returns the gaps of [0, total) in order: exactly the ranges a client
// must still send. Intervals at or beyond total are ignored. The result is
// never nil (it marshals as [] rather than null); it is empty when complete or
// when total <= 0.
func (s *Set) Missing(total int64) []Range {
	out := []Range{}
	if total <= 0 {
		return out
	}
	var pos int64
	for _, x := range s.r {
		if x.Off >= total {
			break
		}
		if x.Off > pos {
			out = append(out, Range{Off: pos, Len: x.Off - pos})
		}
		pos = x.End()
		if pos >= total {
			return out
		}
	}
	return append(out, Range{Off: pos, Len: total - pos})
}

// Ranges returns a copy of the intervals in order. It is never nil.
func (s *Set) Ranges() []Range {
	out := make([]Range, len(s.r))
	copy(out, s.r)
	return out
}

// Clone returns an independent copy of the set.
func (s *Set) Clone() Set {
	if len(s.r) == 0 {
		return Set{}
	}
	return Set{r: slices.Clone(s.r), covered: s.covered}
}

// Len returns the number of intervals.
func (s *Set) Len() int { return len(s.r) }

// MarshalJSON encodes the set as [[off,len],...]; the empty set is [].
func (s Set) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(s.r)*16)
	b = append(b, '[')
	for i, x := range s.r {
		if i > 0 {
			b = append(b, ',')
		}
		b = x.appendJSON(b)
	}
	return append(b, ']'), nil
}

// UnmarshalJSON replaces the set with the ranges in data, an array of
// [off, len] pairs in any order. Overlapping and adjacent ranges are merged.
// A negative offset, a length <= 0 or an off+len overflowing int64 is an
// error, and so is anything that is not such an array; on error the set is
// left unchanged. JSON null is a no-op.
func (s *Set) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	var in []Range
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	for i, x := range in {
		if !valid(x.Off, x.Len) {
			return fmt.Errorf("rangeset: invalid range #%d [%d,%d]", i, x.Off, x.Len)
		}
	}
	slices.SortFunc(in, func(a, b Range) int { return cmp.Compare(a.Off, b.Off) })
	out := in[:0]
	var covered int64
	for _, x := range in {
		if k := len(out) - 1; k >= 0 && x.Off <= out[k].End() {
			if e := x.End(); e > out[k].End() {
				covered += e - out[k].End()
				out[k].Len = e - out[k].Off
			}
			continue
		}
		out = append(out, x)
		covered += x.Len
	}
	if len(out) == 0 {
		out = nil
	}
	s.r, s.covered = out, covered
	return nil
}
