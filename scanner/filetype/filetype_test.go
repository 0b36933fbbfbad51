package filetype

import (
	"archive/zip"
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"strings"
	"testing"
)

func pngFile(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	img.Set(1, 1, color.RGBA{R: 255, A: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zipFile builds a zip whose entries are stored uncompressed in the order given.
func zipFile(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e[0], Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func randomBinary() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[0], b[1] = 0x00, 0x9f // no magic number starts like this
	return b
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want Type
	}{
		{"pdf", []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"),
			Type{"application/pdf", "Adobe Portable Document Format", "pdf"}},
		{"png", pngFile(t),
			Type{"image/png", "Portable Network Graphics image", "png"}},
		{"zip", zipFile(t, [2]string{"readme.txt", "hello"}, [2]string{"data.bin", "\x00\x01"}),
			Type{"application/zip", "ZIP compressed archive", "zip"}},
		{"text", []byte(strings.Repeat("The quick brown fox jumps over the lazy dog.\n", 20)),
			Type{"text/plain", "ASCII text", "txt"}},
		{"binary", randomBinary(),
			Type{"application/octet-stream", "Binary data", ""}},
		// No description of its own: the parent type's (a zip).
		{"epub falls back to zip", zipFile(t, [2]string{"mimetype", "application/epub+zip"}, [2]string{"content.opf", "<package/>"}),
			Type{"application/epub+zip", "ZIP compressed archive", "epub"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := tt.data[:min(len(tt.data), HeadSize)]
			got := Detect(head)
			if got != tt.want {
				t.Errorf("Detect = %+v, want %+v", got, tt.want)
			}
			if got.Description == "" || got.Description == "Unknown" {
				t.Errorf("description = %q, want a real one", got.Description)
			}
			if strings.Contains(got.MIME, ";") || strings.HasPrefix(got.Extension, ".") {
				t.Errorf("MIME %q has parameters or extension %q has a dot", got.MIME, got.Extension)
			}
		})
	}
}

func TestDetectOnlyNeedsHead(t *testing.T) {
	// The bytes beyond HeadSize never change the answer: a long text whose
	// tail is binary is still judged by its head.
	data := append([]byte(strings.Repeat("plain words ", HeadSize/12+1)), randomBinary()...)
	if got := Detect(data); got.MIME != Detect(data[:HeadSize]).MIME {
		t.Errorf("Detect(all) = %q, Detect(head) = %q", got.MIME, Detect(data[:HeadSize]).MIME)
	}
}
