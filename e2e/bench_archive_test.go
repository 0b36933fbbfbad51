package e2e

import (
	"archive/zip"
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkArchive10k: a zip of 10,000 small files, from upload to the
// full result (every child scanned and recorded), and the server's peak RSS:
//
//	go test -run '^$' -bench 'Archive10k' -benchtime 1x .
func BenchmarkArchive10k(b *testing.B) {
	const files = 10_000
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for i := range files {
		f, _ := w.Create(fmt.Sprintf("dir%02d/file%05d.txt", i%100, i))
		fmt.Fprintf(f, "file %d of the benchmark archive\n", i)
	}
	w.Close()
	for range b.N {
		p := startServeProcess(b, filepath.Join(b.TempDir(), "data"), "SCANGATE_SCANNER_TIMEOUT=30m")
		var peak atomic.Int64
		stop := sampleRSS(p.cmd.Process.Pid, &peak)
		req, _ := http.NewRequest(http.MethodPost, p.addr+"/file", bytes.NewReader(buf.Bytes()))
		t0 := time.Now()
		code, out := do(b, req)
		if code != 200 {
			b.Fatalf("upload: %d %v", code, out)
		}
		r := waitResult(b, p.addr, str(out["data_id"]))
		secs := time.Since(t0).Seconds()
		stop()
		p.kill()
		if got := path(r, "extracted_files", "files_extracted_count"); got != float64(files) {
			b.Fatalf("files_extracted_count %v", got)
		}
		b.ReportMetric(secs, "s-to-result")
		b.ReportMetric(files/secs, "children/s")
		b.ReportMetric(float64(peak.Load())/1024, "peak-RSS-MiB")
	}
}
