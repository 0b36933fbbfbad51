package names

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDisplay(t *testing.T) {
	for in, want := range map[string]string{
		"report.pdf":               "report.pdf",
		"résumé 履歴書.docx":          "résumé 履歴書.docx",
		"  spaced name.txt  ":      "spaced name.txt",
		"../../etc/passwd":         "....etcpasswd", // separators go, the rest is text
		`C:\Users\x\evil.exe`:      "C:Usersxevil.exe",
		"<script>a.html":           "scripta.html",
		"nul\x00byte\r\n.txt":      "nulbyte.txt",
		"bad\xffutf8.txt":          "badutf8.txt",
		"invoice\u202efdp.exe":     "invoicefdp.exe",
		"a\u2066b\u2069\u061c.txt": "ab.txt",
		"zero\u200bwidth\ufeff":    "zerowidth",
		"line\u2028sep.txt":        "linesep.txt",
		"tag\U000E0041.txt":        "tag.txt",
		"..":                       "",
		".":                        "",
		" .. ":                     "",
		"\u202e..":                 "",
		"...":                      "",
		"..hidden":                 "..hidden",
		"":                         "",
	} {
		if got := Display(in); got != want {
			t.Errorf("Display(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("é", 200) // 400 bytes
	if got := Display(long); len(got) > MaxBytes || !utf8.ValidString(got) || !strings.HasPrefix(long, got) {
		t.Errorf("long name cut to %q", got)
	}
}

func TestClientPath(t *testing.T) {
	for in, want := range map[string]string{
		`C:\in\<x>.doc`:              `C:\in\x.doc`,
		"/home/me/../notes.txt":      "/home/me/../notes.txt", // recorded as written
		" /tmp/a\u202eb.txt\r\n":     "/tmp/ab.txt",
		"\\\\server\\share\\x\x7f.y": `\\server\share\x.y`,
	} {
		if got := ClientPath(in); got != want {
			t.Errorf("ClientPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestArchivePath(t *testing.T) {
	for in, want := range map[string]string{
		"docs/readme.txt":              "docs/readme.txt",
		"../../evil.txt":               "evil.txt",
		"/abs/path.txt":                "abs/path.txt",
		"//server/share/x":             "server/share/x",
		"a/./b/../c":                   "a/b/c", // ".." is dropped, not resolved: the name stays recognisable
		`..\..\Windows\System32\x.dll`: "Windows/System32/x.dll",
		`C:\Windows\x.exe`:             "Windows/x.exe",
		"c:/x":                         "x",
		"C:relative.txt":               "relative.txt",
		"C:C:/x":                       "x",
		"../C:/x":                      "x",
		"dir/C:/x":                     "dir/C:/x", // only a leading drive means one
		"a:b.txt":                      "b.txt",
		"a//b///c/":                    "a/b/c",
		" a / b ":                      "a/b",
		".. /x":                        "x",
		"... /x":                       "x",
		"a/.../b":                      "a/b",
		"..a/b..":                      "..a/b..",
		"x/\u202e../y":                 "x/y",
		"evil\u202egnp.exe":            "evilgnp.exe",
		"new\nline/\ttab.txt":          "newline/tab.txt",
		"":                             Unnamed,
		"/":                            Unnamed,
		"../..":                        Unnamed,
		`\`:                            Unnamed,
		"C:":                           Unnamed,
		"\u200f\u200e":                 Unnamed,
		"dir/":                         "dir",
		"日本語/ファイル.txt":                 "日本語/ファイル.txt",
		"bad\xff/utf8":                 "bad/utf8",
	} {
		if got := ArchivePath(in); got != want {
			t.Errorf("ArchivePath(%q) = %q, want %q", in, got, want)
		}
	}
	// A cut at the length bound must not leave a ".." behind.
	long := strings.Repeat("a", MaxPathBytes-2) + "/..b/c"
	if got := ArchivePath(long); got != strings.Repeat("a", MaxPathBytes-2) {
		t.Errorf("ArchivePath(long) = …%q", got[max(0, len(got)-8):])
	}
}

// FuzzNames checks what every cleaned name promises, whatever the input.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"", "..", "../../x", "/abs", `C:\x\..\y`, "a\u202eb", "\xff\xfe", "é/..", "C:C:",
		strings.Repeat("ab/", 400), strings.Repeat("é", 600), strings.Repeat("./", 700) + ".."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(fn string, got string, limit int, clean func(string) string) {
			t.Helper()
			if !utf8.ValidString(got) || len(got) > limit {
				t.Fatalf("%s(%q) = %q: invalid UTF-8 or longer than %d bytes", fn, s, got, limit)
			}
			for _, r := range got {
				if invisible(r) || r == '<' || r == '>' {
					t.Fatalf("%s(%q) = %q: contains %U", fn, s, got, r)
				}
			}
			if got != strings.TrimSpace(got) {
				t.Fatalf("%s(%q) = %q: surrounding space", fn, s, got)
			}
			if again := clean(got); again != got {
				t.Fatalf("%s is not stable: %q → %q → %q", fn, s, got, again)
			}
		}

		d := Display(s)
		check("Display", d, MaxBytes, Display)
		if strings.ContainsAny(d, `/\`) || d != "" && dotsOnly(d) {
			t.Fatalf("Display(%q) = %q: not a single name", s, d)
		}

		check("ClientPath", ClientPath(s), MaxPathBytes, ClientPath)

		p := ArchivePath(s)
		check("ArchivePath", p, MaxPathBytes, ArchivePath)
		if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, `\`) || withoutDrive(p) != p {
			t.Fatalf("ArchivePath(%q) = %q: empty, absolute or with a drive", s, p)
		}
		for _, c := range strings.Split(p, "/") {
			if dotsOnly(c) || c != strings.TrimSpace(c) {
				t.Fatalf("ArchivePath(%q) = %q: component %q", s, p, c)
			}
		}
	})
}
