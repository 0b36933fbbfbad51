package ingest

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

type crValid struct {
	in            string
	off, n, total int64
}

var crValidCases = []crValid{
	// seed form: offset-LENGTH/total (the three seed examples first)
	{"0-2000000/10485760", 0, 2000000, 10485760},
	{"2000000-2000000/10485760", 2000000, 2000000, 10485760},
	{"4000000-6485760/10485760", 4000000, 6485760, 10485760},
	{"0-1/1", 0, 1, 1},
	{"0-10/10", 0, 10, 10},
	{"9-1/10", 9, 1, 10},
	{"3-4/100", 3, 4, 100},
	{"000-001/002", 0, 1, 2},
	{"0000000000000000001-1/2", 1, 1, 2},
	{"9223372036854775806-1/9223372036854775807", math.MaxInt64 - 1, 1, math.MaxInt64},
	{"0-9223372036854775807/9223372036854775807", 0, math.MaxInt64, math.MaxInt64},
	{"1-9223372036854775806/9223372036854775807", 1, math.MaxInt64 - 1, math.MaxInt64},
	{"  0-1/1  ", 0, 1, 1},
	{"\t0-1/1\r\n", 0, 1, 1},
	// RFC 9110 form: bytes first-last/total, last inclusive
	{"bytes 0-499/1000", 0, 500, 1000},
	{"bytes 999-999/1000", 999, 1, 1000},
	{"bytes 500-999/1000", 500, 500, 1000},
	{"bytes 0-999/1000", 0, 1000, 1000},
	{"bytes 0-0/1", 0, 1, 1},
	{"Bytes 0-0/1", 0, 1, 1},
	{"BYTES 0-0/1", 0, 1, 1},
	{"bYtEs 2000000-3999999/10485760", 2000000, 2000000, 10485760},
	{" bytes 0-0/1 ", 0, 1, 1},
	{"bytes 0-9223372036854775806/9223372036854775807", 0, math.MaxInt64, math.MaxInt64},
	{"bytes 9223372036854775806-9223372036854775806/9223372036854775807", math.MaxInt64 - 1, 1, math.MaxInt64},
	{"bytes 007-008/010", 7, 2, 10},
}

var crInvalidCases = []string{
	// empty and structure
	"", " ", "\t", "\r\n", "-", "/", "-/", "0", "0-", "0-1", "0-1/", "-1/2", "0-/2", "0/2", "/2", "0-1/2/3",
	"0--1/2", "0-1//2", "0-1-2/3", "--0-1/2", "0-1/2-", "0-1/2/", "/0-1/2", "0-1/2,3-4/5", "0-1/2 0-1/2",
	// signs, spaces, hex, separators and other notations inside numbers
	"+0-1/2", "0-+1/2", "0-1/+2", "-0-1/2", "0-1/-2", "0--0/2", "0x0-1/2", "0-0x1/2", "0-1/0x2", "0-1/0X10",
	"0 -1/2", "0- 1/2", "0-1 /2", "0-1/ 2", "0-1/2 3", "1 0-1/20", "1_0-1/20", "0-1e1/20", "0.0-1/2",
	"0-1.0/2", "0-1/2.0", "0,1/2", "0:1/2", "0-1\\2", "0-1;2", "a-1/2", "0-b/2", "0-1/c", "0-1/2x",
	// unicode digits, spaces and look-alike separators
	"０-1/2", "0-１/2", "0-1/２", "٠-١/٢", "০-১/২", "0-1/٢", "\u00a00-1/2", "0-1/2\u00a0", "\u20000-1/2",
	"0\u2010" + "1/2", "0\u22121/2", "0-1\u20442", "0-1\u22152", "0\uff0d1/2", "\ufeff0-1/2",
	"0-1/2\x00", "\x000-1/2", "0-1\x00/2", "0-1/2\v", "0-1/2\f", "\xff0-1/2", "0-1/2\xff",
	// zero / negative
	"0-0/10", "5-0/10", "0-1/0", "0-0/0", "0-00/10", "0-1/000",
	// out of bounds
	"0-11/10", "10-1/10", "9-2/10", "11-1/10", "10485760-1/10485760", "4000000-6485761/10485760",
	"2000000-8485761/10485760", "1-9223372036854775807/9223372036854775807",
	// overflow and too many digits
	"9223372036854775807-1/9223372036854775807",
	"9223372036854775807-9223372036854775807/9223372036854775807",
	"4611686018427387904-4611686018427387904/9223372036854775807",
	"9223372036854775808-1/9223372036854775807", "0-9223372036854775808/9223372036854775807",
	"0-1/9223372036854775808", "0-1/9999999999999999999", "99999999999999999999-1/2",
	"00000000000000000001-1/2", "0-00000000000000000001/2", "0-1/00000000000000000002",
	"0-1/18446744073709551617", "0-1/340282366920938463463374607431768211457",
	"bytes 0-9223372036854775807/9223372036854775807", "bytes 0-9223372036854775808/9223372036854775807",
	"bytes 9223372036854775807-9223372036854775807/9223372036854775807",
	// RFC form
	"bytes=0-1/2", "bytes:0-1/2", "bytes  0-1/2", "bytes\t0-1/2", "bytes \t0-1/2", "bytes0-1/2", "bytes",
	"bytes ", "bytes 0-1", "bytes -1/2", "bytes 0-/2", "bytes 1-0/10", "bytes 0-10/10", "bytes 10-10/10",
	"bytes 0-499/0", "bytes 0-0/0", "bytes */1000", "bytes 0-1/*", "bytes */*", "*/1000", "0-1/*", "*/*", "*",
	"* 0-1/2", "bytes *", "byte 0-1/2", "bits 0-1/2", "items 0-1/2", "bytes bytes 0-1/2", "bytes 0-1/2 bytes",
	"byte\u017f 0-1/2", "\u212aytes 0-1/2", "BYTES\u00a00-1/2", "bytes, 0-1/2", "xbytes 0-1/2", "bytesx 0-1/2",
	"bytes 0-1/2, bytes 3-4/5", "bytes 0-1/2\r\nX-Evil: 1", "bytes +0-1/2", "bytes 0--1/2", "bytes 0-1//2",
	"bytes 0x0-0x1/0x2", "bytes ０-1/2", "b 0-1/2", "bytes%200-1/2",
}

func TestParseContentRangeValid(t *testing.T) {
	for _, tc := range crValidCases {
		off, n, total, err := ParseContentRange(tc.in)
		if err != nil {
			t.Errorf("ParseContentRange(%q): %v", tc.in, err)
			continue
		}
		if off != tc.off || n != tc.n || total != tc.total {
			t.Errorf("ParseContentRange(%q) = %d, %d, %d; want %d, %d, %d", tc.in, off, n, total, tc.off, tc.n, tc.total)
		}
	}
}

func TestParseContentRangeInvalid(t *testing.T) {
	for _, in := range crInvalidCases {
		off, n, total, err := ParseContentRange(in)
		if err == nil {
			t.Errorf("ParseContentRange(%q) = %d, %d, %d; want error", in, off, n, total)
			continue
		}
		if off != 0 || n != 0 || total != 0 {
			t.Errorf("ParseContentRange(%q) returned values %d, %d, %d with error", in, off, n, total)
		}
		checkCRError(t, in, err)
	}
}

// checkCRError checks that err wraps ErrBadContentRange and reads as a
// fixed 400 message that does not echo the input.
func checkCRError(t testing.TB, in string, err error) {
	t.Helper()
	if !errors.Is(err, ErrBadContentRange) {
		t.Fatalf("ParseContentRange(%q) error %v does not wrap ErrBadContentRange", in, err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "Invalid content-range header: ") || !strings.HasSuffix(msg, ".") {
		t.Fatalf("ParseContentRange(%q) error message %q", in, msg)
	}
	if strings.ContainsAny(msg, "\r\n\x00") {
		t.Fatalf("ParseContentRange(%q) error message %q has control characters", in, msg)
	}
	if in := strings.TrimSpace(in); len(in) > 8 && strings.Contains(msg, in) {
		t.Fatalf("ParseContentRange(%q) error message %q echoes the input", in, msg)
	}
}

func TestParseContentRangeErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", "Invalid content-range header: empty."},
		{"bytes=0-1/2", `Invalid content-range header: unit "bytes" must be followed by exactly one space.`},
		{"bytes  0-1/2", `Invalid content-range header: unit "bytes" must be followed by exactly one space.`},
		{"bytes\t0-1/2", `Invalid content-range header: unit "bytes" must be followed by exactly one space.`},
		{"bytes */10", "Invalid content-range header: unsatisfied range (*) not accepted."},
		{"*/10", "Invalid content-range header: unsatisfied range (*) not accepted."},
		{"0-1/*", "Invalid content-range header: unknown total (*) not accepted."},
		{"0-1/0", "Invalid content-range header: total must be greater than 0."},
		{"0-0/1", "Invalid content-range header: length must be greater than 0."},
		{"0-2/1", "Invalid content-range header: range exceeds total."},
		{"bytes 2-1/10", "Invalid content-range header: first byte after last byte."},
		{"bytes 0-x/10", "Invalid content-range header: last byte is not a decimal number."},
		{"0-x/10", "Invalid content-range header: length is not a decimal number."},
		{"9223372036854775808-1/2", "Invalid content-range header: offset is too large."},
		{"0-1/00000000000000000002", "Invalid content-range header: total has too many digits."},
		{"items 0-1/2", `Invalid content-range header: expected "<offset>-<length>/<total>" or "bytes <first>-<last>/<total>".`},
	}
	for _, tc := range tests {
		_, _, _, err := ParseContentRange(tc.in)
		if err == nil || err.Error() != tc.msg {
			t.Errorf("ParseContentRange(%q) error = %v, want %q", tc.in, err, tc.msg)
		}
	}
	if ErrBadContentRange.Error() != "Invalid content-range header." {
		t.Errorf("ErrBadContentRange = %q", ErrBadContentRange)
	}
	// Wrapping it further still matches.
	_, _, _, err := ParseContentRange("x")
	if !errors.Is(fmt.Errorf("part: %w", err), ErrBadContentRange) {
		t.Error("wrapped error does not match ErrBadContentRange")
	}
}

// refContentRange is an independent reference implementation: a regular
// expression for the syntax and math/big for the arithmetic, so it cannot
// share an overflow bug with ParseContentRange.
var refContentRangeRE = regexp.MustCompile(`^(?:([Bb][Yy][Tt][Ee][Ss]) )?([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})$`)

func refContentRange(h string) (off, n, total int64, ok bool) {
	m := refContentRangeRE.FindStringSubmatch(strings.Trim(h, " \t\r\n"))
	if m == nil {
		return 0, 0, 0, false
	}
	maxInt := big.NewInt(math.MaxInt64)
	var v [3]*big.Int
	for i := range v {
		v[i], _ = new(big.Int).SetString(m[i+2], 10)
		if v[i].Cmp(maxInt) > 0 {
			return 0, 0, 0, false
		}
	}
	a, length, tot := v[0], v[1], v[2]
	if m[1] != "" { // RFC: length = last - first + 1
		if a.Cmp(v[1]) > 0 {
			return 0, 0, 0, false
		}
		length = new(big.Int).Sub(v[1], a)
		length.Add(length, big.NewInt(1))
	}
	end := new(big.Int).Add(a, length)
	if tot.Sign() <= 0 || length.Sign() <= 0 || end.Cmp(tot) > 0 {
		return 0, 0, 0, false
	}
	return a.Int64(), length.Int64(), tot.Int64(), true
}

func checkContentRange(t testing.TB, h string) {
	off, n, total, err := ParseContentRange(h)
	roff, rn, rtotal, rok := refContentRange(h)
	if (err == nil) != rok {
		t.Fatalf("ParseContentRange(%q) err = %v, reference ok = %v (%d, %d, %d)", h, err, rok, roff, rn, rtotal)
	}
	if err != nil {
		checkCRError(t, h, err)
		return
	}
	if off != roff || n != rn || total != rtotal {
		t.Fatalf("ParseContentRange(%q) = %d, %d, %d; reference %d, %d, %d", h, off, n, total, roff, rn, rtotal)
	}
	if off < 0 || n <= 0 || total <= 0 || n > math.MaxInt64-off || off+n > total {
		t.Fatalf("ParseContentRange(%q) = %d, %d, %d violates 0 <= off, 0 < n, off+n <= total", h, off, n, total)
	}
	for _, again := range []string{
		fmt.Sprintf("%d-%d/%d", off, n, total),
		fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, total),
	} {
		o2, n2, t2, err := ParseContentRange(again)
		if err != nil || o2 != off || n2 != n || t2 != total {
			t.Fatalf("ParseContentRange(%q) = %d, %d, %d; reformatted %q = %d, %d, %d, %v", h, off, n, total, again, o2, n2, t2, err)
		}
	}
}

func TestParseContentRangeReference(t *testing.T) {
	for _, tc := range crValidCases {
		checkContentRange(t, tc.in)
	}
	for _, in := range crInvalidCases {
		checkContentRange(t, in)
	}
	// Random inputs built from the interesting alphabet and numbers near
	// the boundaries.
	rng := rand.New(rand.NewPCG(9110, 9110))
	nums := []string{"0", "1", "2", "9", "10", "499", "999", "1000", "9223372036854775806",
		"9223372036854775807", "9223372036854775808", "0000000000000000001", "99999999999999999999", ""}
	seps := []string{"-", "/", "--", "//", " ", "*", "+", "x", "٢"}
	for range 20000 {
		var b strings.Builder
		switch rng.IntN(4) {
		case 0:
			b.WriteString("bytes ")
		case 1:
			b.WriteString([]string{"BYTES ", "bytes=", "bytes  ", " ", "\t", "byte\u017f "}[rng.IntN(6)])
		}
		for i := range 3 {
			if rng.IntN(3) == 0 {
				b.WriteString(nums[rng.IntN(len(nums))])
			} else {
				b.WriteString(fmt.Sprint(rng.Int64() >> rng.IntN(63)))
			}
			if i < 2 {
				if rng.IntN(20) == 0 {
					b.WriteString(seps[rng.IntN(len(seps))])
				} else {
					b.WriteString([]string{"-", "/"}[i])
				}
			}
		}
		checkContentRange(t, b.String())
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, tc := range crValidCases {
		f.Add(tc.in)
	}
	for _, in := range crInvalidCases {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, h string) {
		checkContentRange(t, h)
	})
}

func BenchmarkParseContentRange(b *testing.B) {
	for b.Loop() {
		if _, _, _, err := ParseContentRange("bytes 4000000-10485759/10485760"); err != nil {
			b.Fatal(err)
		}
	}
}
