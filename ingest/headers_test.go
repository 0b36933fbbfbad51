package ingest

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"report.pdf":          "report.pdf",
		"../../etc/passwd":    "....etcpasswd",
		`C:\Users\x\evil.exe`: "C:Usersxevil.exe",
		"<script>a.html":      "scripta.html",
		"  spaced name.txt  ": "spaced name.txt",
		"nul\x00byte\r\n.txt": "nulbyte.txt",
		"bad\xffutf8.txt":     "badutf8.txt",
		"résumé 履歴書.docx":     "résumé 履歴書.docx",
		"":                    "",
	} {
		if got := sanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("é", 200) // 400 bytes
	got := sanitizeName(long)
	if len(got) > maxNameBytes || !utf8.ValidString(got) {
		t.Errorf("long name cut to %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
}

func TestSanitizePathKeepsSeparators(t *testing.T) {
	if got := sanitizePath(`C:\in\<x>.doc`); got != `C:\in\x.doc` {
		t.Errorf("sanitizePath = %q", got)
	}
}

func TestParseMetadata(t *testing.T) {
	ok := map[string]string{
		`{"a": 1, "b": [1, 2]}`:                `{"a":1,"b":[1,2]}`,
		`%7B%22a%22%3A12345678901234567890%7D`: `{"a":12345678901234567890}`, // percent-encoded; big number kept exactly
	}
	for in, want := range ok {
		got, err := parseMetadata(in)
		if err != nil || string(got) != want {
			t.Errorf("parseMetadata(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{`[1]`, `"x"`, `null`, `{`, `%7B`, `1`} {
		if _, err := parseMetadata(bad); err == nil {
			t.Errorf("parseMetadata(%q) accepted", bad)
		}
	}
}
