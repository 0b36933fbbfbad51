package e2e

// End-to-end benchmarks. Each prints its figures beside a baseline measured
// in the same run on the same machine, so the ratios mean something on any
// host:
//
//	go test -run '^$' -bench . -benchtime 1x .
//
// BenchmarkLargeFile's size can be changed with SCANGATE_BENCH_SIZE (bytes).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSmallFiles: 4 KiB files from 32 concurrent clients, each
// posting its files back to back; the figure is files per second from the
// first upload to the last verdict, so it counts scanning, not only
// accepting. Run with JetStream fsyncing every write (the default) and, as
// the baseline that shows what that durability costs, fsyncing every 2m.
func BenchmarkSmallFiles(b *testing.B) {
	for _, syncPolicy := range []string{"always", "2m"} {
		b.Run("sync="+syncPolicy, func(b *testing.B) {
			cfg := testConfig(b)
			cfg.Log.Level = "error"
			cfg.NATS.Sync = syncPolicy
			n := startNode(b, cfg)
			for range b.N {
				r := smallFiles(b, n.URL(""), 32, 100)
				b.ReportMetric(r.endToEnd, "files/s")
				b.ReportMetric(r.accepted, "accepted/s")
			}
		})
	}
}

type smallFilesRate struct{ endToEnd, accepted float64 }

// smallFiles posts clients×perClient distinct 4 KiB files, clients at a
// time, then waits for every verdict.
func smallFiles(b *testing.B, base string, clients, perClient int) smallFilesRate {
	body := randomBytes(b, 4096)
	start := time.Now()
	ids := make([][]string, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				body := bytes.Clone(body)
				copy(body, fmt.Sprintf("%04d-%06d-%d", c, i, start.UnixNano())) // distinct files
				ids[c] = append(ids[c], mustUpload(b, base, body, nil))
			}
		})
	}
	wg.Wait()
	accepted := time.Since(start)
	for _, list := range ids {
		for _, id := range list {
			waitResult(b, base, id)
		}
	}
	files := float64(clients * perClient)
	return smallFilesRate{endToEnd: files / time.Since(start).Seconds(), accepted: files / accepted.Seconds()}
}

// BenchmarkLargeFile streams one large file (1 GiB by default) into a
// `scangate serve` child process and reports upload MB/s, the time from the
// last byte to the verdict, and the server's peak RSS — beside the time to
// sha256 the same bytes and to write them to the same disk with fsync.
func BenchmarkLargeFile(b *testing.B) {
	size := int64(1 << 30)
	if v := os.Getenv("SCANGATE_BENCH_SIZE"); v != "" {
		size, _ = strconv.ParseInt(v, 10, 64)
	}
	dir := b.TempDir()
	for range b.N {
		// Baselines first, on the same bytes and the same disk.
		t0 := time.Now()
		h := sha256.New()
		io.Copy(h, newPatternReader(size))
		shaSecs := time.Since(t0).Seconds()

		diskSecs := diskBaseline(dir, size)

		p := startServeProcess(b, filepath.Join(dir, "data"))
		var peak atomic.Int64
		stopSampling := sampleRSS(p.cmd.Process.Pid, &peak)
		baseRSS := rssKiB(p.cmd.Process.Pid, "VmRSS")

		req, _ := http.NewRequest(http.MethodPost, p.addr+"/file", newPatternReader(size))
		req.ContentLength = size
		t0 = time.Now()
		code, out := do(b, req)
		lastByte := time.Now()
		uploadSecs := lastByte.Sub(t0).Seconds()
		if code != 200 {
			b.Fatalf("upload: %d %v", code, out)
		}
		r := waitResult(b, p.addr, str(out["data_id"]))
		verdict := time.Since(lastByte)
		stopSampling()
		p.kill()
		if path(r, "file_info", "sha256") != fmt.Sprintf("%x", h.Sum(nil)) {
			b.Fatalf("sha256 mismatch: %v", path(r, "file_info", "sha256"))
		}

		mb := float64(size) / 1e6
		b.ReportMetric(mb/uploadSecs, "upload-MB/s")
		b.ReportMetric(mb/diskSecs, "disk-write-MB/s")
		b.ReportMetric(mb/shaSecs, "sha256-MB/s")
		b.ReportMetric(diskSecs/uploadSecs, "upload/disk")
		b.ReportMetric(float64(verdict.Milliseconds()), "lastbyte-to-verdict-ms")
		b.ReportMetric(float64(peak.Load())/1024, "peak-RSS-MiB")
		b.ReportMetric(float64(baseRSS)/1024, "idle-RSS-MiB")
	}
}

// patternReader yields size pseudo-random bytes without holding them:
// a 1 MiB random block, each repetition shifted so no two MiB are equal.
type patternReader struct {
	block     []byte
	remaining int64
	off       int64
}

func newPatternReader(size int64) *patternReader {
	block := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range block {
		block[i] = byte(rng.Uint32())
	}
	return &patternReader{block: block, remaining: size}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.remaining <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(b) && p.remaining > 0 {
		pos := p.off % int64(len(p.block))
		shift := byte(p.off / int64(len(p.block)))
		c := copy(b[n:], p.block[pos:])
		c = int(min(int64(c), p.remaining))
		for i := n; i < n+c; i++ {
			b[i] += shift
		}
		n += c
		p.off += int64(c)
		p.remaining -= int64(c)
	}
	return n, nil
}

// sampleRSS records the peak resident set of pid until stopped.
func sampleRSS(pid int, peak *atomic.Int64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if v := rssKiB(pid, "VmRSS"); v > peak.Load() {
				peak.Store(v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return func() { cancel(); wg.Wait() }
}

// rssKiB reads a Vm* field (KiB) from /proc/<pid>/status.
func rssKiB(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// diskBaseline writes size pattern bytes to a file in dir with fsync, as an
// upload would land them, and returns the seconds it took.
func diskBaseline(dir string, size int64) float64 {
	t0 := time.Now()
	f, _ := os.Create(filepath.Join(dir, "baseline"))
	io.CopyBuffer(f, newPatternReader(size), make([]byte, 256<<10))
	f.Sync()
	f.Close()
	secs := time.Since(t0).Seconds()
	os.Remove(filepath.Join(dir, "baseline"))
	return secs
}
