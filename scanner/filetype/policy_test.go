package filetype

import (
	"archive/zip"
	"bytes"
	"testing"
)

func zipBytes(t *testing.T) []byte {
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	f, _ := w.Create("a.txt")
	f.Write([]byte("hello"))
	w.Close()
	return b.Bytes()
}

var exe = append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"), make([]byte, 200)...)

func TestMismatch(t *testing.T) {
	pdf := []byte("%PDF-1.7\n1 0 obj\n")
	text := []byte("name,qty\nwidget,3\n")
	for _, tc := range []struct {
		name string
		head []byte
		want bool
	}{
		{"report.pdf", pdf, false},
		{"REPORT.PDF", pdf, false},
		{"invoice.pdf", exe, true}, // a renamed executable
		{"photo.jpg", exe, true},
		{"setup.exe", exe, false},
		{"notes.txt", pdf, true},  // a PDF posing as text
		{"data.csv", text, false}, // text may carry any text extension
		{"data.log", text, false},
		{"archive.zip", zipBytes(t), false},
		{"doc.pdf", zipBytes(t), true},
		{"noextension", exe, false}, // nothing claimed
		{"weird.qqqzz", exe, false}, // an extension nobody maps
		{"data.bin", make([]byte, 64), false},
	} {
		if got := Mismatch(tc.name, tc.head); got != tc.want {
			t.Errorf("Mismatch(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBlocked(t *testing.T) {
	if !Blocked(exe, []string{"exe"}) || !Blocked(exe, []string{"application/vnd.microsoft.portable-executable"}) {
		t.Error("executable not blocked by extension or MIME")
	}
	if Blocked([]byte("hello"), []string{"exe", "application/pdf"}) {
		t.Error("text blocked")
	}
	if !Blocked(zipBytes(t), []string{"application/zip"}) {
		t.Error("zip not blocked")
	}
	if Blocked(exe, nil) {
		t.Error("empty list blocks")
	}
}
