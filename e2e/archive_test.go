package e2e

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// An archive's children are scanned one by one, each with its own data_id
// and result; the parent takes the worst verdict and names the child.
func TestArchiveChildrenAndWorst(t *testing.T) {
	n := startNode(t, testConfig(t))
	clean := randomBytes(t, 2000)
	z := zipOf(t, map[string][]byte{
		"docs/readme.txt": []byte("hello"), "bin/data.bin": clean, "eicar.com": eicar(),
		"../../evil.txt": []byte("zip slip"), "/abs/path.txt": []byte("absolute"),
	}, "docs/readme.txt", "bin/data.bin", "eicar.com", "../../evil.txt", "/abs/path.txt")
	id := mustUpload(t, n.URL(""), z, map[string]string{"filename": "bundle.zip"})
	r := waitResult(t, n.URL(""), id)
	if path(r, "scan_results", "scan_all_result_i") != float64(1) || path(r, "process_info", "result") != "Blocked" {
		t.Fatalf("archive with EICAR inside: %v %v", r["scan_results"], r["process_info"])
	}
	ef, _ := r["extracted_files"].(map[string]any)
	if ef == nil || ef["files_extracted_count"] != float64(5) {
		t.Fatalf("extracted_files: %v", r["extracted_files"])
	}
	files := ef["files_in_archive"].([]any)
	byName := map[string]map[string]any{}
	for _, f := range files {
		m := f.(map[string]any)
		byName[str(m["display_name"])] = m
	}
	// Names that climb out of the archive are shown cleaned, as relative paths.
	for _, name := range []string{"docs/readme.txt", "bin/data.bin", "eicar.com", "evil.txt", "abs/path.txt"} {
		if byName[name] == nil {
			t.Errorf("no child named %q among %q", name, slices.Sorted(maps.Keys(byName)))
		}
	}
	bad := byName["eicar.com"]
	if bad == nil || bad["scan_all_result_i"] != float64(1) || ef["worst_data_id"] != bad["data_id"] {
		t.Errorf("worst child: %v, worst_data_id %v", bad, ef["worst_data_id"])
	}
	if byName["bin/data.bin"]["file_size"] != float64(len(clean)) || byName["bin/data.bin"]["scan_all_result_i"] != float64(0) {
		t.Errorf("clean child summary: %v", byName["bin/data.bin"])
	}
	// Each child has its own full result, with its own hashes.
	child := waitResult(t, n.URL(""), str(byName["bin/data.bin"]["data_id"]))
	if path(child, "file_info", "sha256") != digestsOf(clean).sha256 {
		t.Errorf("child result: %v", child["file_info"])
	}
	// Hostile names are only names: nothing was written outside.
	for _, p := range []string{filepath.Join(n.Config().DataDir, "..", "evil.txt"), "/abs/path.txt", "/evil.txt"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("extraction wrote %s", p)
		}
	}
}

func TestArchivePagingAndNested(t *testing.T) {
	n := startNode(t, testConfig(t))
	files := map[string][]byte{}
	var order []string
	for i := range 120 {
		name := fmt.Sprintf("f%03d.txt", i)
		files[name], order = []byte(name), append(order, name)
	}
	id := mustUpload(t, n.URL(""), zipOf(t, files, order...), nil)
	waitResult(t, n.URL(""), id)
	var page map[string]any
	getJSON(t, n.URL("/file/"+id+"?first=100&size=50"), &page)
	ef := page["extracted_files"].(map[string]any)
	got := ef["files_in_archive"].([]any)
	if len(got) != 20 || ef["first_index"] != float64(100) || ef["files_extracted_count"] != float64(120) ||
		got[0].(map[string]any)["display_name"] != "f100.txt" {
		t.Errorf("page first=100: %d entries, %v", len(got), ef["first_index"])
	}
	getJSON(t, n.URL("/file/"+id), &page)
	if l := len(page["extracted_files"].(map[string]any)["files_in_archive"].([]any)); l != 50 {
		t.Errorf("default page size: %d", l)
	}

	// tar.gz holding EICAR: gzip → tar → file, two levels.
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "inner/eicar.txt", Mode: 0o644, Size: int64(len(eicar()))})
	tw.Write(eicar())
	tw.Close()
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(tb.Bytes())
	gw.Close()
	r := waitResult(t, n.URL(""), mustUpload(t, n.URL(""), gz.Bytes(), map[string]string{"filename": "x.tar.gz"}))
	if path(r, "scan_results", "scan_all_result_i") != float64(1) {
		t.Errorf("EICAR inside tar.gz: %v", r["scan_results"])
	}
}

// nestZip wraps content in depth levels of zip.
func nestZip(t testing.TB, content []byte, depth int) []byte {
	for i := range depth {
		content = zipOf(t, map[string][]byte{fmt.Sprintf("level%d", i): content}, fmt.Sprintf("level%d", i))
	}
	return content
}

func TestArchiveLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.Workflows[0].Archive.MaxFiles = 50
	n := startNode(t, cfg)
	verdict := func(body []byte) (int, map[string]any) {
		r := waitResult(t, n.URL(""), mustUpload(t, n.URL(""), body, nil))
		return int(num(path(r, "scan_results", "scan_all_result_i"))), r
	}
	if code, r := verdict(nestZip(t, []byte("deep"), 12)); code != 9 {
		t.Errorf("12-deep nesting: %d %v", code, r["process_info"])
	}
	// The child that hit the limit is the archive's worst, not the clean one before it.
	mixed := zipOf(t, map[string][]byte{"clean.txt": []byte("ok"), "deep.zip": nestZip(t, []byte("deep"), 11)}, "clean.txt", "deep.zip")
	if code, r := verdict(mixed); code != 9 || path(r, "extracted_files", "worst_data_id") != path(r, "extracted_files", "files_in_archive").([]any)[1].(map[string]any)["data_id"] {
		t.Errorf("worst child of a clean file and a too-deep archive: %d %v", code, r["extracted_files"])
	}
	if code, _ := verdict(nestZip(t, []byte("fine"), 3)); code != 0 {
		t.Errorf("3-deep nesting: %d", code)
	}
	// A zip bomb: 300 MB of zeros compresses to a few hundred KB.
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	f, _ := w.Create("zeros.bin")
	chunk := make([]byte, 1<<20)
	for range 300 {
		f.Write(chunk)
	}
	w.Close()
	if code, r := verdict(b.Bytes()); code != 60 {
		t.Errorf("zip bomb (%d bytes): %d %v", b.Len(), code, r["process_info"])
	}
	many := map[string][]byte{}
	var order []string
	for i := range 60 {
		name := fmt.Sprintf("f%d", i)
		many[name], order = []byte{byte(i)}, append(order, name)
	}
	if code, _ := verdict(zipOf(t, many, order...)); code != 14 {
		t.Errorf("60 files over max_files 50: %d", code)
	}
}

func TestArchiveSizeLimitAndErrors(t *testing.T) {
	cfg := testConfig(t)
	cfg.Workflows[0].Archive.MaxSize = 100_000
	n := startNode(t, cfg)
	big := zipOf(t, map[string][]byte{"a.bin": randomBytes(t, 80_000), "b.bin": randomBytes(t, 80_000)}, "a.bin", "b.bin")
	r := waitResult(t, n.URL(""), mustUpload(t, n.URL(""), big, nil))
	if path(r, "scan_results", "scan_all_result_i") != float64(13) {
		t.Errorf("over max_size: %v", r["scan_results"])
	}
	// A corrupt entry: the archive's other entries are still scanned, and
	// the error is served.
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	g, _ := zw.Create("good.txt")
	g.Write([]byte("good"))
	bw, _ := zw.CreateHeader(&zip.FileHeader{Name: "bad.txt", Method: zip.Store})
	bw.Write(bytes.Repeat([]byte("x"), 5000))
	zw.Close()
	z := zb.Bytes()
	z[bytes.LastIndex(z, bytes.Repeat([]byte("x"), 10))] ^= 0xff // the stored bytes no longer match their CRC
	id := mustUpload(t, n.URL(""), z, map[string]string{"filename": "corrupt.zip"})
	waitResult(t, n.URL(""), id)
	var xe map[string]any
	if code := getJSON(t, n.URL("/file/"+id+"/extraction-errors"), &xe); code != 200 || num(xe["total"]) < 1 ||
		!strings.Contains(fmt.Sprint(xe["root_archive"]), "bad.txt") {
		t.Errorf("extraction errors: %d %v", code, xe)
	}
}

// zipCryptoZip writes a zip whose one entry is encrypted with traditional
// PKWARE encryption (ZipCrypto), stored.
func zipCryptoZip(t testing.TB, name string, data []byte, password string) []byte {
	t.Helper()
	k := [3]uint32{0x12345678, 0x23456789, 0x34567890}
	crc := func(c uint32, b byte) uint32 { return crc32.IEEETable[(c^uint32(b))&0xff] ^ (c >> 8) }
	update := func(p byte) {
		k[0] = crc(k[0], p)
		k[1] = (k[1]+(k[0]&0xff))*134775813 + 1
		k[2] = crc(k[2], byte(k[1]>>24))
	}
	for _, c := range []byte(password) {
		update(c)
	}
	sum := crc32.ChecksumIEEE(data)
	plain := append(append(randomBytes(t, 11), byte(sum>>24)), data...)
	enc := make([]byte, len(plain))
	for i, p := range plain {
		tmp := k[2] | 2
		enc[i] = p ^ byte((tmp*(tmp^1))>>8)
		update(p)
	}
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	fh := &zip.FileHeader{Name: name, Method: zip.Store, Flags: 1, CRC32: sum,
		CompressedSize64: uint64(len(enc)), UncompressedSize64: uint64(len(data))}
	f, err := w.CreateRaw(fh)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(enc)
	w.Close()
	return b.Bytes()
}

// An encrypted archive is 12 Encrypted Archive unless archivepwd opens it;
// then what is inside is scanned like anything else.
func TestEncryptedArchivePasswords(t *testing.T) {
	n := startNode(t, testConfig(t))
	z := zipCryptoZip(t, "secret.com", eicar(), "s3cret pw")
	r := waitResult(t, n.URL(""), mustUpload(t, n.URL(""), z, map[string]string{"filename": "locked.zip"}))
	if path(r, "scan_results", "scan_all_result_i") != float64(12) || path(r, "process_info", "result") != "Blocked" {
		t.Errorf("no password: %v %v", r["scan_results"], r["process_info"])
	}
	r = waitResult(t, n.URL(""), mustUpload(t, n.URL(""), z, map[string]string{"archivepwd": "wrong"}))
	if path(r, "scan_results", "scan_all_result_i") != float64(12) {
		t.Errorf("wrong password: %v", r["scan_results"])
	}
	// The right password, percent-encoded as clients send it, among others.
	r = waitResult(t, n.URL(""), mustUpload(t, n.URL(""), z, map[string]string{"archivepwd": "nope", "archivepwd1": "s3cret%20pw"}))
	if path(r, "scan_results", "scan_all_result_i") != float64(1) {
		t.Errorf("right password: EICAR inside not found: %v", r["scan_results"])
	}
}

// An extraction that outlives the workflow's archive timeout ends with
// 16 Exceeded Archive Timeout (the limit here is far below what 2,000
// entries take to scan and record).
func TestArchiveTimeout(t *testing.T) {
	cfg := testConfig(t)
	cfg.Workflows[0].Archive.Timeout = time.Millisecond
	n := startNode(t, cfg)
	files := map[string][]byte{}
	var order []string
	for i := range 2000 {
		name := fmt.Sprintf("f%04d", i)
		files[name], order = []byte(name), append(order, name)
	}
	r := waitResult(t, n.URL(""), mustUpload(t, n.URL(""), zipOf(t, files, order...), nil))
	if path(r, "scan_results", "scan_all_result_i") != float64(16) {
		t.Errorf("archive over its timeout: %v", r["scan_results"])
	}
}
