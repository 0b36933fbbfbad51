package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/workflow"
	"github.com/scangate/scangate/scanner"
	"github.com/scangate/scangate/scanner/engines"
)

// rescanPost sends POST /file/rescan and returns the status, the decoded
// array (nil when the answer is not one) and the error object (nil when
// the answer is not one).
func rescanPost(t testing.TB, base, key string, body []byte, headers map[string]string) (int, []map[string]any, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/file/rescan", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("apikey", key)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var list []map[string]any
	var obj map[string]any
	if len(raw) > 0 && raw[0] == '[' {
		if err := json.Unmarshal(raw, &list); err != nil {
			t.Fatalf("POST /file/rescan: bad JSON %q: %v", raw, err)
		}
	} else if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("POST /file/rescan: %d %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, list, obj
}

// rescanIDs is rescanPost of {"file_ids": ids}.
func rescanIDs(t testing.TB, base, key string, fileIDs []string, headers map[string]string) (int, []map[string]any, map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string][]string{"file_ids": fileIDs})
	if err != nil {
		t.Fatal(err)
	}
	return rescanPost(t, base, key, body, headers)
}

// unknownAnswer is what every id that names no stored file gets.
func unknownAnswer(id string) map[string]any {
	return map[string]any{"file_id": id, "code": float64(404007),
		"err": "Requested file id does not exist in our records", "status": float64(404)}
}

// checkQueued checks one answer is a queued rescan of fileID at priority
// p, and returns its new data_id.
func checkQueued(t testing.TB, a map[string]any, fileID, p string) string {
	t.Helper()
	id := str(a["data_id"])
	inQueue, isNum := a["in_queue"].(float64)
	if !ids.Valid(id) || id == fileID || a["status"] != "inqueue" || a["queue_priority"] != p || a["file_id"] != fileID ||
		!isNum || inQueue < 0 || inQueue != float64(int64(inQueue)) || len(a) != 5 {
		t.Fatalf("answer %v, want a new data_id queued at %s for file %s", a, p, fileID)
	}
	return id
}

// waitFinalAs polls GET /file/{id} with key until the result is final.
func waitFinalAs(t testing.TB, base, key, id string) map[string]any {
	t.Helper()
	var r map[string]any
	waitUntil(t, "the result of "+id, 60*time.Second, func() bool {
		_, r, _ = call(t, "GET", base+"/file/"+id, key, nil, nil)
		return path(r, "scan_results", "progress_percentage") == float64(100)
	})
	return r
}

// Rescans of a large file (read from its blob) and of a small one (read
// from the copy kept after its scan), next to an unknown id and a
// duplicate: one answer per id in request order, duplicates answered
// alike and scanned once, and each new result final with the original's
// verdict, owner, hashes and metadata, and the original as file_id.
func TestRescanKnownUnknownAndDuplicate(t *testing.T) {
	cfg := testConfig(t)
	withAccounts(t, cfg)
	n := startNode(t, cfg)
	base := n.URL("")

	big := randomBytes(t, 100<<10) // has a blob
	small := eicar()               // travels inside its events
	upload := func(body []byte, name string) string {
		code, out, _ := call(t, "POST", base+"/file", aliceKey, body, map[string]string{"filename": name, "metadata": `{"ticket":7}`})
		if code != 200 {
			t.Fatalf("upload %s: %d %v", name, code, out)
		}
		return str(out["data_id"])
	}
	bigID, smallID := upload(big, "big.bin"), upload(small, "eicar.com")
	originals := map[string]map[string]any{bigID: waitFinalAs(t, base, aliceKey, bigID), smallID: waitFinalAs(t, base, aliceKey, smallID)}
	if v := path(originals[smallID], "scan_results", "scan_all_result_i"); v != float64(1) {
		t.Fatalf("the EICAR file's verdict %v, want 1", v)
	}

	unknown := ids.New()
	code, answers, errObj := rescanIDs(t, base, aliceKey, []string{bigID, smallID, unknown, bigID, "not-an-id"}, nil)
	if code != 200 || len(answers) != 5 {
		t.Fatalf("POST /file/rescan: %d %v %v", code, answers, errObj)
	}
	bigRescan := checkQueued(t, answers[0], bigID, "low")
	smallRescan := checkQueued(t, answers[1], smallID, "low")
	if !reflect.DeepEqual(answers[2], unknownAnswer(unknown)) || !reflect.DeepEqual(answers[4], unknownAnswer("not-an-id")) {
		t.Errorf("unknown ids answered %v and %v", answers[2], answers[4])
	}
	if !reflect.DeepEqual(answers[3], answers[0]) {
		t.Errorf("a duplicate id answered %v, its first mention %v: want the same answer", answers[3], answers[0])
	}

	checkRescan := func(rescanID, fileID string, data []byte) {
		t.Helper()
		r := waitFinalAs(t, base, aliceKey, rescanID)
		orig := originals[fileID]
		d := digestsOf(data)
		for _, c := range []struct {
			what      string
			got, want any
		}{
			{"data_id", r["data_id"], rescanID},
			{"file_id", r["file_id"], fileID},
			{"verdict", path(r, "scan_results", "scan_all_result_i"), path(orig, "scan_results", "scan_all_result_i")},
			{"process result", path(r, "process_info", "result"), path(orig, "process_info", "result")},
			{"owner", path(r, "process_info", "username"), "alice"},
			{"workflow", path(r, "process_info", "profile"), path(orig, "process_info", "profile")},
			{"display name", path(r, "file_info", "display_name"), path(orig, "file_info", "display_name")},
			{"size", path(r, "file_info", "file_size"), float64(len(data))},
			{"sha256", path(r, "file_info", "sha256"), d.sha256},
			{"md5", path(r, "file_info", "md5"), d.md5},
			{"metadata", r["metadata"], map[string]any{"ticket": float64(7)}},
		} {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("rescan %s of %s: %s %v, want %v", rescanID, fileID, c.what, c.got, c.want)
			}
		}
	}
	checkRescan(bigRescan, bigID, big)
	checkRescan(smallRescan, smallID, small)

	// One scan per file: the duplicate added none.
	waitSettled(t, n)
	if got := scansOf(t, n, bigID); got != 1 {
		t.Errorf("%d rescans of the large file queued, want 1", got)
	}

	// GET /file/{id}/rescan, at the root and under /v4, next to GET
	// /file/{id}, which still answers the result.
	for _, prefix := range []string{"", "/v4"} {
		code, out, _ := call(t, "GET", base+prefix+"/file/"+smallID+"/rescan", aliceKey, nil, nil)
		if code != 200 {
			t.Fatalf("GET %s/file/{id}/rescan: %d %v", prefix, code, out)
		}
		again := checkQueued(t, out, smallID, "low")
		if again == smallRescan {
			t.Errorf("GET rescan reused the earlier rescan's data_id")
		}
		checkRescan(again, smallID, small)
		if _, r, _ := call(t, "GET", base+prefix+"/file/"+smallID, aliceKey, nil, nil); r["data_id"] != smallID || r["file_id"] != smallID {
			t.Errorf("GET %s/file/{id} after rescans: %v", prefix, r)
		}
	}
	// The data_id of a rescan names its file.
	code, answers, _ = rescanIDs(t, base, aliceKey, []string{bigRescan}, nil)
	if code != 200 || len(answers) != 1 {
		t.Fatalf("rescan of a rescan's data_id: %d %v", code, answers)
	}
	checkRescan(checkQueued(t, answers[0], bigID, "low"), bigID, big)
}

// waitSettled waits until every result event is applied and every file
// scanned: RESULTS compacted, FILES empty. What is recorded then is all
// there will be.
func waitSettled(t testing.TB, n *node.Node) {
	t.Helper()
	waitFor(t, "every event applied", func() bool {
		for _, name := range []string{events.StreamResults, events.StreamFiles} {
			st, err := n.Bus().JS.Stream(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			if st.CachedInfo().State.Msgs != 0 {
				return false
			}
		}
		return true
	})
}

// scansOf counts the results that name fileID as their file, other than
// its own: the rescans recorded for it.
func scansOf(t testing.TB, n *node.Node, fileID string) int {
	t.Helper()
	ctx := context.Background()
	keys, err := n.Bus().Results.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for k := range keys.Keys() {
		if !ids.Valid(k) || k == fileID {
			continue
		}
		e, err := n.Bus().Results.Get(ctx, k)
		if err != nil {
			continue
		}
		var rec struct {
			Result struct {
				FileID string `json:"file_id"`
			} `json:"result"`
		}
		if json.Unmarshal(e.Value(), &rec) == nil && rec.Result.FileID == fileID {
			count++
		}
	}
	return count
}

// Another user's file is answered exactly as an unknown one, by both
// routes; an admin may rescan it (the result stays its owner's). The
// priority header is an admin's to use: anyone else's files go low.
func TestRescanOwnersAndPriorityHeader(t *testing.T) {
	cfg := testConfig(t)
	withAccounts(t, cfg)
	n := startNode(t, cfg)
	base := n.URL("")
	code, out, _ := call(t, "POST", base+"/file", aliceKey, []byte("alice's file"), nil)
	if code != 200 {
		t.Fatalf("upload: %d %v", code, out)
	}
	id := str(out["data_id"])
	waitFinalAs(t, base, aliceKey, id)

	code, answers, _ := rescanIDs(t, base, bobKey, []string{id}, nil)
	if code != 200 || len(answers) != 1 || !reflect.DeepEqual(answers[0], unknownAnswer(id)) {
		t.Errorf("bob's rescan of alice's file: %d %v, want the unknown answer", code, answers)
	}
	code, out, _ = call(t, "GET", base+"/file/"+id+"/rescan", bobKey, nil, nil)
	if code != 404 || !reflect.DeepEqual(out, unknownAnswer(id)) {
		t.Errorf("bob's GET rescan of alice's file: %d %v, want 404 and the unknown answer", code, out)
	}
	code, out, _ = call(t, "GET", base+"/file/"+ids.New()+"/rescan", bobKey, nil, nil)
	if code != 404 || out["code"] != float64(404007) {
		t.Errorf("GET rescan of an unknown id: %d %v", code, out)
	}

	high := map[string]string{"priority": "high"}
	code, answers, _ = rescanIDs(t, base, aliceKey, []string{id}, high)
	if code != 200 || len(answers) != 1 {
		t.Fatalf("alice's rescan asking for high priority: %d %v", code, answers)
	}
	checkQueued(t, answers[0], id, "low")

	code, answers, _ = rescanIDs(t, base, adminKey, []string{id}, high)
	if code != 200 || len(answers) != 1 {
		t.Fatalf("the admin's rescan: %d %v", code, answers)
	}
	byAdmin := checkQueued(t, answers[0], id, "high")
	r := waitFinalAs(t, base, aliceKey, byAdmin)
	if path(r, "process_info", "username") != "alice" {
		t.Errorf("the admin's rescan of alice's file belongs to %v, want alice", path(r, "process_info", "username"))
	}
	if _, out, _ := call(t, "GET", base+"/file/"+byAdmin, bobKey, nil, nil); out[byAdmin] != "Not Found" {
		t.Errorf("bob sees the rescan of alice's file: %v", out)
	}
}

// GET /file/{id}/rescan queues work, so the HEAD fiber answers for every
// GET route must not: it is refused and queues nothing.
func TestRescanHeadQueuesNothing(t *testing.T) {
	n := startNode(t, testConfig(t))
	base := n.URL("")
	id := mustUpload(t, base, []byte("probed, not rescanned"), nil)
	waitResult(t, base, id)
	req, err := http.NewRequest(http.MethodHead, base+"/file/"+id+"/rescan", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" {
		t.Errorf("HEAD /file/{id}/rescan: %d Allow %q, want 405 Allow GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// One real rescan after it; once every event is applied (RESULTS
	// compacted, FILES empty), it is the only one recorded.
	code, out, _ := call(t, "GET", base+"/file/"+id+"/rescan", "", nil, nil)
	if code != 200 {
		t.Fatalf("GET rescan: %d %v", code, out)
	}
	waitResult(t, base, str(out["data_id"]))
	waitSettled(t, n)
	if got := scansOf(t, n, id); got != 1 {
		t.Errorf("%d rescans recorded, want only the GET's", got)
	}
}

// What is not a rescan request is refused with 400 (413 past the size
// bound) and {"err"}, and changes nothing; an empty list is an empty answer.
func TestRescanBadRequests(t *testing.T) {
	n := startNode(t, testConfig(t))
	base := n.URL("")
	tooMany := make([]string, 1001)
	for i := range tooMany {
		tooMany[i] = ids.New()
	}
	many, _ := json.Marshal(map[string][]string{"file_ids": tooMany})
	for _, tc := range []struct {
		name string
		body []byte
		code int
	}{
		{"not JSON", []byte("file_ids=0123"), 400},
		{"empty body", nil, 400},
		{"an array", []byte(`["` + ids.New() + `"]`), 400},
		{"file_ids missing", []byte(`{"ids":["` + ids.New() + `"]}`), 400},
		{"file_ids null", []byte(`{"file_ids":null}`), 400},
		{"file_ids a string", []byte(`{"file_ids":"` + ids.New() + `"}`), 400},
		{"ids not strings", []byte(`{"file_ids":[1,2]}`), 400},
		{"something after the object", []byte(`{"file_ids":[]} {"file_ids":[]}`), 400},
		{"more than 1000 ids", many, 400},
		{"larger than 256 KiB", []byte(`{"file_ids":[],"pad":"` + strings.Repeat("x", 300<<10) + `"}`), 413},
	} {
		code, list, obj := rescanPost(t, base, "", tc.body, nil)
		if code != tc.code || list != nil || str(obj["err"]) == "" || len(obj) != 1 {
			t.Errorf("%s: %d %v %v, want %d with {\"err\"}", tc.name, code, list, obj, tc.code)
		}
	}
	code, list, obj := rescanPost(t, base, "", []byte(`{"file_ids":[]}`), nil)
	if code != 200 || list == nil || len(list) != 0 {
		t.Errorf("an empty list: %d %v %v, want 200 []", code, list, obj)
	}
	if keys, err := n.Bus().Results.ListKeys(context.Background()); err == nil {
		for k := range keys.Keys() {
			t.Errorf("a refused request left result %s", k)
		}
	}
}

// Stored originals are kept retention.originals after their verdict: the
// blobs of large files, deleted by the retention sweep, and the kept bytes
// of small ones, expiring in their bucket. After that a rescan answers
// 404007 although the result itself is still there. With the fs store and
// with the JetStream object store.
func TestRescanAfterOriginalsExpired(t *testing.T) {
	for _, store := range []string{"fs", "jetstream"} {
		t.Run(store, func(t *testing.T) {
			cfg := retentionConfig(t)
			cfg.Blob.Store = store
			cfg.Retention.Results = time.Hour // results outlive the originals
			n := startNode(t, cfg)
			base := n.URL("")
			stored := blobExists(t, n, store)
			kept := func(id string) bool {
				b, err := n.Bus().Original(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				return b != nil
			}
			big := mustUpload(t, base, randomBytes(t, 100<<10), nil)
			small := mustUpload(t, base, []byte("a small file, kept as a copy"), nil)
			for _, id := range []string{big, small} {
				waitResult(t, base, id)
			}
			waitFor(t, "the small file's kept bytes", func() bool { return kept(small) })
			if !stored(big) {
				t.Fatal("the large file's blob is not stored after its verdict")
			}
			if stored(small) {
				t.Error("the small file has a blob: its bytes belong in the originals bucket")
			}
			waitUntil(t, "the large file's blob to be deleted", 60*time.Second, func() bool { return !stored(big) })
			waitUntil(t, "the small file's bytes to expire", 60*time.Second, func() bool { return !kept(small) })
			code, answers, _ := rescanIDs(t, base, "", []string{big, small}, nil)
			if code != 200 || len(answers) != 2 || !reflect.DeepEqual(answers[0], unknownAnswer(big)) ||
				!reflect.DeepEqual(answers[1], unknownAnswer(small)) {
				t.Errorf("rescan of expired originals: %d %v, want 404007 for both", code, answers)
			}
			for _, id := range []string{big, small} {
				if r := waitResult(t, base, id); r["data_id"] != id {
					t.Errorf("the result went with the original: %v", r)
				}
			}
		})
	}
}

// blobExists reports whether the node's blob store holds key.
func blobExists(t *testing.T, n *node.Node, store string) func(string) bool {
	t.Helper()
	cfg := n.Config()
	if store == "fs" {
		return func(key string) bool { return onDisk(t, filepath.Join(cfg.DataDir, "blobs", key[:2], key)) }
	}
	js, err := blob.NewJetStream(context.Background(), n.Bus().JS, blob.JetStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return func(key string) bool {
		obj, err := js.Open(context.Background(), key)
		if err != nil {
			return false
		}
		obj.Close()
		return true
	}
}

// A small file whose kept copy is gone (a failed write, or a nats.sync
// interval's writes lost with the host) or does not match the file is
// never scanned as the file: a rescan answers 404007, as for an expired
// original.
func TestRescanOfLostCopy(t *testing.T) {
	n := startNode(t, testConfig(t))
	base := n.URL("")
	ctx := context.Background()
	data := []byte("a small file whose copy went missing")
	lost, garbled := mustUpload(t, base, data, nil), mustUpload(t, base, append([]byte("another: "), data...), nil)
	for _, id := range []string{lost, garbled} {
		waitResult(t, base, id)
		// Once nothing but the copy holds its bytes (its accepted event
		// compacted, its work item acknowledged).
		waitFor(t, id+" to be out of every stream", func() bool {
			where, err := n.Bus().InFlight(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return where == ""
		})
	}
	if err := n.Bus().Originals.Purge(ctx, lost); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Bus().Originals.Put(ctx, garbled, bytes.Repeat([]byte{0}, len(data)+len("another: "))); err != nil {
		t.Fatal(err)
	}
	code, answers, _ := rescanIDs(t, base, "", []string{lost, garbled}, nil)
	if code != 200 || len(answers) != 2 || !reflect.DeepEqual(answers[0], unknownAnswer(lost)) ||
		!reflect.DeepEqual(answers[1], unknownAnswer(garbled)) {
		t.Errorf("rescans of lost copies: %d %v, want 404007 for both", code, answers)
	}
}

// Rescans are new files for admission: they are refused (503, nothing
// queued) once the queue holds limits.max_queued, counting themselves. A
// backlog of rescans never refuses an upload: uploads are scanned first,
// so only the files ahead of an upload count for it. A file still waiting
// for its first scan can be rescanned too (a small one's bytes are in its
// work item).
func TestRescanAdmission(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxQueued = 4
	n := startWithoutScanner(t, cfg, testLog{t})
	base := n.URL("")
	a, b := mustUpload(t, base, []byte("queued a"), nil), mustUpload(t, base, []byte("queued b"), nil)

	code, answers, errObj := rescanIDs(t, base, "", []string{a, b}, nil)
	if code != 200 || len(answers) != 2 {
		t.Fatalf("rescans within max_queued: %d %v %v", code, answers, errObj)
	}
	rescans := []string{checkQueued(t, answers[0], a, "low"), checkQueued(t, answers[1], b, "low")}

	req, _ := json.Marshal(map[string][]string{"file_ids": {a}})
	resp, err := http.Post(base+"/file/rescan", "application/json", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var busy map[string]any
	if err := json.Unmarshal(raw, &busy); err != nil || resp.StatusCode != 503 {
		t.Fatalf("a rescan past max_queued: %d %s, want 503", resp.StatusCode, raw)
	}
	checkBusy(t, resp.Header, busy)

	// The rescans wait behind uploads: they do not count for one.
	var c string
	waitFor(t, "an upload admitted beside the rescan backlog", func() bool {
		code, out := upload(t, base, []byte("an upload"), nil)
		if code != 200 && code != 503 {
			t.Fatalf("upload: %d %v", code, out)
		}
		c = str(out["data_id"])
		return code == 200
	})

	sig, err := engines.NewSignatures()
	if err != nil {
		t.Fatal(err)
	}
	startScanner(t, n, sig, time.Second)
	for _, id := range append(rescans, a, b, c) {
		waitResult(t, base, id)
	}
	for i, orig := range []string{a, b} {
		if r := waitResult(t, base, rescans[i]); r["file_id"] != orig {
			t.Errorf("rescan %s reports file_id %v, want %s", rescans[i], r["file_id"], orig)
		}
	}
}

// Rescans count against the user's scan limit like new files, one per
// file rescanned (a duplicate id counts once), all or nothing.
func TestRescanScanLimit(t *testing.T) {
	cfg := testConfig(t)
	withAccounts(t, cfg)
	three := 3
	cfg.Auth.Users[0].ScanLimit = &three // alice
	n := startNode(t, cfg)
	base := n.URL("")
	var code int
	var obj map[string]any
	var answers []map[string]any
	for attempt := 0; ; attempt++ {
		if attempt == 3 {
			t.Fatal("the requests keep spanning two minutes")
		}
		minute := time.Now().Unix() / 60
		// Within one minute: an upload (1 of 3), a rescan of it named
		// twice (2), a rescan of it next to an unknown id (3), and one
		// more (4 of 3).
		var failed string
		var out map[string]any
		code, out, _ = call(t, "POST", base+"/file", aliceKey, []byte("file "+strconv.Itoa(attempt)), nil)
		id := str(out["data_id"])
		if code != 200 {
			failed = fmt.Sprintf("upload: %d %v", code, out)
		}
		for _, list := range [][]string{{id, id}, {id, ids.New()}} {
			if failed == "" {
				if code, answers, obj = rescanIDs(t, base, aliceKey, list, nil); code != 200 || len(answers) != 2 {
					failed = fmt.Sprintf("rescan %v: %d %v %v", list, code, answers, obj)
				}
			}
		}
		if failed == "" {
			code, answers, obj = rescanIDs(t, base, aliceKey, []string{id}, nil)
		}
		if time.Now().Unix()/60 != minute {
			continue // the count started again midway
		}
		if failed != "" {
			t.Fatalf("within the limit: %s", failed)
		}
		break
	}
	if code != 403 || obj["err"] != "Scan limit reached" || answers != nil {
		t.Fatalf("a rescan over the limit: %d %v %v, want 403", code, answers, obj)
	}
}

// scanOrder is an engine that records the order files are scanned in.
type scanOrder struct {
	mu    sync.Mutex
	order []string
}

func (e *scanOrder) Info() engines.Info {
	return engines.Info{ID: "order", Name: "Order", Version: "1", DefTime: "2026-01-01T00:00:00.000Z"}
}

func (e *scanOrder) ScanStream(_ context.Context, in *engines.Input, r io.Reader) (engines.Finding, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return engines.Finding{}, err
	}
	e.mu.Lock()
	e.order = append(e.order, in.DataID)
	e.mu.Unlock()
	return engines.Finding{}, nil
}

func (e *scanOrder) scanned() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.order...)
}

// runScanner runs a scanner of workers workers with eng until stop.
func runScanner(t *testing.T, n *node.Node, eng engines.Engine, workers int) (stop func()) {
	t.Helper()
	cfg := n.Config()
	blobs, err := blob.NewFS(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	sc := scanner.New(n.Bus(), blobs, scanner.Options{Workers: workers, Timeout: time.Minute,
		Workflows: workflow.NewSet(cfg.Workflows), Engines: []scanner.NamedEngine{{Name: "signatures", Engine: eng}}}, *n.Log())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sc.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// Priority in the scanners. With 30 rescans queued (low) before them, an
// admin's high-priority rescan and upload and a new upload are scanned
// first, and the rescans all complete. With uploads and rescans both queued, rescans keep
// their share (one file in ten) rather than waiting for every upload.
func TestRescanPriorityOrder(t *testing.T) {
	cfg := testConfig(t)
	withAccounts(t, cfg)
	cfg.Limits.MaxQueueWait = 0 // this test is about the order, not admission
	n := startWithoutScanner(t, cfg, testLog{t})
	base := n.URL("")

	// Files to rescan, scanned once first.
	var files []string
	for i := range 31 {
		files = append(files, mustUploadKeyed(t, base, aliceKey, fmt.Appendf(nil, "file %d", i)))
	}
	sig, err := engines.NewSignatures()
	if err != nil {
		t.Fatal(err)
	}
	stop := runScanner(t, n, sig, 4)
	for _, id := range files {
		waitFinalAs(t, base, aliceKey, id)
	}
	stop()

	// The scanners are stopped: 30 rescans queue up, then an admin's
	// high-priority rescan and an upload.
	class := map[string]string{}
	code, answers, obj := rescanIDs(t, base, aliceKey, files[:30], nil)
	if code != 200 || len(answers) != 30 {
		t.Fatalf("30 rescans: %d %v %v", code, answers, obj)
	}
	for i, a := range answers {
		class[checkQueued(t, a, files[i], "low")] = "low"
	}
	code, out, _ := call(t, "GET", base+"/file/"+files[30]+"/rescan", adminKey, nil, map[string]string{"priority": "high"})
	if code != 200 {
		t.Fatalf("the admin's rescan: %d %v", code, out)
	}
	class[checkQueued(t, out, files[30], "high")] = "high"
	code, out, _ = call(t, "POST", base+"/file", adminKey, []byte("an admin's urgent upload"), map[string]string{"priority": "high"})
	if code != 200 {
		t.Fatalf("the admin's high-priority upload: %d %v", code, out)
	}
	class[str(out["data_id"])] = "high"
	class[mustUploadKeyed(t, base, aliceKey, []byte("a new upload"))] = "normal"
	waitQueued(t, n, 2, 1, 30)

	// One slow worker: the order it scans in is the order it took them.
	eng := &scanOrder{}
	stop = runScanner(t, n, eng, 1)
	for id := range class {
		waitFinalAs(t, base, adminKey, id) // the admin sees everyone's
	}
	stop()
	order := eng.scanned()
	lowBefore := map[string]int{} // by file: rescans scanned before it
	lows := 0
	for _, id := range order {
		switch class[id] {
		case "low":
			lows++
		case "high", "normal":
			lowBefore[id] = lows
		}
	}
	if lows != 30 {
		t.Errorf("%d rescans scanned, want all 30", lows)
	}
	for id, c := range class {
		if c == "low" {
			continue
		}
		// At most the two files the scanner's two fetchers took first.
		if n, ok := lowBefore[id]; !ok || n > 2 {
			t.Errorf("the %s file %s was scanned after %d of the 30 queued rescans, want at most 2 (order %v)", c, id, n, order)
		}
	}

	// Uploads and rescans both waiting: rescans are not starved.
	clear(class)
	code, answers, obj = rescanIDs(t, base, aliceKey, files[:20], nil)
	if code != 200 || len(answers) != 20 {
		t.Fatalf("20 rescans: %d %v %v", code, answers, obj)
	}
	for i, a := range answers {
		class[checkQueued(t, a, files[i], "low")] = "low"
	}
	for i := range 20 {
		class[mustUploadKeyed(t, base, aliceKey, fmt.Appendf(nil, "upload %d", i))] = "normal"
	}
	waitQueued(t, n, 0, 20, 20)
	eng = &scanOrder{}
	runScanner(t, n, eng, 1)
	for id := range class {
		waitFinalAs(t, base, aliceKey, id)
	}
	lows = 0
	for _, id := range eng.scanned()[:20] {
		if class[id] == "low" {
			lows++
		}
	}
	if lows < 1 || lows > 4 {
		t.Errorf("%d rescans among the first 20 files scanned while 20 uploads waited, want 1 to 4 (one in ten)", lows)
	}
}

// waitQueued waits until the scan queue holds these many files of each
// priority: an answer comes once a file is accepted, and it reaches the
// scanners' queue a moment later.
func waitQueued(t *testing.T, n *node.Node, high, normal, low uint64) {
	t.Helper()
	want := map[events.Priority]uint64{events.PriorityHigh: high, events.PriorityNormal: normal, events.PriorityLow: low}
	waitFor(t, fmt.Sprintf("%v files queued", want), func() bool {
		q, err := n.Bus().ScanQueueState(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for p, w := range want {
			if q.Priorities[p].Waiting != w {
				return false
			}
		}
		return true
	})
}

// mustUploadKeyed is mustUpload with an apikey.
func mustUploadKeyed(t testing.TB, base, key string, body []byte) string {
	t.Helper()
	code, out, _ := call(t, "POST", base+"/file", key, body, nil)
	id := str(out["data_id"])
	if code != 200 || id == "" {
		t.Fatalf("upload: %d %v", code, out)
	}
	return id
}
