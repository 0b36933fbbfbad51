package e2e

// Multipart benchmarks, each beside a baseline from the same run:
//
//	go test -run '^$' -bench 'Multipart' -benchtime 1x .
//
// SCANGATE_BENCH_SIZE (bytes) and SCANGATE_BENCH_SESSIONS scale them.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func envInt(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkMultipartLarge uploads 1 GiB as 64 MiB parts, 8 in parallel,
// into a `scangate serve` child process: upload MB/s as a ratio to writing
// the same bytes to the same disk with fsync, the time from the last
// part's 200 to the verdict, and peak RSS.
func BenchmarkMultipartLarge(b *testing.B) {
	size := envInt("SCANGATE_BENCH_SIZE", 1<<30)
	dir := b.TempDir()
	for range b.N {
		r := multipartLarge(b, dir, size)
		mb := float64(size) / 1e6
		b.ReportMetric(mb/r.uploadSecs, "upload-MB/s")
		b.ReportMetric(mb/r.diskSecs, "disk-fsync-MB/s")
		b.ReportMetric(r.diskSecs/r.uploadSecs, "upload/disk")
		b.ReportMetric(float64(r.verdict.Milliseconds()), "lastpart-to-verdict-ms")
		b.ReportMetric(float64(r.peakRSS)/1024, "peak-RSS-MiB")
	}
}

// multipartResult is one BenchmarkMultipartLarge run.
type multipartResult struct {
	uploadSecs, diskSecs float64       // all parts; the fsynced disk write of the same bytes
	verdict              time.Duration // last part's 200 to verdict
	peakRSS, idleRSS     int64         // KiB; idle is before the first part
}

// multipartLarge writes size pattern bytes to dir's disk as the baseline,
// then sends the same bytes as 64 MiB parts, 8 in parallel, to a
// `scangate serve` child process.
func multipartLarge(b *testing.B, dir string, size int64) multipartResult {
	const partSize, parallel = 64 << 20, 8
	diskSecs := diskBaseline(b, dir, size)

	p := startServeProcess(b, filepath.Join(dir, "data"))
	var peak atomic.Int64
	stopSampling := sampleRSS(p.cmd.Process.Pid, &peak)
	idleRSS := rssKiB(p.cmd.Process.Pid, "VmRSS")
	id := openMultipart(b, p.addr, size, nil)

	parts := make(chan int64)
	var wg sync.WaitGroup
	t0 := time.Now()
	for range parallel {
		wg.Go(func() {
			for off := range parts {
				n := min(partSize, size-off)
				body := io.NewSectionReader(patternReaderAt{size}, off, n)
				req, _ := http.NewRequest(http.MethodPost, p.addr+"/file/multipart/"+id, body)
				req.ContentLength = n
				req.Header.Set("Content-Type", "application/octet-stream")
				req.Header.Set("content-range", fmt.Sprintf("%d-%d/%d", off, n, size))
				if code, out := do(b, req); code != 200 {
					b.Errorf("part %d: %d %v", off, code, out)
				}
			}
		})
	}
	for off := int64(0); off < size; off += partSize {
		parts <- off
	}
	close(parts)
	wg.Wait()
	lastPart := time.Now()
	uploadSecs := lastPart.Sub(t0).Seconds()
	r := waitResult(b, p.addr, id)
	verdict := time.Since(lastPart)
	stopSampling()
	p.kill()
	if path(r, "file_info", "file_size") != float64(size) || path(r, "process_info", "result") != "Allowed" {
		b.Fatalf("result: %v %v", r["file_info"], r["process_info"])
	}
	return multipartResult{uploadSecs: uploadSecs, diskSecs: diskSecs, verdict: verdict, peakRSS: peak.Load(), idleRSS: idleRSS}
}

// patternReaderAt serves newPatternReader's bytes at any offset, so parallel
// parts send exactly the bytes of one sequential stream.
type patternReaderAt struct{ size int64 }

var patternBlock = newPatternReader(0).block

func (p patternReaderAt) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(b) && off < p.size {
		pos := off % int64(len(patternBlock))
		shift := byte(off / int64(len(patternBlock)))
		c := copy(b[n:], patternBlock[pos:])
		c = int(min(int64(c), p.size-off))
		addToBytes(b[n:n+c], shift)
		n += c
		off += int64(c)
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// BenchmarkMultipartManySessions opens 10,000 sessions with one part each
// and reports, per block of 1,000, the median part latency and the
// server's RSS: both must stay flat as sessions accumulate.
func BenchmarkMultipartManySessions(b *testing.B) {
	sessions := int(envInt("SCANGATE_BENCH_SESSIONS", 10_000))
	const block, clients = 1000, 16
	for range b.N {
		p := startServeProcess(b, filepath.Join(b.TempDir(), "data"))
		body := randomBytes(b, 4096)
		var firstMed, lastMed time.Duration
		var firstRSS, lastRSS int64
		for start := 0; start < sessions; start += block {
			lat := make([]time.Duration, min(block, sessions-start))
			var next atomic.Int64
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for {
						i := int(next.Add(1) - 1)
						if i >= len(lat) {
							return
						}
						id := openMultipart(b, p.addr, 1<<20, nil)
						t0 := time.Now()
						if code, out := sendPart(b, p.addr, id, 0, body, 1<<20); code != 200 {
							b.Errorf("part: %d %v", code, out)
						}
						lat[i] = time.Since(t0)
					}
				})
			}
			wg.Wait()
			slices.Sort(lat)
			med := lat[len(lat)/2]
			rss := rssKiB(p.cmd.Process.Pid, "VmRSS")
			if start == 0 {
				firstMed, firstRSS = med, rss
			}
			lastMed, lastRSS = med, rss
			b.Logf("sessions %5d: part p50 %v p99 %v, RSS %d MiB", start+len(lat), med, lat[len(lat)*99/100], rss/1024)
		}
		p.kill()
		b.ReportMetric(float64(firstMed.Microseconds())/1000, "first-1k-p50-ms")
		b.ReportMetric(float64(lastMed.Microseconds())/1000, "last-1k-p50-ms")
		b.ReportMetric(float64(lastMed)/float64(firstMed), "latency-last/first")
		b.ReportMetric(float64(firstRSS)/1024, "RSS-after-1k-MiB")
		b.ReportMetric(float64(lastRSS)/1024, "RSS-at-end-MiB")
	}
}
