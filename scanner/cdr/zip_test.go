package cdr

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func readZip(t *testing.T, data []byte) ([]string, map[string][]byte) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	files := map[string][]byte{}
	for _, f := range zr.File {
		names = append(names, f.Name)
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name] = b
	}
	return names, files
}

func assertCleanDocx(t *testing.T, data []byte) {
	t.Helper()
	files := checkPackage(t, data)
	if _, ok := files["word/vbaProject.bin"]; ok {
		t.Error("vbaProject.bin survived")
	}
	if !strings.Contains(files["word/document.xml"], "Hello sanitized world") || strings.Contains(files["word/document.xml"], "DDE") {
		t.Error("document not sanitized")
	}
}

func TestZipNestedSanitized(t *testing.T) {
	docm := string(maliciousDocm(t))
	nested := buildZip(t,
		member{name: "deep/"},
		member{name: "deep/macro.docm", data: docm},
	)
	in := buildZip(t,
		member{name: "docs/"},
		member{name: "docs/report.docm", data: docm},
		member{name: "notes.txt", data: "plain notes\n"},
		member{name: "inner/nested.zip", data: string(nested), method: zip.Store},
	)
	res, out, err := sanitize(t, "application/zip", in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != Sanitized || res.ConvertedTo != "zip" || !slices.Contains(res.Removed, "vba project") {
		t.Errorf("result %+v", res)
	}
	names, files := readZip(t, out)
	if want := []string{"docs/", "docs/report.docx", "notes.txt", "inner/nested.zip"}; !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
	assertCleanDocx(t, files["docs/report.docx"])
	if string(files["notes.txt"]) != "plain notes\n" {
		t.Errorf("notes.txt = %q", files["notes.txt"])
	}
	inNames, inFiles := readZip(t, files["inner/nested.zip"])
	if want := []string{"deep/", "deep/macro.docx"}; !slices.Equal(inNames, want) {
		t.Errorf("nested names %q", inNames)
	}
	assertCleanDocx(t, inFiles["deep/macro.docx"])
}

func TestZipSlipNames(t *testing.T) {
	in := buildZip(t,
		member{name: "../../etc/passwd", data: "a"},
		member{name: "/abs/path.txt", data: "b"},
		member{name: "a/./../../b.txt", data: "c"},
		member{name: `C:\windows\x.txt`, data: "d"},
		member{name: "ok\x00.txt", data: "e"},
		member{name: "dup.txt", data: "f"},
		member{name: "./dup.txt", data: "g"},
		member{name: "../", data: ""},
	)
	res, out, err := sanitize(t, "application/zip", in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != Sanitized {
		t.Errorf("result %+v", res)
	}
	names, files := readZip(t, out)
	want := []string{"etc/passwd", "abs/path.txt", "a/b.txt", "windows/x.txt", "ok.txt", "dup.txt", "dup (2).txt"}
	if !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "/") || strings.Contains(n, "\\") || slices.Contains(strings.Split(n, "/"), "..") {
			t.Errorf("unsafe name %q", n)
		}
	}
	if string(files["dup (2).txt"]) != "g" {
		t.Errorf("dup = %q", files["dup (2).txt"])
	}
}

func TestZipPartial(t *testing.T) {
	in := buildZip(t,
		member{name: "secret.txt", data: "xxxx", flags: 0x1}, // encrypted
		member{name: "ok.txt", data: "fine"},
	)
	res, out, err := sanitize(t, "application/zip", in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != SanitizedPartially || !slices.Contains(res.Removed, "encrypted member") {
		t.Errorf("result %+v", res)
	}
	if names, _ := readZip(t, out); !slices.Equal(names, []string{"ok.txt"}) {
		t.Errorf("names %q", names)
	}

	// A broken docm is dropped; an unknown binary is kept but not clean.
	in = buildZip(t,
		member{name: "bad.docx", data: string(buildZip(t,
			member{name: "[Content_Types].xml", data: "<Types/>"}, member{name: "word/document.xml", data: "<x/>"}))},
		member{name: "tool.exe", data: "MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"},
	)
	res, out, err = sanitize(t, "application/zip", in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != SanitizedPartially || !slices.Contains(res.Removed, "unsanitizable member") {
		t.Errorf("result %+v", res)
	}
	if names, _ := readZip(t, out); !slices.Equal(names, []string{"tool.exe"}) {
		t.Errorf("names %q", names)
	}
}

func TestZipDepthLimit(t *testing.T) {
	z := buildZip(t, member{name: "leaf.txt", data: "leaf"})
	for range MaxArchiveDepth {
		z = buildZip(t, member{name: "n.zip", data: string(z), method: zip.Store})
	}
	// MaxArchiveDepth+1 levels: the innermost zip is dropped.
	res, out, err := sanitize(t, "application/zip", z)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != SanitizedPartially || !slices.Contains(res.Removed, "archive nested too deep") {
		t.Errorf("result %+v", res)
	}
	for range MaxArchiveDepth - 1 {
		_, files := readZip(t, out)
		out = files["n.zip"]
	}
	if names, _ := readZip(t, out); len(names) != 0 {
		t.Errorf("deepest level kept %q", names)
	}
}

// deflateZeros returns a raw deflate stream of n zero bytes.
func deflateZeros(t *testing.T, n int) []byte {
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	zero := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(zero))
		fw.Write(zero[:k])
		n -= k
	}
	fw.Close()
	return buf.Bytes()
}

func TestZipBomb(t *testing.T) {
	// A member declaring 2 GiB (a few MB compressed in a real bomb).
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	raw := deflateZeros(t, 1<<20)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "bomb.bin", Method: zip.Deflate,
		CompressedSize64: uint64(len(raw)), UncompressedSize64: 2 << 30})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	zw.Close()
	data := buf.Bytes()
	for _, mime := range []string{"application/zip", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"} {
		if _, _, err := sanitize(t, mime, data); !errors.Is(err, ErrArchiveLimit) {
			t.Errorf("%s: err = %v", mime, err)
		}
	}

	// Real bytes, lower budget: a 12 MiB member, and nested zips whose
	// decompressed sizes add up past the shared budget.
	defer func(old int64) { archiveBudget = old }(archiveBudget)
	archiveBudget = 10 << 20
	zeros := strings.Repeat("\x00", 12<<20)
	if _, _, err := sanitize(t, "application/zip", buildZip(t, member{name: "z", data: zeros})); !errors.Is(err, ErrArchiveLimit) {
		t.Errorf("single member: err = %v", err)
	}
	inner := string(buildZip(t, member{name: "z", data: zeros[:4<<20]}))
	nested := buildZip(t, member{name: "1.zip", data: inner}, member{name: "2.zip", data: inner}, member{name: "3.zip", data: inner})
	if _, _, err := sanitize(t, "application/zip", nested); !errors.Is(err, ErrArchiveLimit) {
		t.Errorf("nested: err = %v", err)
	}
}
