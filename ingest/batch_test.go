package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/batch"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

// A batch of thousands of files pages like a small one: its joins and
// summaries are that many small entries, read with one listing each, and
// a page is cut from them in join order.
func TestBatchOfThousandsOfFiles(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	ctx := context.Background()
	var opened struct {
		BatchID string `json:"batch_id"`
	}
	if code := doJSON(t, "POST", ts.url("/file/batch"), &opened); code != 200 {
		t.Fatalf("POST /file/batch: %d", code)
	}
	bid := opened.BatchID
	const files, infected = 5000, 1234
	order := make([]string, files)
	summaries := map[string]string{}
	for i := range order {
		order[i] = ids.New()
		m := batch.Member{DataID: order[i], DisplayName: fmt.Sprintf("f%d", i), ScanAllResultA: "No Threat Detected",
			ProgressPercentage: 100, Result: result.Allowed, StartTime: result.FormatTime(time.Now()), ScannedWith: 1}
		if i == infected {
			m.ScanAllResultI, m.ScanAllResultA, m.Result, m.BlockedReason = result.Infected, "Infected", result.Blocked, "Infected"
		}
		b, _ := json.Marshal(m)
		summaries[events.BatchMemberKey(bid, order[i])] = string(b)
	}
	// Joins one by one, in order (their order is the batch's); summaries
	// all at once, in any order, as the recorder writes them.
	for _, id := range order {
		j, _ := json.Marshal(batch.Join{DataID: id, JoinedAt: time.Now()})
		if _, err := ts.b.Batches.Put(ctx, events.BatchMemberKey(bid, id), j); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.b.PutAll(ctx, events.BucketBatchFiles, summaries); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	var st batchStatus
	if code := doJSON(t, "GET", ts.url("/file/batch/"+bid+"?first=4950&size=100"), &st); code != 200 {
		t.Fatalf("GET: %d", code)
	}
	took := time.Since(start)
	t.Logf("a page of a %d-file batch: %v", files, took)
	if st.BatchFiles.BatchCount != files || len(st.BatchFiles.FilesInBatch) != 50 || st.BatchFiles.FirstIndex != 4950 {
		t.Fatalf("batch_files: count %d, %d on the page from %d", st.BatchFiles.BatchCount, len(st.BatchFiles.FilesInBatch), st.BatchFiles.FirstIndex)
	}
	for i, f := range st.BatchFiles.FilesInBatch {
		if f.DataID != order[4950+i] {
			t.Fatalf("file %d of the page is %s, want %s (join order)", i, f.DataID, order[4950+i])
		}
	}
	if st.ScanResults.ScanAllResultI != result.Infected || st.ProcessInfo.Result != result.Blocked {
		t.Errorf("verdict %d %s, want the one infected file's", st.ScanResults.ScanAllResultI, st.ProcessInfo.Result)
	}
	var past batchStatus
	if code := doJSON(t, "GET", ts.url("/file/batch/"+bid+"?first=9223372036854775807&size=2000"), &past); code != 200 ||
		len(past.BatchFiles.FilesInBatch) != 0 || past.BatchFiles.BatchCount != files {
		t.Errorf("a page far past the end: %d, %d files of %d", code, len(past.BatchFiles.FilesInBatch), past.BatchFiles.BatchCount)
	}
	// No value grew with the batch.
	for _, kv := range []jetstream.KeyValue{ts.b.Batches, ts.b.BatchFiles} {
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
		if per := info.State.Bytes / max(info.State.Msgs, 1); per > 1024 {
			t.Errorf("bucket %s: %d bytes an entry", st.Bucket(), per)
		}
	}
}

func doJSON(t *testing.T, method, url string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}
