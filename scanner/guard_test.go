package scanner

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bodgit/sevenzip"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/internal/bustest"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/workflow"
	"github.com/scangate/scangate/scanner/archive"
	"github.com/scangate/scangate/scanner/archive/archivetest"
	"github.com/scangate/scangate/scanner/cdr"
)

// testScanner is a scanner running against an embedded JetStream server,
// with its log kept for inspection.
type testScanner struct {
	t     *testing.T
	b     *bus.Bus
	blobs blob.Store
	wf    config.Workflow
	log   *logBuffer
}

// logBuffer collects log lines; the scanner writes them from its workers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the decoded log lines with the given message.
func (l *logBuffer) lines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// testBus is an embedded JetStream server with scangate's topology, and an
// fs blob store, for the test's lifetime.
func testBus(t *testing.T) (*bus.Bus, *blob.FS) {
	t.Helper()
	b := bustest.Open(t, bus.Options{MaxQueued: 100})
	blobs, err := blob.NewFS(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return b, blobs
}

// startScanner runs a scanner with one worker and the default workflow
// changed by edit.
func startScanner(t *testing.T, budget int64, edit func(*config.Workflow)) *testScanner {
	t.Helper()
	b, blobs := testBus(t)
	ts := &testScanner{t: t, b: b, blobs: blobs, wf: config.Default().Workflows[0], log: &logBuffer{}}
	if edit != nil {
		edit(&ts.wf)
	}
	s := New(b, blobs, Options{Workers: 1, Timeout: time.Minute, MemoryBudget: budget,
		Workflows: workflow.NewSet([]config.Workflow{ts.wf})}, zerolog.New(ts.log))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return ts
}

// scan submits a file and returns the verdict the scanner publishes (its
// final result event; the recorder that would store it is not needed).
func (ts *testScanner) scan(name string, data []byte) *result.Record {
	ts.t.Helper()
	ctx := context.Background()
	id := ids.New()
	if err := ts.blobs.WriteAt(ctx, id, 0, bytes.NewReader(data), int64(len(data))); err != nil {
		ts.t.Fatal(err)
	}
	done, err := ts.b.NC.SubscribeSync(events.ResultSubject(events.Partition(id, ts.b.Opts.Partitions), id))
	if err != nil {
		ts.t.Fatal(err)
	}
	defer done.Unsubscribe()
	fc := &events.FileComplete{DataID: id, Size: int64(len(data)), Priority: events.PriorityNormal,
		Meta: events.FileMeta{DisplayName: name, Workflow: ts.wf.Name}, UploadedAt: time.Now()}
	if err := ts.b.PublishFileComplete(ctx, fc); err != nil {
		ts.t.Fatal(err)
	}
	for {
		m, err := done.NextMsg(time.Minute)
		if err != nil {
			ts.t.Fatalf("no verdict for %s: %v", name, err)
		}
		var ev result.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			ts.t.Fatal(err)
		}
		if ev.Kind == result.EventFinal {
			return ev.Record
		}
	}
}

// extractionErrors returns what GET /file/{id}/extraction-errors shows.
func (ts *testScanner) extractionErrors(id string) []result.ExtractionError {
	ts.t.Helper()
	e, err := ts.b.Results.Get(context.Background(), result.ErrorsKey(id))
	if err != nil {
		ts.t.Fatalf("extraction errors of %s: %v", id, err)
	}
	var errs result.ExtractionErrors
	if err := json.Unmarshal(e.Value(), &errs); err != nil {
		ts.t.Fatal(err)
	}
	return errs.Errors
}

func verdict(rec *result.Record) int { return rec.Result.ScanResults.ScanAllResultI }

// A 7z whose header declares a 3 GiB LZMA2 dictionary ends with 13
// Exceeded Archive Size and an extraction error that says why, and the
// scan stays within its memory budget instead of allocating gigabytes.
func TestArchiveOverMemoryBudget(t *testing.T) {
	const budget = 64 << 20
	ts := startScanner(t, budget, nil)
	bomb := archivetest.SevenZip("bomb.bin", archivetest.LZMA2, []byte{archivetest.LZMA2Dict3GiB}, 3<<30, []byte{0}, false)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rec := ts.scan("bomb.7z", bomb)
	runtime.ReadMemStats(&after)

	if verdict(rec) != result.ExceededSize || rec.Result.ProcessInfo.Result != result.Blocked {
		t.Errorf("verdict %d %q, result %q; want 13 Exceeded Archive Size, Blocked",
			verdict(rec), rec.Result.ScanResults.ScanAllResultA, rec.Result.ProcessInfo.Result)
	}
	errs := ts.extractionErrors(rec.Result.DataID)
	if len(errs) != 1 || errs[0].Entry != "bomb.bin" || !strings.Contains(errs[0].Error, "memory") {
		t.Errorf("extraction errors %+v, want one for bomb.bin about memory", errs)
	}
	t.Logf("the scan allocated %.1f MiB (budget %d MiB)", float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), budget>>20)
	if d := after.TotalAlloc - before.TotalAlloc; d > 2*budget {
		t.Errorf("the scan allocated %d MiB, budget %d MiB", d>>20, budget>>20)
	}
}

// Sanitizing an image whose pixels would not fit the memory budget is
// refused like any image that cannot be sanitized.
func TestSanitizeOverMemoryBudget(t *testing.T) {
	ts := startScanner(t, 32<<20, func(wf *config.Workflow) {
		wf.Sanitize.Enabled, wf.Sanitize.BlockUnsanitized = true, true
	})
	ihdr := binary.BigEndian.AppendUint32(nil, 5000)
	ihdr = binary.BigEndian.AppendUint32(ihdr, 5000)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA: 100 MB decoded
	png := []byte("\x89PNG\r\n\x1a\n")
	for _, c := range []struct {
		typ  string
		data []byte
	}{{"IHDR", ihdr}, {"IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01}}, {"IEND", nil}} {
		chunk := append(binary.BigEndian.AppendUint32(nil, uint32(len(c.data))), c.typ...)
		chunk = append(chunk, c.data...)
		png = binary.BigEndian.AppendUint32(append(png, chunk...), crc32.ChecksumIEEE(chunk[4:]))
	}

	rec := ts.scan("huge.png", png)
	if pp := rec.Result.ProcessInfo.PostProcessing; pp.ActionsFailed != "Sanitization" || verdict(rec) != result.BlockedByCDR {
		t.Errorf("verdict %d, post_processing %+v; want 30 and a failed sanitization", verdict(rec), pp)
	}
	var logged bool
	for _, l := range ts.log.lines("sanitization failed") {
		e, _ := l["error"].(string)
		logged = logged || strings.Contains(e, "memory budget")
	}
	if !logged {
		t.Error("no log line says the memory budget stopped the sanitization")
	}
}

// panicked checks that the scanner logged a recovered panic for dataID,
// with the stack of the code that panicked.
func (ts *testScanner) panicked(dataID, inStack string) {
	ts.t.Helper()
	for _, l := range ts.log.lines("recovered from a panic") {
		if stack, _ := l["stack"].(string); l["data_id"] == dataID && l["level"] == "error" && strings.Contains(stack, inStack) {
			return
		}
	}
	ts.t.Errorf("no error logged for %s with %s in its stack; log:\n%s", dataID, inStack, ts.log)
}

// An archive whose extraction panics ends with Failed and an extraction
// error; the scanner logs the panic and goes on scanning.
func TestArchivePanicIsFailed(t *testing.T) {
	ts := startScanner(t, 0, nil)
	walkArchive = func(context.Context, archive.Kind, io.ReaderAt, int64, archive.Options, func(archive.Entry, io.Reader) error) (archive.Result, error) {
		panic("walker bug")
	}
	t.Cleanup(func() { walkArchive = archive.Walk })
	z := archivetest.SevenZip("a.txt", []byte{0}, nil, 5, []byte("hello"), false) // stored

	rec := ts.scan("a.7z", z)
	if verdict(rec) != result.Failed {
		t.Errorf("verdict %d %q, want 3 Failed", verdict(rec), rec.Result.ScanResults.ScanAllResultA)
	}
	if errs := ts.extractionErrors(rec.Result.DataID); len(errs) != 1 || !strings.Contains(errs[0].Error, "walker bug") {
		t.Errorf("extraction errors %+v", errs)
	}
	ts.panicked(rec.Result.DataID, "TestArchivePanicIsFailed")

	walkArchive = archive.Walk
	if rec := ts.scan("a.7z", z); verdict(rec) != result.NoThreat || rec.Result.ExtractedFiles.FilesExtractedCount != 1 {
		t.Errorf("next scan: verdict %d, extracted %+v", verdict(rec), rec.Result.ExtractedFiles)
	}
}

// A decoder that panics inside the archive package (which recovers it)
// also makes the archive Failed, with the panic and its stack logged.
func TestArchiveDecoderPanicIsFailed(t *testing.T) {
	ts := startScanner(t, 0, nil)
	method := []byte{0x7f, 0x7f, 0x7f} // no real 7z method
	sevenzip.RegisterDecompressor(method, func([]byte, uint64, []io.ReadCloser) (io.ReadCloser, error) {
		panic("decoder bug")
	})
	rec := ts.scan("a.7z", archivetest.SevenZip("a.txt", method, nil, 5, []byte("hello"), false))
	if verdict(rec) != result.Failed {
		t.Errorf("verdict %d %q, want 3 Failed", verdict(rec), rec.Result.ScanResults.ScanAllResultA)
	}
	if errs := ts.extractionErrors(rec.Result.DataID); len(errs) == 0 || !strings.Contains(errs[0].Error, "decoder bug") {
		t.Errorf("extraction errors %+v", errs)
	}
	ts.panicked(rec.Result.DataID, "TestArchiveDecoderPanicIsFailed")
}

type panickingSanitizer struct{}

func (panickingSanitizer) Sanitize(context.Context, io.ReaderAt, int64, io.Writer) (cdr.Result, error) {
	panic("sanitizer bug")
}

// A sanitizer that panics leaves the file Failed and not sanitized; the
// scanner logs the panic and goes on scanning.
func TestSanitizerPanicIsFailed(t *testing.T) {
	ts := startScanner(t, 0, func(wf *config.Workflow) { wf.Sanitize.Enabled = true })
	sanitizerFor = func(string) (cdr.Sanitizer, bool) { return panickingSanitizer{}, true }
	t.Cleanup(func() { sanitizerFor = cdr.For })

	rec := ts.scan("a.txt", []byte("hello"))
	if pp := rec.Result.ProcessInfo.PostProcessing; verdict(rec) != result.Failed || pp.ActionsFailed != "Sanitization" {
		t.Errorf("verdict %d, post_processing %+v; want 3 Failed and a failed sanitization", verdict(rec), pp)
	}
	ts.panicked(rec.Result.DataID, "panickingSanitizer")

	sanitizerFor = cdr.For
	if rec := ts.scan("b.txt", []byte("hello")); verdict(rec) != result.NoThreat {
		t.Errorf("next scan: verdict %d", verdict(rec))
	}
}
