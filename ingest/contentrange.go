package ingest

import (
	"errors"
	"math"
	"strings"
)

// ErrBadContentRange is wrapped by every error ParseContentRange returns
// (errors.Is(err, ErrBadContentRange)); answer such errors with 400 and
// err.Error() as the message.
var ErrBadContentRange = errors.New("Invalid content-range header.")

// contentRangeError is a ParseContentRange failure. The reason is a fixed
// string: the (hostile) header value is never echoed back.
type contentRangeError struct{ reason string }

func (e *contentRangeError) Error() string {
	return "Invalid content-range header: " + e.reason + "."
}

func (e *contentRangeError) Unwrap() error { return ErrBadContentRange }

func badRange(reason string) error { return &contentRangeError{reason: reason} }

// maxDigits is the most decimal digits accepted per number (math.MaxInt64 has
// 19); a 19-digit number above math.MaxInt64 is refused as too large.
const maxDigits = 19

// ParseContentRange accepts the seed form "<offset>-<length>/<total>" (e.g. "0-2000000/10485760",
// "2000000-2000000/10485760", "4000000-6485760/10485760": offset then LENGTH) and the RFC 9110 form
// "bytes <first>-<last>/<total>" (inclusive last byte). It returns offset, length, total.
//
// Input is treated as hostile: ASCII spaces and tabs (and CR/LF) around the
// value are trimmed; every number is 1 to 19 ASCII digits (no sign, spaces,
// underscores, hex or non-ASCII digits) and fits in an int64; the unit
// "bytes" (ASCII case-insensitive) must be followed by exactly one space;
// "*" (unsatisfied range or unknown total) is refused. On success
// 0 <= off, 0 < n, 0 < total and off+n <= total (so off+n does not overflow).
// Every error wraps ErrBadContentRange and reads
// "Invalid content-range header: <reason>.".
func ParseContentRange(h string) (off, n, total int64, err error) {
	h = strings.Trim(h, " \t\r\n")
	if h == "" {
		return 0, 0, 0, badRange("empty")
	}
	rfc := false
	if c := h[0]; c < '0' || c > '9' {
		// Only the unit form may start with something other than a digit.
		if len(h) < len("bytes") || !asciiEqualFold(h[:len("bytes")], "bytes") {
			if c == '*' {
				return 0, 0, 0, badRange("unsatisfied range (*) not accepted")
			}
			return 0, 0, 0, badRange(`expected "<offset>-<length>/<total>" or "bytes <first>-<last>/<total>"`)
		}
		h = h[len("bytes"):]
		if len(h) < 2 || h[0] != ' ' || h[1] == ' ' || h[1] == '\t' {
			return 0, 0, 0, badRange(`unit "bytes" must be followed by exactly one space`)
		}
		h = h[1:]
		rfc = true
	}
	rng, totalStr, ok := strings.Cut(h, "/")
	if !ok {
		return 0, 0, 0, badRange(`missing "/<total>"`)
	}
	if totalStr == "*" {
		return 0, 0, 0, badRange("unknown total (*) not accepted")
	}
	if rng == "*" {
		return 0, 0, 0, badRange("unsatisfied range (*) not accepted")
	}
	aStr, bStr, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, badRange(`missing "-" in range`)
	}
	a, err := parseDecimal(aStr, "offset")
	if err != nil {
		return 0, 0, 0, err
	}
	second := "length"
	if rfc {
		second = "last byte"
	}
	b, err := parseDecimal(bStr, second)
	if err != nil {
		return 0, 0, 0, err
	}
	total, err = parseDecimal(totalStr, "total")
	if err != nil {
		return 0, 0, 0, err
	}
	if total <= 0 {
		return 0, 0, 0, badRange("total must be greater than 0")
	}
	if rfc {
		// first <= last < total, so n = last-first+1 <= total cannot overflow.
		if a > b {
			return 0, 0, 0, badRange("first byte after last byte")
		}
		if b >= total {
			return 0, 0, 0, badRange("range exceeds total")
		}
		return a, b - a + 1, total, nil
	}
	if b <= 0 {
		return 0, 0, 0, badRange("length must be greater than 0")
	}
	// a and total are in [0, MaxInt64], so total-a cannot overflow; comparing
	// with it avoids computing a+b, which can.
	if b > total-a {
		return 0, 0, 0, badRange("range exceeds total")
	}
	return a, b, total, nil
}

// parseDecimal parses 1..maxDigits ASCII digits into a non-negative int64.
func parseDecimal(s, what string) (int64, error) {
	if s == "" {
		return 0, badRange(what + " is empty")
	}
	if len(s) > maxDigits {
		return 0, badRange(what + " has too many digits")
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, badRange(what + " is not a decimal number")
		}
		d := int64(c - '0')
		if v > (math.MaxInt64-d)/10 {
			return 0, badRange(what + " is too large")
		}
		v = v*10 + d
	}
	return v, nil
}

// asciiEqualFold reports whether s equals the lowercase ASCII string lower,
// ignoring ASCII case only: Unicode folding (strings.EqualFold) would let
// "byteſ" (U+017F LATIN SMALL LETTER LONG S) pass for "bytes".
func asciiEqualFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
