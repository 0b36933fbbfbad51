package cdr

import (
	"archive/zip"
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"sort"
	"strings"
	"unicode"
)

// ooxmlSanitizer rebuilds Office Open XML packages (docx/xlsx/pptx, their
// templates and slideshows, and the macro-enabled docm/dotm/xlsm/xltm/
// xlam/pptm/potm/ppsm/ppam) with archive/zip, one member at a time.
//
// Removed:
//   - VBA: vbaProject.bin, vbaData.xml, VBA signatures, attachedToolbars,
//     keyMapCustomizations and their relationships;
//   - ActiveX controls (activeX/ parts, control relationships);
//   - OLE objects and embedded packages (embeddings/ parts, oleObject and
//     package relationships);
//   - Excel 4.0 macro sheets (macrosheets/) and Auto_Open-style names;
//   - customUI/ ribbon extensibility parts;
//   - xlsx externalLinks/ (external workbooks and DDE links);
//   - every TargetMode="External" relationship except type hyperlink with
//     an http or https target (attachedTemplate template injection, linked
//     OLE objects, linked images, file: or UNC hyperlinks, subDocument...);
//   - DDE: w:fldSimple with a DDE/DDEAUTO instruction is unwrapped (its
//     result runs are kept); complex fields whose instruction starts with
//     DDE/DDEAUTO, also when split over several w:instrText runs or when
//     the keyword is produced by a nested field, get their instruction text
//     emptied; in worksheets, DDE formulas (app|'topic'!item) are dropped
//     and the cached value kept;
//   - PowerPoint actions that run macros, programs or OLE verbs;
//   - digital signatures (_xmlsignatures/, no longer valid) and parts that
//     no relationship reaches any more.
//
// Elements referencing a removed relationship (o:OLEObject, w:control,
// w:attachedTemplate, externalReference, a:hlinkClick, ...) are dropped;
// hyperlinks keep their text and only lose the r:id. Containers left empty
// by that (externalReferences, oleObjects, controls, definedNames,
// mc:AlternateContent) are dropped too. [Content_Types].xml is rebuilt for
// the remaining parts and a macro-enabled main part type is switched to
// the macro-free one, so a .docm comes out as a .docx (ConvertedTo).
//
// Only parts that may need editing are rewritten (an encoding/xml token
// stream): the main part, Word story parts, worksheets, slides, parts that
// lost relationships, the .rels and [Content_Types].xml. Everything else
// is io.Copy'd. Limits: MaxArchiveMembers members, MaxArchiveUncompressed
// decompressed bytes (ErrArchiveLimit).
type ooxmlSanitizer struct{}

func init() {
	Register(ooxmlSanitizer{},
		"application/vnd.openxmlformats-officedocument.wordprocessingml.document",
		"application/vnd.openxmlformats-officedocument.wordprocessingml.template",
		"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
		"application/vnd.openxmlformats-officedocument.spreadsheetml.template",
		"application/vnd.openxmlformats-officedocument.presentationml.presentation",
		"application/vnd.openxmlformats-officedocument.presentationml.template",
		"application/vnd.openxmlformats-officedocument.presentationml.slideshow",
		"application/vnd.ms-word.document.macroenabled.12",
		"application/vnd.ms-word.template.macroenabled.12",
		"application/vnd.ms-excel.sheet.macroenabled.12",
		"application/vnd.ms-excel.template.macroenabled.12",
		"application/vnd.ms-excel.addin.macroenabled.12",
		"application/vnd.ms-powerpoint.presentation.macroenabled.12",
		"application/vnd.ms-powerpoint.template.macroenabled.12",
		"application/vnd.ms-powerpoint.slideshow.macroenabled.12",
		"application/vnd.ms-powerpoint.addin.macroenabled.12",
	)
}

const (
	maxPackageXML = 64 << 20 // cap for [Content_Types].xml and one .rels part
	maxFieldBuf   = 1 << 20  // cap for one buffered field instruction

	nsPkgRels     = "http://schemas.openxmlformats.org/package/2006/relationships"
	nsContentType = "http://schemas.openxmlformats.org/package/2006/content-types"
	ctRels        = "application/vnd.openxmlformats-package.relationships+xml"
)

var relNamespaces = map[string]bool{
	"http://schemas.openxmlformats.org/officeDocument/2006/relationships": true,
	"http://purl.oclc.org/ooxml/officeDocument/relationships":             true,
}

// macroFreeMain maps macro-enabled main part content types (lowercase) to
// the macro-free ones.
var macroFreeMain = map[string]string{
	"application/vnd.ms-word.document.macroenabled.main+xml":                             "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
	"application/vnd.ms-word.template.macroenabledtemplate.main+xml":                     "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
	"application/vnd.ms-excel.sheet.macroenabled.main+xml":                               "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
	"application/vnd.ms-excel.template.macroenabled.main+xml":                            "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml",
	"application/vnd.ms-excel.addin.macroenabled.main+xml":                               "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
	"application/vnd.ms-powerpoint.presentation.macroenabled.main+xml":                   "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
	"application/vnd.ms-powerpoint.template.macroenabled.main+xml":                       "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
	"application/vnd.ms-powerpoint.slideshow.macroenabled.main+xml":                      "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
	"application/vnd.ms-powerpoint.addin.macroenabled.main+xml":                          "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml":   "",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml":   "",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml":         "",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml":      "",
	"application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": "",
	"application/vnd.openxmlformats-officedocument.presentationml.template.main+xml":     "",
	"application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml":    "",
}

// mainExt gives the output extension for a (macro-free) main content type.
var mainExt = map[string]string{
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml":   "docx",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml":   "dotx",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml":         "xlsx",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml":      "xltx",
	"application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": "pptx",
	"application/vnd.openxmlformats-officedocument.presentationml.template.main+xml":     "potx",
	"application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml":    "ppsx",
}

// blockedRelTypes: relationship types (last path segment, lowercase) that
// are always removed, with the Removed category.
var blockedRelTypes = map[string]string{
	"vbaproject":               "vba project",
	"wordvbadata":              "vba project",
	"vbaprojectsignature":      "vba project",
	"vbaprojectsignatureagile": "vba project",
	"vbaprojectsignaturev3":    "vba project",
	"keymapcustomizations":     "vba project",
	"attachedtoolbars":         "vba project",
	"activexcontrol":           "activex",
	"activexcontrolbinary":     "activex",
	"control":                  "activex",
	"oleobject":                "ole object",
	"package":                  "ole object",
	"externallink":             "external link",
	"externallinkpath":         "external link",
	"xlexternallinkpath":       "external link",
	"attachedtemplate":         "external relationship",
	"extensibility":            "custom ui",
	"usercustomization":        "custom ui",
	"xlmacrosheet":             "macro sheet",
	"xlintlmacrosheet":         "macro sheet",
	"origin":                   "digital signature",
	"signature":                "digital signature",
	"certificate":              "digital signature",
}

// blockedDirs: a part inside a folder of this name (lowercase) is removed.
var blockedDirs = map[string]string{
	"activex":        "activex",
	"embeddings":     "ole object",
	"customui":       "custom ui",
	"externallinks":  "external link",
	"macrosheets":    "macro sheet",
	"_xmlsignatures": "digital signature",
}

// blockedNames: parts with this base name (lowercase) are removed.
var blockedNames = map[string]string{
	"vbaproject.bin":           "vba project",
	"vbadata.xml":              "vba project",
	"vbaprojectsignature.bin":  "vba project",
	"attachedtoolbars.bin":     "vba project",
	"keymapcustomizations.xml": "vba project",
	"customui.xml":             "custom ui",
	"customui14.xml":           "custom ui",
}

// blockedCT: content-type substrings (lowercase) of removed parts.
var blockedCT = []struct{ sub, why string }{
	{"vbaproject", "vba project"},
	{"vbadata", "vba project"},
	{"keymapcustomizations", "vba project"},
	{"attachedtoolbars", "vba project"},
	{"activex", "activex"},
	{"oleobject", "ole object"},
	{"externallink", "external link"},
	{"macrosheet", "macro sheet"},
	{"digital-signature", "digital signature"},
}

type opcRel struct {
	id, typ, target, mode string
	targetKey             string // resolved internal target part key
	drop                  string // removal category, "" = kept
}

type opcPart struct {
	f      *zip.File
	key    string // lowercase, unescaped name
	ctype  string // lowercase content type
	remove string // removal category, "" = kept
	isRels bool
	source string // for a .rels part: key of its source part ("" = package)
}

type opcContentTypes struct {
	defaults  []ctEntry // Extension → ContentType
	overrides []ctEntry // PartName → ContentType
}

type ctEntry struct{ key, ctype string }

func partKey(name string) string {
	if u, err := url.PathUnescape(name); err == nil {
		name = u
	}
	return strings.ToLower(strings.TrimPrefix(name, "/"))
}

func (ooxmlSanitizer) Sanitize(ctx context.Context, in io.ReaderAt, size int64, w io.Writer) (Result, error) {
	ctx, b := withBudget(ctx)
	zr, err := newZipReader(in, size)
	if err != nil {
		return Result{}, fmt.Errorf("cdr: ooxml: %w", err)
	}
	if err := checkDeclared(zr, b); err != nil {
		return Result{}, err
	}

	// Index the package.
	parts := map[string]*opcPart{}
	var order []*opcPart
	var ctPart *zip.File
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") {
			continue
		}
		if f.Name == "[Content_Types].xml" {
			ctPart = f
			continue
		}
		if strings.HasPrefix(f.Name, "/") || strings.Contains(f.Name, "\\") || strings.ContainsRune(f.Name, 0) {
			return Result{}, fmt.Errorf("cdr: ooxml: invalid part name %q", f.Name)
		}
		k := partKey(f.Name)
		if _, dup := parts[k]; dup || k == "[content_types].xml" {
			return Result{}, fmt.Errorf("cdr: ooxml: duplicate part %q", f.Name)
		}
		p := &opcPart{f: f, key: k}
		if src, ok := relsSource(k); ok {
			p.isRels, p.source = true, src
		}
		parts[k] = p
		order = append(order, p)
	}
	if ctPart == nil {
		return Result{}, errors.New("cdr: ooxml: no [Content_Types].xml")
	}

	ct, err := readContentTypes(ctx, ctPart, b)
	if err != nil {
		return Result{}, err
	}
	defaults := map[string]string{}
	for _, d := range ct.defaults {
		defaults[d.key] = d.ctype
	}
	overrides := map[string]string{}
	for _, o := range ct.overrides {
		overrides[o.key] = o.ctype
	}

	var removed removedSet
	// Removal by name, folder and content type.
	for _, p := range order {
		if t, ok := overrides[p.key]; ok {
			p.ctype = t
		} else {
			p.ctype = defaults[strings.TrimPrefix(path.Ext(p.key), ".")]
		}
		if p.isRels {
			continue
		}
		p.remove = partBlocked(p)
	}

	// Relationships.
	rels := map[string][]*opcRel{} // source key → rels
	for _, p := range order {
		if !p.isRels {
			continue
		}
		rs, err := readRels(ctx, p.f, b)
		if err != nil {
			return Result{}, err
		}
		for _, r := range rs {
			if !strings.EqualFold(r.mode, "External") {
				r.targetKey = resolveTarget(p.source, r.target)
				if why := relTypeBlocked(r.typ); why != "" {
					if t := parts[r.targetKey]; t != nil && t.remove == "" {
						t.remove = why // whatever it points at goes too
					}
				}
			}
		}
		rels[p.source] = rs
	}
	for _, rs := range rels {
		for _, r := range rs {
			r.drop = relDecision(r, parts)
		}
	}

	// Keep only what the kept relationships still reach from the package.
	reached := map[string]bool{}
	queue := []string{""}
	for len(queue) > 0 {
		src := queue[0]
		queue = queue[1:]
		for _, r := range rels[src] {
			if r.drop == "" && r.targetKey != "" && !reached[r.targetKey] {
				reached[r.targetKey] = true
				queue = append(queue, r.targetKey)
			}
		}
	}
	for _, p := range order {
		switch {
		case p.isRels:
			if p.source != "" && (parts[p.source] == nil || parts[p.source].remove != "" || !reached[p.source]) {
				p.remove = "orphan part"
			}
		case p.remove != "":
			removed.add(p.remove)
		case !reached[p.key]:
			p.remove = "orphan part"
			removed.add(p.remove)
		}
	}
	removedIDs := map[string]map[string]bool{}
	for src, rs := range rels {
		for _, r := range rs {
			if r.drop == "" {
				continue
			}
			if s := parts[src]; src == "" || (s != nil && s.remove == "") {
				removed.add(r.drop)
			}
			if removedIDs[src] == nil {
				removedIDs[src] = map[string]bool{}
			}
			removedIDs[src][r.id] = true
		}
	}

	// Main part and output type.
	var main *opcPart
	for _, r := range rels[""] {
		if r.drop == "" && strings.EqualFold(path.Base(r.typ), "officeDocument") {
			main = parts[r.targetKey]
		}
	}
	if main == nil {
		return Result{}, errors.New("cdr: ooxml: no main document part")
	}
	newMain, known := macroFreeMain[main.ctype]
	if !known {
		return Result{}, fmt.Errorf("%w: ooxml main part %q", ErrUnsupported, main.ctype)
	}
	if newMain != "" {
		removed.add("macro-enabled content type")
	} else {
		newMain = main.ctype
	}
	ext := mainExt[newMain]

	// Write the package: [Content_Types].xml first, then the parts in
	// their original order.
	zw := newZipWriter(w)
	cw, err := zw.CreateHeader(&zip.FileHeader{Name: ctPart.Name, Method: zip.Deflate, Modified: ctPart.Modified})
	if err != nil {
		return Result{}, err
	}
	if err := writeContentTypes(cw, ct, parts, main.key, newMain); err != nil {
		return Result{}, err
	}
	for _, p := range order {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		if p.remove != "" {
			continue
		}
		if p.isRels && len(rels[p.source]) > 0 && len(removedIDs[p.source]) == len(rels[p.source]) {
			continue // nothing left
		}
		method := p.f.Method
		if method != zip.Store {
			method = zip.Deflate
		}
		pw, err := zw.CreateHeader(&zip.FileHeader{Name: p.f.Name, Method: method, Modified: p.f.Modified})
		if err != nil {
			return Result{}, err
		}
		if p.isRels {
			if err := writeRels(pw, rels[p.source]); err != nil {
				return Result{}, err
			}
			continue
		}
		rc, err := openMember(ctx, p.f, b)
		if err != nil {
			return Result{}, fmt.Errorf("cdr: ooxml: %s: %w", p.f.Name, err)
		}
		kind := partKindOf(p, p == main)
		if kind != kindOther || len(removedIDs[p.key]) > 0 {
			err = rewriteXML(rc, pw, &xmlFilter{kind: kind, removedIDs: removedIDs[p.key], removed: &removed})
		} else {
			_, err = io.Copy(pw, rc)
		}
		rc.Close()
		if err != nil {
			return Result{}, fmt.Errorf("cdr: ooxml: %s: %w", p.f.Name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return Result{}, err
	}
	return Result{Action: Sanitized, ConvertedTo: ext, Removed: removed.list}, nil
}

// relsSource maps "dir/_rels/name.rels" to its source part "dir/name"
// ("_rels/.rels" → "", the package).
func relsSource(k string) (string, bool) {
	dir, file := path.Split(k)
	if !strings.HasSuffix(file, ".rels") || path.Base(strings.TrimSuffix(dir, "/")) != "_rels" {
		return "", false
	}
	parent := path.Dir(strings.TrimSuffix(dir, "/"))
	src := strings.TrimSuffix(file, ".rels")
	if parent != "." {
		src = parent + "/" + src
	}
	return src, true
}

func partBlocked(p *opcPart) string {
	segs := strings.Split(p.key, "/")
	for _, s := range segs[:len(segs)-1] {
		if why := blockedDirs[s]; why != "" {
			return why
		}
	}
	base := segs[len(segs)-1]
	if why := blockedNames[base]; why != "" {
		return why
	}
	if strings.HasPrefix(base, "vbaprojectsignature") {
		return "vba project"
	}
	for _, b := range blockedCT {
		if strings.Contains(p.ctype, b.sub) {
			return b.why
		}
	}
	return ""
}

func relTypeBlocked(typ string) string {
	t := strings.ToLower(typ)
	if strings.Contains(t, "digital-signature") {
		return "digital signature"
	}
	return blockedRelTypes[path.Base(t)]
}

// relDecision returns why r must go, or "".
func relDecision(r *opcRel, parts map[string]*opcPart) string {
	if why := relTypeBlocked(r.typ); why != "" {
		return why
	}
	if strings.EqualFold(r.mode, "External") {
		if strings.EqualFold(path.Base(r.typ), "hyperlink") {
			if u, err := url.Parse(strings.TrimSpace(r.target)); err == nil &&
				(strings.EqualFold(u.Scheme, "http") || strings.EqualFold(u.Scheme, "https")) && u.Host != "" {
				return ""
			}
		}
		return "external relationship"
	}
	t := parts[r.targetKey]
	switch {
	case t == nil || t.isRels:
		return "dangling relationship"
	case t.remove != "":
		return t.remove
	}
	return ""
}

func resolveTarget(source, target string) string {
	t := target
	if i := strings.IndexAny(t, "#?"); i >= 0 {
		t = t[:i]
	}
	if u, err := url.PathUnescape(t); err == nil {
		t = u
	}
	t = strings.ReplaceAll(t, "\\", "/")
	if t == "" {
		return ""
	}
	var p string
	if strings.HasPrefix(t, "/") {
		p = path.Clean(t)
	} else {
		p = path.Join(path.Dir("/"+source), t)
	}
	return strings.ToLower(strings.TrimPrefix(p, "/"))
}

func readPackageXML(ctx context.Context, f *zip.File, b *budget) (*xml.Decoder, io.Closer, error) {
	if f.UncompressedSize64 > maxPackageXML {
		return nil, nil, fmt.Errorf("%w: %s too large", ErrArchiveLimit, f.Name)
	}
	rc, err := openMember(ctx, f, b)
	if err != nil {
		return nil, nil, fmt.Errorf("cdr: ooxml: %s: %w", f.Name, err)
	}
	return xml.NewDecoder(io.LimitReader(rc, maxPackageXML)), rc, nil
}

func attr(se xml.StartElement, local string) (string, bool) {
	for _, a := range se.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value, true
		}
	}
	return "", false
}

func readContentTypes(ctx context.Context, f *zip.File, b *budget) (*opcContentTypes, error) {
	dec, c, err := readPackageXML(ctx, f, b)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ct := &opcContentTypes{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return ct, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cdr: ooxml: [Content_Types].xml: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		t, _ := attr(se, "ContentType")
		t = strings.ToLower(strings.TrimSpace(t))
		switch se.Name.Local {
		case "Default":
			if e, _ := attr(se, "Extension"); e != "" {
				ct.defaults = append(ct.defaults, ctEntry{strings.ToLower(e), t})
			}
		case "Override":
			if n, _ := attr(se, "PartName"); n != "" {
				ct.overrides = append(ct.overrides, ctEntry{partKey(n), t})
			}
		}
	}
}

func readRels(ctx context.Context, f *zip.File, b *budget) ([]*opcRel, error) {
	dec, c, err := readPackageXML(ctx, f, b)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var rs []*opcRel
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return rs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cdr: ooxml: %s: %w", f.Name, err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "Relationship" {
			r := &opcRel{}
			r.id, _ = attr(se, "Id")
			r.typ, _ = attr(se, "Type")
			r.target, _ = attr(se, "Target")
			r.mode, _ = attr(se, "TargetMode")
			rs = append(rs, r)
		}
	}
}

func writeRels(w io.Writer, rs []*opcRel) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` + "\r\n")
	bw.WriteString(`<Relationships xmlns="` + nsPkgRels + `">`)
	for _, r := range rs {
		if r.drop != "" {
			continue
		}
		bw.WriteString(`<Relationship Id="`)
		escapeAttr(bw, r.id)
		bw.WriteString(`" Type="`)
		escapeAttr(bw, r.typ)
		bw.WriteString(`" Target="`)
		escapeAttr(bw, r.target)
		if strings.EqualFold(r.mode, "External") {
			bw.WriteString(`" TargetMode="External`)
		}
		bw.WriteString(`"/>`)
	}
	bw.WriteString(`</Relationships>`)
	return bw.Flush()
}

func writeContentTypes(w io.Writer, ct *opcContentTypes, parts map[string]*opcPart, mainKey, mainType string) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` + "\r\n")
	bw.WriteString(`<Types xmlns="` + nsContentType + `">`)
	seen := map[string]bool{}
	for _, d := range ct.defaults {
		if seen[d.key] || blockedType(d.ctype) {
			continue
		}
		seen[d.key] = true
		bw.WriteString(`<Default Extension="`)
		escapeAttr(bw, d.key)
		bw.WriteString(`" ContentType="`)
		escapeAttr(bw, d.ctype)
		bw.WriteString(`"/>`)
	}
	var keys []string
	for k, p := range parts {
		if p.remove == "" && !p.isRels {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	ov := map[string]string{}
	for _, o := range ct.overrides {
		ov[o.key] = o.ctype
	}
	for _, k := range keys {
		t, ok := ov[k]
		if !ok {
			continue
		}
		if k == mainKey {
			t = mainType
		}
		bw.WriteString(`<Override PartName="/`)
		escapeAttr(bw, parts[k].f.Name)
		bw.WriteString(`" ContentType="`)
		escapeAttr(bw, t)
		bw.WriteString(`"/>`)
	}
	bw.WriteString(`</Types>`)
	return bw.Flush()
}

func blockedType(ct string) bool {
	for _, b := range blockedCT {
		if strings.Contains(ct, b.sub) {
			return true
		}
	}
	return false
}

// ---- XML part rewriting --------------------------------------------------

type partKind int

const (
	kindOther    partKind = iota
	kindWord              // Word story parts: DDE fields
	kindSheet             // worksheets: DDE formulas
	kindWorkbook          // workbook: auto-run defined names
	kindSlide             // PowerPoint parts: macro/program actions
)

func partKindOf(p *opcPart, isMain bool) partKind {
	t := p.ctype
	if !strings.HasSuffix(t, "+xml") {
		return kindOther
	}
	switch {
	case strings.Contains(t, "wordprocessingml") || strings.Contains(t, "ms-word"):
		return kindWord
	case strings.Contains(t, "spreadsheetml.worksheet"):
		return kindSheet
	case isMain && (strings.Contains(t, "spreadsheetml") || strings.Contains(t, "ms-excel")):
		return kindWorkbook
	case strings.Contains(t, "presentationml") && (strings.Contains(t, "slide") || isMain):
		return kindSlide
	}
	return kindOther
}

type xmlFilter struct {
	kind       partKind
	removedIDs map[string]bool
	removed    *removedSet

	dec   *xml.Decoder
	names []xml.Name // open elements
	skip  []bool     // matching end element is not emitted (unwrapped)
	ns    []nsDecl   // namespace declarations, innermost last
	next  func(xml.Token) error
}

type nsDecl struct {
	depth       int
	prefix, uri string
}

// rewriteXML streams one XML part through the filter.
func rewriteXML(r io.Reader, w io.Writer, f *xmlFilter) error {
	out := &xmlOut{w: bufio.NewWriterSize(w, 64<<10)}
	next := out.token
	if len(f.removedIDs) > 0 {
		c := &containerSink{next: next}
		next = c.token
	}
	var fs *fieldSink
	if f.kind == kindWord {
		fs = &fieldSink{next: next, removed: f.removed}
		next = fs.token
	}
	f.next = next
	f.dec = xml.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	if err := f.run(); err != nil {
		return err
	}
	if fs != nil {
		if err := fs.flush(); err != nil {
			return err
		}
	}
	if out.err != nil {
		return out.err
	}
	return out.w.Flush()
}

func (f *xmlFilter) run() error {
	for {
		tok, err := f.dec.RawToken()
		if err == io.EOF {
			if len(f.names) != 0 {
				return errors.New("xml: unexpected EOF")
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := f.start(t); err != nil {
				return err
			}
		case xml.EndElement:
			n := len(f.names) - 1
			if n < 0 || f.names[n] != t.Name {
				return fmt.Errorf("xml: unexpected end element </%s>", qname(t.Name))
			}
			skip := f.skip[n]
			f.names, f.skip = f.names[:n], f.skip[:n]
			for len(f.ns) > 0 && f.ns[len(f.ns)-1].depth > n {
				f.ns = f.ns[:len(f.ns)-1]
			}
			if !skip {
				if err := f.next(t); err != nil {
					return err
				}
			}
		case xml.CharData:
			if err := f.next(t); err != nil {
				return err
			}
		case xml.ProcInst:
			if t.Target == "xml" {
				if err := f.next(t); err != nil {
					return err
				}
			}
			// comments, directives (DOCTYPE) and other PIs are dropped
		}
	}
}

const (
	actKeep   = iota
	actDrop   // drop the element and its subtree
	actUnwrap // drop the tags, keep the children
)

func (f *xmlFilter) start(t xml.StartElement) error {
	depth := len(f.names)
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" {
			f.ns = append(f.ns, nsDecl{depth: depth + 1, prefix: a.Name.Local, uri: a.Value})
		} else if a.Name.Space == "" && a.Name.Local == "xmlns" {
			f.ns = append(f.ns, nsDecl{depth: depth + 1, uri: a.Value})
		}
	}
	act := actKeep
	// References to removed relationships.
	if len(f.removedIDs) > 0 {
		for i := 0; i < len(t.Attr); i++ {
			a := t.Attr[i]
			if a.Name.Space == "" || !f.removedIDs[a.Value] || !relNamespaces[f.lookup(a.Name.Space)] {
				continue
			}
			if t.Name.Local == "hyperlink" {
				t.Attr = append(t.Attr[:i:i], t.Attr[i+1:]...) // keep the text, lose the link
				i--
			} else {
				act = actDrop
			}
		}
	}
	switch f.kind {
	case kindWord:
		if t.Name.Local == "fldSimple" {
			if instr, ok := prefixedAttr(t, "instr"); ok && isDDEInstr(instr) {
				f.removed.add("dde field")
				act = max(act, actUnwrap)
			}
		}
	case kindSlide:
		switch t.Name.Local {
		case "hlinkClick", "hlinkHover", "hlinkMouseOver":
			a, _ := attr(t, "action")
			a = strings.ToLower(a)
			if strings.HasPrefix(a, "ppaction://macro") || strings.HasPrefix(a, "ppaction://program") || strings.HasPrefix(a, "ppaction://ole") {
				f.removed.add("macro action")
				act = actDrop
			}
		}
	case kindWorkbook:
		if t.Name.Local == "definedName" {
			n, _ := attr(t, "name")
			n = strings.ToLower(strings.TrimPrefix(strings.ToLower(n), "_xlnm."))
			if strings.HasPrefix(n, "auto_open") || strings.HasPrefix(n, "auto_close") ||
				strings.HasPrefix(n, "auto_activate") || strings.HasPrefix(n, "auto_deactivate") {
				f.removed.add("macro sheet")
				act = actDrop
			}
		}
	case kindSheet:
		if t.Name.Local == "f" && act == actKeep {
			return f.formula(t)
		}
	}
	switch act {
	case actDrop:
		f.popNS(depth)
		return f.skipSubtree()
	case actUnwrap:
		f.names, f.skip = append(f.names, t.Name), append(f.skip, true)
		return nil
	}
	f.names, f.skip = append(f.names, t.Name), append(f.skip, false)
	return f.next(t)
}

func (f *xmlFilter) popNS(depth int) {
	for len(f.ns) > 0 && f.ns[len(f.ns)-1].depth > depth {
		f.ns = f.ns[:len(f.ns)-1]
	}
}

func (f *xmlFilter) lookup(prefix string) string {
	for i := len(f.ns) - 1; i >= 0; i-- {
		if f.ns[i].prefix == prefix {
			return f.ns[i].uri
		}
	}
	return ""
}

func (f *xmlFilter) skipSubtree() error {
	for depth := 1; depth > 0; {
		tok, err := f.dec.RawToken()
		if err != nil {
			if err == io.EOF {
				err = errors.New("xml: unexpected EOF")
			}
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
	}
	return nil
}

// formula buffers a worksheet <f> element and drops it if it is a DDE
// formula (the cell keeps its cached <v>).
func (f *xmlFilter) formula(start xml.StartElement) error {
	toks := []xml.Token{start.Copy()}
	var text strings.Builder
	for depth := 1; depth > 0; {
		tok, err := f.dec.RawToken()
		if err != nil {
			if err == io.EOF {
				err = errors.New("xml: unexpected EOF")
			}
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
			if depth == 0 && t.Name != start.Name {
				return fmt.Errorf("xml: unexpected end element </%s>", qname(t.Name))
			}
		case xml.CharData:
			text.Write(t)
			if text.Len() > maxFieldBuf {
				return errors.New("xml: formula too long")
			}
		}
		toks = append(toks, xml.CopyToken(tok))
	}
	if isDDEFormula(text.String()) {
		f.removed.add("dde formula")
		return nil
	}
	for _, t := range toks {
		if err := f.next(t); err != nil {
			return err
		}
	}
	return nil
}

func prefixedAttr(se xml.StartElement, local string) (string, bool) {
	for _, a := range se.Attr {
		if a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// isDDEInstr reports whether a field instruction runs DDE/DDEAUTO.
func isDDEInstr(instr string) bool {
	w := strings.FieldsFunc(instr, func(r rune) bool { return unicode.IsSpace(r) || r == '"' || r == '\'' })
	return len(w) > 0 && (strings.EqualFold(w[0], "DDE") || strings.EqualFold(w[0], "DDEAUTO"))
}

// isDDEFormula: after removing string literals, a '|' only appears in a
// DDE reference (=cmd|' /c calc'!A1).
func isDDEFormula(f string) bool {
	inStr := false
	for i := 0; i < len(f); i++ {
		switch c := f[i]; {
		case c == '"':
			inStr = !inStr
		case c == '|' && !inStr:
			return true
		}
	}
	return false
}

// fieldSink buffers the instruction part of each outermost complex field
// (fldChar begin … separate/end) and empties its w:instrText when it is a
// DDE field, including a keyword split across runs or produced by a nested
// field.
type fieldSink struct {
	next    func(xml.Token) error
	removed *removedSet

	buf     []xml.Token
	size    int
	level   int
	inInstr bool
	instr   strings.Builder
	keyword bool // a non-space instruction character was seen
	dynamic bool // a nested field came before the keyword
}

func fldCharType(t xml.StartElement) string {
	if t.Name.Local != "fldChar" {
		return ""
	}
	v, _ := prefixedAttr(t, "fldCharType")
	return v
}

func isInstrText(n xml.Name) bool { return n.Local == "instrText" || n.Local == "delInstrText" }

func (s *fieldSink) token(t xml.Token) error {
	if s.level == 0 {
		if se, ok := t.(xml.StartElement); ok && fldCharType(se) == "begin" {
			s.level = 1
			s.buf = append(s.buf[:0], se.Copy())
			return nil
		}
		return s.next(t)
	}
	t = xml.CopyToken(t)
	s.buf = append(s.buf, t)
	switch t := t.(type) {
	case xml.StartElement:
		s.size += 64
		if isInstrText(t.Name) {
			s.inInstr = true
		}
		switch fldCharType(t) {
		case "begin":
			s.level++
			if !s.keyword {
				s.dynamic = true
			}
		case "separate":
			if s.level == 1 {
				return s.flush()
			}
		case "end":
			s.level--
			if s.level == 0 {
				s.level = 1 // flush resets
				return s.flush()
			}
		}
	case xml.EndElement:
		if isInstrText(t.Name) {
			s.inInstr = false
		}
	case xml.CharData:
		s.size += len(t)
		if s.inInstr && s.level == 1 {
			s.instr.Write(t)
			if strings.TrimSpace(s.instr.String()) != "" {
				s.keyword = true
			}
		}
	}
	if s.size > maxFieldBuf {
		return errors.New("xml: field instruction too large")
	}
	return nil
}

// flush evaluates the buffered instruction and passes the tokens on.
func (s *fieldSink) flush() error {
	if s.level == 0 {
		return nil
	}
	dde := s.dynamic || isDDEInstr(s.instr.String())
	if dde {
		s.removed.add("dde field")
	}
	in := false
	for _, t := range s.buf {
		switch tt := t.(type) {
		case xml.StartElement:
			in = in || isInstrText(tt.Name)
		case xml.EndElement:
			if isInstrText(tt.Name) {
				in = false
			}
		case xml.CharData:
			if dde && in {
				continue
			}
		}
		if err := s.next(t); err != nil {
			return err
		}
	}
	s.buf, s.size, s.level, s.inInstr, s.keyword, s.dynamic = s.buf[:0], 0, 0, false, false, false
	s.instr.Reset()
	return nil
}

// containerSink drops container elements that lost all their children
// (externalReferences, oleObjects, controls, definedNames,
// mc:AlternateContent) so the part stays schema-valid.
type containerSink struct {
	next   func(xml.Token) error
	frames []*cframe
}

type cframe struct {
	toks  []xml.Token
	depth int
}

var containerNames = map[string]bool{
	"externalReferences": true, "oleObjects": true, "controls": true,
	"definedNames": true, "AlternateContent": true,
}

func (c *containerSink) token(t xml.Token) error {
	switch tt := t.(type) {
	case xml.StartElement:
		if containerNames[tt.Name.Local] {
			c.frames = append(c.frames, &cframe{toks: []xml.Token{tt.Copy()}})
			return nil
		}
	case xml.EndElement:
		if n := len(c.frames); n > 0 && c.frames[n-1].depth == 0 {
			fr := c.frames[n-1]
			c.frames = c.frames[:n-1]
			fr.toks = append(fr.toks, tt)
			if !fr.hasContent() {
				return nil
			}
			for _, t := range fr.toks {
				if err := c.emit(t); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return c.emit(t)
}

func (c *containerSink) emit(t xml.Token) error {
	n := len(c.frames)
	if n == 0 {
		return c.next(t)
	}
	fr := c.frames[n-1]
	switch t.(type) {
	case xml.StartElement:
		fr.depth++
	case xml.EndElement:
		fr.depth--
	}
	fr.toks = append(fr.toks, xml.CopyToken(t))
	return nil
}

func (fr *cframe) hasContent() bool {
	for _, t := range fr.toks[1 : len(fr.toks)-1] {
		switch tt := t.(type) {
		case xml.StartElement:
			if tt.Name.Local != "Choice" && tt.Name.Local != "Fallback" {
				return true
			}
		case xml.CharData:
			if len(strings.TrimSpace(string(tt))) > 0 {
				return true
			}
		}
	}
	return false
}

// xmlOut serialises raw (prefix-preserving) tokens.
type xmlOut struct {
	w    *bufio.Writer
	open bool // a start tag awaits its '>'
	err  error
}

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

func writeName(w *bufio.Writer, n xml.Name) {
	if n.Space != "" {
		w.WriteString(n.Space)
		w.WriteByte(':')
	}
	w.WriteString(n.Local)
}

func (o *xmlOut) token(t xml.Token) error {
	w := o.w
	switch t := t.(type) {
	case xml.StartElement:
		if o.open {
			w.WriteByte('>')
		}
		w.WriteByte('<')
		writeName(w, t.Name)
		for _, a := range t.Attr {
			w.WriteByte(' ')
			writeName(w, a.Name)
			w.WriteString(`="`)
			escapeAttr(w, a.Value)
			w.WriteByte('"')
		}
		o.open = true
	case xml.EndElement:
		if o.open {
			w.WriteString("/>")
			o.open = false
		} else {
			w.WriteString("</")
			writeName(w, t.Name)
			w.WriteByte('>')
		}
	case xml.CharData:
		if len(t) == 0 {
			return nil
		}
		if o.open {
			w.WriteByte('>')
			o.open = false
		}
		escapeText(w, t)
	case xml.ProcInst:
		if o.open {
			w.WriteByte('>')
			o.open = false
		}
		w.WriteString("<?")
		w.WriteString(t.Target)
		if len(t.Inst) > 0 {
			w.WriteByte(' ')
			w.Write(t.Inst)
		}
		w.WriteString("?>")
	}
	return nil
}

func escapeText(w *bufio.Writer, s []byte) {
	last := 0
	for i, c := range s {
		var esc string
		switch c {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\r':
			esc = "&#xD;"
		default:
			continue
		}
		w.Write(s[last:i])
		w.WriteString(esc)
		last = i + 1
	}
	w.Write(s[last:])
}

func escapeAttr(w *bufio.Writer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '"':
			esc = "&quot;"
		case '\r':
			esc = "&#xD;"
		case '\n':
			esc = "&#xA;"
		case '\t':
			esc = "&#x9;"
		default:
			continue
		}
		w.WriteString(s[last:i])
		w.WriteString(esc)
		last = i + 1
	}
	w.WriteString(s[last:])
}
