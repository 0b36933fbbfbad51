package engines

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/result"
)

// testEICAR is the EICAR test file, assembled from two halves so that this
// source file itself is not flagged by anti-virus scanners.
func testEICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-` + `ANTIVIRUS-TEST-FILE!$H+H*`)
}

// sigSet parses .ndb text, failing the test on errors or warnings.
func sigSet(t testing.TB, ndb string) *SignatureSet {
	t.Helper()
	body, warns, err := ParseNDB(strings.NewReader(ndb), "test.ndb")
	if err != nil {
		t.Fatalf("ParseNDB: %v", err)
	}
	if len(warns) > 0 {
		t.Fatalf("ParseNDB warnings: %q", warns)
	}
	return &SignatureSet{Body: body}
}

func sigEngine(t testing.TB, o sigOptions, ndb string) *Signatures {
	t.Helper()
	s, err := newSignatures(o, sigSet(t, ndb))
	if err != nil {
		t.Fatalf("newSignatures: %v", err)
	}
	return s
}

// sigChoppy serves data in reads of pseudo-random sizes up to max.
type sigChoppy struct {
	data []byte
	rnd  *rand.Rand
	max  int
}

func (r *sigChoppy) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rnd.IntN(r.max))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func sigScan1(t testing.TB, s *Signatures, r io.Reader) Finding {
	t.Helper()
	f, err := s.ScanStream(context.Background(), &Input{}, r)
	if err != nil {
		t.Fatalf("ScanStream: %v", err)
	}
	return f
}

// sigVariants are the engine configurations every matching case runs on:
// tiny and default chunks, head checks on and off, DFA and NFA.
var sigVariants = []struct {
	name string
	o    sigOptions
}{
	{"default", sigOptions{}},
	{"chunk1-sparse", sigOptions{chunk: 1, dense: 2}},
	{"chunk7-nohead", sigOptions{chunk: 7, headCap: -1}},
	{"chunk64-dense-nohead", sigOptions{chunk: 64, headCap: -1, dense: 1}},
	{"chunk1000-sparse-nohead", sigOptions{chunk: 1000, dense: 2, headCap: -1}},
}

// sigCheck runs one case on every variant, reading whole and in random
// small reads, and checks the threat reported.
func sigCheck(t *testing.T, ndb string, data []byte, want string) {
	t.Helper()
	for _, v := range sigVariants {
		s := sigEngine(t, v.o, ndb)
		for i, r := range []io.Reader{bytes.NewReader(data), &sigChoppy{data: data, rnd: rand.New(rand.NewPCG(uint64(len(data)), 1)), max: 37}} {
			f := sigScan1(t, s, r)
			if f.Threat != want || (want == "") != (f.Code == result.NoThreat) {
				t.Errorf("%s reader %d: ScanStream = %+v, want threat %q", v.name, i, f, want)
			}
		}
	}
}

func TestSignaturesEICAR(t *testing.T) {
	eicar := testEICAR()
	if len(eicar) != 68 {
		t.Fatalf("test EICAR is %d bytes, want 68", len(eicar))
	}
	tests := []struct {
		name       string
		input      []byte
		wantCode   int
		wantThreat string
	}{
		{"exact file", eicar, result.Infected, EICARName},
		{"trailing newline", append(bytes.Clone(eicar), "\r\n"...), result.Infected, EICARName},
		{"trailing bytes", append(bytes.Clone(eicar), bytes.Repeat([]byte{0xff}, 1<<20)...), result.Infected, EICARName},
		{"at offset 1", append([]byte{' '}, eicar...), result.NoThreat, ""},
		{"one byte changed", append(bytes.Clone(eicar[:67]), '!'), result.NoThreat, ""},
		{"shorter than the signature", eicar[:40], result.NoThreat, ""},
		{"all but the last byte", eicar[:67], result.NoThreat, ""},
		{"empty", nil, result.NoThreat, ""},
		{"plain text", []byte(strings.Repeat("hello world\n", 100)), result.NoThreat, ""},
	}
	builtins, err := NewSignatures()
	if err != nil {
		t.Fatal(err)
	}
	withNil, err := NewSignatures(nil)
	if err != nil {
		t.Fatal(err)
	}
	// With loaded signatures EICAR is still found.
	loaded := sigEngine(t, sigOptions{}, "Other:0:*:6e6f742d696e2d7468652d66696c65\nAnchored:0:10:414243*444546")
	noHead := sigEngine(t, sigOptions{headCap: -1, chunk: 16}, "Other:0:*:6e6f742d696e2d7468652d66696c65")
	for _, s := range []*Signatures{builtins, withNil, loaded, noHead} {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f := sigScan1(t, s, bytes.NewReader(tt.input))
				if f.Code != tt.wantCode || f.Threat != tt.wantThreat {
					t.Errorf("ScanStream = %+v, want code %d threat %q", f, tt.wantCode, tt.wantThreat)
				}
			})
		}
	}
}

// failAfter serves data but fails any read beyond limit bytes, and counts
// what it handed out.
type failAfter struct {
	data  []byte
	limit int
	off   int
}

var errTooFar = errors.New("read past the limit")

func (r *failAfter) Read(p []byte) (int, error) {
	if r.off >= r.limit {
		return 0, errTooFar
	}
	n := copy(p, r.data[r.off:min(len(r.data), r.limit)])
	r.off += n
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func TestSignaturesStopsReadingEarly(t *testing.T) {
	// Built-ins only, or only anchored signatures: once each is decided the
	// engine stops reading.
	engines := map[string]*Signatures{
		"built-ins": sigEngine(t, sigOptions{}, ""),
		"anchored":  sigEngine(t, sigOptions{}, "Head:0:100:4d414749430a\nShifted:0:0,2000:4142{2-4}4344"),
		// Beyond the head buffer: matched through the automaton, decided
		// once the stream has been searched past its offset.
		"anchored far": sigEngine(t, sigOptions{}, "Far:0:300000:4d414749430a\nTwoParts:0:20:41424344*45464748"),
	}
	for name, s := range engines {
		for _, head := range [][]byte{testEICAR(), []byte("MZ not a test file")} {
			data := append(bytes.Clone(head), make([]byte, 10<<20)...)
			limit := 4 << 10
			if name == "anchored far" {
				limit = 1 << 20
			}
			r := &failAfter{data: data, limit: limit}
			f, err := s.ScanStream(context.Background(), &Input{Size: int64(len(data))}, r)
			if err != nil {
				t.Fatalf("%s: ScanStream read past the first %d bytes of a %d-byte input: %v", name, limit, len(data), err)
			}
			want := result.NoThreat
			if bytes.HasPrefix(head, testEICAR()) {
				want = result.Infected
			}
			if f.Code != want {
				t.Errorf("%s: ScanStream = %+v, want code %d", name, f, want)
			}
		}
	}
}

func TestSignaturesReadsToEOF(t *testing.T) {
	// An unanchored signature may be anywhere; so may the second part of an
	// anchored one whose first part was found.
	for _, ndb := range []string{"Anywhere:0:*:4d414749430a", "Anchored:0:0:4d5a*4d414749430a"} {
		s := sigEngine(t, sigOptions{}, ndb)
		data := append([]byte("MZ"), make([]byte, 3<<20)...)
		r := &failAfter{data: data, limit: len(data) + 1}
		f := sigScan1(t, s, r)
		if f.Code != result.NoThreat || r.off != len(data) {
			t.Errorf("%s: ScanStream = %+v after reading %d of %d bytes", ndb, f, r.off, len(data))
		}
	}
}

func TestSignaturesReadErrorIsReported(t *testing.T) {
	// The source fails before the engine has the bytes it needs: that is an
	// error, not a clean file.
	for _, ndb := range []string{"", "Anywhere:0:*:4d414749430a"} {
		s := sigEngine(t, sigOptions{}, ndb)
		r := &failAfter{data: testEICAR(), limit: 10}
		if f, err := s.ScanStream(context.Background(), &Input{}, r); !errors.Is(err, errTooFar) {
			t.Fatalf("ScanStream = %+v, %v; want the read error", f, err)
		}
	}
}

func TestSignaturesCancelledContext(t *testing.T) {
	for _, ndb := range []string{"", "Anywhere:0:*:4d414749430a"} {
		s := sigEngine(t, sigOptions{}, ndb)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		f, err := s.ScanStream(ctx, &Input{}, strings.NewReader("clean"))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ScanStream on a cancelled context = %+v, %v; want context.Canceled", f, err)
		}
	}
}

// sigCancelReader cancels its context once it has served after bytes.
type sigCancelReader struct {
	n, after int
	cancel   func()
}

func (r *sigCancelReader) Read(p []byte) (int, error) {
	if r.n >= r.after {
		r.cancel()
	}
	n := min(len(p), 4096)
	clear(p[:n])
	r.n += n
	return n, nil
}

func TestSignaturesCancelledMidStream(t *testing.T) {
	s := sigEngine(t, sigOptions{}, "Anywhere:0:*:4d414749430a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.ScanStream(ctx, &Input{}, &sigCancelReader{after: 1 << 20, cancel: cancel})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ScanStream of an endless stream whose context is cancelled = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ScanStream did not stop on a cancelled context")
	}
}

func TestSignaturesMatching(t *testing.T) {
	pad := func(n int) []byte { return bytes.Repeat([]byte{'.'}, n) }
	cat := func(parts ...any) []byte {
		var b []byte
		for _, p := range parts {
			switch p := p.(type) {
			case string:
				b = append(b, p...)
			case []byte:
				b = append(b, p...)
			}
		}
		return b
	}
	// "MAGIC!" = 4d4147494321, "ABCD" = 41424344, "WXYZ" = 5758595a
	tests := []struct {
		name string
		ndb  string
		data []byte
		want bool
	}{
		{"offset 0", "S:0:0:4d4147494321", cat("MAGIC!", pad(10)), true},
		{"offset 0, file is the signature", "S:0:0:4d4147494321", cat("MAGIC!"), true},
		{"offset 0, at 1", "S:0:0:4d4147494321", cat(".MAGIC!"), false},
		{"offset 0, truncated", "S:0:0:4d4147494321", cat("MAGIC"), false},
		{"absolute", "S:0:100:4d4147494321", cat(pad(100), "MAGIC!", pad(3)), true},
		{"absolute, one early", "S:0:100:4d4147494321", cat(pad(99), "MAGIC!", pad(3)), false},
		{"absolute, one late", "S:0:100:4d4147494321", cat(pad(101), "MAGIC!", pad(3)), false},
		{"absolute beyond head buffer", "S:0:300000:4d4147494321", cat(pad(300000), "MAGIC!"), true},
		{"absolute beyond head buffer, off by one", "S:0:300000:4d4147494321", cat(pad(300001), "MAGIC!"), false},
		{"shift, at start", "S:0:100,50:4d4147494321", cat(pad(100), "MAGIC!"), true},
		{"shift, at end", "S:0:100,50:4d4147494321", cat(pad(150), "MAGIC!"), true},
		{"shift, past end", "S:0:100,50:4d4147494321", cat(pad(151), "MAGIC!"), false},
		{"shift, before start", "S:0:100,50:4d4147494321", cat(pad(99), "MAGIC!"), false},
		{"anywhere, start", "S:0:*:4d4147494321", cat("MAGIC!", pad(1000)), true},
		{"anywhere, middle", "S:0:*:4d4147494321", cat(pad(500000), "MAGIC!", pad(1000)), true},
		{"anywhere, end", "S:0:*:4d4147494321", cat(pad(700000), "MAGIC!"), true},
		{"anywhere, absent", "S:0:*:4d4147494321", cat(pad(700000), "MAGIC", pad(3)), false},
		{"??", "S:0:*:4d41??494321", cat(pad(9), "MAXIC!"), true},
		{"?? at the start", "S:0:3:????4d4147494321", cat(pad(3), "xyMAGIC!"), true},
		{"?? at the start, offset wrong", "S:0:3:????4d4147494321", cat(pad(4), "xyMAGIC!"), false},
		{"?? at the end", "S:0:*:4d4147494321????", cat(pad(3), "MAGIC!xy"), true},
		{"?? at the end, truncated", "S:0:*:4d4147494321????", cat(pad(3), "MAGIC!x"), false},
		{"nibbles", "S:0:*:4d41474943?14?", cat(pad(3), "MAGIC!O"), true},
		{"nibbles, mismatch", "S:0:*:4d41474943?14?", cat(pad(3), "MAGIC\"O"), false},
		{"{n}", "S:0:*:41424344{3}5758595a", cat(pad(3), "ABCD123WXYZ"), true},
		{"{n}, one short", "S:0:*:41424344{3}5758595a", cat(pad(3), "ABCD12WXYZ"), false},
		{"{n}, one long", "S:0:*:41424344{3}5758595a", cat(pad(3), "ABCD1234WXYZ"), false},
		{"{n-m} low", "S:0:*:41424344{2-5}5758595a", cat("ABCD12WXYZ"), true},
		{"{n-m} high", "S:0:*:41424344{2-5}5758595a", cat("ABCD12345WXYZ"), true},
		{"{n-m} too short", "S:0:*:41424344{2-5}5758595a", cat("ABCD1WXYZ"), false},
		{"{n-m} too long", "S:0:*:41424344{2-5}5758595a", cat("ABCD123456WXYZ"), false},
		{"{n-m} second occurrence fits", "S:0:*:41424344{2-5}5758595a", cat("ABCD123456ABCD12WXYZ"), true},
		{"{-m}", "S:0:*:41424344{-3}5758595a", cat("ABCDWXYZ"), true},
		{"{-m} too long", "S:0:*:41424344{-3}5758595a", cat("ABCD1234WXYZ"), false},
		{"{n-}", "S:0:*:41424344{3-}5758595a", cat("ABCD", pad(100000), "WXYZ"), true},
		{"{n-} too short", "S:0:*:41424344{3-}5758595a", cat("ABCD12WXYZ"), false},
		{"*", "S:0:*:41424344*5758595a", cat("ABCDWXYZ"), true},
		{"* reversed", "S:0:*:41424344*5758595a", cat("WXYZ", pad(10), "ABCD"), false},
		{"* overlapping parts", "S:0:*:41424344*44454647", cat("ABCDEFG"), false},
		{"* adjacent parts", "S:0:*:41424344*44454647", cat("ABCDDEFG"), true},
		{"anchor after a bounded jump", "S:0:0:41{1-3}42434445464748", cat("A..BCDEFGH"), true},
		{"anchor after a bounded jump, offset wrong", "S:0:1:41{1-3}42434445464748", cat("A..BCDEFGH"), false},
		{"anchor in the middle", "S:0:*:41{2-4}4243444546{1-2}47", cat("A..BCDEF.G"), true},
		{"anchor in the middle, left misses", "S:0:*:41{2-4}4243444546{1-2}47", cat("A.....BCDEF.G"), false},
		{"anchor in the middle, right misses", "S:0:*:41{2-4}4243444546{1-2}47", cat("A..BCDEF...G"), false},
		{"several bounded jumps", "S:0:*:41{0-2}42{0-2}4344{1}45{0-9}46", cat("xABxxCD.E12345678F"), true},
		{"several bounded jumps, last too far", "S:0:*:41{0-2}42{0-2}4344{1}45{0-9}46", cat("xABxxCD.E1234567890F"), false},
		{"three segments", "S:0:*:4142*4344*4546", cat("AB..CD..EF"), true},
		{"three segments, out of order", "S:0:*:4142*4344*4546", cat("AB..EF..CD"), false},
		{"three segments, late first", "S:0:*:4142*4344*4546", cat("CD..AB..CD..EF"), true},
		{"three segments with {n-}", "S:0:*:4142{3-}4344{2-}4546", cat("AB...CD..EF"), true},
		{"three segments with {n-}, one short", "S:0:*:4142{3-}4344{2-}4546", cat("AB...CD.EF"), false},
		{"anchored first segment then *", "S:0:0:4d5a*50450000", cat("MZ", pad(1<<20), "PE\x00\x00"), true},
		{"anchored first segment not at its offset", "S:0:0:4d5a*50450000", cat(".MZ", pad(1<<20), "PE\x00\x00"), false},
		{"single-byte segment", "S:0:*:41424344*58*5758595a", cat("ABCD.X.WXYZ"), true},
		{"single-byte segment missing", "S:0:*:41424344*58*5758595a", cat("ABCD...WXYZ"), false},
		{"bounded segment, then *", "S:0:*:4142{0-6}43*4445", cat("AB......CAB.CDE"), true},
		{"bounded segment too wide, then *", "S:0:*:4142{0-6}43*4445", cat("AB......DECAB.C"), false},
		{"binary", "S:0:*:00ff{2}80", []byte{1, 0, 0xff, 7, 7, 0x80, 1}, true},
		{"binary mismatch", "S:0:*:00ff{2}80", []byte{1, 0, 0xff, 7, 7, 0x81, 1}, false},
		{"uppercase hex", "S:0:*:4D4147494321", cat("MAGIC!"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := ""
			if tt.want {
				want = "S"
			}
			sigCheck(t, tt.ndb, tt.data, want)
		})
	}
}

func TestSignaturesFarApart(t *testing.T) {
	a := []byte("first-part-0123456789")
	b := []byte("second-part-9876543210")
	ndb := fmt.Sprintf("Far:0:*:%x*%x\nFarJump:0:*:%x{5000000-}%x", a, b, a, b)
	gap := 5 << 20
	mk := func(first, second []byte, gap int) []byte {
		d := make([]byte, 0, 1000+gap+len(first)+len(second))
		d = append(d, make([]byte, 1000)...)
		d = append(d, first...)
		d = append(d, make([]byte, gap)...)
		return append(d, second...)
	}
	for _, o := range []sigOptions{{}, {chunk: 65536, dense: 2}} {
		s := sigEngine(t, o, ndb)
		for _, tt := range []struct {
			name string
			data []byte
			want string
		}{
			{"5 MiB apart", mk(a, b, gap), "Far"},
			{"reversed", mk(b, a, gap), ""},
			{"first only", mk(a, nil, gap), ""},
			{"second only", mk(nil, b, gap), ""},
			{"near miss", mk(a, b[:len(b)-1], gap), ""},
		} {
			f := sigScan1(t, s, bytes.NewReader(tt.data))
			if f.Threat != tt.want {
				t.Errorf("chunk %d, %s: ScanStream = %+v, want %q", o.chunk, tt.name, f, tt.want)
			}
		}
		// {5000000-}: exactly at the minimum matches, one short does not.
		s2 := sigEngine(t, o, fmt.Sprintf("FarJump:0:*:%x{5000000-}%x", a, b))
		for gap, want := range map[int]string{5000000: "FarJump", 4999999: ""} {
			if f := sigScan1(t, s2, bytes.NewReader(mk(a, b, gap))); f.Threat != want {
				t.Errorf("chunk %d, gap %d: ScanStream = %+v, want %q", o.chunk, gap, f, want)
			}
		}
	}
}

func TestSignaturesChunkBoundaries(t *testing.T) {
	// A signature placed at every offset around the engine's search
	// boundaries: with small chunks every position is near a boundary; with
	// larger ones the offsets around the first boundaries are tried.
	sigs := []struct{ ndb, name, body string }{
		{"Lit:0:*:%x", "Lit", "0123456789abcdef"},
		{"Wild:0:*:41424344??464748{2-5}5758595a", "Wild", "ABCD.FGH...WXYZ"},
		{"Star:0:*:414243444546*5758595a", "Star", "ABCDEF......WXYZ"},
	}
	type variant struct {
		o       sigOptions
		offsets []int
	}
	var variants []variant
	for _, chunk := range []int{1, 5, 33} {
		var offs []int
		for i := range 150 {
			offs = append(offs, i)
		}
		variants = append(variants, variant{sigOptions{chunk: chunk}, offs})
	}
	variants = append(variants, variant{sigOptions{chunk: 4096}, nil}, variant{sigOptions{}, nil})
	for _, sg := range sigs {
		ndb := sg.ndb
		if strings.Contains(ndb, "%x") {
			ndb = fmt.Sprintf(ndb, sg.body)
		}
		for _, v := range variants {
			s := sigEngine(t, v.o, ndb)
			// The search boundaries sit at bufCap-right+k*chunk.
			offsets := v.offsets
			if offsets == nil {
				chunk, ks, ds := v.o.chunk, 3, 40
				if chunk == 0 {
					chunk, ks, ds = sigChunk, 2, 12
				}
				for k := range ks {
					for d := -ds; d <= ds; d++ {
						offsets = append(offsets, s.bufCap-int(s.right)+k*chunk+d)
					}
				}
			}
			for _, off := range offsets {
				if off < 0 {
					continue
				}
				data := make([]byte, off+len(sg.body)+50)
				copy(data[off:], sg.body)
				if f := sigScan1(t, s, bytes.NewReader(data)); f.Threat != sg.name {
					t.Fatalf("%s, chunk %d, at %d: ScanStream = %+v", sg.name, v.o.chunk, off, f)
				}
				// The same with the last byte broken: no match.
				data[off+len(sg.body)-1] ^= 0x01
				if f := sigScan1(t, s, bytes.NewReader(data)); f.Code != result.NoThreat {
					t.Fatalf("%s, chunk %d, broken at %d: ScanStream = %+v", sg.name, v.o.chunk, off, f)
				}
			}
		}
	}
}

func TestSignaturesNearMisses(t *testing.T) {
	// Every single-byte change of a literal byte of the matching input
	// breaks the match.
	ndb := "Sig:0:*:4142434445464748??4a4b{1-3}4c4d*4e4f5051"
	good := []byte("..ABCDEFGHxJK.LM....NOPQ..")
	sigCheck(t, ndb, good, "Sig")
	literal := map[int]bool{}
	for i := range good {
		literal[i] = good[i] != '.' && good[i] != 'x'
	}
	s := sigEngine(t, sigOptions{chunk: 3}, ndb)
	s2 := sigEngine(t, sigOptions{}, ndb)
	for i := range good {
		if !literal[i] {
			continue
		}
		for _, flip := range []byte{0x01, 0x20, 0x80} {
			bad := bytes.Clone(good)
			bad[i] ^= flip
			for _, e := range []*Signatures{s, s2} {
				if f := sigScan1(t, e, bytes.NewReader(bad)); f.Code != result.NoThreat {
					t.Errorf("byte %d ^ %#x: ScanStream(%q) = %+v", i, flip, bad, f)
				}
			}
		}
	}
}

func TestSignaturesFirstMatchReported(t *testing.T) {
	ndb := "Late:0:*:5758595a\nEarly:0:*:41424344\nAlsoEarly:0:*:41424344"
	sigCheck(t, ndb, []byte("....ABCD....WXYZ"), "Early")
	sigCheck(t, ndb, []byte("....WXYZ....ABCD"), "Late")
}

func TestSignaturesSharedAnchors(t *testing.T) {
	// Several signatures share anchors; each is judged on its own.
	ndb := strings.Join([]string{
		"One:0:*:41424344{1}45",
		"Two:0:*:41424344{2}46",
		"Three:0:5:41424344",
		"Four:0:*:5a*41424344{3}47",
	}, "\n")
	sigCheck(t, ndb, []byte("ABCD.E"), "One")
	sigCheck(t, ndb, []byte("ABCD..F"), "Two")
	sigCheck(t, ndb, []byte(".....ABCD"), "Three")
	sigCheck(t, ndb, []byte("Z..ABCD...G"), "Four")
	sigCheck(t, ndb, []byte("..ABCD...G.Z"), "")
}

func TestSignaturesConcurrent(t *testing.T) {
	s := sigEngine(t, sigOptions{chunk: 1000}, "Sig:0:*:41424344*5758595a\nHead:0:10:4d41474943")
	inputs := map[string][]byte{
		"Sig":     append(append([]byte("ABCD"), make([]byte, 100000)...), "WXYZ"...),
		"Head":    append(make([]byte, 10), "MAGIC"...),
		"":        make([]byte, 50000),
		EICARName: testEICAR(),
	}
	var wg sync.WaitGroup
	for range 8 {
		for want, data := range inputs {
			wg.Go(func() {
				for range 20 {
					f, err := s.ScanStream(context.Background(), &Input{}, bytes.NewReader(data))
					if err != nil || f.Threat != want {
						t.Errorf("ScanStream = %+v, %v; want %q", f, err, want)
						return
					}
				}
			})
		}
	}
	wg.Wait()
}

func TestNewSignaturesRejectsInvalid(t *testing.T) {
	for _, sig := range []BodySignature{
		{Name: "", Offset: AnyOffset, Hex: "41424344"},
		{Name: "empty", Offset: AnyOffset},
		{Name: "negative", Offset: -2, Hex: "41424344"},
		{Name: "shift without offset", Offset: AnyOffset, MaxShift: 3, Hex: "41424344"},
		{Name: "odd", Offset: AnyOffset, Hex: "414", Source: "x.ndb:3"},
		{Name: "short", Offset: AnyOffset, Hex: "41??42"},
		{Name: "unsupported", Offset: AnyOffset, Hex: "4142(43|44)"},
	} {
		_, err := NewSignatures(&SignatureSet{Body: []BodySignature{sig}})
		if err == nil {
			t.Errorf("NewSignatures(%+v) succeeded", sig)
			continue
		}
		if sig.Source != "" && !strings.Contains(err.Error(), sig.Source) {
			t.Errorf("error %q does not name the source %q", err, sig.Source)
		}
	}
}

func TestSignaturesInfo(t *testing.T) {
	before := time.Now()
	s, err := NewSignatures()
	if err != nil {
		t.Fatal(err)
	}
	info := s.Info()
	if info.Loaded.Before(before) || info.Loaded.After(time.Now()) {
		t.Errorf("Loaded = %v, want when NewSignatures ran", info.Loaded)
	}
	info.Loaded = time.Time{}
	want := Info{ID: "signatures", Name: "Signatures", Version: "2.0.0", DefTime: builtinDefTime}
	if info != want {
		t.Errorf("Info() = %+v, want %+v", info, want)
	}
	if s.Len() != 1 {
		t.Errorf("Len() = %d, want 1 (EICAR)", s.Len())
	}
	mt := time.Date(2027, 3, 4, 5, 6, 7, 0, time.UTC)
	older := &SignatureSet{DefTime: mt.Add(-time.Hour)}
	set := sigSet(t, "A:0:*:41424344")
	set.DefTime = mt
	s, err = NewSignatures(older, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Info().DefTime; got != "2027-03-04T05:06:07.000Z" {
		t.Errorf("DefTime = %q, want the newest set's", got)
	}
	if s.Len() != 2 {
		t.Errorf("Len() = %d, want 2", s.Len())
	}
}

// sigHashesOf is what the scanner would pass for content.
func sigHashesOf(content []byte) events.Hashes {
	m, s1, s2 := md5.Sum(content), sha1.Sum(content), sha256.Sum256(content)
	return events.Hashes{MD5: hex.EncodeToString(m[:]), SHA1: hex.EncodeToString(s1[:]), SHA256: hex.EncodeToString(s2[:])}
}

func TestHashSignatures(t *testing.T) {
	byMD5, bySHA1, bySHA256 := []byte("listed by md5"), []byte("listed by sha1"), []byte("listed by sha256")
	anySize, upper := []byte("listed with any size"), []byte("listed in upper case")
	wrongSize := []byte("listed with another size")
	hdb := fmt.Sprintf("%s:%d:Md5.Sig\n%s:*:Any.Size\n%s:%d:Upper.Case\n%s:999:Wrong.Size\n",
		sigHashesOf(byMD5).MD5, len(byMD5), sigHashesOf(anySize).MD5,
		strings.ToUpper(sigHashesOf(upper).MD5), len(upper), sigHashesOf(wrongSize).MD5)
	hsb := fmt.Sprintf("%s:%d:Sha1.Sig\n%s:%d:Sha256.Sig:73\n",
		sigHashesOf(bySHA1).SHA1, len(bySHA1), sigHashesOf(bySHA256).SHA256, len(bySHA256))
	h1, err := ParseHDB(strings.NewReader(hdb), "t.hdb")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := ParseHSB(strings.NewReader(hsb), "t.hsb")
	if err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	set := &SignatureSet{Hashes: append(h1, h2...), DefTime: mt}
	e := set.HashEngine()
	if e == nil || e.Len() != 6 {
		t.Fatalf("HashEngine() = %+v", e)
	}
	if info := e.Info(); info.ID == "" || info.Name == "" || info.Version == "" || info.DefTime != "2027-01-02T03:04:05.000Z" {
		t.Errorf("Info() = %+v", info)
	}
	for _, tt := range []struct {
		name    string
		content []byte
		size    int64
		want    string
	}{
		{"md5", byMD5, int64(len(byMD5)), "Md5.Sig"},
		{"md5, other size", byMD5, int64(len(byMD5)) + 1, ""},
		{"sha1", bySHA1, int64(len(bySHA1)), "Sha1.Sig"},
		{"sha256", bySHA256, int64(len(bySHA256)), "Sha256.Sig"},
		{"sha256, other size", bySHA256, 0, ""},
		{"any size", anySize, 123456789, "Any.Size"},
		{"upper-case digest in the file", upper, int64(len(upper)), "Upper.Case"},
		{"wrong size", wrongSize, int64(len(wrongSize)), ""},
		{"not listed", []byte("clean"), 5, ""},
	} {
		in := &Input{Size: tt.size, Hashes: sigHashesOf(tt.content)}
		if tt.name == "upper-case digest in the file" {
			in.Hashes.MD5 = strings.ToUpper(in.Hashes.MD5) // and from the scanner
		}
		f, err := e.ScanHashes(context.Background(), in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if f.Threat != tt.want || (tt.want == "") != (f.Code == result.NoThreat) {
			t.Errorf("%s: ScanHashes = %+v, want %q", tt.name, f, tt.want)
		}
	}
	if (&SignatureSet{}).HashEngine() != nil || (*SignatureSet)(nil).HashEngine() != nil {
		t.Error("HashEngine of a set without hashes is not nil")
	}
}

var (
	_ StreamEngine = (*Signatures)(nil)
	_ HashEngine   = (*HashSignatures)(nil)
)

func TestSigTrieStates(t *testing.T) {
	for _, tt := range []struct {
		pats []string
		want int
	}{
		{nil, 1},
		{[]string{"abc"}, 4},
		{[]string{"abc", "abd", "ab", "x"}, 6},
		{[]string{"b", "abc", "a"}, 5},
	} {
		var pats [][]byte
		for _, p := range tt.pats {
			pats = append(pats, []byte(p))
		}
		if got := sigTrieStates(pats); got != tt.want {
			t.Errorf("sigTrieStates(%q) = %d, want %d", tt.pats, got, tt.want)
		}
	}
}
