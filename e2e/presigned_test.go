package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/presign"
)

// The pre-signed part upload routes (BioT style).
const partsPath = "/file/v1/files/upload/parts"

// presignedKey signs part URLs on every node of a test deployment.
const presignedKey = "a-presigned-key-of-at-least-32-chars"

// openPresigned opens a pre-signed upload with URLs for parts 1..parts
// and returns its id and the URLs by part number.
func openPresigned(t testing.TB, base, key string, parts int, name string, headers map[string]string) (string, map[int]string) {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"mimeType":"application/octet-stream","parts":%d}`, name, parts)
	code, out, _ := call(t, "POST", base+partsPath, key, []byte(body), headers)
	id := str(out["id"])
	if code != 200 || id == "" {
		t.Fatalf("open: %d %v", code, out)
	}
	return id, signedURLs(t, out)
}

// signedURLs reads signedUrls from an answer, checking each names its part.
func signedURLs(t testing.TB, out map[string]any) map[int]string {
	t.Helper()
	urls := map[int]string{}
	list, _ := out["signedUrls"].([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		n, u := int(num(m["partNumber"])), str(m["signedUrl"])
		if !strings.Contains(u, "/"+str(out["id"])+"/"+strconv.Itoa(n)+"?") || str(m["expirationTime"]) == "" {
			t.Fatalf("signed URL entry %v", m)
		}
		urls[n] = u
	}
	if len(urls) != int(num(out["parts"])) {
		t.Fatalf("%d URLs for %v parts", len(urls), out["parts"])
	}
	return urls
}

// onNode is a signed URL sent to another ingest node: a URL is valid on
// any node of the deployment.
func onNode(t testing.TB, signed, base string) string {
	t.Helper()
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	return base + u.RequestURI()
}

// putPart PUTs a part to its signed URL, with no apikey, and returns the
// status, the ETag header (unquoted) and any error body.
func putPart(t testing.TB, signed string, body []byte) (int, string, map[string]any) {
	t.Helper()
	code, out, h := call(t, "PUT", signed, "", body, nil)
	etag := strings.Trim(h.Get("ETag"), `"`)
	if code == 200 && etag != digestsOf(body).md5 {
		t.Fatalf("ETag %q for a part whose md5 is %s", h.Get("ETag"), digestsOf(body).md5)
	}
	return code, etag, out
}

func mustPutPart(t testing.TB, signed string, body []byte) string {
	t.Helper()
	code, etag, out := putPart(t, signed, body)
	if code != 200 {
		t.Fatalf("PUT part: %d %v", code, out)
	}
	return etag
}

// partList is the {"parts":[...]} body of a report or a complete.
func partList(etags map[int]string) []byte {
	type tag struct {
		PartNumber int    `json:"partNumber"`
		ETag       string `json:"etag"`
	}
	tags := []tag{}
	for n, e := range etags {
		tags = append(tags, tag{n, e})
	}
	slices.SortFunc(tags, func(a, b tag) int { return b.PartNumber - a.PartNumber }) // any order will do
	b, _ := json.Marshal(map[string]any{"parts": tags})
	return b
}

// Parts PUT out of order to two ingest nodes that share NATS and a
// JetStream blob store, one of them twice: the file is the parts in
// number order, the last PUT of each counting; a complete naming an
// earlier PUT's ETag is refused, naming the part; the verdict and the
// hashes are those of the concatenation.
func TestPresignedPartsOnTwoIngestNodes(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.Blob.Store = "jetstream"
	cfg.Presigned.Key = presignedKey
	cfg.Presigned.MinPartSize = 64 << 10
	first := startNode(t, cfg)
	c := testConfig(t)
	c.NATS.URL = first.NATSURL()
	c.Blob.Store = "jetstream"
	c.Presigned.Key = presignedKey
	c.Presigned.MinPartSize = 64 << 10
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	second, err := node.Start(context.Background(), c, []node.Role{node.Ingest}, "test", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	a, b := first.URL(""), second.URL("")

	// EICAR at the start of part 1: only the parts in order make a file
	// the scanner flags.
	file := append(eicar(), randomBytes(t, 230_000-len(eicar()))...)
	parts := map[int][]byte{1: file[:100_000], 2: file[100_000:200_000], 3: file[200_000:]}
	id, urls := openPresigned(t, a, "", 3, "joined.com", map[string]string{"metadata": `{"ticket":9}`})

	etags := map[int]string{}
	etags[3] = mustPutPart(t, onNode(t, urls[3], b), parts[3])
	stale := mustPutPart(t, onNode(t, urls[2], a), randomBytes(t, 100_000)) // replaced below
	etags[1] = mustPutPart(t, onNode(t, urls[1], b), parts[1])
	etags[2] = mustPutPart(t, onNode(t, urls[2], b), parts[2]) // the re-PUT

	// Every 200 above came after its part's event was in the stream, so
	// the assembler sees the re-PUT before this complete, whichever node
	// each went to.
	wrong := map[int]string{1: etags[1], 2: stale, 3: etags[3]}
	code, out, _ := call(t, "POST", a+partsPath+"/"+id+"/complete", "", partList(wrong), nil)
	if code != 400 || !strings.Contains(str(out["err"]), "Part 2: etag") {
		t.Fatalf("complete with the replaced PUT's ETag: %d %v, want 400 naming part 2", code, out)
	}
	code, out, _ = call(t, "POST", b+partsPath+"/"+id+"/complete", "", partList(etags), nil)
	if code != 200 || out["data_id"] != id || num(out["size"]) != int64(len(file)) || out["name"] != "joined.com" ||
		!strings.HasSuffix(str(out["downloadUrl"]), "/file/"+id) {
		t.Fatalf("complete: %d %v", code, out)
	}

	r := waitResult(t, a, id)
	d := digestsOf(file)
	for algo, want := range map[string]string{"md5": d.md5, "sha1": d.sha1, "sha256": d.sha256, "sha512": d.sha512} {
		if got := path(r, "file_info", algo); got != want {
			t.Errorf("%s of the concatenation: %v, want %s", algo, got, want)
		}
	}
	if v := path(r, "scan_results", "scan_all_result_i"); v != float64(1) {
		t.Errorf("verdict %v, want 1 Infected (EICAR at the start of part 1)", v)
	}
	if path(r, "file_info", "file_size") != float64(len(file)) || path(r, "metadata", "ticket") != float64(9) ||
		path(r, "file_info", "display_name") != "joined.com" {
		t.Errorf("result: size %v, metadata %v, name %v", path(r, "file_info", "file_size"), r["metadata"], path(r, "file_info", "display_name"))
	}

	// Done: the parts are the file's now.
	if code, _, out := putPart(t, onNode(t, urls[1], b), parts[1]); code != 409 {
		t.Errorf("PUT after complete: %d %v, want 409", code, out)
	}
	if code, out, _ := call(t, "DELETE", a+partsPath+"/"+id+"/cancel", "", nil, nil); code != 409 {
		t.Errorf("cancel after complete: %d %v, want 409", code, out)
	}
	if code, again, _ := call(t, "POST", a+partsPath+"/"+id+"/complete", "", partList(etags), nil); code != 200 || again["size"] != out["size"] {
		t.Errorf("complete again: %d %v, want the first answer", code, again)
	}
}

// A signed URL is the credential of one part of one upload until it
// expires, even with anonymous access off; anything changed in it, or a
// URL past its time, gets 403. An upload of unknown length asks for more
// URLs; a small part that turns out not to be the last is refused at
// complete, naming it; the ETags a client reports are kept and complete
// an upload. Another user sees none of it. A cancel releases the parts
// and gives verdict 19.
func TestPresignedSignedURLsAndOwners(t *testing.T) {
	cfg := testConfig(t)
	withAccounts(t, cfg)
	cfg.Auth.Anonymous = false
	cfg.Presigned.Key = presignedKey
	cfg.Presigned.MinPartSize = 1000
	n := startNode(t, cfg)
	base := n.URL("")
	signer, err := presign.New([]byte(presignedKey))
	if err != nil {
		t.Fatal(err)
	}

	if code, out, _ := call(t, "POST", base+partsPath, "", []byte(`{"parts":1}`), nil); code != 401 {
		t.Fatalf("open without an apikey: %d %v", code, out)
	}
	// Every POST /file header applies: this upload joins a batch.
	bid := openBatch(t, base, aliceKey, nil)
	id, urls := openPresigned(t, base, aliceKey, 1, "grown.bin", map[string]string{"batch": bid})
	p1 := randomBytes(t, 1500)
	e1 := mustPutPart(t, urls[1], p1) // no apikey: the URL is enough

	// Tampered and expired URLs.
	u, _ := url.Parse(urls[1])
	q := u.Query()
	sig, exp := q.Get("signature"), q.Get("expires")
	flip := func(s string) string {
		if s[5] == '0' {
			return s[:5] + "1" + s[6:]
		}
		return s[:5] + "0" + s[6:]
	}
	later, _ := strconv.ParseInt(exp, 10, 64)
	other, _ := openPresigned(t, base, aliceKey, 1, "other.bin", nil)
	past := time.Now().Add(-time.Minute)
	for name, target := range map[string]string{
		"a flipped signature digit": base + partsPath + "/" + id + "/1?expires=" + exp + "&signature=" + flip(sig),
		"another part":              base + partsPath + "/" + id + "/2?expires=" + exp + "&signature=" + sig,
		"another upload":            base + partsPath + "/" + other + "/1?expires=" + exp + "&signature=" + sig,
		"a later expiry":            base + partsPath + "/" + id + "/1?expires=" + strconv.FormatInt(later+3600, 10) + "&signature=" + sig,
		"no signature":              base + partsPath + "/" + id + "/1?expires=" + exp,
		"expired":                   base + partsPath + "/" + id + "/1?" + signer.Query(id, 1, past),
	} {
		code, _, out := putPart(t, target, p1)
		want := "Signed URL is invalid."
		if name == "expired" {
			want = "Signed URL has expired."
		}
		if code != 403 || out["err"] != want {
			t.Errorf("%s: %d %v, want 403 %q", name, code, out, want)
		}
	}
	// With an apikey, a bad signature is still refused: it never stands in.
	if code, out, _ := call(t, "PUT", base+partsPath+"/"+id+"/1?expires="+exp+"&signature="+flip(sig), aliceKey, p1, nil); code != 403 {
		t.Errorf("a bad signature with a valid apikey: %d %v", code, out)
	}

	// Unknown length: more URLs, all fresh.
	code, out, _ := call(t, "POST", base+partsPath+"/"+id, aliceKey, []byte(`{"parts":3}`), nil)
	if code != 200 || out["name"] != "grown.bin" {
		t.Fatalf("more URLs: %d %v", code, out)
	}
	more := signedURLs(t, out)
	p2, p3 := []byte("tiny"), randomBytes(t, 700)
	e2 := mustPutPart(t, more[2], p2)
	e3 := mustPutPart(t, more[3], p3)
	code, out, _ = call(t, "POST", base+partsPath+"/"+id+"/complete", aliceKey, partList(map[int]string{1: e1, 2: e2, 3: e3}), nil)
	if code != 400 || !strings.Contains(str(out["err"]), "Part 2 is smaller than the minimum part size") {
		t.Fatalf("complete with a small middle part: %d %v", code, out)
	}
	p2 = randomBytes(t, 1200)
	e2 = mustPutPart(t, more[2], p2)
	// The ETags reported (quoted, as the header has them) are kept and
	// shown, and complete an upload whose complete lists none.
	report := partList(map[int]string{1: `"` + e1 + `"`, 2: `"` + e2 + `"`, 3: strings.ToUpper(e3)})
	if code, out, _ := call(t, "PUT", base+partsPath+"/"+id, aliceKey, report, nil); code != 200 {
		t.Fatalf("progress report: %d %v", code, out)
	}
	var st map[string]any
	waitFor(t, "the status to show every part and the report", func() bool {
		_, st, _ = call(t, "GET", base+partsPath+"/"+id, aliceKey, nil, nil)
		ps, _ := st["parts"].([]any)
		rs, _ := st["reported"].([]any)
		return len(ps) == 3 && len(rs) == 3 && num(st["size"]) == int64(len(p1)+len(p2)+len(p3))
	})
	if rs := st["reported"].([]any); rs[1].(map[string]any)["etag"] != e2 {
		t.Errorf("reported %v", rs)
	}

	// bob: every route of alice's upload answers as for an unknown id.
	unknown := "0123456789abcdef0123456789abcdef"
	for _, r := range []struct{ method, path, body string }{
		{"GET", partsPath + "/%s", ""},
		{"POST", partsPath + "/%s", `{"parts":2}`},
		{"PUT", partsPath + "/%s", string(report)},
		{"POST", partsPath + "/%s/complete", string(report)},
		{"DELETE", partsPath + "/%s/cancel", ""},
		{"GET", "/file/%s", ""},
	} {
		wantCode, wantBody, _ := call(t, r.method, base+strings.ReplaceAll(r.path, "%s", unknown), bobKey, []byte(r.body), nil)
		code, body, _ := call(t, r.method, base+strings.ReplaceAll(r.path, "%s", id), bobKey, []byte(r.body), nil)
		if code != wantCode || !sameExceptID(body, wantBody, id, unknown) {
			t.Errorf("bob %s %s: %d %v; an unknown id gets %d %v", r.method, r.path, code, body, wantCode, wantBody)
		}
	}

	code, out, _ = call(t, "POST", base+partsPath+"/"+id+"/complete", aliceKey, []byte(`{}`), nil)
	if code != 200 || num(out["size"]) != int64(len(p1)+len(p2)+len(p3)) {
		t.Fatalf("complete from the report: %d %v", code, out)
	}
	file := slices.Concat(p1, p2, p3)
	var r map[string]any
	waitFor(t, "alice's verdict", func() bool {
		_, r, _ = call(t, "GET", base+"/file/"+id, aliceKey, nil, nil)
		return path(r, "scan_results", "progress_percentage") == float64(100)
	})
	if path(r, "file_info", "sha256") != digestsOf(file).sha256 || path(r, "process_info", "username") != "alice" {
		t.Errorf("result: sha256 %v, username %v", path(r, "file_info", "sha256"), path(r, "process_info", "username"))
	}
	if got := dataIDs(batchStatus(t, base, aliceKey, bid, "")); !slices.Equal(got, []string{id}) {
		t.Errorf("the batch lists %v, want the pre-signed upload's file", got)
	}
	// On disk: the three parts the file is made of and its manifest; the
	// replaced PUT of part 2 is gone.
	if got := blobFiles(t, cfg.DataDir, id); len(got) != 4 {
		t.Errorf("blobs of the upload: %v, want 3 parts and a manifest", got)
	}

	// A cancel: the parts go, the verdict is 19, the URLs are done.
	cid, curls := openPresigned(t, base, aliceKey, 2, "dropped.bin", nil)
	mustPutPart(t, curls[1], randomBytes(t, 1000))
	if code, out, _ := call(t, "DELETE", base+partsPath+"/"+cid+"/cancel", aliceKey, nil, nil); code != 200 || out[cid] != "cancelled" {
		t.Fatalf("cancel: %d %v", code, out)
	}
	if code, _, out := putPart(t, curls[2], []byte("late")); code != 410 {
		t.Errorf("PUT after cancel: %d %v, want 410", code, out)
	}
	if code, _, _ := call(t, "DELETE", base+partsPath+"/"+cid+"/cancel", aliceKey, nil, nil); code != 200 {
		t.Errorf("cancel again: %d, want 200", code)
	}
	if code, out, _ := call(t, "POST", base+partsPath+"/"+cid+"/complete", aliceKey, []byte(`{}`), nil); code != 410 {
		t.Errorf("complete after cancel: %d %v, want 410", code, out)
	}
	waitFor(t, "verdict 19", func() bool {
		_, r, _ = call(t, "GET", base+"/file/"+cid, aliceKey, nil, nil)
		return path(r, "scan_results", "scan_all_result_i") == float64(19)
	})
	waitFor(t, "the cancelled upload's parts to be released", func() bool { return len(blobFiles(t, cfg.DataDir, cid)) == 0 })
}

// blobFiles lists the fs store's files of upload id.
func blobFiles(t testing.TB, dataDir, id string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "blobs", id[:2]))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), id) {
			out = append(out, e.Name())
		}
	}
	return out
}

// kill -9 between parts, the assembler's local state lost too: the parts
// stored before are still there, the URLs handed out before still work
// (the key generated into the data directory survived), and the file
// completes with the right bytes.
func TestPresignedSurvivesHardStop(t *testing.T) {
	dir := t.TempDir()
	p := startServeProcess(t, dir, "SCANGATE_PRESIGNED_MIN_PART_SIZE=1")
	parts := map[int][]byte{1: randomBytes(t, 300_000), 2: randomBytes(t, 200_000), 3: randomBytes(t, 100_000)}
	id, urls := openPresigned(t, p.addr, "", 3, "crash.bin", nil)
	etags := map[int]string{}
	etags[3] = mustPutPart(t, urls[3], parts[3])
	etags[1] = mustPutPart(t, urls[1], parts[1])
	p.kill()
	if err := os.Remove(filepath.Join(dir, "assembler.db")); err != nil {
		t.Fatal(err)
	}

	p = startServeProcess(t, dir, "SCANGATE_PRESIGNED_MIN_PART_SIZE=1")
	waitFor(t, "the status to show both parts", func() bool {
		var st map[string]any
		getJSON(t, p.addr+partsPath+"/"+id, &st)
		ps, _ := st["parts"].([]any)
		return len(ps) == 2
	})
	// The restarted server listens elsewhere; the signature is over the
	// upload, the part and the expiry, not the address.
	etags[2] = mustPutPart(t, onNode(t, urls[2], p.addr), parts[2])
	code, out, _ := call(t, "POST", p.addr+partsPath+"/"+id+"/complete", "", partList(etags), nil)
	if code != 200 {
		t.Fatalf("complete after the restart: %d %v", code, out)
	}
	r := waitResult(t, p.addr, id)
	if path(r, "file_info", "sha256") != digestsOf(slices.Concat(parts[1], parts[2], parts[3])).sha256 {
		t.Errorf("sha256 after a crash between parts: %v", path(r, "file_info", "sha256"))
	}
	if !bytes.Contains([]byte(str(path(r, "file_info", "display_name"))), []byte("crash.bin")) {
		t.Errorf("display name %v", path(r, "file_info", "display_name"))
	}
}
