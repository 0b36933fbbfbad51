package ids

import (
	"strings"
	"testing"
)

func TestNewIsValidAndUnique(t *testing.T) {
	const n = 100_000
	seen := make(map[string]bool, n)
	for range n {
		id := New()
		if !Valid(id) {
			t.Fatalf("New() = %q, not Valid", id)
		}
		if seen[id] {
			t.Fatalf("New() returned %q twice", id)
		}
		seen[id] = true
	}
}

func TestNewUsesEveryHexDigit(t *testing.T) {
	// A generator stuck on a few characters (or on zero bytes) would still
	// produce valid, unique-looking strings for a while.
	var all strings.Builder
	for range 100 {
		all.WriteString(New())
	}
	for _, c := range "0123456789abcdef" {
		if !strings.ContainsRune(all.String(), c) {
			t.Errorf("hex digit %q never appears in 100 ids", c)
		}
	}
}

func TestValid(t *testing.T) {
	good := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		in   string
		want bool
	}{
		{good, true},
		{strings.Repeat("0", 32), true},
		{strings.Repeat("f", 32), true},
		{"", false},
		{good[:31], false},
		{good + "0", false},
		{good + good, false},
		{strings.ToUpper(good), false},
		{"0123456789ABCDEF0123456789abcdef", false},
		{good[:31] + "g", false},
		{good[:31] + "-", false},
		{good[:31] + ".", false},
		{good[:31] + "/", false},
		{"../" + good[:29], false},
		{good[:30] + "é", false}, // 32 bytes, not hex
		{"01234567-89ab-cdef-0123-456789ab", false},
	}
	for _, tt := range tests {
		if got := Valid(tt.in); got != tt.want {
			t.Errorf("Valid(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
