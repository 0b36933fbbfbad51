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
	"encoding/binary"
	"encoding/json"
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
	"syscall"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/hashing"
)

// BenchmarkSmallFiles: 4 KiB files from 32 concurrent clients, each
// posting its files back to back; the figure is files per second from the
// first upload to the last verdict, so it counts scanning, not only
// accepting. Run with JetStream fsyncing every write (the default) and, as
// the baseline that shows what that durability costs, fsyncing every 2m.
func BenchmarkSmallFiles(b *testing.B) {
	for _, syncPolicy := range []string{"always", "2m"} {
		b.Run("sync="+syncPolicy, func(b *testing.B) {
			n := smallFilesNode(b, syncPolicy)
			for range b.N {
				r := smallFiles(b, n.URL(""), 32, 100)
				b.ReportMetric(r.endToEnd, "files/s")
				b.ReportMetric(r.accepted, "accepted/s")
				b.ReportMetric(float64(r.refused), "503s")
			}
		})
	}
}

// smallFilesNode starts the in-process node BenchmarkSmallFiles measures,
// JetStream fsyncing as syncPolicy says.
func smallFilesNode(b *testing.B, syncPolicy string) *node.Node {
	cfg := testConfig(b)
	cfg.Log.Level = "error"
	cfg.NATS.Sync = syncPolicy
	if v := os.Getenv("SCANGATE_BENCH_WORKERS"); v != "" {
		cfg.Scanner.Workers, _ = strconv.Atoi(v)
	}
	if os.Getenv("SCANGATE_BENCH_NOADMIT") != "" {
		cfg.Limits.MaxQueueWait = 0
	}
	return startNode(b, cfg)
}

type smallFilesRate struct {
	endToEnd, accepted float64
	refused            int64 // 503s, each followed by the wait its Retry-After asked for
}

// smallFiles posts clients×perClient distinct 4 KiB files, clients at a
// time, then waits for every verdict.
func smallFiles(b *testing.B, base string, clients, perClient int) smallFilesRate {
	return smallFilesT(b, base, clients, perClient)
}

func smallFilesT(b testing.TB, base string, clients, perClient int) smallFilesRate {
	body := randomBytes(b, 4096)
	start := time.Now()
	ids := make([][]string, clients)
	var refused atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				body := bytes.Clone(body)
				copy(body, fmt.Sprintf("%04d-%06d-%d", c, i, start.UnixNano())) // distinct files
				ids[c] = append(ids[c], uploadRetrying(b, base, body, &refused))
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
	return smallFilesRate{endToEnd: files / time.Since(start).Seconds(), accepted: files / accepted.Seconds(), refused: refused.Load()}
}

// uploadRetrying posts body until it is accepted, waiting as long as each
// 503's Retry-After asks, as a well-behaved client does.
func uploadRetrying(b testing.TB, base string, body []byte, refused *atomic.Int64) string {
	for {
		req, _ := http.NewRequest(http.MethodPost, base+"/file", bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			refused.Add(1)
			secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			time.Sleep(time.Duration(max(secs, 1)) * time.Second) // the client's backoff, as Retry-After asks
			continue
		}
		var out struct {
			DataID string `json:"data_id"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil || out.DataID == "" {
			b.Fatalf("upload: %d %s", resp.StatusCode, raw)
		}
		return out.DataID
	}
}

// BenchmarkLargeFile streams one large file (1 GiB by default) into a
// `scangate serve` child process and reports upload MB/s, the time from the
// last byte to the verdict, and the server's peak RSS — beside the time to
// sha256 the same bytes, to compute the four digests of them, and to write them to the same disk with fsync,
// through the blob store (upload/disk) and with plain writes
// (upload/disk-naive).
func BenchmarkLargeFile(b *testing.B) {
	size := int64(1 << 30)
	if v := os.Getenv("SCANGATE_BENCH_SIZE"); v != "" {
		size, _ = strconv.ParseInt(v, 10, 64)
	}
	dir := b.TempDir()
	for range b.N {
		r := largeFile(b, dir, size)
		mb := float64(size) / 1e6
		b.ReportMetric(mb/r.uploadSecs, "upload-MB/s")
		b.ReportMetric(mb/r.diskSecs, "disk-write-MB/s")
		b.ReportMetric(mb/r.shaSecs, "sha256-MB/s")
		b.ReportMetric(mb/r.hash4Secs, "4-digests-MB/s")
		b.ReportMetric(r.diskSecs/r.uploadSecs, "upload/disk")
		b.ReportMetric(mb/r.naiveSecs, "disk-naive-MB/s")
		b.ReportMetric(r.naiveSecs/r.uploadSecs, "upload/disk-naive")
		b.ReportMetric(float64(r.verdict.Milliseconds()), "lastbyte-to-verdict-ms")
		b.ReportMetric(float64(r.peakRSS)/1024, "peak-RSS-MiB")
		b.ReportMetric(float64(r.idleRSS)/1024, "idle-RSS-MiB")
		// Cores busy during the upload: with two cores, server+client near
		// 2 means the upload is bound by CPU, not by the disk.
		b.ReportMetric(r.serverCPU.Seconds()/r.uploadSecs, "server-cores")
		b.ReportMetric(r.clientCPU.Seconds()/r.uploadSecs, "client-cores")
	}
}

// largeFileResult is one BenchmarkLargeFile run: the upload and its
// same-run baselines, in seconds for the whole size.
type largeFileResult struct {
	uploadSecs, diskSecs, naiveSecs, shaSecs, hash4Secs float64
	verdict                                             time.Duration // last byte to verdict
	peakRSS, idleRSS                                    int64         // KiB
	serverCPU, clientCPU                                time.Duration // during the upload
}

// largeFile measures the baselines on size pattern bytes in dir, then
// POSTs the same bytes to a `scangate serve` child process.
func largeFile(b *testing.B, dir string, size int64) largeFileResult {
	// Baselines first, on the same bytes and the same disk.
	t0 := time.Now()
	h := sha256.New()
	io.Copy(h, newPatternReader(size))
	shaSecs := time.Since(t0).Seconds()

	// The four digests every upload needs, as the server computes them:
	// on few cores this, not the disk, can bound the upload.
	t0 = time.Now()
	m := hashing.New()
	io.CopyBuffer(m, newPatternReader(size), make([]byte, 256<<10))
	m.Sums()
	m.Close()
	hash4Secs := time.Since(t0).Seconds()

	diskSecs := diskBaseline(b, dir, size)
	naiveSecs := naiveDiskBaseline(dir, size)

	p := startServeProcess(b, filepath.Join(dir, "data"))
	var peak atomic.Int64
	stopSampling := sampleRSS(p.cmd.Process.Pid, &peak)
	baseRSS := rssKiB(p.cmd.Process.Pid, "VmRSS")

	req, _ := http.NewRequest(http.MethodPost, p.addr+"/file", newPatternReader(size))
	req.ContentLength = size
	serverCPU0, clientCPU0 := procCPU(p.cmd.Process.Pid), selfCPU()
	t0 = time.Now()
	code, out := do(b, req)
	lastByte := time.Now()
	serverCPU, clientCPU := procCPU(p.cmd.Process.Pid)-serverCPU0, selfCPU()-clientCPU0
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
	return largeFileResult{uploadSecs: uploadSecs, diskSecs: diskSecs, naiveSecs: naiveSecs, shaSecs: shaSecs, hash4Secs: hash4Secs,
		verdict: verdict, peakRSS: peak.Load(), idleRSS: baseRSS, serverCPU: serverCPU, clientCPU: clientCPU}
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
		addToBytes(b[n:n+c], shift)
		n += c
		p.off += int64(c)
		p.remaining -= int64(c)
	}
	return n, nil
}

// addToBytes adds k (mod 256) to every byte of b, eight at a time: the
// generator must cost the client far less than the server's work it
// measures, on a machine with two cores a byte loop took most of one.
func addToBytes(b []byte, k byte) {
	if k == 0 {
		return
	}
	const lo7 = 0x7f7f7f7f7f7f7f7f
	add := uint64(k) * 0x0101010101010101
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		// Add the low seven bits of each byte without carrying into its
		// neighbour, then fix each top bit with a carry-less xor.
		sum := (x & lo7) + (add & lo7)
		binary.LittleEndian.PutUint64(b[i:], sum^((x^add)&^lo7))
	}
	for ; i < len(b); i++ {
		b[i] += k
	}
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
			time.Sleep(20 * time.Millisecond) // sampling pace of a benchmark figure
		}
	})
	return func() { cancel(); wg.Wait() }
}

// procCPU is the user+system CPU time pid has used, from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// the 14th and 15th fields, in clock ticks (100 per second on Linux).
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// selfCPU is the user+system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

// diskBaseline writes size pattern bytes to dir through the blob store's
// own write path (write-behind, then fsync), exactly as an upload lands
// them but with no network and no hashing, and returns the seconds it took.
func diskBaseline(b testing.TB, dir string, size int64) float64 {
	store, err := blob.NewFS(filepath.Join(dir, "baseline"))
	if err != nil {
		b.Fatal(err)
	}
	key := strings.Repeat("b", 32)
	t0 := time.Now()
	if err := store.WriteAt(context.Background(), key, 0, newPatternReader(size), size); err != nil {
		b.Fatal(err)
	}
	secs := time.Since(t0).Seconds()
	_ = store.Delete(context.Background(), key)
	return secs
}

// naiveDiskBaseline writes the same bytes with plain writes and one fsync
// at the end: what the disk gives a writer that does not start writeback
// early.
func naiveDiskBaseline(dir string, size int64) float64 {
	t0 := time.Now()
	f, _ := os.Create(filepath.Join(dir, "naive-baseline"))
	io.CopyBuffer(f, newPatternReader(size), make([]byte, 256<<10))
	f.Sync()
	f.Close()
	secs := time.Since(t0).Seconds()
	os.Remove(filepath.Join(dir, "naive-baseline"))
	return secs
}
