package cdr

// HTML, XHTML and SVG: a streaming rewrite on golang.org/x/net/html's
// Tokenizer. Memory is bounded by the largest single token (MaxToken), not
// by the document. Tags and text that need no change are copied byte for
// byte (so SVG keeps its case-sensitive names, namespaces and self-closing
// tags); a tag that loses attributes is rewritten by cutting those
// attributes' byte ranges out of the original tag.
//
// Removed:
//   - elements with their content: script, iframe, object, applet,
//     foreignObject, handler (SVG Tiny), and set/animate that animate an
//     href (xlink:href, ...) to a javascript:/vbscript:/data:text/html URL
//     or animate an on* attribute;
//   - single tags: embed, base, meta http-equiv=refresh;
//   - attributes: every on* event handler, srcdoc, xml:base, any attribute
//     (href, src, xlink:href, action, formaction, data, to, values, ... in
//     any namespace prefix, and all others too) whose value, entity-decoded
//     and normalised the way a URL parser does it, is javascript:,
//     vbscript: or a data: URL of a scriptable document type (SVG data: is
//     kept on image-only elements), and style attributes with expression(),
//     javascript:, -moz-binding or behavior;
//   - <style> content with the same CSS constructs;
//   - all comments (this also removes IE conditional comments), processing
//     instructions other than the XML declaration, and in XML documents the
//     DOCTYPE (its internal subset can define entities that would expand to
//     markup or javascript: after we looked).
//
// Parser differentials are closed off rather than modelled: in HTML the
// contents of raw-text elements (style, title, textarea, xmp, noscript,
// noembed, noframes, plaintext) are written without any '<' (as "&lt;", or
// "\3c " in CSS), so they read the same whether a browser treats them as
// raw text or, inside inline <svg>/<math>, as markup. In XML documents
// nothing is raw text, CDATA sections are recognised, element names are
// matched on their local part (svg:script is a script) and a '<' the
// tokenizer took for text (e.g. "<_x", which XML allows as an element) is
// escaped.
//
// UTF-16/UTF-32 input is refused (ErrMarkupEncoding): an ASCII tokenizer
// would see no markup in it at all.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/net/html"
)

// DefaultMaxMarkupToken bounds a single token (a tag with its attributes,
// a text run, a comment) when MarkupSanitizer.MaxToken is zero.
const DefaultMaxMarkupToken = 16 << 20

// ErrMarkupEncoding: the document is UTF-16 or UTF-32.
var ErrMarkupEncoding = errors.New("cdr: markup: UTF-16/UTF-32 documents are not supported")

// MarkupSanitizer rewrites HTML (XML false) or SVG/XHTML (XML true).
type MarkupSanitizer struct {
	XML      bool   // the document is XML (SVG, XHTML): no raw-text elements, CDATA, prefixes
	Ext      string // Result.ConvertedTo
	MaxToken int    // largest token in bytes; 0 means DefaultMaxMarkupToken
}

func init() {
	Register(&MarkupSanitizer{Ext: "html"}, "text/html")
	Register(&MarkupSanitizer{XML: true, Ext: "svg"}, "image/svg+xml")
	Register(&MarkupSanitizer{XML: true, Ext: "xhtml"}, "application/xhtml+xml")
}

// Sanitize implements Sanitizer.
func (s *MarkupSanitizer) Sanitize(ctx context.Context, in io.ReaderAt, size int64, w io.Writer) (Result, error) {
	maxTok := s.MaxToken
	if maxTok <= 0 {
		maxTok = DefaultMaxMarkupToken
	}
	br := bufio.NewReaderSize(io.NewSectionReader(in, 0, size), 64<<10)
	head, _ := br.Peek(1024)
	if err := checkMarkupEncoding(head); err != nil {
		return Result{}, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	st := &markupState{xml: s.XML, w: bw}
	if s.XML {
		if err := st.prolog(br, maxTok); err != nil {
			return Result{}, err
		}
	}
	z := html.NewTokenizer(br)
	z.SetMaxBuf(maxTok)
	if s.XML {
		z.AllowCDATA(true)
	}
	for i := 0; ; i++ {
		if i&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
		}
		tt := z.Next()
		rawFor := st.rawFor
		st.rawFor = ""
		switch tt {
		case html.ErrorToken:
			if err := z.Err(); err != io.EOF {
				if errors.Is(err, html.ErrBufferExceeded) {
					return Result{}, fmt.Errorf("cdr: markup: token larger than %d bytes", maxTok)
				}
				return Result{}, fmt.Errorf("cdr: markup: %w", err)
			}
			if err := bw.Flush(); err != nil {
				return Result{}, err
			}
			return Result{Action: Sanitized, ConvertedTo: s.Ext, Removed: st.removed}, nil
		case html.TextToken:
			if st.skip == "" {
				st.text(z.Raw(), rawFor)
			}
		case html.CommentToken:
			if bytes.HasPrefix(z.Raw(), []byte("<?")) {
				st.removed.add("processing instruction")
			}
		case html.DoctypeToken:
			if st.skip != "" {
				continue
			}
			if st.xml {
				st.removed.add("doctype")
				continue
			}
			st.w.Write(z.Raw())
		case html.StartTagToken, html.SelfClosingTagToken:
			if s.XML {
				z.NextIsNotRawText() // XML has no raw-text elements
			}
			st.startTag(z, tt)
		case html.EndTagToken:
			st.endTag(z)
		}
	}
}

// checkMarkupEncoding refuses BOM-marked or evidently UTF-16/32 input.
func checkMarkupEncoding(head []byte) error {
	switch {
	case bytes.HasPrefix(head, []byte{0xFE, 0xFF}), bytes.HasPrefix(head, []byte{0xFF, 0xFE}),
		bytes.HasPrefix(head, []byte{0, 0, 0xFE, 0xFF}):
		return ErrMarkupEncoding
	case bytes.Contains(head, []byte("<\x00")), bytes.Contains(head, []byte("\x00<")):
		return ErrMarkupEncoding
	}
	return nil
}

type markupState struct {
	xml     bool
	w       *bufio.Writer
	removed removalLog

	skip      string // local name of the element being removed with its content
	skipDepth int
	rawFor    string // HTML: the raw-text element whose content is the next token
	style     int    // XML: depth inside <style>

	attrs []markupAttr
	keys  []string
}

// ---------------------------------------------------------------- prolog

// prolog handles what precedes the root element of an XML document: the
// XML declaration is kept, whitespace is kept, comments, processing
// instructions (xml-stylesheet!) and the DOCTYPE are dropped.
func (st *markupState) prolog(br *bufio.Reader, limit int) error {
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\xEF\xBB\xBF")) {
		br.Discard(3)
		st.w.Write(b)
	}
	for {
		for {
			b, err := br.Peek(1)
			if err != nil {
				return nil
			}
			if b[0] != ' ' && b[0] != '\t' && b[0] != '\r' && b[0] != '\n' {
				break
			}
			st.w.WriteByte(b[0])
			br.Discard(1)
		}
		b, _ := br.Peek(4)
		switch {
		case bytes.HasPrefix(b, []byte("<?")):
			pi, err := readUntilDelim(br, "?>", limit)
			if err != nil {
				return err
			}
			if len(pi) > 6 && string(pi[:5]) == "<?xml" && isMarkupSpace(pi[5]) {
				st.w.Write(pi)
			} else {
				st.removed.add("processing instruction")
			}
		case bytes.HasPrefix(b, []byte("<!--")):
			if _, err := readUntilDelim(br, "-->", limit); err != nil {
				return err
			}
		case bytes.HasPrefix(b, []byte("<!")):
			if err := skipDoctype(br, limit); err != nil {
				return err
			}
			st.removed.add("doctype")
		default:
			return nil
		}
	}
}

func isMarkupSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

func readUntilDelim(br *bufio.Reader, delim string, limit int) ([]byte, error) {
	var buf []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("cdr: markup: unterminated %q in prolog", delim)
		}
		buf = append(buf, c)
		if bytes.HasSuffix(buf, []byte(delim)) {
			return buf, nil
		}
		if len(buf) > limit {
			return nil, errors.New("cdr: markup: prolog construct too large")
		}
	}
}

// skipDoctype consumes <!DOCTYPE ...> including an internal subset with
// quoted strings and comments.
func skipDoctype(br *bufio.Reader, limit int) error {
	var quote byte
	depth, n := 0, 0
	var last [4]byte
	inComment := false
	for {
		c, err := br.ReadByte()
		if err != nil {
			return errors.New("cdr: markup: unterminated DOCTYPE")
		}
		if n++; n > limit {
			return errors.New("cdr: markup: DOCTYPE too large")
		}
		last = [4]byte{last[1], last[2], last[3], c}
		switch {
		case inComment:
			if last[1] == '-' && last[2] == '-' && c == '>' {
				inComment = false
			}
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case string(last[:]) == "<!--":
			inComment = true
		case c == '"' || c == '\'':
			quote = c
		case c == '[':
			depth++
		case c == ']':
			depth--
		case c == '>' && depth <= 0:
			return nil
		}
	}
}

// ---------------------------------------------------------------- text

func (st *markupState) text(raw []byte, rawFor string) {
	if st.xml {
		if st.style > 0 && cssDangerous(html.UnescapeString(string(raw))) {
			st.removed.add("css script")
			return
		}
		if bytes.HasPrefix(raw, []byte("<![CDATA[")) {
			st.w.Write(raw)
			return
		}
		writeReplacingLT(st.w, raw, "&lt;")
		return
	}
	switch rawFor {
	case "":
		st.w.Write(raw)
	case "style":
		if cssDangerous(string(raw)) {
			st.removed.add("css script")
			return
		}
		writeReplacingLT(st.w, raw, `\3c `)
	default: // RCDATA (title, textarea) decode &lt; anyway; RAWTEXT shows it
		writeReplacingLT(st.w, raw, "&lt;")
	}
}

func writeReplacingLT(w *bufio.Writer, b []byte, repl string) {
	for {
		i := bytes.IndexByte(b, '<')
		if i < 0 {
			w.Write(b)
			return
		}
		w.Write(b[:i])
		w.WriteString(repl)
		b = b[i+1:]
	}
}

// ---------------------------------------------------------------- tags

// Elements removed together with everything inside them.
var markupRemoveWithContent = map[string]string{
	"script":        "script",
	"iframe":        "iframe",
	"object":        "object",
	"applet":        "applet",
	"foreignobject": "foreignObject",
	"handler":       "script",
}

// In HTML the self-closing flag is ignored on these (an HTML tokenizer
// and the browser both treat <script/> as an open element).
var markupHTMLOpenEvenIfSelfClosing = map[string]bool{
	"script": true, "iframe": true, "object": true, "applet": true,
}

// Void elements removed on their own.
var markupRemoveTag = map[string]string{"embed": "embed", "base": "base"}

// End tags dropped wherever they appear (their start tags never survive).
var markupDropEndTag = map[string]bool{
	"script": true, "iframe": true, "object": true, "applet": true,
	"foreignobject": true, "handler": true, "embed": true, "base": true,
}

// Raw-text elements of the HTML tokenizer (full lower-case name).
var markupRawText = map[string]bool{
	"style": true, "title": true, "textarea": true, "xmp": true, "iframe": true,
	"noscript": true, "noembed": true, "noframes": true, "plaintext": true, "script": true,
}

// Elements that only ever render an image from their URL: a
// data:image/svg+xml there is inert (SVG-as-image runs no script).
var markupImageElems = map[string]bool{
	"img": true, "image": true, "source": true, "feimage": true, "input": true,
	"video": true, "audio": true, "picture": true, "track": true, "link": true,
}

type markupAttr struct {
	key, local string // lower case
	val        string // entity-decoded
	start, end int    // byte range in the raw tag, key to end of value
}

func localName(name string) string {
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		return name[i+1:]
	}
	return name
}

func lowerASCII(b []byte) string {
	s := []byte(string(b))
	for i, c := range s {
		if 'A' <= c && c <= 'Z' {
			s[i] = c + 'a' - 'A'
		}
	}
	return string(s)
}

// lexTag splits a raw start tag the way x/net/html's readTag does and
// returns the lower-cased tag name. It keeps duplicates and empty keys.
func lexTag(raw []byte, attrs []markupAttr) (string, []markupAttr) {
	n := len(raw)
	i := 1 // past '<'
	start := i
	for i < n && !isMarkupSpace(raw[i]) && raw[i] != '/' && raw[i] != '>' {
		i++
	}
	name := lowerASCII(raw[start:i])
	skipWS := func() {
		for i < n && isMarkupSpace(raw[i]) {
			i++
		}
	}
	skipWS()
	for i < n && raw[i] != '>' {
		// readTagAttrKey
		ks := i
		for i < n {
			c := raw[i]
			if c == '=' && i == ks {
				i++
				continue
			}
			if c == '=' || isMarkupSpace(c) || c == '/' || c == '>' {
				break
			}
			i++
		}
		ke := i
		end := ke
		var vs, ve int
		// readTagAttrVal
		skipWS()
		if i < n && raw[i] == '/' {
			i++
		} else if i < n && raw[i] == '=' {
			i++
			skipWS()
			end = i
			if i < n && raw[i] != '>' {
				if q := raw[i]; q == '"' || q == '\'' {
					i++
					vs = i
					for i < n && raw[i] != q {
						i++
					}
					ve = i
					if i < n {
						i++
					}
					end = i
				} else {
					vs = i
					for i < n && !isMarkupSpace(raw[i]) && raw[i] != '>' {
						i++
					}
					ve = i
					end = i
				}
			}
		}
		if ke == ks && vs == ve {
			// a lone "/" (or nothing): not an attribute
			if i == ks {
				i++ // defensive: always make progress
			}
			skipWS()
			continue
		}
		key := lowerASCII(raw[ks:ke])
		a := markupAttr{key: key, local: localName(key), start: ks, end: end}
		if ve > vs {
			a.val = html.UnescapeString(string(raw[vs:ve]))
		}
		attrs = append(attrs, a)
		skipWS()
	}
	return name, attrs
}

func (a *markupAttr) is(local string) bool { return a.local == local }

func (st *markupState) startTag(z *html.Tokenizer, tt html.TokenType) {
	raw := z.Raw()
	name, attrs := lexTag(raw, st.attrs[:0])
	st.attrs = attrs
	local := localName(name)
	selfClosing := tt == html.SelfClosingTagToken

	if st.skip != "" {
		if local == st.skip && (!selfClosing || (!st.xml && markupHTMLOpenEvenIfSelfClosing[local])) {
			st.skipDepth++
		}
		return
	}
	// The lexer must agree with the tokenizer on the attribute set;
	// otherwise fall back to re-serialising from the tokenizer's view.
	agree := st.agrees(z, attrs)

	// Whole-element decisions.
	if what, ok := markupRemoveWithContent[local]; ok {
		st.removed.add(what)
		st.beginSkip(local, selfClosing)
		return
	}
	if what, ok := markupRemoveTag[local]; ok {
		st.removed.add(what)
		return
	}
	switch local {
	case "meta":
		for _, a := range attrs {
			if a.key == "http-equiv" && strings.EqualFold(strings.TrimSpace(a.val), "refresh") {
				st.removed.add("meta refresh")
				return
			}
		}
	case "set", "animate":
		if animatesScript(attrs) {
			st.removed.add("svg animation")
			st.beginSkip(local, selfClosing)
			return
		}
	}

	// Attribute decisions.
	var drop []int
	seen := st.keys[:0]
	for i := range attrs {
		a := &attrs[i]
		dup := false
		for _, k := range seen {
			if k == a.key {
				dup = true
				break
			}
		}
		if dup {
			drop = append(drop, i) // browsers keep the first; XML forbids repeats
			continue
		}
		seen = append(seen, a.key)
		if why := attrRisk(local, a); why != "" {
			st.removed.add(why)
			drop = append(drop, i)
		}
	}
	st.keys = seen

	switch {
	case !agree:
		st.reserialize(raw, name, attrs, drop, selfClosing)
	case len(drop) == 0:
		st.w.Write(raw)
	default:
		prev := 0
		for _, i := range drop {
			st.w.Write(raw[prev:attrs[i].start])
			prev = attrs[i].end
		}
		st.w.Write(raw[prev:])
	}

	if st.xml {
		if local == "style" && !selfClosing {
			st.style++
		}
	} else if markupRawText[name] {
		st.rawFor = name
	}
}

func (st *markupState) beginSkip(local string, selfClosing bool) {
	if selfClosing && (st.xml || !markupHTMLOpenEvenIfSelfClosing[local]) {
		return // an empty element: nothing to skip
	}
	st.skip, st.skipDepth = local, 1
}

// agrees reports whether lexTag saw the same (deduplicated, non-empty)
// attribute keys as the tokenizer.
func (st *markupState) agrees(z *html.Tokenizer, attrs []markupAttr) bool {
	_, more := z.TagName()
	j := 0
	for more {
		var k []byte
		k, _, more = z.TagAttr()
		// skip our duplicates
		for j < len(attrs) && isDupKey(attrs, j) {
			j++
		}
		if j >= len(attrs) || attrs[j].key != string(k) {
			return false
		}
		j++
	}
	for j < len(attrs) && isDupKey(attrs, j) {
		j++
	}
	return j == len(attrs)
}

func isDupKey(attrs []markupAttr, j int) bool {
	for i := 0; i < j; i++ {
		if attrs[i].key == attrs[j].key {
			return true
		}
	}
	return false
}

// reserialize writes the tag from the decoded attributes (used only if the
// two lexers ever disagree: names come out lower-cased).
func (st *markupState) reserialize(raw []byte, name string, attrs []markupAttr, drop []int, selfClosing bool) {
	st.w.WriteByte('<')
	st.w.WriteString(name)
	d := 0
	for i, a := range attrs {
		if d < len(drop) && drop[d] == i {
			d++
			continue
		}
		st.w.WriteByte(' ')
		st.w.WriteString(a.key)
		st.w.WriteString(`="`)
		st.w.WriteString(html.EscapeString(a.val))
		st.w.WriteByte('"')
	}
	if selfClosing {
		st.w.WriteByte('/')
	}
	st.w.WriteByte('>')
}

func (st *markupState) endTag(z *html.Tokenizer) {
	raw := z.Raw()
	n, _ := z.TagName()
	name := string(n)
	local := localName(name)
	if st.skip != "" {
		switch {
		case local == st.skip:
			if st.skipDepth--; st.skipDepth > 0 {
				return
			}
			st.skip = ""
			return
		case !st.xml && (name == "body" || name == "html"):
			// An unclosed element in HTML: stop at the end of the body.
			st.skip = ""
		default:
			return
		}
	}
	if markupDropEndTag[local] {
		return
	}
	if st.xml && local == "style" && st.style > 0 {
		st.style--
	}
	st.w.Write(raw)
}

// attrRisk says why an attribute must go ("" if it may stay).
func attrRisk(elem string, a *markupAttr) string {
	switch {
	case strings.HasPrefix(a.key, "on"), strings.HasPrefix(a.local, "on"):
		return "event handler"
	case a.key == "xml:base":
		return "xml:base"
	case a.local == "srcdoc":
		return "srcdoc"
	case a.local == "style":
		if cssDangerous(a.val) {
			return "css script"
		}
	case a.local == "values":
		for _, v := range strings.Split(a.val, ";") {
			if s := dangerousURL(v, elem); s != "" {
				return s + " url"
			}
		}
	default:
		// Any attribute, not only the usual URL ones (href, src, action...):
		// custom and future attributes get navigated to as well, and a
		// title that starts with "javascript:" is a small loss.
		if s := dangerousURL(a.val, elem); s != "" {
			return s + " url"
		}
	}
	return ""
}

// animatesScript: <set>/<animate> writing a script URL into an href, or
// animating an event-handler attribute.
func animatesScript(attrs []markupAttr) bool {
	target := ""
	for _, a := range attrs {
		if a.key == "attributename" {
			target = localName(strings.ToLower(strings.TrimSpace(a.val)))
		}
	}
	if strings.HasPrefix(target, "on") {
		return true
	}
	if target != "href" {
		return false
	}
	for i := range attrs {
		switch attrs[i].local {
		case "to", "from", "by", "values":
			if attrRisk("animate", &attrs[i]) != "" {
				return true
			}
		}
	}
	return false
}

// Media types of data: URLs that a browser would run script in.
var scriptableDataTypes = []string{
	"text/html", "application/xhtml+xml", "text/xml", "application/xml",
	"text/javascript", "application/javascript", "application/x-javascript",
	"text/ecmascript", "application/ecmascript", "text/vbscript",
}

// dangerousURL returns the scheme of a script-capable URL, or "". The
// value is normalised like a URL parser would (leading controls/spaces and
// every tab/newline removed), and then some: all whitespace and controls
// are dropped, so "java script:" is refused too.
func dangerousURL(v, elem string) string {
	var buf [48]byte
	b := buf[:0]
	for i := 0; i < len(v) && len(b) < len(buf); i++ {
		c := v[i]
		if c <= 0x20 || c == 0x7F {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	s := string(b)
	switch {
	case strings.HasPrefix(s, "javascript:"):
		return "javascript"
	case strings.HasPrefix(s, "vbscript:"):
		return "vbscript"
	case strings.HasPrefix(s, "livescript:"):
		return "livescript"
	case strings.HasPrefix(s, "data:"):
		mt := s[len("data:"):]
		for _, t := range scriptableDataTypes {
			if strings.HasPrefix(mt, t) {
				return "data:" + t
			}
		}
		if strings.HasPrefix(mt, "image/svg+xml") && !markupImageElems[elem] {
			return "data:image/svg+xml"
		}
	}
	return ""
}

// cssDangerous finds script-capable CSS after undoing CSS escapes and
// comments: expression(), javascript:/vbscript: URLs, XBL bindings and IE
// behaviors.
func cssDangerous(css string) bool {
	var b strings.Builder
	for i := 0; i < len(css); {
		c := css[i]
		switch {
		case c == '/' && i+1 < len(css) && css[i+1] == '*':
			j := strings.Index(css[i+2:], "*/")
			if j < 0 {
				i = len(css)
			} else {
				i += j + 4
			}
			continue
		case c == '\\':
			j, v, digits := i+1, rune(0), 0
			for j < len(css) && digits < 6 && isHexDigit(css[j]) {
				v = v<<4 | rune(hexVal(css[j]))
				j++
				digits++
			}
			if digits > 0 {
				if j < len(css) && isMarkupSpace(css[j]) {
					j++
				}
				b.WriteRune(v)
				i = j
				continue
			}
			if j < len(css) {
				if css[j] != '\n' && css[j] != '\r' && css[j] != '\f' {
					b.WriteByte(css[j])
				}
				i = j + 1
				continue
			}
			i++
			continue
		case c <= 0x20 || c == 0x7F:
			i++
			continue
		}
		b.WriteByte(c)
		i++
	}
	t := strings.ToLower(b.String())
	for _, p := range []string{"expression(", "javascript:", "vbscript:", "-moz-binding", "behavior:", "behaviour:", "data:text/html"} {
		if strings.Contains(t, p) {
			return true
		}
	}
	return false
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
