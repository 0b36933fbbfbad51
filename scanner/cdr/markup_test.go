package cdr

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

var (
	htmlSan = &MarkupSanitizer{Ext: "html"}
	svgSan  = &MarkupSanitizer{XML: true, Ext: "svg"}
)

// scriptish reports a URL-ish value that is javascript:/vbscript:/
// data:text/html after the normalisation a browser applies.
func scriptish(v string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(v) {
		if r > ' ' {
			b.WriteRune(r)
		}
	}
	s := b.String()
	return strings.HasPrefix(s, "javascript:") || strings.HasPrefix(s, "vbscript:") || strings.HasPrefix(s, "data:text/html")
}

type parsedHTML struct {
	elems map[string]int
	text  string
	bad   []string
}

// inspectHTML parses out with the HTML5 parser and collects element
// counts, visible text and anything still active.
func inspectHTML(t *testing.T, out []byte) parsedHTML {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	p := parsedHTML{elems: map[string]int{}}
	var text strings.Builder
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		switch n.Type {
		case html.ElementNode:
			name := strings.ToLower(n.Data)
			p.elems[name]++
			switch name {
			case "script", "iframe", "object", "embed", "applet", "base", "foreignobject":
				p.bad = append(p.bad, "element "+name)
			case "meta":
				for _, a := range n.Attr {
					if strings.EqualFold(a.Key, "http-equiv") && strings.EqualFold(strings.TrimSpace(a.Val), "refresh") {
						p.bad = append(p.bad, "meta http-equiv")
					}
				}
			}
			for _, a := range n.Attr {
				k := strings.ToLower(a.Key)
				if strings.HasPrefix(k, "on") {
					p.bad = append(p.bad, name+" "+a.Key)
				}
				if scriptish(a.Val) {
					p.bad = append(p.bad, name+" "+a.Key+"="+a.Val)
				}
			}
		case html.TextNode:
			text.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	p.text = strings.Join(strings.Fields(text.String()), " ")
	return p
}

const testHTML = `<!DOCTYPE html>
<html><head>
<meta charset="utf-8">
<META HTTP-EQUIV="Refresh" CONTENT="0; url=javascript:alert(1)">
<base href="https://evil.example/">
<title>Quarterly report</title>
<script>alert("head")</script>
<script src="https://evil.example/x.js"></script>
<style>p { color: red } .x { background: url(javascript:alert(1)) }</style>
</head>
<body OnLoad="alert(2)">
<!-- a comment --><!--[if IE]><script>alert(3)</script><![endif]-->
<h1 onclick="alert(4)" class="title">Hello world</h1>
<p id="intro">First paragraph with <b>bold</b> and <a href="https://example.com/ok" title="fine">a good link</a>.</p>
<p><a href="jav&#x09;ascript:alert(5)">obfuscated</a>
<a href=" JAVASCRIPT:alert(6)">spaced</a>
<a href="&#106;avascript:alert(7)">decimal</a>
<a href="java
script:alert(8)">newline</a>
<a href="vbscript:msgbox(9)">vb</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a></p>
<img src="x.png" alt="pic" onerror = "alert(10)" ONMOUSEOVER=alert(11) width=10>
<img src=x onerror  =  alert(12)/>
<div style="width: expression(alert(13))">styled</div>
<div style="color: blue">plain style</div>
<iframe src="https://evil.example/frame">iframe fallback</iframe>
<object data="evil.swf"><param name="movie" value="evil.swf">object fallback</object>
<embed src="evil.swf">
<applet code="Evil.class">applet text</applet>
<form action="javascript:alert(14)"><button formaction="javascript:alert(15)">Send</button></form>
<ul><li>one</li><li>two</li></ul>
<svg><a xlink:href="javascript:alert(16)"><text>svglink</text></a><style><img src=x onerror=alert(17)></style></svg>
<noscript><img src=x onerror=alert(18)></noscript>
<p>Last paragraph &amp; done.</p>
</body></html>`

func TestMarkupHTML(t *testing.T) {
	res, out := runSanitizer(t, htmlSan, []byte(testHTML))
	if res.ConvertedTo != "html" {
		t.Errorf("ConvertedTo = %q", res.ConvertedTo)
	}
	p := inspectHTML(t, out)
	if len(p.bad) > 0 {
		t.Errorf("active content survived: %q\n%s", p.bad, out)
	}
	// (alert( may remain as inert text: the neutralised <style>/<noscript> content)
	for _, s := range []string{"evil", "msgbox", "expression", "<script"} {
		if bytes.Contains(bytes.ToLower(out), []byte(s)) {
			t.Errorf("output still contains %q", s)
		}
	}
	for _, want := range []string{"Quarterly report", "Hello world", "First paragraph with bold and a good link.",
		"obfuscated spaced decimal newline vb data", "styled", "plain style", "Send", "onetwo", "svglink", "Last paragraph & done."} {
		if !strings.Contains(p.text, want) {
			t.Errorf("text %q missing from %q", want, p.text)
		}
	}
	for name, n := range map[string]int{"h1": 1, "p": 3, "a": 8, "img": 2, "div": 2, "li": 2, "form": 1, "button": 1, "svg": 1, "title": 1, "meta": 1} {
		if p.elems[name] != n {
			t.Errorf("%d <%s>, want %d", p.elems[name], name, n)
		}
	}
	// Kept bytes stay as they were.
	for _, s := range []string{`<a href="https://example.com/ok" title="fine">a good link</a>`, `<h1  class="title">`, `<img src="x.png" alt="pic"   width=10>`, `<meta charset="utf-8">`, `<!DOCTYPE html>`} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("output lacks %s", s)
		}
	}
	if bytes.Contains(out, []byte("<!--")) {
		t.Error("comments kept")
	}
	for _, want := range []string{"script", "event handler", "javascript url", "vbscript url", "data:text/html url", "iframe", "object", "embed", "applet", "base", "meta refresh", "css script"} {
		if !slices.Contains(res.Removed, want) {
			t.Errorf("Removed = %q, missing %q", res.Removed, want)
		}
	}
}

func TestMarkupHTMLRawTextDifferentials(t *testing.T) {
	for _, in := range []string{
		`<svg><style><img src=x onerror=alert(1)></style></svg>`,
		`<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>`,
		`<style><a title="</style><img src=x onerror=alert(1)>"></style>`,
		`<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>`,
		`<svg><title><img src=x onerror=alert(1)></title></svg>`,
		`<textarea/><img src=x onerror=alert(1)>`,
		`<svg><![CDATA[><img src=x onerror=alert(1)>]]></svg>`,
		`<object/>x<img src=x onerror=alert(1)>`,
		`<a href="javascript&colon;alert(1)">x</a>`,
		`<a href="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058alert(1)">x</a>`,
		`<img src=x onerror=alert(1)//>`,
		`<img/onerror=alert(1) src=x>`,
		`<img src=x/onerror=alert(1)>`,
		`<svg><set attributeName="onmouseover" to="alert(1)"/></svg>`,
		`<svg><animate attributeName=href values="https://a;javascript:alert(1)"/><a><text>x</text></a></svg>`,
		`<div style="background:url(&quot;jav\61 script:alert(1)&quot;)">x</div>`,
		`<div style="-moz-binding:url(x.xml#xss)">x</div>`,
	} {
		_, out := runSanitizer(t, htmlSan, []byte(in))
		p := inspectHTML(t, out)
		if len(p.bad) > 0 || bytes.Contains(bytes.ToLower(out), []byte("javascript")) || bytes.Contains(out, []byte("binding")) {
			t.Errorf("%s\n  -> %s\n  bad %q", in, out, p.bad)
		}
	}
}

const testSVG = `<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<?xml-stylesheet type="text/xsl" href="evil.xsl"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd" [
  <!ENTITY js "javascript:alert(0)">
  <!-- don't > be fooled -->
]>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:svg="http://www.w3.org/2000/svg" viewBox="0 0 100 100" width="100" height="100" onload="alert(1)">
  <defs>
    <linearGradient id="g1" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#f00"/><stop offset="1" stop-color="#00f"/></linearGradient>
  </defs>
  <script type="text/javascript"><![CDATA[ if (1 < 2) { alert("</script>") } ]]></script>
  <svg:script>alert(2)</svg:script>
  <rect x="10" y="10" width="80" height="80" fill="url(#g1)" onclick="alert(3)" OnMouseOver = 'alert(4)'/>
  <foreignObject width="100" height="100"><body xmlns="http://www.w3.org/1999/xhtml"><script>alert(5)</script><p>html inside</p></body></foreignObject>
  <a xlink:href="javascript:alert(6)"><text x="10" y="50">Click me</text></a>
  <a href=" &#x6A;avascript:alert(7)"><text x="10" y="60">Second</text></a>
  <a xlink:href="#g1"><text x="10" y="70">Internal</text></a>
  <a id="target"><text>anim</text><animate attributeName="href" to="javascript:alert(8)" begin="0s"/></a>
  <set attributeName="xlink:href" to="javascript:alert(9)" href="#target"></set>
  <animate attributeName="opacity" from="0" to="1" dur="1s"/>
  <style>rect { fill: blue }</style>
  <image href="data:image/png;base64,iVBORw0KGgo=" width="1" height="1"/>
  <use href="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=#x"/>
  <!-- a comment -->
  <text x="10" y="90">caf&#233; &amp; more</text>
</svg>
`

func xmlCheck(t *testing.T, out []byte) (elems map[string]int, text string, bad []string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(out))
	d.Strict = true
	elems = map[string]int{}
	var tb strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("output is not well-formed XML: %v\n%s", err, out)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			elems[x.Name.Local]++
			switch strings.ToLower(x.Name.Local) {
			case "script", "foreignobject", "iframe", "embed", "object":
				bad = append(bad, "element "+x.Name.Local)
			case "animate", "set":
				for _, a := range x.Attr {
					if a.Name.Local == "attributeName" && strings.HasSuffix(a.Value, "href") {
						for _, b := range x.Attr {
							if scriptish(b.Value) {
								bad = append(bad, "animation to "+b.Value)
							}
						}
					}
				}
			}
			for _, a := range x.Attr {
				if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") || scriptish(a.Value) {
					bad = append(bad, x.Name.Local+" "+a.Name.Local+"="+a.Value)
				}
			}
		case xml.CharData:
			tb.Write(x)
		case xml.ProcInst:
			if x.Target != "xml" {
				bad = append(bad, "PI "+x.Target)
			}
		case xml.Directive:
			bad = append(bad, "directive "+string(x))
		}
	}
	return elems, strings.Join(strings.Fields(tb.String()), " "), bad
}

func TestMarkupSVG(t *testing.T) {
	res, out := runSanitizer(t, svgSan, []byte(testSVG))
	if res.ConvertedTo != "svg" {
		t.Errorf("ConvertedTo = %q", res.ConvertedTo)
	}
	elems, text, bad := xmlCheck(t, out)
	if len(bad) > 0 {
		t.Errorf("active content survived: %q\n%s", bad, out)
	}
	if bytes.Contains(out, []byte("alert")) || bytes.Contains(out, []byte("evil")) {
		t.Errorf("output still has alert/evil:\n%s", out)
	}
	for name, n := range map[string]int{"svg": 1, "linearGradient": 1, "stop": 2, "rect": 1, "a": 4, "text": 5, "animate": 1, "style": 1, "image": 1, "use": 1} {
		if elems[name] != n {
			t.Errorf("%d <%s>, want %d", elems[name], name, n)
		}
	}
	for _, want := range []string{"Click me", "Second", "Internal", "anim", "café & more", "rect { fill: blue }"} {
		if !strings.Contains(text, want) {
			t.Errorf("text %q missing from %q", want, text)
		}
	}
	for _, s := range []string{`<?xml version="1.0" encoding="UTF-8" standalone="no"?>`, `viewBox="0 0 100 100"`,
		`<stop offset="0" stop-color="#f00"/>`, `<animate attributeName="opacity" from="0" to="1" dur="1s"/>`,
		`xmlns:xlink="http://www.w3.org/1999/xlink"`, `<a xlink:href="#g1">`} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("output lacks %s", s)
		}
	}
	if _, err := html.Parse(bytes.NewReader(out)); err != nil {
		t.Errorf("x/net/html: %v", err)
	}
	// and as HTML (inline SVG) nothing active either
	if p := inspectHTML(t, out); len(p.bad) > 0 {
		t.Errorf("as HTML: %q", p.bad)
	}
	for _, want := range []string{"script", "foreignObject", "event handler", "javascript url", "svg animation", "doctype", "processing instruction", "data:image/svg+xml url"} {
		if !slices.Contains(res.Removed, want) {
			t.Errorf("Removed = %q, missing %q", res.Removed, want)
		}
	}
}

func TestMarkupSVGOddities(t *testing.T) {
	for _, in := range []string{
		`<svg xmlns="http://www.w3.org/2000/svg"><_x xmlns="http://www.w3.org/1999/xhtml" onclick="alert(1)">x</_x></svg>`,
		`<svg xmlns="http://www.w3.org/2000/svg"><h:script xmlns:h="http://www.w3.org/1999/xhtml">alert(1)</h:script></svg>`,
		`<svg xmlns="http://www.w3.org/2000/svg" xmlns:q="http://www.w3.org/1999/xlink"><a q:href="javascript:alert(1)"><text>x</text></a></svg>`,
		`<svg xmlns="http://www.w3.org/2000/svg"><style/><script>alert(1)</script></svg>`,
		`<svg xmlns="http://www.w3.org/2000/svg"><title/><script>alert(1)</script><foreignObject/><text>ok</text></svg>`,
		`<svg xmlns="http://www.w3.org/2000/svg"><style><![CDATA[ rect { behavior: url(x.htc) } ]]></style></svg>`,
	} {
		_, out := runSanitizer(t, svgSan, []byte(in))
		_, _, bad := xmlCheck(t, out)
		if len(bad) > 0 || bytes.Contains(out, []byte("behavior")) || (bytes.Contains(out, []byte("alert")) && !bytes.Contains(out, []byte("&lt;_x"))) {
			t.Errorf("%s\n  -> %s\n  bad %q", in, out, bad)
		}
	}
}

func TestMarkupRefusesUTF16(t *testing.T) {
	in := []byte("\xFF\xFE<\x00s\x00v\x00g\x00>\x00")
	for _, s := range []*MarkupSanitizer{htmlSan, svgSan} {
		_, err := s.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), io.Discard)
		if !errors.Is(err, ErrMarkupEncoding) {
			t.Errorf("err = %v", err)
		}
	}
}

func TestMarkupTokenLimit(t *testing.T) {
	in := []byte(`<p title="` + strings.Repeat("a", 4096) + `">x</p>`)
	s := &MarkupSanitizer{Ext: "html", MaxToken: 1024}
	if _, err := s.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), io.Discard); err == nil {
		t.Error("token over the limit accepted")
	}
}

func TestMarkupRegistry(t *testing.T) {
	for m, ext := range map[string]string{"text/html; charset=utf-8": "html", "image/svg+xml": "svg", "application/xhtml+xml": "xhtml"} {
		s, ok := For(m)
		if !ok {
			t.Fatalf("no sanitizer for %s", m)
		}
		if ms, ok := s.(*MarkupSanitizer); !ok || ms.Ext != ext {
			t.Errorf("%s: %#v", m, s)
		}
	}
}

// FuzzMarkupHTML: whatever goes in, the HTML5 parse of the output has no
// script-capable element, handler or URL.
func FuzzMarkupHTML(f *testing.F) {
	f.Add(testHTML)
	f.Add(testSVG)
	f.Add(`<svg><style><img src=x onerror=alert(1)></style></svg>`)
	f.Add(`<a href="jav&#x09;ascript:x">`)
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		if _, err := htmlSan.Sanitize(context.Background(), strings.NewReader(in), int64(len(in)), &out); err != nil {
			return
		}
		if p := inspectHTML(t, out.Bytes()); len(p.bad) > 0 {
			t.Fatalf("%q\n-> %q\nbad %q", in, out.String(), p.bad)
		}
	})
}

// FuzzMarkupSVG: the XML parse of the output has nothing active (when the
// output is well-formed at all) and the HTML parse neither.
func FuzzMarkupSVG(f *testing.F) {
	f.Add(testSVG)
	f.Add(`<svg><a xlink:href="javascript:x"/></svg>`)
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		if _, err := svgSan.Sanitize(context.Background(), strings.NewReader(in), int64(len(in)), &out); err != nil {
			return
		}
		if p := inspectHTML(t, out.Bytes()); len(p.bad) > 0 {
			t.Fatalf("%q\n-> %q\nbad %q", in, out.String(), p.bad)
		}
		if xml.Unmarshal(out.Bytes(), new(any)) == nil {
			// well-formed: check with the XML view too
			d := xml.NewDecoder(&out)
			for {
				tok, err := d.Token()
				if err != nil {
					break
				}
				if se, ok := tok.(xml.StartElement); ok {
					l := strings.ToLower(se.Name.Local)
					if l == "script" || l == "foreignobject" {
						t.Fatalf("%q -> element %s", in, l)
					}
					for _, a := range se.Attr {
						if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") || scriptish(a.Value) {
							t.Fatalf("%q -> attr %s=%s", in, a.Name.Local, a.Value)
						}
					}
				}
			}
		}
	})
}
