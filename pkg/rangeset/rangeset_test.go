package rangeset

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

const maxI = math.MaxInt64

// checkInvariants verifies the internal representation: sorted, non-empty,
// in-bounds, non-overlapping, non-adjacent intervals whose lengths sum to
// covered.
func checkInvariants(t testing.TB, s *Set) {
	t.Helper()
	var sum int64
	for i, x := range s.r {
		if x.Off < 0 || x.Len <= 0 || x.Len > maxI-x.Off {
			t.Fatalf("interval #%d %v out of bounds; set %v", i, x, s.r)
		}
		if i > 0 && s.r[i-1].End() >= x.Off {
			t.Fatalf("intervals #%d %v and #%d %v overlap or touch; set %v", i-1, s.r[i-1], i, x, s.r)
		}
		sum += x.Len
	}
	if sum != s.covered {
		t.Fatalf("covered = %d, intervals sum to %d; set %v", s.covered, sum, s.r)
	}
	if s.Len() != len(s.r) {
		t.Fatalf("Len() = %d, want %d", s.Len(), len(s.r))
	}
}

// checkTiling verifies that Missing(total) and Ranges() clipped to total
// alternate and tile [0, total) exactly: every byte is either covered or
// missing, never both, and Missing's gaps are maximal.
func checkTiling(t testing.TB, s *Set, total int64) {
	t.Helper()
	miss := s.Missing(total)
	if miss == nil {
		t.Fatalf("Missing(%d) returned nil", total)
	}
	if total <= 0 {
		if len(miss) != 0 {
			t.Fatalf("Missing(%d) = %v, want []", total, miss)
		}
		return
	}
	type piece struct {
		Range
		missing bool
	}
	var pieces []piece
	for _, x := range s.Ranges() {
		if x.Off >= total {
			break
		}
		pieces = append(pieces, piece{Range{x.Off, min(x.End(), total) - x.Off}, false})
	}
	// merge the two sorted lists
	var all []piece
	i, j := 0, 0
	for i < len(pieces) || j < len(miss) {
		if j == len(miss) || (i < len(pieces) && pieces[i].Off < miss[j].Off) {
			all = append(all, pieces[i])
			i++
		} else {
			all = append(all, piece{miss[j], true})
			j++
		}
	}
	var pos, gaps int64
	for k, p := range all {
		if p.Off != pos || p.Len <= 0 {
			t.Fatalf("Missing(%d)=%v and Ranges()=%v do not tile: piece %v at pos %d", total, miss, s.Ranges(), p, pos)
		}
		if k > 0 && all[k-1].missing == p.missing {
			t.Fatalf("Missing(%d)=%v: consecutive pieces of the same kind at %d (ranges %v)", total, miss, p.Off, s.Ranges())
		}
		if p.missing {
			gaps += p.Len
		}
		pos = p.End()
	}
	if pos != total {
		t.Fatalf("Missing(%d)=%v and Ranges()=%v end at %d", total, miss, s.Ranges(), pos)
	}
	if want := s.Complete(total); want != (gaps == 0) {
		t.Fatalf("Complete(%d) = %v but Missing = %v", total, want, miss)
	}
}

func TestZeroValue(t *testing.T) {
	var s Set
	checkInvariants(t, &s)
	if s.Covered() != 0 || s.Len() != 0 || s.PrefixEnd() != 0 {
		t.Fatalf("zero Set not empty: covered %d len %d prefix %d", s.Covered(), s.Len(), s.PrefixEnd())
	}
	if r := s.Ranges(); r == nil || len(r) != 0 {
		t.Fatalf("Ranges() = %#v, want empty non-nil", r)
	}
	if s.Complete(1) {
		t.Fatal("empty set Complete(1)")
	}
	if !s.Complete(0) {
		t.Fatal("empty set not Complete(0)")
	}
	if got := s.Missing(10); !reflect.DeepEqual(got, []Range{{0, 10}}) {
		t.Fatalf("Missing(10) = %v", got)
	}
}

func TestAdd(t *testing.T) {
	type add struct{ off, n, want int64 }
	tests := []struct {
		name   string
		adds   []add
		ranges []Range
	}{
		{"single", []add{{0, 10, 10}}, []Range{{0, 10}}},
		{"disjoint in order", []add{{0, 10, 10}, {20, 5, 5}, {40, 1, 1}}, []Range{{0, 10}, {20, 5}, {40, 1}}},
		{"disjoint reverse", []add{{40, 1, 1}, {20, 5, 5}, {0, 10, 10}}, []Range{{0, 10}, {20, 5}, {40, 1}}},
		{"insert in middle", []add{{0, 1, 1}, {10, 1, 1}, {5, 1, 1}}, []Range{{0, 1}, {5, 1}, {10, 1}}},
		{"overlap left", []add{{10, 10, 10}, {5, 10, 5}}, []Range{{5, 15}}},
		{"overlap right", []add{{10, 10, 10}, {15, 10, 5}}, []Range{{10, 15}}},
		{"adjacent right", []add{{0, 10, 10}, {10, 10, 10}}, []Range{{0, 20}}},
		{"adjacent left", []add{{10, 10, 10}, {0, 10, 10}}, []Range{{0, 20}}},
		{"bridge two", []add{{0, 10, 10}, {20, 10, 10}, {10, 10, 10}}, []Range{{0, 30}}},
		{"bridge overlapping both", []add{{0, 10, 10}, {20, 10, 10}, {5, 20, 10}}, []Range{{0, 30}}},
		{"gap of one stays", []add{{0, 10, 10}, {11, 10, 10}}, []Range{{0, 10}, {11, 10}}},
		{"one-byte gap filled", []add{{0, 10, 10}, {11, 10, 10}, {10, 1, 1}}, []Range{{0, 21}}},
		{"contained", []add{{0, 100, 100}, {10, 10, 0}}, []Range{{0, 100}}},
		{"contained at start", []add{{0, 100, 100}, {0, 1, 0}}, []Range{{0, 100}}},
		{"contained at end", []add{{0, 100, 100}, {99, 1, 0}}, []Range{{0, 100}}},
		{"contains existing", []add{{10, 10, 10}, {0, 100, 90}}, []Range{{0, 100}}},
		{"covering many", []add{{0, 1, 1}, {2, 1, 1}, {4, 1, 1}, {6, 1, 1}, {8, 1, 1}, {0, 9, 4}}, []Range{{0, 9}}},
		{"covering many partially", []add{{10, 5, 5}, {20, 5, 5}, {30, 5, 5}, {40, 5, 5}, {12, 30, 15}}, []Range{{10, 35}}},
		{"covering middle ones only", []add{{0, 2, 2}, {10, 2, 2}, {20, 2, 2}, {30, 2, 2}, {50, 2, 2}, {9, 24, 18}}, []Range{{0, 2}, {9, 24}, {50, 2}}},
		{"overlap first stop before next", []add{{0, 5, 5}, {10, 5, 5}, {20, 5, 5}, {3, 4, 2}}, []Range{{0, 7}, {10, 5}, {20, 5}}},
		{"extends last", []add{{0, 10, 10}, {5, 10, 5}, {15, 10, 10}}, []Range{{0, 25}}},
		{"duplicates", []add{{5, 5, 5}, {5, 5, 0}, {5, 5, 0}}, []Range{{5, 5}}},
		{"duplicate retries among others", []add{{0, 4, 4}, {8, 4, 4}, {0, 4, 0}, {8, 4, 0}, {4, 4, 4}, {4, 4, 0}}, []Range{{0, 12}}},
		{"zero length", []add{{0, 0, 0}, {5, 0, 0}}, nil},
		{"zero length next to range", []add{{0, 5, 5}, {5, 0, 0}, {7, 0, 0}}, []Range{{0, 5}}},
		{"negative length", []add{{5, -1, 0}, {0, math.MinInt64, 0}}, nil},
		{"negative offset", []add{{-1, 5, 0}, {math.MinInt64, 1, 0}, {math.MinInt64, maxI, 0}}, nil},
		{"overflow", []add{{maxI, 1, 0}, {1, maxI, 0}, {maxI - 10, 11, 0}, {maxI / 2, maxI/2 + 2, 0}, {maxI, maxI, 0}}, nil},
		{"up to MaxInt64", []add{{maxI - 1, 1, 1}, {maxI - 10, 10, 9}}, []Range{{maxI - 10, 10}}},
		{"whole int64", []add{{0, maxI, maxI}, {maxI - 1, 1, 0}, {0, 1, 0}}, []Range{{0, maxI}}},
		{"seed example parts", []add{
			{0, 2000000, 2000000}, {4000000, 6485760, 6485760}, {2000000, 2000000, 2000000},
		}, []Range{{0, 10485760}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Set
			var sum int64
			for i, a := range tc.adds {
				if got := s.Add(a.off, a.n); got != a.want {
					t.Fatalf("add #%d (%d,%d) = %d, want %d (set %v)", i, a.off, a.n, got, a.want, s.r)
				}
				sum += a.want
				checkInvariants(t, &s)
			}
			want := tc.ranges
			if want == nil {
				want = []Range{}
			}
			if got := s.Ranges(); !reflect.DeepEqual(got, want) {
				t.Fatalf("Ranges() = %v, want %v", got, want)
			}
			if s.Covered() != sum {
				t.Fatalf("Covered() = %d, want %d", s.Covered(), sum)
			}
			if s.Len() != len(want) {
				t.Fatalf("Len() = %d, want %d", s.Len(), len(want))
			}
		})
	}
}

func TestRangesIsCopy(t *testing.T) {
	var s Set
	s.Add(0, 10)
	r := s.Ranges()
	r[0] = Range{100, 1}
	if got := s.Ranges(); !reflect.DeepEqual(got, []Range{{0, 10}}) {
		t.Fatalf("mutating Ranges() result changed the set: %v", got)
	}
}

func TestClone(t *testing.T) {
	var empty Set
	if c := empty.Clone(); c.Len() != 0 || c.Covered() != 0 {
		t.Fatalf("Clone of empty = %v", c.r)
	}
	var s Set
	s.Add(0, 10)
	s.Add(20, 10)
	s.Add(40, 10)
	c := s.Clone()
	checkInvariants(t, &c)
	c.Add(5, 20)   // merges in place in the clone
	s.Add(60, 1)   // may append in place in the original
	s.Add(30, 100) // merges in place in the original
	checkInvariants(t, &s)
	checkInvariants(t, &c)
	if want := []Range{{0, 30}, {40, 10}}; !reflect.DeepEqual(c.Ranges(), want) || c.Covered() != 40 {
		t.Fatalf("clone = %v covered %d, want %v", c.r, c.Covered(), want)
	}
	if want := []Range{{0, 10}, {20, 110}}; !reflect.DeepEqual(s.Ranges(), want) || s.Covered() != 120 {
		t.Fatalf("original = %v covered %d, want %v", s.r, s.Covered(), want)
	}
}

func TestMissingPrefixComplete(t *testing.T) {
	type q struct {
		total    int64
		missing  []Range
		complete bool
	}
	tests := []struct {
		name   string
		adds   []Range
		prefix int64
		qs     []q
	}{
		{"empty", nil, 0, []q{
			{10, []Range{{0, 10}}, false},
			{1, []Range{{0, 1}}, false},
			{0, nil, true},
			{-1, nil, true},
			{maxI, []Range{{0, maxI}}, false},
		}},
		{"prefix only", []Range{{0, 10}}, 10, []q{
			{10, nil, true},
			{5, nil, true},
			{11, []Range{{10, 1}}, false},
			{15, []Range{{10, 5}}, false},
		}},
		{"no prefix", []Range{{5, 5}, {20, 5}}, 0, []q{
			{30, []Range{{0, 5}, {10, 10}, {25, 5}}, false},
			{25, []Range{{0, 5}, {10, 10}}, false},
			{22, []Range{{0, 5}, {10, 10}}, false},
			{20, []Range{{0, 5}, {10, 10}}, false},
			{10, []Range{{0, 5}}, false},
			{7, []Range{{0, 5}}, false},
			{5, []Range{{0, 5}}, false},
			{3, []Range{{0, 3}}, false},
		}},
		{"prefix then holes", []Range{{0, 5}, {6, 1}, {9, 1}}, 5, []q{
			{10, []Range{{5, 1}, {7, 2}}, false},
			{12, []Range{{5, 1}, {7, 2}, {10, 2}}, false},
			{6, []Range{{5, 1}}, false},
			{5, nil, true},
		}},
		{"seed session half way", []Range{{0, 2000000}, {4000000, 6485760}}, 2000000, []q{
			{10485760, []Range{{2000000, 2000000}}, false},
		}},
		{"beyond total ignored", []Range{{0, 10}, {50, 10}}, 10, []q{
			{10, nil, true},
			{20, []Range{{10, 10}}, false},
			{50, []Range{{10, 40}}, false},
			{55, []Range{{10, 40}}, false},
			{70, []Range{{10, 40}, {60, 10}}, false},
		}},
		{"max", []Range{{0, maxI}}, maxI, []q{
			{maxI, nil, true},
			{1, nil, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Set
			for _, a := range tc.adds {
				s.Add(a.Off, a.Len)
			}
			if got := s.PrefixEnd(); got != tc.prefix {
				t.Fatalf("PrefixEnd() = %d, want %d", got, tc.prefix)
			}
			for _, q := range tc.qs {
				want := q.missing
				if want == nil {
					want = []Range{}
				}
				if got := s.Missing(q.total); !reflect.DeepEqual(got, want) {
					t.Errorf("Missing(%d) = %v, want %v", q.total, got, want)
				}
				if got := s.Complete(q.total); got != q.complete {
					t.Errorf("Complete(%d) = %v, want %v", q.total, got, q.complete)
				}
				checkTiling(t, &s, q.total)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	t.Run("range", func(t *testing.T) {
		b, err := json.Marshal(Range{3, 4})
		if err != nil || string(b) != "[3,4]" {
			t.Fatalf("Marshal(Range) = %s, %v", b, err)
		}
		var r Range
		if err := json.Unmarshal([]byte(" [ 9223372036854775807 , -1 ] "), &r); err != nil || r != (Range{maxI, -1}) {
			t.Fatalf("Unmarshal(Range) = %v, %v", r, err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		var s Set
		b, err := json.Marshal(s)
		if err != nil || string(b) != "[]" {
			t.Fatalf("Marshal(empty) = %s, %v", b, err)
		}
		b, err = json.Marshal(s.Missing(0))
		if err != nil || string(b) != "[]" {
			t.Fatalf("Marshal(Missing(0)) = %s, %v", b, err)
		}
		b, err = json.Marshal(s.Ranges())
		if err != nil || string(b) != "[]" {
			t.Fatalf("Marshal(Ranges()) = %s, %v", b, err)
		}
	})
	t.Run("in struct by value and pointer", func(t *testing.T) {
		var s Set
		s.Add(10, 5)
		s.Add(0, 3)
		type status struct {
			Ranges  Set     `json:"ranges"`
			Missing []Range `json:"missing"`
		}
		b, err := json.Marshal(status{s, s.Missing(20)})
		if err != nil {
			t.Fatal(err)
		}
		const want = `{"ranges":[[0,3],[10,5]],"missing":[[3,7],[15,5]]}`
		if string(b) != want {
			t.Fatalf("Marshal(struct) = %s, want %s", b, want)
		}
		b, err = json.Marshal(&status{s, s.Missing(20)})
		if err != nil || string(b) != want {
			t.Fatalf("Marshal(&struct) = %s, %v", b, err)
		}
		var back status
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Ranges.Ranges(), s.Ranges()) || back.Ranges.Covered() != s.Covered() {
			t.Fatalf("round trip = %v, want %v", back.Ranges.r, s.r)
		}
		if !reflect.DeepEqual(back.Missing, s.Missing(20)) {
			t.Fatalf("missing round trip = %v", back.Missing)
		}
	})
	t.Run("round trip random", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 7))
		for range 200 {
			var s Set
			for range rng.IntN(50) {
				s.Add(rng.Int64N(1000), rng.Int64N(30)+1)
			}
			if rng.IntN(10) == 0 {
				s.Add(maxI-5, 5)
			}
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			var back Set
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			checkInvariants(t, &back)
			if !reflect.DeepEqual(back.Ranges(), s.Ranges()) || back.Covered() != s.Covered() {
				t.Fatalf("round trip of %s = %v", b, back.r)
			}
		}
	})
	t.Run("normalises", func(t *testing.T) {
		var s Set
		in := `[[10,5],[0,10],[12,1],[30,1],[31,2],[40,1],[40,1],[35,2]]`
		if err := json.Unmarshal([]byte(in), &s); err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, &s)
		want := []Range{{0, 15}, {30, 3}, {35, 2}, {40, 1}}
		if !reflect.DeepEqual(s.Ranges(), want) || s.Covered() != 21 {
			t.Fatalf("Unmarshal(%s) = %v covered %d, want %v covered 21", in, s.r, s.Covered(), want)
		}
		// Replaces, does not merge with, the previous content.
		if err := json.Unmarshal([]byte(`[[100,1]]`), &s); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s.Ranges(), []Range{{100, 1}}) || s.Covered() != 1 {
			t.Fatalf("second Unmarshal = %v covered %d", s.r, s.Covered())
		}
		if err := json.Unmarshal([]byte(`[]`), &s); err != nil {
			t.Fatal(err)
		}
		if s.Len() != 0 || s.Covered() != 0 {
			t.Fatalf("Unmarshal([]) = %v", s.r)
		}
		checkInvariants(t, &s)
	})
	t.Run("null is a no-op", func(t *testing.T) {
		var s Set
		s.Add(1, 2)
		if err := json.Unmarshal([]byte(`null`), &s); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s.Ranges(), []Range{{1, 2}}) {
			t.Fatalf("after null: %v", s.r)
		}
	})
	t.Run("rejects", func(t *testing.T) {
		bad := []string{
			``, `{}`, `"x"`, `1`, `true`, `[1,2]`, `[[0,1]`, `[[0,1]]]`, `[[0,1],]`,
			`[[-1,5]]`, `[[0,-1]]`, `[[0,0]]`, `[[5,0]]`, `[[0,1],[-3,1]]`,
			`[[9223372036854775807,1]]`, `[[1,9223372036854775807]]`, `[[4611686018427387904,4611686018427387904]]`,
			`[[0,9223372036854775808]]`, `[[-9223372036854775809,1]]`, `[[99999999999999999999,1]]`,
			`[[0]]`, `[[]]`, `[[0,1,2]]`, `[["0",1]]`, `[[0,"1"]]`, `[[0.5,1]]`, `[[0,1.0]]`, `[[1e3,1]]`,
			`[[0,1e1]]`, `[null]`, `[[null,1]]`, `[[0,null]]`, `[{"Off":0,"Len":1}]`, `[[true,1]]`,
		}
		for _, in := range bad {
			var s Set
			s.Add(7, 3)
			if err := json.Unmarshal([]byte(in), &s); err == nil {
				t.Errorf("Unmarshal(%q) accepted: %v", in, s.r)
			}
			if !reflect.DeepEqual(s.Ranges(), []Range{{7, 3}}) || s.Covered() != 3 {
				t.Errorf("Unmarshal(%q) changed the set to %v", in, s.r)
			}
		}
	})
}

// bitmap is the naive model: one bool per byte of a small universe.
type bitmap []bool

func (m bitmap) add(off, n int64) (added int64) {
	for p := off; p < off+n; p++ {
		if !m[p] {
			m[p] = true
			added++
		}
	}
	return added
}

func (m bitmap) ranges() []Range {
	out := []Range{}
	for p := 0; p < len(m); p++ {
		if !m[p] {
			continue
		}
		q := p
		for q < len(m) && m[q] {
			q++
		}
		out = append(out, Range{int64(p), int64(q - p)})
		p = q
	}
	return out
}

func (m bitmap) count() (c int64) {
	for _, b := range m {
		if b {
			c++
		}
	}
	return c
}

// compareModel checks every query of s against the bitmap model of the
// universe [0, len(m)); s must hold no byte outside it.
func compareModel(t testing.TB, s *Set, m bitmap) {
	t.Helper()
	checkInvariants(t, s)
	if got, want := s.Ranges(), m.ranges(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Ranges() = %v, model %v", got, want)
	}
	if got, want := s.Covered(), m.count(); got != want {
		t.Fatalf("Covered() = %d, model %d", got, want)
	}
	var prefix int64
	for prefix < int64(len(m)) && m[prefix] {
		prefix++
	}
	if got := s.PrefixEnd(); got != prefix {
		t.Fatalf("PrefixEnd() = %d, model %d", got, prefix)
	}
	for total := int64(-1); total <= int64(len(m))+1; total++ {
		miss := make(bitmap, max(total, int64(len(m))))
		for _, x := range s.Missing(total) {
			if x.Off < 0 || x.Len <= 0 || x.End() > total {
				t.Fatalf("Missing(%d) has %v out of bounds", total, x)
			}
			miss.add(x.Off, x.Len)
		}
		complete := true
		for p := int64(0); p < total; p++ {
			inSet := p < int64(len(m)) && m[p]
			if inSet == miss[p] {
				t.Fatalf("Missing(%d): byte %d in set=%v missing=%v (ranges %v)", total, p, inSet, miss[p], s.r)
			}
			complete = complete && inSet
		}
		if got := s.Complete(total); got != complete {
			t.Fatalf("Complete(%d) = %v, model %v", total, got, complete)
		}
		checkTiling(t, s, total)
	}
}

func TestModelRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(0x5ca9, 0x6a7e))
	const universe = 160
	for round := range 300 {
		var s Set
		m := make(bitmap, universe)
		// Vary part sizes across rounds: tiny parts build many intervals,
		// big ones merge many at once.
		maxPart := int64(1 + rng.IntN(universe/2))
		for op := range 120 {
			var off, n int64
			switch rng.IntN(12) {
			case 0: // invalid: negative offset
				off, n = -1-rng.Int64N(10), rng.Int64N(20)
			case 1: // invalid: non-positive length
				off, n = rng.Int64N(universe), -rng.Int64N(3)
			case 2: // invalid: overflow
				off = maxI - rng.Int64N(10)
				n = maxI - off + 1 + rng.Int64N(10)
			default:
				off = rng.Int64N(universe)
				n = 1 + rng.Int64N(maxPart)
				n = min(n, universe-off)
			}
			want := int64(0)
			if valid(off, n) {
				want = m.add(off, n)
			}
			if got := s.Add(off, n); got != want {
				t.Fatalf("round %d op %d: Add(%d,%d) = %d, model %d", round, op, off, n, got, want)
			}
			checkInvariants(t, &s)
			if op%10 == 0 {
				compareModel(t, &s, m)
			}
		}
		compareModel(t, &s, m)
	}
}

func TestAddManyShuffled(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const parts, size = 100_000, 1 << 20
	perm := rng.Perm(parts)
	var s Set
	var sum int64
	for i, p := range perm {
		sum += s.Add(int64(p)*size, size)
		if i%10_000 == 0 {
			checkInvariants(t, &s)
		}
	}
	checkInvariants(t, &s)
	if !s.Complete(parts*size) || s.Len() != 1 || sum != parts*size {
		t.Fatalf("after all parts: complete %v len %d added %d", s.Complete(parts*size), s.Len(), sum)
	}
}

// Fuzz model: positions 0..511 of a bitmap. Positions [0,256) are offsets
// [0,256); positions [256,512) are offsets [MaxInt64-256, MaxInt64), so the
// overflow boundary is exercised exactly. The windows are not adjacent.
const (
	fuzzWin  = 256
	fuzzHigh = maxI - fuzzWin // offset of position fuzzWin
)

func fuzzPos(off int64) int64 {
	if off < fuzzWin {
		return off
	}
	return off - fuzzHigh + fuzzWin
}

// fuzzOp decodes three bytes into an Add call.
func fuzzOp(mode, a, b byte) (off, n int64) {
	switch mode % 8 {
	case 0, 1, 2, 3: // low window, length clipped to stay inside it
		off, n = int64(a), int64(b)-2
		if off+n > fuzzWin {
			n = fuzzWin - off
		}
	case 4, 5: // high window; n > fuzzWin-a overflows int64 and must be refused
		off, n = fuzzHigh+int64(a), int64(b)-2
	case 6: // negative offset
		off, n = -1-int64(a)<<int(mode>>5), int64(b)
	case 7: // overflow or absurd length
		if mode&8 != 0 {
			off, n = int64(a)+int64(b)+1, maxI-int64(b)
		} else {
			off, n = int64(a), math.MinInt64+int64(b)
		}
	}
	return off, n
}

func checkOps(t testing.TB, data []byte) {
	var s Set
	m := make(bitmap, 2*fuzzWin)
	var count int64
	for len(data) >= 3 {
		off, n := fuzzOp(data[0], data[1], data[2])
		data = data[3:]
		want := int64(0)
		if valid(off, n) {
			want = m.add(fuzzPos(off), n)
		}
		if got := s.Add(off, n); got != want {
			t.Fatalf("Add(%d,%d) = %d, model %d", off, n, got, want)
		}
		count += want
		checkInvariants(t, &s)
		if got := s.Covered(); got != count {
			t.Fatalf("Covered() = %d, model %d", got, count)
		}
	}
	if count != m.count() {
		t.Fatalf("model count %d != bitmap %d", count, m.count())
	}
	// Ranges against the model, mapping positions back to offsets and
	// splitting runs at the window boundary.
	want := m[:fuzzWin].ranges()
	for _, x := range m[fuzzWin:].ranges() {
		want = append(want, Range{x.Off + fuzzHigh, x.Len})
	}
	if got := s.Ranges(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Ranges() = %v, model %v", got, want)
	}
	var prefix int64
	for prefix < fuzzWin && m[prefix] {
		prefix++
	}
	if got := s.PrefixEnd(); got != prefix {
		t.Fatalf("PrefixEnd() = %d, model %d", got, prefix)
	}
	for _, total := range []int64{-1, 0, 1, 2, 100, fuzzWin - 1, fuzzWin, fuzzWin + 1, fuzzHigh, fuzzHigh + 1, maxI - 1, maxI} {
		checkTiling(t, &s, total)
	}
	for total := int64(0); total <= fuzzWin; total++ {
		complete := total <= prefix
		if got := s.Complete(total); got != complete {
			t.Fatalf("Complete(%d) = %v, model %v", total, got, complete)
		}
	}
	// JSON: round trip, and decoding the ranges split into overlapping
	// pieces in reverse order normalises back to the same set.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Set
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal(%s): %v", b, err)
	}
	checkInvariants(t, &back)
	if !reflect.DeepEqual(back.r, s.r) || back.covered != s.covered {
		t.Fatalf("JSON round trip of %s = %v", b, back.r)
	}
	var pieces []Range
	for _, x := range s.r {
		half := x.Len / 2
		pieces = append(pieces, Range{x.Off, half + 1}, Range{x.Off + half, x.Len - half})
	}
	for i, j := 0, len(pieces)-1; i < j; i, j = i+1, j-1 {
		pieces[i], pieces[j] = pieces[j], pieces[i]
	}
	b, err = json.Marshal(pieces)
	if err != nil {
		t.Fatal(err)
	}
	var norm Set
	if err := json.Unmarshal(b, &norm); err != nil {
		t.Fatalf("Unmarshal(%s): %v", b, err)
	}
	checkInvariants(t, &norm)
	if !reflect.DeepEqual(norm.Ranges(), s.Ranges()) || norm.covered != s.covered {
		t.Fatalf("normalising %s = %v, want %v", b, norm.r, s.r)
	}
}

func FuzzAdd(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 12})                                     // [0,10)
	f.Add([]byte{0, 0, 12, 0, 20, 12, 0, 10, 12})               // bridge
	f.Add([]byte{0, 10, 12, 0, 0, 255})                         // contains
	f.Add([]byte{4, 250, 8, 4, 0, 255, 4, 255, 3})              // high window, overflow and boundary
	f.Add([]byte{6, 1, 5, 7, 1, 5, 15, 3, 9, 0, 0, 2})          // invalid ops
	f.Add([]byte{0, 0, 3, 0, 2, 3, 0, 4, 3, 0, 6, 3, 0, 1, 10}) // covering many
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 3*1000 {
			data = data[:3*1000]
		}
		checkOps(t, data)
	})
}

// TestFuzzOpsRandom runs the fuzz body on random inputs so plain `go test`
// exercises it beyond the seed corpus.
func TestFuzzOpsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 43))
	for range 500 {
		data := make([]byte, 3*rng.IntN(200))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		checkOps(t, data)
	}
}

func benchParts(seed uint64) [][2]int64 {
	rng := rand.New(rand.NewPCG(seed, seed))
	const total = 10 << 30 // 10 GiB
	parts := make([][2]int64, 10_000)
	for i := range parts {
		n := 1 + rng.Int64N(2<<20)
		parts[i] = [2]int64{rng.Int64N(total - n), n}
	}
	return parts
}

// BenchmarkAddRandom adds 10,000 random parts (random offsets in 10 GiB,
// random lengths up to 2 MiB) to a fresh set per iteration.
func BenchmarkAddRandom(b *testing.B) {
	parts := benchParts(1)
	b.ReportAllocs()
	for b.Loop() {
		var s Set
		for _, p := range parts {
			s.Add(p[0], p[1])
		}
	}
}

// BenchmarkAddShuffled adds 10,000 equal parts of one file in random order,
// the worst realistic case: thousands of disjoint intervals mid-upload.
func BenchmarkAddShuffled(b *testing.B) {
	const parts, size = 10_000, 1 << 20
	perm := rand.New(rand.NewPCG(3, 3)).Perm(parts)
	b.ReportAllocs()
	for b.Loop() {
		var s Set
		for _, p := range perm {
			s.Add(int64(p)*size, size)
		}
		if !s.Complete(parts * size) {
			b.Fatal("not complete")
		}
	}
}
