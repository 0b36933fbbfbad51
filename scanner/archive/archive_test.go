package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bodgit/sevenzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Binary fixtures (7z, bzip2: Go cannot write them) live in testdata and are
// made by testdata/gen.sh; everything else is generated here.

type got struct {
	name    string
	size    int64
	enc     bool
	special bool
	data    string
	readErr error
}

type nameErr struct {
	name string
	err  error
}

func (n nameErr) String() string { return n.name + ": " + n.err.Error() }

type walkOut struct {
	entries []got
	errs    []nameErr
	res     Result
	err     error
}

func (o walkOut) names() []string {
	var n []string
	for _, e := range o.entries {
		n = append(n, e.name)
	}
	return n
}

func (o walkOut) entry(t *testing.T, name string) got {
	t.Helper()
	for _, e := range o.entries {
		if e.name == name {
			return e
		}
	}
	t.Fatalf("no entry %q; have %q (errors %v)", name, o.names(), o.errs)
	return got{}
}

func (o walkOut) errFor(name string) error {
	for _, e := range o.errs {
		if e.name == name {
			return e.err
		}
	}
	return nil
}

// walkBytes walks data and reads every entry whole (fine for test inputs).
func walkBytes(t *testing.T, kind Kind, data []byte, opts Options) walkOut {
	t.Helper()
	var out walkOut
	opts.OnError = func(name string, err error) { out.errs = append(out.errs, nameErr{name, err}) }
	out.res, out.err = Walk(context.Background(), kind, bytes.NewReader(data), int64(len(data)), opts,
		func(e Entry, body io.Reader) error {
			b, err := readAllLimited(body)
			out.entries = append(out.entries, got{e.Name, e.Size, e.Encrypted, e.Special, string(b), err})
			return err
		})
	return out
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantContent(t *testing.T, o walkOut, name, content string) {
	t.Helper()
	g := o.entry(t, name)
	if g.readErr != nil {
		t.Fatalf("%s: read error %v", name, g.readErr)
	}
	if g.data != content {
		t.Fatalf("%s: content %q, want %q", name, g.data, content)
	}
}

func makeTar(t testing.TB, files []tar.Header, data map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range files {
		h.Size = int64(len(data[h.Name]))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data[h.Name]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, name string, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Name = name
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func xzBytes(t testing.TB, data []byte, dictCap int) []byte {
	var buf bytes.Buffer
	xw, err := xz.WriterConfig{DictCap: dictCap}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	xw.Write(data)
	if err := xw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, data []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

func TestDetect(t *testing.T) {
	tarData := makeTar(t, []tar.Header{{Name: "a.txt", Typeflag: tar.TypeReg}}, map[string]string{"a.txt": "a"})
	yes := map[string]struct {
		data []byte
		kind Kind
	}{
		"zip":       {makeZip(t, []zentry{{name: "a", data: []byte("a")}}), KindZip},
		"empty zip": {makeZip(t, nil), KindZip},
		"tar":       {tarData, KindTar},
		"gzip":      {gzipBytes(t, "", []byte("x")), KindGzip},
		"bzip2":     {fixture(t, "hello.txt.bz2"), KindBzip2},
		"xz":        {xzBytes(t, []byte("x"), 0), KindXz},
		"zstd":      {zstdBytes(t, []byte("x")), KindZstd},
		"7z":        {fixture(t, "plain.7z"), Kind7z},
		"rar5":      {makeRar5(t, []rarEntry{{name: "a", data: []byte("a")}}, ""), KindRar},
		"rar4":      {[]byte("Rar!\x1a\x07\x00\xcf\x90\x73\x00\x00\x0d\x00"), KindRar},
	}
	for name, c := range yes {
		k, ok := Detect(c.data)
		if !ok || k != c.kind {
			t.Errorf("%s: Detect = %q, %v; want %q", name, k, ok, c.kind)
		}
	}
	// tar needs the whole first header
	if _, ok := Detect(tarData[:200]); ok {
		t.Error("tar detected from 200 bytes")
	}
	no := map[string][]byte{
		"empty":      nil,
		"text":       []byte("hello, world\n"),
		"pdf":        []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
		"pe":         append([]byte("MZ\x90\x00"), make([]byte, 300)...),
		"short PK":   []byte("PK"),
		"PK other":   []byte("PK\x01\x02"),
		"BZh junk":   []byte("BZh9hello, not bzip2"),
		"BZh0":       []byte("BZh0\x31\x41\x59\x26\x53\x59"),
		"gzip bad m": []byte("\x1f\x8b\x07\x00"),
		"zeros":      make([]byte, 1024),
		"old tar":    append([]byte("file.txt"), make([]byte, 600)...),
		"7z prefix":  []byte("7z\xbc\xaf"),
	}
	for name, data := range no {
		if k, ok := Detect(data); ok {
			t.Errorf("%s: Detect = %q, want none", name, k)
		}
	}
	for _, k := range Kinds {
		if k.NeedsReaderAt() != (k == KindZip || k == Kind7z) {
			t.Errorf("%s.NeedsReaderAt wrong", k)
		}
	}
}

func TestZipBasic(t *testing.T) {
	big := bytes.Repeat([]byte("deflate me please "), 5000)
	data := makeZip(t, []zentry{
		{name: "stored.txt", data: []byte("stored content"), method: zip.Store},
		{name: "deflated.txt", data: big, method: zip.Deflate},
		{name: "dir/", mode: fs.ModeDir | 0o755},
		{name: "dir/nested/deep.txt", data: []byte("deep"), method: zip.Deflate},
		{name: "../../evil.txt", data: []byte("evil"), method: zip.Deflate},
		{name: "/abs/path", data: []byte("abs"), method: zip.Store},
		{name: "link", data: []byte("/etc/passwd"), mode: fs.ModeSymlink | 0o777},
		{name: "emptylink", mode: fs.ModeSymlink | 0o777},
		{name: "ctl\x00na\x1bme\u202e.txt", data: []byte("ctl"), method: zip.Store},
		{name: "empty.txt", method: zip.Store},
	})
	o := walkBytes(t, KindZip, data, Options{Name: "x.zip"})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatalf("err %v, entry errors %v", o.err, o.errs)
	}
	want := []string{"stored.txt", "deflated.txt", "dir/nested/deep.txt", "../../evil.txt", "/abs/path", "link", "ctlname.txt", "empty.txt"}
	if fmt.Sprint(o.names()) != fmt.Sprint(want) {
		t.Fatalf("names %q, want %q", o.names(), want)
	}
	wantContent(t, o, "stored.txt", "stored content")
	wantContent(t, o, "deflated.txt", string(big))
	wantContent(t, o, "../../evil.txt", "evil")
	wantContent(t, o, "/abs/path", "abs")
	wantContent(t, o, "empty.txt", "")
	if g := o.entry(t, "deflated.txt"); g.size != int64(len(big)) || g.enc {
		t.Fatalf("deflated.txt: size %d enc %v", g.size, g.enc)
	}
	// A symlink with data reaches fn, flagged (Windows extractors write it
	// out as a file); one without data is skipped like the directory.
	wantContent(t, o, "link", "/etc/passwd")
	if !o.entry(t, "link").special || o.entry(t, "stored.txt").special {
		t.Fatal("Special flag wrong")
	}
	if o.res != (Result{Entries: 8, Skipped: 2}) {
		t.Fatalf("result %+v", o.res)
	}
}

// TestNoFilesystemWrites walks hostile names from an empty working
// directory and checks nothing appeared anywhere near it.
func TestNoFilesystemWrites(t *testing.T) {
	root := t.TempDir()
	work := filepath.Join(root, "a", "b")
	os.MkdirAll(work, 0o755)
	t.Chdir(work)
	data := makeZip(t, []zentry{
		{name: "../../evil.txt", data: []byte("evil"), method: zip.Deflate},
		{name: "../../../../../../../../tmp/scangate-evil.txt", data: []byte("evil"), method: zip.Store},
		{name: "plain.txt", data: []byte("plain"), method: zip.Store},
	})
	tarData := makeTar(t, []tar.Header{{Name: "../../evil2.txt", Typeflag: tar.TypeReg}}, map[string]string{"../../evil2.txt": "x"})
	if o := walkBytes(t, KindZip, data, Options{}); o.err != nil || len(o.entries) != 3 {
		t.Fatalf("zip: %v %v", o.err, o.names())
	}
	if o := walkBytes(t, KindTar, tarData, Options{}); o.err != nil || len(o.entries) != 1 {
		t.Fatalf("tar: %v %v", o.err, o.names())
	}
	var found []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if !d.IsDir() {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 0 {
		t.Fatalf("files written: %v", found)
	}
	if _, err := os.Stat("/tmp/scangate-evil.txt"); err == nil {
		t.Fatal("/tmp/scangate-evil.txt written")
	}
}

func TestZipOtherMethods(t *testing.T) {
	payload := bytes.Repeat([]byte("other compression methods "), 200)
	data := makeZip(t, []zentry{
		{name: "zstd.txt", data: payload, method: zipZstd},
		{name: "xz.txt", data: payload, method: zipXz},
		{name: "bzip2.txt", data: []byte("hello bzip2\n"), rawBody: fixture(t, "hello.txt.bz2"), method: zipBzip2},
		{name: "lzma.bin", rawBody: []byte("\x09\x14\x05\x00junk"), method: zip.Store},
		{name: "after.txt", data: []byte("after"), method: zip.Deflate},
	}, func(zw *zip.Writer) {
		zw.RegisterCompressor(zipZstd, func(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) })
		// archive/zip builds the compressor before writing the local header,
		// and xz.NewWriter writes its stream header at once: defer it.
		zw.RegisterCompressor(zipXz, func(w io.Writer) (io.WriteCloser, error) { return &lazyXz{w: w}, nil })
	})
	// Turn lzma.bin's method into 14 (LZMA, unsupported) in both headers.
	data = patchZipMethod(t, data, "lzma.bin", 14)
	o := walkBytes(t, KindZip, data, Options{})
	if o.err != nil {
		t.Fatal(o.err)
	}
	wantContent(t, o, "zstd.txt", string(payload))
	wantContent(t, o, "xz.txt", string(payload))
	wantContent(t, o, "bzip2.txt", "hello bzip2\n")
	wantContent(t, o, "after.txt", "after")
	if err := o.errFor("lzma.bin"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("lzma.bin: %v, want ErrUnsupported", err)
	}
	if o.res != (Result{Entries: 4, Errors: 1}) {
		t.Fatalf("result %+v", o.res)
	}
}

type lazyXz struct {
	w  io.Writer
	xw *xz.Writer
}

func (l *lazyXz) init() (err error) {
	if l.xw == nil {
		l.xw, err = xz.NewWriter(l.w)
	}
	return err
}

func (l *lazyXz) Write(p []byte) (int, error) {
	if err := l.init(); err != nil {
		return 0, err
	}
	return l.xw.Write(p)
}

func (l *lazyXz) Close() error {
	if err := l.init(); err != nil {
		return err
	}
	return l.xw.Close()
}

// patchZipMethod rewrites the method field of the named entry in the local
// and central headers.
func patchZipMethod(t *testing.T, data []byte, name string, method uint16) []byte {
	data = bytes.Clone(data)
	n := 0
	for _, sig := range []struct {
		magic   string
		nameOff int
		methOff int
	}{{"PK\x03\x04", 30, 8}, {"PK\x01\x02", 46, 10}} {
		for i := 0; ; {
			j := bytes.Index(data[i:], []byte(sig.magic))
			if j < 0 {
				break
			}
			i += j
			if bytes.HasPrefix(data[i+sig.nameOff:], []byte(name)) {
				data[i+sig.methOff] = byte(method)
				data[i+sig.methOff+1] = byte(method >> 8)
				n++
			}
			i += 4
		}
	}
	if n != 2 {
		t.Fatalf("patched %d headers", n)
	}
	return data
}

func TestZipCorruptEntry(t *testing.T) {
	badCRC := uint32(0xdeadbeef)
	data := makeZip(t, []zentry{
		{name: "good1.txt", data: []byte("good one"), method: zip.Deflate},
		{name: "badcrc.txt", data: []byte("wrong crc"), method: zip.Deflate, crc: &badCRC},
		{name: "garbage.txt", data: []byte("x"), rawBody: []byte{0xff, 0xff, 0xff, 0xff, 0xff}, method: zip.Deflate},
		{name: "good2.txt", data: []byte("good two"), method: zip.Store},
	})
	for _, swallow := range []bool{false, true} {
		var errs []nameErr
		var names []string
		res, err := Walk(context.Background(), KindZip, bytes.NewReader(data), int64(len(data)),
			Options{OnError: func(n string, err error) { errs = append(errs, nameErr{n, err}) }},
			func(e Entry, body io.Reader) error {
				names = append(names, e.Name)
				_, err := io.Copy(io.Discard, body)
				if swallow {
					return nil
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(names) != "[good1.txt badcrc.txt garbage.txt good2.txt]" {
			t.Fatalf("names %v", names)
		}
		if len(errs) != 2 || errs[0].name != "badcrc.txt" || !errors.Is(errs[0].err, ErrChecksum) ||
			errs[1].name != "garbage.txt" || !errors.Is(errs[1].err, ErrCorrupt) {
			t.Fatalf("errors %v", errs)
		}
		if res != (Result{Entries: 4, Errors: 2}) {
			t.Fatalf("result %+v", res)
		}
	}
	// A broken structure is Walk's error.
	_, err := Walk(context.Background(), KindZip, bytes.NewReader(data[:len(data)-30]), int64(len(data)-30), Options{},
		func(Entry, io.Reader) error { return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated zip: %v", err)
	}
}

func TestZipEncrypted(t *testing.T) {
	secret := bytes.Repeat([]byte("top secret payload "), 300)
	const pw = "infected"
	type variant struct {
		name string
		e    zentry
	}
	var variants []variant
	for _, m := range []uint16{zip.Store, zip.Deflate} {
		variants = append(variants,
			variant{fmt.Sprintf("zipcrypto-m%d", m), zentry{enc: "zipcrypto", method: m}},
			variant{fmt.Sprintf("zipcrypto-dd-m%d", m), zentry{enc: "zipcrypto", method: m, descriptor: true}})
		for _, s := range []byte{1, 2, 3} {
			for _, v := range []uint16{1, 2} {
				variants = append(variants, variant{fmt.Sprintf("aes%d-ae%d-m%d", 64+64*int(s), v, m),
					zentry{enc: "aes", method: m, aesStrength: s, aesVersion: v}})
			}
		}
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			e := v.e
			e.name, e.data, e.password = "secret.bin", secret, pw
			data := makeZip(t, []zentry{
				{name: "plain.txt", data: []byte("plain"), method: zip.Deflate},
				e,
				{name: "short.txt", data: []byte("s"), method: e.method, enc: e.enc, password: pw,
					aesStrength: e.aesStrength, aesVersion: e.aesVersion, descriptor: e.descriptor},
			})
			for _, pws := range [][]string{{pw}, {"nope", "also wrong", pw}} {
				o := walkBytes(t, KindZip, data, Options{Passwords: pws})
				if o.err != nil || len(o.errs) != 0 {
					t.Fatalf("passwords %q: err %v, entry errors %v", pws, o.err, o.errs)
				}
				wantContent(t, o, "secret.bin", string(secret))
				wantContent(t, o, "short.txt", "s")
				wantContent(t, o, "plain.txt", "plain")
				if g := o.entry(t, "secret.bin"); !g.enc || g.size != int64(len(secret)) {
					t.Fatalf("entry %+v", g)
				}
				if o.res != (Result{Entries: 3}) {
					t.Fatalf("result %+v", o.res)
				}
			}
			for _, pws := range [][]string{nil, {"wrong"}, {"Infected", "infected "}} {
				o := walkBytes(t, KindZip, data, Options{Passwords: pws})
				if o.err != nil {
					t.Fatal(o.err)
				}
				if fmt.Sprint(o.names()) != "[plain.txt]" {
					t.Fatalf("passwords %q: walked %q", pws, o.names())
				}
				if len(o.errs) != 2 || !errors.Is(o.errs[0].err, ErrEncrypted) || !errors.Is(o.errs[1].err, ErrEncrypted) {
					t.Fatalf("passwords %q: errors %v", pws, o.errs)
				}
				if o.res != (Result{Entries: 1, Encrypted: 2, Errors: 2}) {
					t.Fatalf("result %+v", o.res)
				}
			}
		})
	}
}

// TestZipCryptoCheckByteCollision: a wrong password that passes the 1-byte
// check must be caught by the CRC verification before fn sees garbage.
func TestZipCryptoCheckByteCollision(t *testing.T) {
	secret := []byte("the real content, compressed or not, matters not")
	for _, m := range []uint16{zip.Store, zip.Deflate} {
		data := makeZip(t, []zentry{{name: "s", data: secret, method: m, enc: "zipcrypto", password: "right"}})
		zr, _ := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		f := zr.File[0]
		var wrong string
		for i := 0; wrong == "" && i < 100000; i++ {
			cand := fmt.Sprintf("wrong%d", i)
			raw, _ := f.OpenRaw()
			hdr := make([]byte, 12)
			io.ReadFull(raw, hdr)
			newZipCryptoKeys(cand).decrypt(hdr)
			if hdr[11] == byte(f.CRC32>>24) {
				wrong = cand
			}
		}
		if wrong == "" {
			t.Fatal("no colliding password found")
		}
		o := walkBytes(t, KindZip, data, Options{Passwords: []string{wrong, "right"}})
		if o.err != nil || len(o.errs) != 0 {
			t.Fatalf("%v %v", o.err, o.errs)
		}
		wantContent(t, o, "s", string(secret))
		o = walkBytes(t, KindZip, data, Options{Passwords: []string{wrong}})
		if len(o.entries) != 0 || len(o.errs) != 1 || !errors.Is(o.errs[0].err, ErrEncrypted) {
			t.Fatalf("method %d, colliding %q: entries %q errors %v", m, wrong, o.names(), o.errs)
		}
	}
}

func TestZipAESTampered(t *testing.T) {
	secret := bytes.Repeat([]byte("aes "), 100)
	for _, where := range []string{"data", "mac"} {
		data := makeZip(t, []zentry{{name: "s", data: secret, method: zip.Deflate, enc: "aes", password: "pw",
			tamper: func(b []byte) {
				if where == "mac" {
					b[len(b)-1] ^= 1
				} else {
					b[20] ^= 1
				}
			}}})
		o := walkBytes(t, KindZip, data, Options{Passwords: []string{"pw"}})
		if len(o.entries) != 0 || len(o.errs) != 1 || !errors.Is(o.errs[0].err, ErrChecksum) {
			t.Fatalf("%s tampered: entries %q errors %v", where, o.names(), o.errs)
		}
	}
	// The streaming reader checks the code too (the pre-pass aside).
	ae := aesExtra{version: 2, strength: 3, method: zip.Store}
	body := winzipAESEncrypt(t, "pw", ae, []byte("stream check"), rand.New(rand.NewPCG(5, 6)))
	body[len(body)-3] ^= 0x80
	salt, ver := body[:16], body[16:18]
	encKey, macKey, ok, err := aesKeys("pw", salt, ver, 32)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	ar, _ := newAESReader(bytes.NewReader(body[18:]), int64(len(body)-18-10), encKey, macKey)
	b, err := io.ReadAll(ar)
	if string(b) != "stream check" || !errors.Is(err, ErrChecksum) {
		t.Fatalf("%q %v", b, err)
	}
}

func TestTar(t *testing.T) {
	big := strings.Repeat("0123456789", 10000)
	data := makeTar(t, []tar.Header{
		{Name: "big.bin", Typeflag: tar.TypeReg},
		{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "dir/a.txt", Typeflag: tar.TypeReg},
		{Name: "sym", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		{Name: "hard", Typeflag: tar.TypeLink, Linkname: "dir/a.txt"},
		{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3},
		{Name: "../../evil.txt", Typeflag: tar.TypeReg},
		{Name: strings.Repeat("long/", 40) + "name.txt", Typeflag: tar.TypeReg}, // PAX path
	}, map[string]string{"big.bin": big, "dir/a.txt": "a", "../../evil.txt": "evil", strings.Repeat("long/", 40) + "name.txt": "long"})
	o := walkBytes(t, KindTar, data, Options{})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatal(o.err, o.errs)
	}
	wantContent(t, o, "big.bin", big)
	wantContent(t, o, "dir/a.txt", "a")
	wantContent(t, o, "../../evil.txt", "evil")
	wantContent(t, o, strings.Repeat("long/", 40)+"name.txt", "long")
	if o.res != (Result{Entries: 4, Skipped: 4}) || o.entry(t, "big.bin").size != int64(len(big)) {
		t.Fatalf("result %+v", o.res)
	}
	// A truncated tar: the entry cut short is reported, then the walk fails.
	o = walkBytes(t, KindTar, data[:1500], Options{})
	if !errors.Is(o.err, ErrCorrupt) || len(o.errs) != 1 {
		t.Fatalf("truncated: err %v, entry errors %v", o.err, o.errs)
	}
}

func TestTarGzRecursion(t *testing.T) {
	tarData := makeTar(t, []tar.Header{{Name: "inner.txt", Typeflag: tar.TypeReg}}, map[string]string{"inner.txt": "inside"})
	for _, c := range []struct{ gzName, archive, want string }{
		{"", "pkg.tar.gz", "pkg.tar"},
		{"", "pkg.TGZ", "pkg.tar"},
		{"", "noext", "noext"},
		{"", "", "data"},
		{"orig.tar", "pkg.tar.gz", "orig.tar"},
		{"../../x\x01.tar", "pkg.tar.gz", "../../x.tar"},
	} {
		gz := gzipBytes(t, c.gzName, tarData)
		o := walkBytes(t, KindGzip, gz, Options{Name: c.archive})
		if o.err != nil || len(o.entries) != 1 || o.entries[0].name != c.want || o.entries[0].size != -1 {
			t.Fatalf("%+v: %v %+v", c, o.err, o.entries)
		}
		inner := []byte(o.entries[0].data)
		k, ok := Detect(inner)
		if !ok || k != KindTar {
			t.Fatalf("inner Detect %q %v", k, ok)
		}
		o = walkBytes(t, k, inner, Options{})
		wantContent(t, o, "inner.txt", "inside")
	}
	// Corrupt gzip data is an entry error; a non-gzip a structural one.
	gz := gzipBytes(t, "", bytes.Repeat([]byte("abc"), 1000))
	gz[len(gz)-6] ^= 0xff // CRC
	o := walkBytes(t, KindGzip, gz, Options{Name: "c.gz"})
	if o.err != nil || len(o.errs) != 1 || !errors.Is(o.errs[0].err, ErrChecksum) || o.res.Errors != 1 {
		t.Fatalf("bad crc: %v %v %+v", o.err, o.errs, o.res)
	}
	if o := walkBytes(t, KindGzip, []byte("not gzip at all"), Options{}); !errors.Is(o.err, ErrCorrupt) {
		t.Fatalf("not gzip: %v", o.err)
	}
}

func TestBzip2(t *testing.T) {
	o := walkBytes(t, KindBzip2, fixture(t, "hello.txt.bz2"), Options{Name: "hello.txt.bz2"})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatal(o.err, o.errs)
	}
	wantContent(t, o, "hello.txt", "hello bzip2\n")
}

func TestXz(t *testing.T) {
	payload := bytes.Repeat([]byte("xz stream "), 1000)
	o := walkBytes(t, KindXz, xzBytes(t, payload, 0), Options{Name: "logs.txt.xz"})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatal(o.err, o.errs)
	}
	wantContent(t, o, "logs.txt", string(payload))
	// A dictionary above MaxDictSize is refused before allocation.
	o = walkBytes(t, KindXz, xzBytes(t, payload, 8<<20), Options{Name: "a.xz", MaxDictSize: 1 << 20})
	if !errors.Is(o.err, ErrMemoryBudget) || len(o.entries) != 0 {
		t.Fatalf("big dict: %v %q", o.err, o.names())
	}
	if d, ok := xzFirstDictSize(xzBytes(t, payload, 8<<20)); !ok || d != 8<<20 {
		t.Fatalf("xzFirstDictSize = %d, %v", d, ok)
	}
}

func TestZstd(t *testing.T) {
	payload := bytes.Repeat([]byte("zstd stream "), 1000)
	o := walkBytes(t, KindZstd, zstdBytes(t, payload), Options{Name: "a.tar.zst"})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatal(o.err, o.errs)
	}
	wantContent(t, o, "a.tar", string(payload))
	// A window above MaxDictSize is an error, not an allocation.
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf, zstd.WithWindowSize(8<<20), zstd.WithSingleSegment(false))
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7 >> 3)
	}
	zw.Write(big)
	zw.Close()
	o = walkBytes(t, KindZstd, buf.Bytes(), Options{Name: "b.zst", MaxDictSize: 1 << 20})
	if len(o.errs) != 1 || !errors.Is(o.errs[0].err, ErrMemoryBudget) {
		t.Fatalf("big window: %v %v", o.err, o.errs)
	}
}

func Test7z(t *testing.T) {
	o := walkBytes(t, Kind7z, fixture(t, "plain.7z"), Options{})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatal(o.err, o.errs)
	}
	wantContent(t, o, "hello.txt", "hello from 7z\n")
	wantContent(t, o, "dir/nested.txt", "nested file\n")
	wantContent(t, o, "empty.txt", "")
	if o.res != (Result{Entries: 3, Skipped: 1}) || o.entry(t, "hello.txt").size != 14 || o.entry(t, "hello.txt").enc {
		t.Fatalf("result %+v %+v", o.res, o.entries)
	}
}

func Test7zEncrypted(t *testing.T) {
	files := map[string]map[string]string{
		"enc.7z":      {"secret1.txt": "first secret\n", "secret2.txt": "second secret, a bit longer than the first one\n"},
		"enc_copy.7z": {"a.txt": "copy method A\n", "b.txt": "copy method B\n"},
	}
	for fx, want := range files {
		data := fixture(t, fx)
		for _, pws := range [][]string{{"infected"}, {"wrong", "infected"}} {
			o := walkBytes(t, Kind7z, data, Options{Passwords: pws})
			if o.err != nil || len(o.errs) != 0 {
				t.Fatalf("%s %q: %v %v", fx, pws, o.err, o.errs)
			}
			for name, content := range want {
				wantContent(t, o, name, content)
				if !o.entry(t, name).enc {
					t.Fatalf("%s: %s not marked encrypted", fx, name)
				}
			}
		}
		for _, pws := range [][]string{nil, {"wrong"}} {
			o := walkBytes(t, Kind7z, data, Options{Passwords: pws})
			if o.err != nil || len(o.entries) != 0 || len(o.errs) != 2 || o.res.Encrypted != 2 {
				t.Fatalf("%s %q: err %v entries %q errors %v", fx, pws, o.err, o.names(), o.errs)
			}
			for _, e := range o.errs {
				if !errors.Is(e.err, ErrEncrypted) {
					t.Fatalf("%s: %v", fx, e.err)
				}
			}
		}
	}
	// Encrypted headers: nothing visible without the password.
	data := fixture(t, "enc_hdr.7z")
	o := walkBytes(t, Kind7z, data, Options{Passwords: []string{"wrong", "infected"}})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatal(o.err, o.errs)
	}
	wantContent(t, o, "secret.txt", "header-encrypted secret\n")
	for _, pws := range [][]string{nil, {"wrong"}} {
		o := walkBytes(t, Kind7z, data, Options{Passwords: pws})
		if !errors.Is(o.err, ErrEncrypted) || len(o.entries) != 0 {
			t.Fatalf("%q: %v %q", pws, o.err, o.names())
		}
	}
}

// Test7zEncryptedBlocks: many solid blocks, one of which decodes with the
// empty password to a clean, empty stream (see testdata/gen.sh).
func Test7zEncryptedBlocks(t *testing.T) {
	data := fixture(t, "enc_blocks.7z")
	z, err := sevenzip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := z.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, rc); n != 0 || err != nil {
		t.Fatalf("fixture lost its property: %d bytes, %v", n, err)
	}
	rc.Close()
	o := walkBytes(t, Kind7z, data, Options{Passwords: []string{"a", "infected"}})
	if o.err != nil || len(o.errs) != 0 || len(o.entries) != 30 {
		t.Fatal(o.err, o.errs, len(o.entries))
	}
	for i := range 30 {
		wantContent(t, o, fmt.Sprintf("f%02d.txt", i), strings.Repeat(fmt.Sprintf("file %d ", i), 500*i+1))
	}
	o = walkBytes(t, Kind7z, data, Options{})
	if o.err != nil || len(o.entries) != 0 || o.res.Encrypted != 30 {
		t.Fatal(o.err, o.names(), o.res)
	}
}

// Test7zTool builds a larger 7z with the 7-Zip tool when it is installed
// (Debian: apt-get install 7zip) to exercise solid blocks and many files.
func Test7zTool(t *testing.T) {
	tool, err := exec.LookPath("7zz")
	if err != nil {
		if tool, err = exec.LookPath("7z"); err != nil {
			t.Skip("7-Zip (7zz or 7z) not installed; the committed fixtures cover 7z")
		}
	}
	src := t.TempDir()
	want := map[string]string{}
	for i := range 30 {
		name := fmt.Sprintf("f%02d.txt", i)
		content := strings.Repeat(fmt.Sprintf("file %d ", i), 500*i+1)
		want[name] = content
		os.WriteFile(filepath.Join(src, name), []byte(content), 0o644)
	}
	out := filepath.Join(t.TempDir(), "t.7z")
	cmd := exec.Command(tool, "a", "-bd", "-mx5", "-ms=4k", "-pinfected", out, ".")
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, b)
	}
	data, _ := os.ReadFile(out)
	o := walkBytes(t, Kind7z, data, Options{Passwords: []string{"a", "infected"}})
	if o.err != nil || len(o.errs) != 0 || len(o.entries) != 30 {
		t.Fatal(o.err, o.errs, len(o.entries))
	}
	for name, content := range want {
		wantContent(t, o, name, content)
	}
	// fn reading only a few bytes of each entry, across solid blocks.
	n := 0
	_, err = Walk(context.Background(), Kind7z, bytes.NewReader(data), int64(len(data)), Options{Passwords: []string{"infected"}},
		func(e Entry, body io.Reader) error {
			b := make([]byte, 5)
			io.ReadFull(body, b)
			if string(b) != want[e.Name][:5] {
				return fmt.Errorf("%s: %q", e.Name, b)
			}
			n++
			return nil
		})
	if err != nil || n != 30 {
		t.Fatal(err, n)
	}
}

func TestRar(t *testing.T) {
	big := bytes.Repeat([]byte("rar data "), 5000)
	entries := []rarEntry{
		{name: "a.txt", data: []byte("hello rar")},
		{name: "dir", dir: true},
		{name: "dir/big.bin", data: big},
		{name: "../../evil.txt", data: []byte("evil")},
		{name: "empty", data: nil},
		{name: "symlink-with-data", data: []byte("payload"), attr: 0o120777},
	}
	o := walkBytes(t, KindRar, makeRar5(t, entries, ""), Options{})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatal(o.err, o.errs)
	}
	wantContent(t, o, "a.txt", "hello rar")
	wantContent(t, o, "dir/big.bin", string(big))
	wantContent(t, o, "../../evil.txt", "evil")
	wantContent(t, o, "empty", "")
	wantContent(t, o, "symlink-with-data", "payload")
	if !o.entry(t, "symlink-with-data").special {
		t.Fatal("not Special")
	}
	if o.res != (Result{Entries: 5, Skipped: 1}) || o.entry(t, "dir/big.bin").size != int64(len(big)) {
		t.Fatalf("result %+v", o.res)
	}
}

func TestRarEncrypted(t *testing.T) {
	secret := bytes.Repeat([]byte("rar secret "), 3000)
	data := makeRar5(t, []rarEntry{
		{name: "plain.txt", data: []byte("plain")},
		{name: "s1.bin", data: secret, password: "infected"},
		{name: "s2.txt", data: []byte("second"), password: "infected"},
		{name: "other.txt", data: []byte("other password"), password: "malware"},
		{name: "plain2.txt", data: []byte("plain2")},
	}, "")
	o := walkBytes(t, KindRar, data, Options{Passwords: []string{"wrong", "infected", "malware"}})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatal(o.err, o.errs)
	}
	wantContent(t, o, "plain.txt", "plain")
	wantContent(t, o, "s1.bin", string(secret))
	wantContent(t, o, "s2.txt", "second")
	wantContent(t, o, "other.txt", "other password")
	wantContent(t, o, "plain2.txt", "plain2")
	if !o.entry(t, "s1.bin").enc || o.entry(t, "plain.txt").enc || o.res != (Result{Entries: 5}) {
		t.Fatalf("%+v %+v", o.entries, o.res)
	}
	for _, pws := range [][]string{nil, {"wrong"}} {
		o := walkBytes(t, KindRar, data, Options{Passwords: pws})
		if o.err != nil || fmt.Sprint(o.names()) != "[plain.txt plain2.txt]" || o.res.Encrypted != 3 || o.res.Errors != 3 {
			t.Fatalf("%q: %v %q %+v", pws, o.err, o.names(), o.res)
		}
		for _, e := range o.errs {
			if !errors.Is(e.err, ErrEncrypted) {
				t.Fatal(e)
			}
		}
	}
	// Headers encrypted too (rar -hp).
	data = makeRar5(t, []rarEntry{{name: "hidden.txt", data: []byte("hidden"), password: "infected"}}, "infected")
	o = walkBytes(t, KindRar, data, Options{Passwords: []string{"wrong", "infected"}})
	if o.err != nil || len(o.errs) != 0 {
		t.Fatal(o.err, o.errs)
	}
	wantContent(t, o, "hidden.txt", "hidden")
	for _, pws := range [][]string{nil, {"wrong"}} {
		o := walkBytes(t, KindRar, data, Options{Passwords: pws})
		if !errors.Is(o.err, ErrEncrypted) || len(o.entries) != 0 {
			t.Fatalf("%q: %v %q", pws, o.err, o.names())
		}
	}
}

func TestCorrupt7zAndRar(t *testing.T) {
	// 7z: damage the packed stream (right after the 32-byte signature
	// header): the damaged file(s) of the solid block fail their CRC or
	// decoding, the walk goes on.
	data := bytes.Clone(fixture(t, "plain.7z"))
	for i := 34; i < 44; i++ {
		data[i] ^= 0x55
	}
	o := walkBytes(t, Kind7z, data, Options{})
	if o.err != nil || o.res.Errors < 1 || o.res.Encrypted != 0 {
		t.Fatalf("7z damaged data: %v %+v %v", o.err, o.res, o.errs)
	}
	for _, e := range o.errs {
		if !errors.Is(e.err, ErrChecksum) && !errors.Is(e.err, ErrCorrupt) {
			t.Fatalf("7z damaged data: %v", e)
		}
	}
	wantContent(t, o, "empty.txt", "")
	// 7z: damaged header is the walk's error.
	data = bytes.Clone(fixture(t, "plain.7z"))
	data[len(data)-5] ^= 0x55
	if o := walkBytes(t, Kind7z, data, Options{}); !errors.Is(o.err, ErrCorrupt) {
		t.Fatalf("7z damaged header: %v", o.err)
	}
	// rar: a data byte flipped fails that entry's CRC; others are fine.
	data = makeRar5(t, []rarEntry{{name: "a", data: []byte("AAAAAAAA")}, {name: "b", data: []byte("BBBBBBBB")}}, "")
	i := bytes.Index(data, []byte("AAAAAAAA"))
	data[i] = 'X'
	o = walkBytes(t, KindRar, data, Options{})
	if o.err != nil || len(o.errs) != 1 || o.errs[0].name != "a" || !errors.Is(o.errs[0].err, ErrChecksum) {
		t.Fatalf("rar bad crc: %v %v", o.err, o.errs)
	}
	wantContent(t, o, "b", "BBBBBBBB")
	// rar: a broken header is the walk's error, after the entries before it.
	data[i] = 'A'
	j := bytes.Index(data, []byte("BBBBBBBB"))
	data[j-3] ^= 0xff // inside b's header
	o = walkBytes(t, KindRar, data, Options{})
	if !errors.Is(o.err, ErrCorrupt) || fmt.Sprint(o.names()) != "[a]" {
		t.Fatalf("rar bad header: %v %q", o.err, o.names())
	}
	if o := walkBytes(t, KindRar, []byte("Rar!\x1a\x07\x01\x00garbage"), Options{}); o.err == nil {
		t.Fatal("garbage rar accepted")
	}
}

// archivesForStopTests returns, per format, an archive with three entries
// "one", "two", "three" whose contents are long.
func archivesForStopTests(t testing.TB) map[Kind][]byte {
	c := map[string][]byte{
		"one":   bytes.Repeat([]byte("1"), 100000),
		"two":   bytes.Repeat([]byte("2"), 100000),
		"three": []byte("three"),
	}
	order := []string{"one", "two", "three"}
	var z []zentry
	var r []rarEntry
	var th []tar.Header
	td := map[string]string{}
	for _, n := range order {
		z = append(z, zentry{name: n, data: c[n], method: zip.Deflate})
		r = append(r, rarEntry{name: n, data: c[n]})
		th = append(th, tar.Header{Name: n, Typeflag: tar.TypeReg})
		td[n] = string(c[n])
	}
	return map[Kind][]byte{
		KindZip: makeZip(t, z),
		KindTar: makeTar(t, th, td),
		KindRar: makeRar5(t, r, ""),
	}
}

func TestFnStopsEarly(t *testing.T) {
	for kind, data := range archivesForStopTests(t) {
		var seen []string
		res, err := Walk(context.Background(), kind, bytes.NewReader(data), int64(len(data)), Options{},
			func(e Entry, body io.Reader) error {
				if e.Name == "three" {
					b, err := io.ReadAll(body)
					seen = append(seen, e.Name+"="+string(b))
					return err
				}
				b := make([]byte, 3)
				if _, err := io.ReadFull(body, b); err != nil {
					return err
				}
				seen = append(seen, e.Name+"="+string(b))
				return nil
			})
		if err != nil || fmt.Sprint(seen) != "[one=111 two=222 three=three]" || res.Entries != 3 || res.Errors != 0 {
			t.Fatalf("%s: %v %v %+v", kind, err, seen, res)
		}
		// An error of fn's own stops the walk and comes back as is.
		stop := errors.New("enough")
		n := 0
		_, err = Walk(context.Background(), kind, bytes.NewReader(data), int64(len(data)), Options{},
			func(e Entry, body io.Reader) error { n++; return stop })
		if err != stop || n != 1 {
			t.Fatalf("%s: %v after %d", kind, err, n)
		}
	}
	// body is dead once fn returned.
	data := archivesForStopTests(t)[KindZip]
	var kept io.Reader
	Walk(context.Background(), KindZip, bytes.NewReader(data), int64(len(data)), Options{},
		func(e Entry, body io.Reader) error { kept = body; return errors.New("stop") })
	if _, err := kept.Read(make([]byte, 1)); err == nil {
		t.Fatal("body readable after fn returned")
	}
}

func TestCancel(t *testing.T) {
	archives := archivesForStopTests(t)
	archives[Kind7z] = fixture(t, "plain.7z")
	archives[KindGzip] = gzipBytes(t, "", bytes.Repeat([]byte("z"), 1<<20))
	for kind, data := range archives {
		// Cancelled during fn: later reads fail, Walk returns ctx.Err().
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		var readErr error
		_, err := Walk(ctx, kind, bytes.NewReader(data), int64(len(data)), Options{},
			func(e Entry, body io.Reader) error {
				n++
				cancel()
				_, readErr = io.Copy(io.Discard, body)
				return nil
			})
		if !errors.Is(err, context.Canceled) || n != 1 || !errors.Is(readErr, context.Canceled) {
			t.Fatalf("%s: %v after %d entries, read error %v", kind, err, n, readErr)
		}
		// Already cancelled.
		_, err = Walk(ctx, kind, bytes.NewReader(data), int64(len(data)), Options{},
			func(Entry, io.Reader) error { t.Fatal("fn called"); return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: %v", kind, err)
		}
	}
	// A deadline in the middle of a large entry.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	big := gzipBytes(t, "", bytes.Repeat([]byte("slow"), 1<<20))
	_, err := Walk(ctx, KindGzip, bytes.NewReader(big), int64(len(big)), Options{},
		func(e Entry, body io.Reader) error {
			b := make([]byte, 1024)
			for {
				if _, err := body.Read(b); err != nil {
					return err
				}
				time.Sleep(time.Millisecond)
			}
		})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
}

func TestFnPanicPropagates(t *testing.T) {
	data := archivesForStopTests(t)[KindZip]
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v", r)
		}
	}()
	Walk(context.Background(), KindZip, bytes.NewReader(data), int64(len(data)), Options{},
		func(Entry, io.Reader) error { panic("boom") })
}

func TestUnknownKind(t *testing.T) {
	_, err := Walk(context.Background(), "cab", bytes.NewReader(nil), 0, Options{}, func(Entry, io.Reader) error { return nil })
	if !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"plain/name.txt":         "plain/name.txt",
		"../../etc/passwd":       "../../etc/passwd",
		"/abs":                   "/abs",
		"nul\x00byte":            "nulbyte",
		"esc\x1b[31mred":         "esc[31mred",
		"bad\xffutf8":            "bad\ufffdutf8",
		"invoice\u202etxt.exe":   "invoicetxt.exe",
		"c1\u0085x\u007f":        "c1x",
		"日本語/ファイル.txt":           "日本語/ファイル.txt",
		"tab\tnew\nline\rreturn": "tabnewlinereturn",
	} {
		if got := SanitizeName(in); got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzWalk runs every format's walker over hostile bytes.
func FuzzWalk(f *testing.F) {
	for kind, data := range archivesForStopTests(f) {
		f.Add(uint8(slicesIndex(Kinds, kind)), data)
	}
	f.Add(uint8(slicesIndex(Kinds, Kind7z)), fixture(f, "plain.7z"))
	f.Add(uint8(slicesIndex(Kinds, Kind7z)), fixture(f, "enc.7z"))
	f.Add(uint8(slicesIndex(Kinds, Kind7z)), fixture(f, "enc_hdr.7z"))
	f.Add(uint8(slicesIndex(Kinds, KindBzip2)), fixture(f, "hello.txt.bz2"))
	f.Add(uint8(slicesIndex(Kinds, KindRar)), makeRar5(f, []rarEntry{{name: "e", data: []byte("enc"), password: "pw"}}, ""))
	f.Add(uint8(slicesIndex(Kinds, KindRar)), makeRar5(f, []rarEntry{{name: "h", data: []byte("hdr"), password: "pw"}}, "pw"))
	f.Add(uint8(slicesIndex(Kinds, KindGzip)), gzipBytes(f, "n", []byte("gz")))
	f.Add(uint8(slicesIndex(Kinds, KindXz)), xzBytes(f, []byte("xz"), 0))
	f.Add(uint8(slicesIndex(Kinds, KindZstd)), zstdBytes(f, []byte("zstd")))
	f.Fuzz(func(t *testing.T, sel uint8, data []byte) {
		fuzzOne(t, Kinds[int(sel)%len(Kinds)], data)
	})
}

func slicesIndex(ks []Kind, k Kind) int {
	for i, x := range ks {
		if x == k {
			return i
		}
	}
	return -1
}

// fuzzOne walks data with a deadline and fails on a decoder panic or a walk
// that outlives its context by far.
func fuzzOne(t *testing.T, kind Kind, data []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	var pe *PanicError
	onErr := func(_ string, err error) {
		if errors.As(err, &pe) {
			t.Fatalf("decoder panic: %v\n%s", pe.Value, pe.Stack)
		}
	}
	_, err := Walk(ctx, kind, bytes.NewReader(data), int64(len(data)),
		Options{Passwords: []string{"pw", "x"}, OnError: onErr, MaxDictSize: 16 << 20},
		func(e Entry, body io.Reader) error {
			_, err := io.CopyN(io.Discard, body, 1<<20)
			if err == io.EOF {
				err = nil
			}
			return err
		})
	if errors.As(err, &pe) {
		t.Fatalf("panic: %v\n%s", pe.Value, pe.Stack)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("%s walk took %v", kind, d)
	}
}

// FuzzWalkZip: Walk never panics and never hangs on a hostile zip.
func FuzzWalkZip(f *testing.F) {
	secret := bytes.Repeat([]byte("fuzz "), 50)
	f.Add(makeZip(f, []zentry{{name: "a", data: []byte("hello"), method: zip.Deflate}, {name: "b/", mode: fs.ModeDir}}))
	f.Add(makeZip(f, []zentry{{name: "s", data: secret, method: zip.Store}}))
	f.Add(makeZip(f, []zentry{{name: "zc", data: secret, method: zip.Deflate, enc: "zipcrypto", password: "pw"}}))
	f.Add(makeZip(f, []zentry{{name: "zd", data: secret, method: zip.Store, enc: "zipcrypto", password: "pw", descriptor: true}}))
	f.Add(makeZip(f, []zentry{{name: "ae", data: secret, method: zip.Deflate, enc: "aes", password: "pw", aesVersion: 1, aesStrength: 1}}))
	f.Add(makeZip(f, []zentry{{name: "ae2", data: secret, method: zip.Store, enc: "aes", password: "pw"}}))
	f.Add(makeZip(f, []zentry{{name: "z", data: secret, method: zipZstd}, {name: "x", data: secret, method: zipXz},
		{name: "b", data: []byte("hello bzip2\n"), rawBody: fixture(f, "hello.txt.bz2"), method: zipBzip2}},
		func(zw *zip.Writer) {
			zw.RegisterCompressor(zipZstd, func(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) })
			zw.RegisterCompressor(zipXz, func(w io.Writer) (io.WriteCloser, error) { return &lazyXz{w: w}, nil })
		}))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzOne(t, KindZip, data) })
}
