// Package names cleans the file names scangate shows and stores: the name
// a client gives a file, the path it had on the client's machine, and the
// paths of files inside archives. A clean name is plain text: valid UTF-8,
// bounded in length, without control characters or invisible formatting
// characters (a right-to-left override shows "invoice\u202Efdp.exe" as
// "invoiceexe.pdf"), and never a path that climbs out of where it is put.
package names

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// MaxBytes bounds a file name (a common file system limit).
	MaxBytes = 255
	// MaxPathBytes bounds a path.
	MaxPathBytes = 4 * MaxBytes
	// Unnamed stands for an archive entry whose path cleans to nothing.
	Unnamed = "unnamed"
)

// Display cleans the name a client gave a file (the filename header) into
// its display name: path separators, "<" and ">" are removed along with
// invisible characters, so what is shown is one plain name. A name of dots
// alone ("..") names nothing and becomes "".
func Display(s string) string {
	s = bounded(strip(s, func(r rune) bool { return r == '/' || r == '\\' || r == '<' || r == '>' }), MaxBytes)
	if dotsOnly(s) {
		return ""
	}
	return s
}

// ClientPath cleans the path a file had on the client's machine
// (original_file_path). It is recorded as the client wrote it, separators
// and drive letter included, since scangate never uses it as a path; "<",
// ">" and invisible characters are removed.
func ClientPath(s string) string {
	return bounded(strip(s, func(r rune) bool { return r == '<' || r == '>' }), MaxPathBytes)
}

// ArchivePath cleans the path of a file inside an archive for display.
// Archives can name entries "../../etc/cron.d/x", "/etc/passwd" or
// "C:\Windows\x" (zip slip); shown as they are, they suggest files outside
// the archive. The result is a relative path with "/" separators ("\"
// counts as one), without empty, "." or ".." components, a drive letter or
// invisible characters. A path that cleans to nothing becomes Unnamed.
func ArchivePath(s string) string {
	p := cleanPath(s)
	if len(p) > MaxPathBytes {
		// The cut may leave a last component that is now "." or "..".
		p = cleanPath(cut(p, MaxPathBytes))
	}
	if p == "" {
		return Unnamed
	}
	return p
}

func cleanPath(s string) string {
	var parts []string
	for part := range strings.SplitSeq(strings.ReplaceAll(strip(s, nil), `\`, "/"), "/") {
		part = strings.TrimSpace(part)
		if len(parts) == 0 {
			part = withoutDrive(part)
		}
		if !dotsOnly(part) {
			parts = append(parts, part)
		}
	}
	return strings.Join(parts, "/")
}

// withoutDrive removes Windows drive prefixes ("C:", "C:C:") from s.
func withoutDrive(s string) string {
	for len(s) >= 2 && s[1] == ':' && 'a' <= s[0]|0x20 && s[0]|0x20 <= 'z' {
		s = strings.TrimSpace(s[2:])
	}
	return s
}

// dotsOnly reports whether s is empty or made of dots and spaces alone:
// "", ".", ".." and what Windows reads as them ("... ", ".. .").
func dotsOnly(s string) bool {
	return strings.TrimFunc(s, func(r rune) bool { return r == '.' || unicode.IsSpace(r) }) == ""
}

// strip drops invalid UTF-8, invisible characters and the runes drop
// (if not nil) reports.
func strip(s string, drop func(rune) bool) string {
	return strings.Map(func(r rune) rune {
		if invisible(r) || drop != nil && drop(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
}

// invisible reports control characters (Cc), format characters (Cf: the
// bidirectional controls U+061C, U+200E, U+200F, U+202A–U+202E,
// U+2066–U+2069, zero-width characters, the byte order mark, tag
// characters, ...) and the line and paragraph separators.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}

// bounded trims surrounding space and cuts s to at most n bytes on a
// character boundary.
func bounded(s string, n int) string {
	return strings.TrimSpace(cut(strings.TrimSpace(s), n))
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
