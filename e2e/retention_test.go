package e2e

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/config"
)

// retentionConfig is testConfig with retentions of seconds. Validation
// holds them to what keeps work under way safe, so uploads, scans and
// webhook retries are cut short to match.
func retentionConfig(t *testing.T) *config.Config {
	cfg := testConfig(t)
	cfg.Workflows[0].Multipart.TTL = 3 * time.Second
	cfg.Workflows[0].Sanitize.Enabled = true
	cfg.Scanner.Timeout = 5 * time.Second
	cfg.Webhooks.MaxAttempts, cfg.Webhooks.Timeout = 1, time.Second
	// Long enough for the test to see each thing before it goes.
	cfg.Retention = config.RetentionConfig{
		Results:   5 * time.Second, // > the session's 3s, >= one 1s webhook attempt
		Webhooks:  9 * time.Second,
		Originals: 9 * time.Second, // > 3s of upload + 5s of scan
		Sanitized: 4 * time.Second,
	}
	return cfg
}

// bucketEmpty reports whether a bucket holds no entry, whatever its keys.
func bucketEmpty(t *testing.T, kv jetstream.KeyValue) bool {
	t.Helper()
	st, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Values() == 0
}

func onDisk(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func notFound(t *testing.T, url, key string) bool {
	t.Helper()
	var r map[string]any
	getJSON(t, url, &r)
	return len(r) == 1 && r[key] == "Not Found"
}

// Everything a scanned file left behind goes once past its retention: its
// result and its archive members' results, its hash entries, its webhook
// delivery state, its upload session, its stored bytes and its sanitized
// output. Files larger than events.InlineMax, so that they have blobs.
func TestRetentionDeletesWhatIsDone(t *testing.T) {
	for _, store := range []string{"fs", "jetstream"} {
		t.Run(store, func(t *testing.T) { testRetentionDeletesWhatIsDone(t, store) })
	}
}

func testRetentionDeletesWhatIsDone(t *testing.T, store string) {
	var delivered atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { delivered.Add(1) }))
	t.Cleanup(hook.Close)
	cfg := retentionConfig(t)
	cfg.Blob.Store = store
	n := startNode(t, cfg)
	base := n.URL("")
	// stored: the fs store's file on disk, or the object store's blob.
	stored := func(key string) bool { return onDisk(t, filepath.Join(cfg.DataDir, "blobs", key[:2], key)) }
	if store == "jetstream" {
		js, err := blob.NewJetStream(context.Background(), n.Bus().JS, blob.JetStreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stored = func(key string) bool {
			obj, err := js.Open(context.Background(), key)
			if errors.Is(err, blob.ErrNotFound) {
				return false
			}
			if errors.Is(err, blob.ErrIncomplete) {
				return true // a sweep is deleting it, part by part: still there
			}
			if err != nil {
				t.Fatal(err)
			}
			obj.Close()
			return true
		}
	}

	// A whole-file upload: a zip, so that it is sanitized and has members.
	archive := zipOf(t, map[string][]byte{"data.bin": randomBytes(t, 100<<10), "page.html": []byte(activeHTML)}, "data.bin", "page.html")
	zipID := mustUpload(t, base, archive, map[string]string{"filename": "bundle.zip", "callbackurl": hook.URL})
	r := finalResult(t, base, zipID, time.Now().Add(30*time.Second))
	if r == nil {
		t.Fatal("no verdict for the zip within 30s")
	}
	if pp := str(path(r, "process_info", "post_processing", "actions_ran")); !strings.HasPrefix(pp, "Sanitized") {
		t.Fatalf("the zip was not sanitized: %v", pp)
	}
	var members []string
	files, _ := path(r, "extracted_files", "files_in_archive").([]any)
	for _, f := range files {
		members = append(members, str(path(f, "data_id")))
	}
	if len(members) == 0 {
		t.Fatalf("the zip's result lists no members: %v", r["extracted_files"])
	}
	for _, k := range []string{zipID, zipID + ".sanitized"} {
		if !stored(k) {
			t.Fatalf("blob %s not stored after its verdict", k)
		}
	}
	if code, _, _ := converted(t, base, zipID, nil); code != 200 {
		t.Fatalf("GET /file/converted right after the verdict: %d", code)
	}
	waitFor(t, "the webhook delivery", func() bool { return delivered.Load() > 0 && !bucketEmpty(t, n.Bus().Webhooks) })

	// A multipart upload, in two parts.
	multi := randomBytes(t, 96<<10)
	multiID := openMultipart(t, base, int64(len(multi)), nil)
	for _, off := range []int{0, 48 << 10} {
		if code, out := sendPart(t, base, multiID, int64(off), multi[off:off+48<<10], int64(len(multi))); code != 200 {
			t.Fatalf("part at %d: %d %v", off, code, out)
		}
	}
	if finalResult(t, base, multiID, time.Now().Add(30*time.Second)) == nil {
		t.Fatal("no verdict for the multipart upload within 30s")
	}
	if !stored(multiID) {
		t.Fatalf("blob %s not stored after its verdict", multiID)
	}

	// Each check is polled until it holds or the deadline passes: the
	// server expires KV entries on its own timer and blobs go with the
	// next sweep (about a quarter of the shortest retention).
	sha := digestsOf(archive).sha256
	checks := []struct {
		what string
		done func() bool
	}{
		{"GET /file/{id} of the zip", func() bool { return notFound(t, n.URL("/file/"+zipID), zipID) }},
		{"GET /file/{id} of the multipart upload", func() bool { return notFound(t, n.URL("/file/"+multiID), multiID) }},
		{"GET /hash/{sha256}", func() bool { return notFound(t, n.URL("/hash/"+sha), sha) }},
		{"the archive members' results", func() bool {
			for _, m := range members {
				if !notFound(t, n.URL("/file/"+m), m) {
					return false
				}
			}
			return true
		}},
		{"the results bucket", func() bool { return bucketEmpty(t, n.Bus().Results) }},
		{"the hash index", func() bool { return bucketEmpty(t, n.Bus().Hashes) }},
		{"the upload sessions", func() bool { return bucketEmpty(t, n.Bus().Sessions) }},
		{"the webhook delivery states", func() bool { return bucketEmpty(t, n.Bus().Webhooks) }},
		{"GET /file/converted", func() bool { code, _, _ := converted(t, base, zipID, nil); return code == 404 }},
		{"the zip's sanitized blob", func() bool { return !stored(zipID + ".sanitized") }},
		{"the zip's blob", func() bool { return !stored(zipID) }},
		{"the multipart upload's blob", func() bool { return !stored(multiID) }},
	}
	for _, c := range checks {
		waitUntil(t, c.what+" to be gone", 60*time.Second, c.done)
	}
}

// A node started on a store kept with a longer retention applies the new
// one at start, without `scangate migrate`: entries already stored expire
// by it.
func TestRetentionChangeAppliesAtStart(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	id := mustUpload(t, n.URL(""), randomBytes(t, 1000), nil)
	waitResult(t, n.URL(""), id)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	short := retentionConfig(t)
	short.DataDir = cfg.DataDir
	n = startNode(t, short)
	waitUntil(t, "a result stored under the old retention to expire by the new one", 60*time.Second,
		func() bool { return notFound(t, n.URL("/file/"+id), id) })
}
