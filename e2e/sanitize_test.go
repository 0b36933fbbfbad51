package e2e

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/scangate/scangate/internal/node"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// jpegWithExif is a small JPEG carrying an EXIF segment (with a GPS tag
// marker) and bytes appended after its end.
func jpegWithExif(t testing.TB) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for x := range 64 {
		for y := range 48 {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 5), 90, 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	raw := b.Bytes()
	exif := append([]byte("Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08"), []byte("GPSLatitude 52.52N GPSLongitude 13.40E")...)
	seg := append([]byte{0xFF, 0xE1, byte((len(exif) + 2) >> 8), byte(len(exif) + 2)}, exif...)
	out := append(append(append([]byte{}, raw[:2]...), seg...), raw[2:]...)
	return append(out, []byte("APPENDED-PAYLOAD")...)
}

// docm builds a macro-enabled Word document with a VBA project.
func docm(t testing.TB) []byte {
	files := map[string][]byte{
		"[Content_Types].xml": []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/><Override PartName="/word/document.xml" ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/><Override PartName="/word/vbaProject.bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>`),
		"_rels/.rels": []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>`),
		"word/_rels/document.xml.rels": []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId9" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" Target="vbaProject.bin"/></Relationships>`),
		"word/document.xml": []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Quarterly figures</w:t></w:r></w:p></w:body></w:document>`),
		"word/vbaProject.bin": []byte("\xd0\xcf\x11\xe0VBA Sub AutoOpen() Shell \"calc\" End Sub"),
	}
	return zipOf(t, files, "[Content_Types].xml", "_rels/.rels", "word/_rels/document.xml.rels", "word/document.xml", "word/vbaProject.bin")
}

// pdfWithJS is a one-page PDF whose catalog runs JavaScript on open.
func pdfWithJS() []byte {
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 5 0 R >>",
		"<< /Type /Action /S /JavaScript /JS (app.alert\\('hi'\\)) >>",
		"<< /Length 44 >>\nstream\nBT /F1 12 Tf 20 100 Td (Hello PDF) Tj ET\nendstream",
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n")
	offsets := []int{}
	for i, o := range objs {
		offsets = append(offsets, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}

const activeHTML = `<html><head><script>steal()</script><meta http-equiv="refresh" content="0;url=http://evil"></head>
<body onload="go()"><h1>Report</h1><a href=" JaVaScRiPt:alert(1)">x</a><img src=x onerror="e()"><p>Body text</p></body></html>`

func sanitizeConfigNode(t *testing.T) *node.Node {
	cfg := testConfig(t)
	cfg.Workflows[0].Sanitize.Enabled = true
	cfg.Workflows = append(cfg.Workflows, cfg.Workflows[0])
	cfg.Workflows[1].Name, cfg.Workflows[1].Default, cfg.Workflows[1].Sanitize.BlockUnsanitized = "Strict CDR", false, true
	return startNode(t, cfg)
}

func converted(t *testing.T, base, id string, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/file/converted/"+id, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// Each supported format comes out without its active content, still
// parsing, served by GET /file/converted with its new name.
func TestSanitizationEndToEnd(t *testing.T) {
	n := sanitizeConfigNode(t)
	for _, tc := range []struct {
		name, filename string
		body           []byte
		convertedTo    string
		gone           []string // must not appear in the output
		kept           []string // must still appear
	}{
		{"html", "page.html", []byte(activeHTML), "html", []string{"<script", "steal()", "onload", "onerror", "javascript:", "refresh"}, []string{"Report", "Body text"}},
		{"svg", "logo.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg" onload="x()"><script>y()</script><circle r="5"/><foreignObject><body>z</body></foreignObject></svg>`), "svg", []string{"<script", "onload", "foreignObject"}, []string{"circle"}},
		{"jpeg", "photo.jpg", jpegWithExif(t), "jpg", []string{"GPSLatitude", "Exif", "APPENDED-PAYLOAD"}, nil},
		{"docm", "macro.docm", docm(t), "docx", []string{"vbaProject", "macroEnabled", "AutoOpen"}, []string{"word/document.xml"}},
		{"pdf", "doc.pdf", pdfWithJS(), "pdf", []string{"/JavaScript", "/OpenAction", "app.alert"}, []string{"%PDF"}},
		{"zip", "bundle.zip", zipOf(t, map[string][]byte{"macro.docm": docm(t), "page.html": []byte(activeHTML)}, "macro.docm", "page.html"),
			"zip", []string{"steal()", "onerror"}, []string{"page.html", "Body text"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := mustUpload(t, n.URL(""), tc.body, map[string]string{"filename": tc.filename})
			r := waitResult(t, n.URL(""), id)
			pp := path(r, "process_info", "post_processing").(map[string]any)
			if pp["actions_ran"] != "Sanitized" || pp["converted_to"] != tc.convertedTo {
				t.Fatalf("post_processing: %v", pp)
			}
			code, h, out := converted(t, n.URL(""), id, nil)
			if code != 200 || !strings.Contains(h.Get("Content-Disposition"), "."+tc.convertedTo) {
				t.Fatalf("GET /file/converted: %d %v", code, h)
			}
			text := string(out)
			if tc.name == "docm" || tc.name == "zip" {
				text = flatten(t, out)
			}
			for _, g := range tc.gone {
				if strings.Contains(text, g) {
					t.Errorf("sanitized %s still contains %q", tc.name, g)
				}
			}
			for _, k := range tc.kept {
				if !strings.Contains(text, k) {
					t.Errorf("sanitized %s lost %q", tc.name, k)
				}
			}
			if tc.name == "jpeg" {
				if img, err := jpeg.Decode(bytes.NewReader(out)); err != nil || img.Bounds().Dx() != 64 {
					t.Errorf("sanitized JPEG does not decode: %v", err)
				}
			}
			// A range of it.
			code, h, part := converted(t, n.URL(""), id, map[string]string{"Range": "bytes=2-9"})
			if code != 206 || !bytes.Equal(part, out[2:10]) || !strings.HasPrefix(h.Get("Content-Range"), "bytes 2-9/") {
				t.Errorf("range: %d %q %v", code, part, h.Get("Content-Range"))
			}
		})
	}
	// Unsupported types are skipped; a strict workflow blocks them (30).
	id := mustUpload(t, n.URL(""), randomBytes(t, 3000), nil)
	r := waitResult(t, n.URL(""), id)
	if path(r, "process_info", "post_processing", "actions_ran") != "Sanitization Skipped" {
		t.Errorf("unsupported type: %v", path(r, "process_info", "post_processing"))
	}
	if code, _, _ := converted(t, n.URL(""), id, nil); code != 404 {
		t.Errorf("converted of a skipped file: %d", code)
	}
	r = waitResult(t, n.URL(""), mustUpload(t, n.URL(""), randomBytes(t, 3000), map[string]string{"rule": "Strict CDR"}))
	if path(r, "scan_results", "scan_all_result_i") != float64(30) || path(r, "process_info", "result") != "Blocked" {
		t.Errorf("strict CDR on an unsupported type: %v %v", r["scan_results"], r["process_info"])
	}
}

// flatten returns the text of a zip's member names and members, or a PDF's
// bytes, for searching.
func flatten(t *testing.T, b []byte) string {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return string(b)
	}
	var sb strings.Builder
	for _, f := range zr.File {
		sb.WriteString(f.Name + "\n")
		rc, err := f.Open()
		if err != nil {
			t.Fatalf("sanitized zip member %s: %v", f.Name, err)
		}
		io.Copy(&sb, rc)
		rc.Close()
	}
	return sb.String()
}

// sanitizedurl receives the cleaned bytes with their headers, signed.
func TestSanitizedURLDelivery(t *testing.T) {
	type got struct {
		header http.Header
		body   []byte
		verify error
	}
	secret := "whsec_" + "c2NhbmdhdGUtdGVzdC1zZWNyZXQtMzItYnl0ZXMhIQ=="
	verifier, _ := standardwebhooks.NewWebhook(secret)
	var mu sync.Mutex
	var deliveries []got
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		deliveries = append(deliveries, got{r.Header.Clone(), b, verifier.Verify(b, r.Header)})
		mu.Unlock()
	}))
	defer receiver.Close()
	cfg := testConfig(t)
	cfg.Webhooks.Secret = secret
	cfg.Workflows[0].Sanitize.Enabled = true
	n := startNode(t, cfg)
	id := mustUpload(t, n.URL(""), []byte(activeHTML), map[string]string{"filename": "page.html", "sanitizedurl": receiver.URL + "/clean"})
	waitResult(t, n.URL(""), id)
	waitFor(t, "the sanitized file to arrive", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deliveries) > 0
	})
	mu.Lock()
	d := deliveries[0]
	mu.Unlock()
	sum := sha256.Sum256(d.body)
	_, _, want := converted(t, n.URL(""), id, nil)
	switch {
	case !bytes.Equal(d.body, want):
		t.Errorf("delivered bytes differ from GET /file/converted")
	case d.header.Get("dataid") != id || d.header.Get("sanitization-result") != "Sanitized":
		t.Errorf("headers: %v", d.header)
	case d.header.Get("sanitized-file-hash") != hex.EncodeToString(sum[:]):
		t.Errorf("sanitized-file-hash %s, body sha256 %x", d.header.Get("sanitized-file-hash"), sum)
	case !strings.Contains(d.header.Get("Content-Disposition"), "page.html"):
		t.Errorf("Content-Disposition %q", d.header.Get("Content-Disposition"))
	case d.verify != nil:
		t.Errorf("signature: %v", d.verify)
	}
}
