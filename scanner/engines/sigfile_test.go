package engines

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/result"
)

const (
	sigTestMD5    = "44d88612fea8a8f36de82e1278abb02f"
	sigTestSHA1   = "3395856ce81f2b7382dee72602f798b642f14140"
	sigTestSHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
)

func TestParseHDB(t *testing.T) {
	good := "# comment\n\n" +
		sigTestMD5 + ":68:Eicar.Md5\n" +
		strings.ToUpper(sigTestMD5) + ":*:Any.Size:73\r\n" +
		"  " + sigTestMD5 + ":0:Empty.File:1:255  \n"
	got, err := ParseHDB(strings.NewReader(good), "good.hdb")
	if err != nil {
		t.Fatal(err)
	}
	want := []HashSignature{
		{Name: "Eicar.Md5", Algo: "md5", Digest: sigTestMD5, Size: 68, Source: "good.hdb:3"},
		{Name: "Any.Size", Algo: "md5", Digest: sigTestMD5, Size: AnySize, Source: "good.hdb:4"},
		{Name: "Empty.File", Algo: "md5", Digest: sigTestMD5, Size: 0, Source: "good.hdb:5"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseHDB =\n%+v\nwant\n%+v", got, want)
	}

	for _, tt := range []struct{ line, msg string }{
		{sigTestMD5 + ":68", "fields"},
		{sigTestMD5, "fields"},
		{sigTestMD5 + ":68:a:b:c:d", "fields"},
		{sigTestMD5 + ":68:", "name"},
		{sigTestMD5[:31] + ":68:Short", "md5"},
		{sigTestSHA256 + ":68:Sha256.In.Hdb", "md5"},
		{"zz" + sigTestMD5[2:] + ":68:Not.Hex", "hex"},
		{sigTestMD5 + ":-1:Negative", "size"},
		{sigTestMD5 + ":1e3:Float", "size"},
		{sigTestMD5 + "::Empty.Size", "size"},
		{sigTestMD5 + ":99999999999999999999:Huge", "size"},
	} {
		text := "# first line\n" + sigTestMD5 + ":1:Fine\n\n" + tt.line + "\n"
		_, err := ParseHDB(strings.NewReader(text), "bad.hdb")
		if err == nil || !strings.HasPrefix(err.Error(), "bad.hdb:4: ") || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseHDB(%q) error = %v; want bad.hdb:4 and %q", tt.line, err, tt.msg)
		}
	}
}

func TestParseHSB(t *testing.T) {
	good := sigTestSHA256 + ":68:Eicar.Sha256\n" + sigTestSHA1 + ":*:Eicar.Sha1:73:255\n"
	got, err := ParseHSB(strings.NewReader(good), "good.hsb")
	if err != nil {
		t.Fatal(err)
	}
	want := []HashSignature{
		{Name: "Eicar.Sha256", Algo: "sha256", Digest: sigTestSHA256, Size: 68, Source: "good.hsb:1"},
		{Name: "Eicar.Sha1", Algo: "sha1", Digest: sigTestSHA1, Size: AnySize, Source: "good.hsb:2"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseHSB =\n%+v\nwant\n%+v", got, want)
	}
	for _, tt := range []struct{ line, msg string }{
		{sigTestMD5 + ":68:Md5.In.Hsb", "sha1"},
		{sigTestSHA256 + "00:68:Long", "sha1"},
		{"g" + sigTestSHA256[1:] + ":68:Not.Hex", "hex"},
		{sigTestSHA256 + ":x:Bad.Size", "size"},
		{sigTestSHA256 + ":68", "fields"},
		{sigTestSHA256 + ":68:", "name"},
	} {
		_, err := ParseHSB(strings.NewReader(sigTestSHA1+":1:Fine\n"+tt.line), "bad.hsb")
		if err == nil || !strings.HasPrefix(err.Error(), "bad.hsb:2: ") || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseHSB(%q) error = %v; want bad.hsb:2 and %q", tt.line, err, tt.msg)
		}
	}
}

func TestParseNDB(t *testing.T) {
	good := strings.Join([]string{
		"Plain:0:*:4d414749430a",
		"# a comment",
		"PE.Target:1:0:4d5a9000:73",
		"Shifted:0:100,50:41??42{3}43{2-5}44{-4}45{6-}46*4748:51:255",
		"Nibbles:7:12:4?4142?3",
		"",
		"Upper:0:*:DEADBEEF",
	}, "\n")
	got, warns, err := ParseNDB(strings.NewReader(good), "good.ndb")
	if err != nil || len(warns) != 0 {
		t.Fatalf("ParseNDB: %v, warnings %q", err, warns)
	}
	want := []BodySignature{
		{Name: "Plain", Target: 0, Offset: AnyOffset, Hex: "4d414749430a", Source: "good.ndb:1"},
		{Name: "PE.Target", Target: 1, Offset: 0, Hex: "4d5a9000", Source: "good.ndb:3"},
		{Name: "Shifted", Target: 0, Offset: 100, MaxShift: 50, Hex: "41??42{3}43{2-5}44{-4}45{6-}46*4748", Source: "good.ndb:4"},
		{Name: "Nibbles", Target: 7, Offset: 12, Hex: "4?4142?3", Source: "good.ndb:5"},
		{Name: "Upper", Target: 0, Offset: AnyOffset, Hex: "DEADBEEF", Source: "good.ndb:7"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseNDB =\n%+v\nwant\n%+v", got, want)
	}

	for _, tt := range []struct{ line, msg string }{
		{"Name:0:*", "fields"},
		{"Name:0:*:4142:1:2:3", "fields"},
		{":0:*:41424344", "name"},
		{"Name:x:*:41424344", "target"},
		{"Name:-1:*:41424344", "target"},
		{"Name::*:41424344", "target"},
		{"Name:0:abc:41424344", "offset"},
		{"Name:0::41424344", "offset"},
		{"Name:0:-5:41424344", "offset"},
		{"Name:0:10,:41424344", "shift"},
		{"Name:0:10,x:41424344", "shift"},
		{"Name:0:*,5:41424344", "offset"},
		{"Name:0:Sx:41424344", "offset"},
		{"Name:0:EOF-:41424344", "offset"},
		{"Name:0:EP+1x:41424344", "offset"},
		{"Name:0:*:", "empty"},
		{"Name:0:*:414", "odd"},
		{"Name:0:*:4142434*45", "odd"},
		{"Name:0:*:41424g", "invalid character 'g'"},
		{"Name:0:*:4142 43", "invalid character ' '"},
		{"Name:0:*:41424344}", "odd"},
		{"Name:0:*:*41424344", "starts with a jump"},
		{"Name:0:*:{2}41424344", "starts with a jump"},
		{"Name:0:*:41424344*", "ends with a jump"},
		{"Name:0:*:41424344{1-}", "ends with a jump"},
		{"Name:0:*:4142{5-2}4344", "backwards"},
		{"Name:0:*:4142{}4344", "want {n}"},
		{"Name:0:*:4142{-}4344", "want {n}"},
		{"Name:0:*:4142{a}4344", "want {n}"},
		{"Name:0:*:4142{1-2-3}4344", "want {n}"},
		{"Name:0:*:4142{34344", "unterminated"},
		{"Name:0:*:41", "at least 2 literal"},
		{"Name:0:*:41??42??43", "at least 2 literal"},
		{"Name:0:*:41*42*43", "at least 2 literal"},
		{"Name:0:*:4?4?4?4?", "at least 2 literal"},
		{"Name:0:*:????????", "at least 2 literal"},
		{"Name:0:*:41{3}42", "at least 2 literal"},
	} {
		text := "Fine:0:*:41424344\n\n" + tt.line + "\n"
		_, _, err := ParseNDB(strings.NewReader(text), "bad.ndb")
		if err == nil || !strings.HasPrefix(err.Error(), "bad.ndb:3: ") || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseNDB(%q) error = %v; want bad.ndb:3 and %q", tt.line, err, tt.msg)
		}
	}

	// Valid ClamAV this engine does not implement: skipped, with a warning
	// naming file:line.
	skipped := []string{
		"Eof:0:EOF-100:41424344",
		"Ep:1:EP+0:41424344",
		"EpMinus:1:EP-10,20:41424344",
		"Section:1:S2+10:41424344",
		"LastSection:1:SL+0:41424344",
		"SectionEnd:1:SE1:41424344",
		"EofShift:0:EOF-100,20:41424344",
		"Version:1:VI:41424344",
		"Alt:0:*:4142(43|44)4546",
		"Neg:0:*:4142!(43)4546",
		"Range:0:*:4142[1-2]4546",
		"Boundary:0:*:(B)41424344",
		"NoLiteral:0:*:41424344*????*45464748",
		"TooWide:0:*:4142{0-70000}4344",
	}
	text := "Kept:0:*:41424344\n" + strings.Join(skipped, "\n") + "\nAlsoKept:0:5:45464748\n"
	got, warns, err = ParseNDB(strings.NewReader(text), "clam.ndb")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "Kept" || got[1].Name != "AlsoKept" || got[1].Source != fmt.Sprintf("clam.ndb:%d", len(skipped)+2) {
		t.Errorf("ParseNDB kept %+v", got)
	}
	if len(warns) != len(skipped) {
		t.Fatalf("warnings = %q, want %d", warns, len(skipped))
	}
	for i, w := range warns {
		name := skipped[i][:strings.IndexByte(skipped[i], ':')]
		if !strings.HasPrefix(w, fmt.Sprintf("clam.ndb:%d: skipped %q: ", i+2, name)) {
			t.Errorf("warning %q does not name clam.ndb:%d and %q", w, i+2, name)
		}
	}
}

func TestLoadSignatureFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mt time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t1 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	t2 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	hdb := write("a.hdb", sigTestMD5+":68:Eicar.Md5\n", t1)
	hsb := write("b.HSB", sigTestSHA256+":*:Eicar.Sha256\n", t1)
	ndb := write("c.ndb", "Magic:0:*:4d414749430a\nEp:1:EP+0:41424344\n", t2)
	set, warns, err := LoadSignatureFiles([]string{hdb, hsb, ndb})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Hashes) != 2 || len(set.Body) != 1 || !set.DefTime.Equal(t2) {
		t.Errorf("set = %+v", set)
	}
	if len(warns) != 1 || !strings.HasPrefix(warns[0], ndb+":2: ") {
		t.Errorf("warnings = %q", warns)
	}
	s, err := NewSignatures(set)
	if err != nil {
		t.Fatal(err)
	}
	if s.Info().DefTime != result.FormatTime(t2) {
		t.Errorf("DefTime = %q", s.Info().DefTime)
	}
	if f := sigScan1(t, s, strings.NewReader("xx MAGIC\n xx")); f.Threat != "Magic" {
		t.Errorf("ScanStream = %+v", f)
	}
	if h := set.HashEngine(); h == nil || h.Len() != 2 || h.Info().DefTime != result.FormatTime(t2) {
		t.Errorf("HashEngine() = %+v", h)
	}

	empty, warns, err := LoadSignatureFiles(nil)
	if err != nil || len(warns) != 0 || len(empty.Body)+len(empty.Hashes) != 0 || !empty.DefTime.IsZero() {
		t.Errorf("LoadSignatureFiles(nil) = %+v, %q, %v", empty, warns, err)
	}

	bad := write("bad.ndb", "Fine:0:*:41424344\nBroken:0:*:414\n", t1)
	for _, tt := range []struct {
		paths []string
		msg   string
	}{
		{[]string{hdb, filepath.Join(dir, "x.ldb")}, "unknown signature file type \".ldb\""},
		{[]string{write("noext", "", t1)}, "unknown signature file type \"\""},
		{[]string{filepath.Join(dir, "missing.ndb")}, "missing.ndb"},
		{[]string{hdb, bad}, bad + ":2: "},
		{[]string{sigMkdir(t, filepath.Join(dir, "dir.ndb"))}, "directory"},
	} {
		if _, _, err := LoadSignatureFiles(tt.paths); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("LoadSignatureFiles(%q) error = %v, want %q", tt.paths, err, tt.msg)
		}
	}
}

func sigMkdir(t *testing.T, p string) string {
	t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// sigRandomSet makes n random body signatures of the shapes found in real
// databases: plain literals, ?? wildcards, * and bounded jumps, absolute
// offsets (near the head and far from it).
func sigRandomSet(n int, seed uint64) *SignatureSet {
	rnd := rand.New(rand.NewPCG(seed, 7))
	lit := func(k int) string {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		return fmt.Sprintf("%x", b)
	}
	var lines []string
	for i := range n {
		var off, hexsig string
		off = "*"
		switch i % 10 {
		case 0, 1, 2, 3:
			hexsig = lit(12 + rnd.IntN(13))
		case 4, 5:
			hexsig = lit(6) + "??" + lit(6+rnd.IntN(4))
		case 6, 7:
			hexsig = lit(8) + "*" + lit(8)
		case 8:
			hexsig = lit(6) + fmt.Sprintf("{%d-%d}", rnd.IntN(4), 4+rnd.IntN(60)) + lit(6)
		case 9:
			off = strconv.Itoa(rnd.IntN(1 << 20))
			hexsig = lit(10)
		}
		lines = append(lines, fmt.Sprintf("Random.%d:0:%s:%s", i, off, hexsig))
	}
	body, warns, err := ParseNDB(strings.NewReader(strings.Join(lines, "\n")), "random.ndb")
	if err != nil || len(warns) > 0 {
		panic(fmt.Sprint(err, warns))
	}
	return &SignatureSet{Body: body}
}

// sigRandReader serves n pseudo-random bytes without holding them, and
// calls every each time it has served another step bytes.
type sigRandReader struct {
	rnd          *rand.ChaCha8
	n, served    int64
	step, nextAt int64
	every        func()
}

func (r *sigRandReader) Read(p []byte) (int, error) {
	if r.served >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.served)]
	_, _ = r.rnd.Read(p)
	r.served += int64(len(p))
	if r.every != nil && r.served >= r.nextAt {
		r.nextAt += r.step
		r.every()
	}
	return len(p), nil
}

func TestSignaturesBoundedMemory(t *testing.T) {
	size := int64(50 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	set := sigRandomSet(1000, 1)
	s, err := NewSignatures(set)
	if err != nil {
		t.Fatal(err)
	}
	// Plant one far-apart signature so the scan is not trivially clean.
	planted, err := NewSignatures(set, sigSet(t, "Planted:0:*:706c616e7465642d6f6e65*706c616e7465642d74776f"))
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	for _, tt := range []struct {
		name string
		s    *Signatures
		want string
	}{{"random", s, ""}, {"planted", planted, "Planted"}} {
		// Warm the pool so its buffer is not counted as growth.
		sigScan1(t, tt.s, bytes.NewReader(nil))
		before := heap()
		var peak uint64
		r := &sigRandReader{rnd: rand.NewChaCha8([32]byte{1}), n: size, step: 4 << 20, nextAt: 4 << 20}
		r.every = func() { peak = max(peak, heap()) }
		var rd io.Reader = r
		if tt.want != "" {
			rd = io.MultiReader(strings.NewReader("planted-one"), r, strings.NewReader("planted-two"))
		}
		f := sigScan1(t, tt.s, rd)
		if f.Threat != tt.want {
			t.Errorf("%s: ScanStream = %+v, want %q", tt.name, f, tt.want)
		}
		if r.served != size {
			t.Errorf("%s: read %d of %d bytes", tt.name, r.served, size)
		}
		const limit = 8 << 20
		if peak > before && peak-before > limit {
			t.Errorf("%s: heap in use grew by %d bytes while scanning %d bytes (limit %d)", tt.name, peak-before, size, limit)
		}
		t.Logf("%s: heap in use %d before, peak %d during a %d MiB scan", tt.name, before, peak, size>>20)
	}
}

// sigLatin1 maps each byte to the rune of the same value, so that a
// regexp can match binary data byte by byte.
func sigLatin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// sigOracle is a naive matcher for sig: a regexp over sigLatin1 of data
// of length n. Repetition counts are capped at n+1 (which changes nothing
// on such data) to stay within regexp's limits.
func sigOracle(t testing.TB, sig BodySignature, n int) *regexp.Regexp {
	t.Helper()
	cap := func(v int64) int64 { return min(v, int64(n)+1) }
	var b strings.Builder
	b.WriteString("(?s)")
	if sig.Offset != AnyOffset {
		fmt.Fprintf(&b, "^.{%d,%d}", cap(sig.Offset), cap(sig.Offset+sig.MaxShift))
	}
	h := strings.ToLower(sig.Hex)
	hexv := func(c byte) int { v, _ := strconv.ParseUint(string(c), 16, 8); return int(v) }
	for i := 0; i < len(h); {
		switch c := h[i]; {
		case c == '*':
			b.WriteString(".*")
			i++
		case c == '{':
			end := strings.IndexByte(h[i:], '}')
			in := h[i+1 : i+end]
			i += end + 1
			lo, hi, ranged := strings.Cut(in, "-")
			if !ranged {
				hi = lo
			}
			l, _ := strconv.ParseInt(lo, 10, 64)
			if hi == "" {
				fmt.Fprintf(&b, ".{%d,}", cap(l))
			} else {
				u, _ := strconv.ParseInt(hi, 10, 64)
				fmt.Fprintf(&b, ".{%d,%d}", cap(l), cap(u))
			}
		default:
			d := h[i+1]
			i += 2
			switch {
			case c == '?' && d == '?':
				b.WriteString(".")
			case c == '?':
				b.WriteString("[")
				for hi := range 16 {
					fmt.Fprintf(&b, `\x{%x}`, hi<<4|hexv(d))
				}
				b.WriteString("]")
			case d == '?':
				fmt.Fprintf(&b, `[\x{%x}-\x{%x}]`, hexv(c)<<4, hexv(c)<<4|15)
			default:
				fmt.Fprintf(&b, `\x{%x}`, hexv(c)<<4|hexv(d))
			}
		}
	}
	return regexp.MustCompile(b.String())
}

// sigFuzzAlphabet keeps fuzzed data and signatures on a few byte values so
// that they meet often; 0xe1 is there for bytes above 0x7f.
var sigFuzzAlphabet = []byte{'a', 'b', 'c', 0xe1}

// sigFuzzLine turns fuzz bytes into an .ndb line over sigFuzzAlphabet.
func sigFuzzLine(name string, prog []byte) string {
	next := func() byte {
		if len(prog) == 0 {
			return 0
		}
		b := prog[0]
		prog = prog[1:]
		return b
	}
	off := "*"
	switch o := next(); o % 4 {
	case 2:
		off = strconv.Itoa(int(next() % 40))
	case 3:
		off = fmt.Sprintf("%d,%d", next()%40, next()%20)
	}
	var hexsig strings.Builder
	for n := 0; len(prog) > 0 && n < 14; n++ {
		b := next()
		a := sigFuzzAlphabet[(b/10)%4]
		switch b % 10 {
		case 0, 1, 2, 3:
			fmt.Fprintf(&hexsig, "%02x", a)
		case 4:
			hexsig.WriteString("??")
		case 5:
			if b/10%2 == 0 {
				fmt.Fprintf(&hexsig, "%x?", a>>4)
			} else {
				fmt.Fprintf(&hexsig, "?%x", a&15)
			}
		case 6:
			hexsig.WriteString("*")
		case 7:
			v := next()
			lo, hi := int(v/4%5), int(v/4%5)+int(v/20%6)
			switch v % 4 {
			case 0:
				fmt.Fprintf(&hexsig, "{%d}", lo)
			case 1:
				fmt.Fprintf(&hexsig, "{%d-%d}", lo, hi)
			case 2:
				fmt.Fprintf(&hexsig, "{-%d}", hi)
			case 3:
				fmt.Fprintf(&hexsig, "{%d-}", lo)
			}
		case 8, 9:
			fmt.Fprintf(&hexsig, "%02x%02x", a, sigFuzzAlphabet[(b/40)%4])
		}
	}
	return fmt.Sprintf("%s:0:%s:%s", name, off, hexsig.String())
}

func FuzzMatch(f *testing.F) {
	f.Add([]byte{0, 8, 6, 19}, []byte("xxabxxbb"), uint64(1))
	f.Add([]byte{2, 5, 9, 17, 33, 4, 19}, []byte("aaaaaaabcbcbcbcbcbccccaabab"), uint64(2))
	f.Add([]byte{3, 10, 5, 8, 7, 29, 9, 0xff, 8, 14, 6, 28}, bytes.Repeat([]byte("abcd"), 40), uint64(3))
	f.Add([]byte{1, 18, 7, 1, 28, 6, 8, 7, 200, 9}, []byte("bbaabbccabababccbacbacbac"), uint64(4))
	f.Fuzz(sigFuzzMatchOnce)
}

// sigFuzzMatchOnce is FuzzMatch's body.
func sigFuzzMatchOnce(t *testing.T, prog, data []byte, seed uint64) {
	if len(data) > 400 {
		data = data[:400]
	}
	for i, d := range data {
		data[i] = sigFuzzAlphabet[d%4]
	}
	// Up to three signatures, split at 0xff.
	var body []BodySignature
	for i, p := range bytes.SplitN(prog, []byte{0xff}, 3) {
		sig, err := parseNDBLine(sigFuzzLine("F"+strconv.Itoa(i), p))
		if err == nil {
			body = append(body, sig)
		}
	}
	if len(body) == 0 {
		return
	}
	matches := map[string]bool{}
	for _, sig := range body {
		matches[sig.Name] = sigOracle(t, sig, len(data)).MatchString(sigLatin1(data))
	}
	rnd := rand.New(rand.NewPCG(seed, 9))
	o := sigOptions{chunk: 1 + rnd.IntN(64), dense: 1 + rnd.IntN(2)}
	if rnd.IntN(2) == 0 {
		o.headCap = -1
	}
	s, err := newSignatures(o, &SignatureSet{Body: body})
	if err != nil {
		t.Fatalf("newSignatures: %v", err)
	}
	for _, r := range []io.Reader{bytes.NewReader(data), &sigChoppy{data: data, rnd: rnd, max: 1 + rnd.IntN(20)}} {
		f, err := s.ScanStream(context.Background(), &Input{}, r)
		if err != nil {
			t.Fatal(err)
		}
		someMatch := false
		for _, m := range matches {
			someMatch = someMatch || m
		}
		if f.Code == result.Infected && !matches[f.Threat] || f.Code == result.NoThreat && someMatch {
			t.Fatalf("signatures %+v on %q (options %+v): ScanStream = %+v, naive matcher says %v",
				body, data, o, f, matches)
		}
	}
}

func FuzzParseNDB(f *testing.F) {
	for _, s := range []string{
		"Plain:0:*:4d414749430a",
		"Shifted:0:100,50:41??42{3}43{2-5}44{-4}45{6-}46*4748:51:255",
		"Nibbles:7:12:4?4142?3",
		"Bad:0:*:414",
		"Ep:1:EP+0:41424344",
		"Alt:0:*:4142(43|44)4546",
		"A:0:*:41*42*4344\nB:0:0:????4142",
		"X:0:*:41{0-65536}4243",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		body, _, err := ParseNDB(strings.NewReader(text), "fuzz.ndb")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.ndb:") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, sig := range body {
			c, err := compileBodySignature(sig)
			if err != nil {
				t.Fatalf("accepted %+v does not compile: %v", sig, err)
			}
			longest := 0
			for _, seg := range c.segs {
				if len(seg.anchor) == 0 || seg.maxLen > sigMaxSegmentSpan || seg.minLen > seg.maxLen {
					t.Fatalf("accepted %+v has a bad segment %+v", sig, seg)
				}
				longest = max(longest, seg.longestLiteralFragment)
			}
			if longest < 2 {
				t.Fatalf("accepted %+v has no literal run of 2 bytes", sig)
			}
		}
		s, err := NewSignatures(&SignatureSet{Body: body})
		if err != nil {
			t.Fatalf("NewSignatures of accepted signatures: %v", err)
		}
		if _, err := s.ScanStream(context.Background(), &Input{}, strings.NewReader(text)); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkSignaturesStream measures the streaming matcher with 1,000
// loaded signatures over 64 MiB of random data, beside bytes.Index of one
// 16-byte pattern over the same data in the same run. "auto" is the
// automaton NewSignatures picks for this set (dense); "sparse" is the one
// it falls back to for very large sets.
func BenchmarkSignaturesStream(b *testing.B) {
	const size = 64 << 20
	data := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{2}).Read(data)
	set := sigRandomSet(1000, 3)
	pattern := []byte("0123456789abcdef")
	for _, v := range []struct {
		name string
		o    sigOptions
	}{{"auto", sigOptions{}}, {"sparse", sigOptions{dense: 2}}} {
		b.Run(v.name, func(b *testing.B) {
			s, err := newSignatures(v.o, set)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			var matcher, baseline time.Duration
			for b.Loop() {
				t0 := time.Now()
				f, err := s.ScanStream(context.Background(), &Input{}, bytes.NewReader(data))
				if err != nil || f.Code != result.NoThreat {
					b.Fatalf("ScanStream = %+v, %v", f, err)
				}
				b.StopTimer()
				t1 := time.Now()
				if bytes.Index(data, pattern) >= 0 {
					b.Fatal("pattern found in random data")
				}
				matcher += t1.Sub(t0)
				baseline += time.Since(t1)
				b.StartTimer()
			}
			mb := float64(size) / 1e6 * float64(b.N)
			b.ReportMetric(mb/matcher.Seconds(), "matcher-MB/s")
			b.ReportMetric(mb/baseline.Seconds(), "bytes.Index-MB/s")
		})
	}
}
