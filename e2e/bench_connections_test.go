package e2e

// BenchmarkConnections1000: memory under many slow clients at once. 1,000
// clients open their connections together to a `scangate serve` child
// process, each trickling a POST /file body over a few seconds: most a
// 60 KiB small file (held in memory while committed, within the inline
// budget), one in 50 a 4 MiB file (streamed to disk). It reports the
// server's peak RSS from the first connection to the last verdict beside
// its idle RSS, measured in the same run:
//
//	go test -run '^$' -bench Connections1000 -benchtime 1x ./e2e/
//
// SCANGATE_BENCH_CONNS (default 1000) changes the number of clients.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkConnections1000(b *testing.B) {
	clients := int(envInt("SCANGATE_BENCH_CONNS", 1000))
	for range b.N {
		r := connections(b, b.TempDir(), clients)
		b.ReportMetric(float64(r.peakRSS)/1024, "peak-RSS-MiB")
		b.ReportMetric(float64(r.idleRSS)/1024, "idle-RSS-MiB")
		b.ReportMetric(float64(r.peakUploadRSS)/1024, "peak-RSS-uploading-MiB")
		b.ReportMetric(float64(r.peakRSS)/float64(r.idleRSS), "peak/idle")
		b.ReportMetric(float64(r.peakOpen), "peak-open-requests")
		b.ReportMetric(float64(r.accepted), "accepted")
		b.ReportMetric(float64(r.refused), "503s")
		b.ReportMetric(r.secs, "upload-s")
		b.Logf("%d clients: %d requests in flight at once; accepted %d, 503 %d, other %d, in %.1f s; RSS idle %d MiB, peak %d MiB while uploading, %d MiB to the last verdict",
			clients, r.peakOpen, r.accepted, r.refused, r.other, r.secs, r.idleRSS/1024, r.peakUploadRSS/1024, r.peakRSS/1024)
	}
}

// connectionsResult is one BenchmarkConnections1000 run.
type connectionsResult struct {
	clients                  int
	accepted, refused, other int64
	peakOpen                 int64   // requests in flight at once, each on its own connection
	secs                     float64 // first connection to last answer
	peakRSS, idleRSS         int64   // KiB, to the last verdict
	peakUploadRSS            int64   // KiB, to the last upload's answer
}

const (
	connSmall, connLarge = 60 << 10, 4 << 20 // body sizes
	connLargeEvery       = 50                // one client in this many sends connLarge
	connPieces           = 12                // each body is sent in this many pieces…
	connPieceEvery       = 350 * time.Millisecond
)

// connections runs clients slow uploads at once against a `scangate
// serve` child process with its data in dir, and waits for every verdict.
func connections(b *testing.B, dir string, clients int) connectionsResult {
	// limits.memory as README recommends it for this many connections;
	// SCANGATE_BENCH_MEMORY=0 measures without one.
	mem := os.Getenv("SCANGATE_BENCH_MEMORY")
	if mem == "" {
		mem = "200MiB"
	}
	p := startServeProcess(b, filepath.Join(dir, "data"), "SCANGATE_LIMITS_MEMORY="+mem)
	waitFor(b, "the server ready before the idle sample", func() bool {
		resp, err := http.Get(p.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	res := connectionsResult{clients: clients, idleRSS: rssKiB(p.cmd.Process.Pid, "VmRSS")}
	var peak atomic.Int64
	stopSampling := sampleRSS(p.cmd.Process.Pid, &peak)
	defer stopSampling()

	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 0}}
	defer hc.CloseIdleConnections()
	small, large := randomBytes(b, connSmall), randomBytes(b, connLarge)
	var accepted, refused, other, open atomic.Int64
	var peakOpen atomic.Int64
	ids := make([]string, clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			body := small
			if c%connLargeEvery == connLargeEvery-1 {
				body = large
			}
			body = bytes.Clone(body)
			copy(body, fmt.Sprintf("client %05d %d", c, time.Now().UnixNano())) // distinct files
			req, _ := http.NewRequest(http.MethodPost, p.addr+"/file", &trickleReader{r: bytes.NewReader(body), piece: (len(body) + connPieces - 1) / connPieces})
			req.ContentLength = int64(len(body))
			<-start
			n := open.Add(1)
			for m := peakOpen.Load(); n > m && !peakOpen.CompareAndSwap(m, n); m = peakOpen.Load() {
			}
			resp, err := hc.Do(req)
			open.Add(-1)
			if err != nil {
				other.Add(1)
				return
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var out struct {
				DataID string `json:"data_id"`
			}
			switch {
			case resp.StatusCode == http.StatusOK && json.Unmarshal(raw, &out) == nil && out.DataID != "":
				accepted.Add(1)
				ids[c] = out.DataID
			case resp.StatusCode == http.StatusServiceUnavailable:
				refused.Add(1)
			default:
				other.Add(1)
			}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	res.secs = time.Since(t0).Seconds()
	res.peakUploadRSS = peak.Load()
	for _, id := range ids {
		if id != "" {
			waitResult(b, p.addr, id)
		}
	}
	stopSampling()
	p.kill()
	res.accepted, res.refused, res.other = accepted.Load(), refused.Load(), other.Load()
	res.peakOpen, res.peakRSS = peakOpen.Load(), peak.Load()
	if res.accepted == 0 {
		b.Fatalf("no upload accepted: %d refused, %d other", res.refused, res.other)
	}
	return res
}

// trickleReader sends r in pieces of piece bytes, connPieceEvery apart:
// a slow client.
type trickleReader struct {
	r       *bytes.Reader
	piece   int
	left    int // of the current piece
	started bool
}

func (t *trickleReader) Read(p []byte) (int, error) {
	if t.r.Len() == 0 {
		return 0, io.EOF
	}
	if t.left == 0 {
		if t.started {
			time.Sleep(connPieceEvery) // the trickle being measured, not a wait for state
		}
		t.started, t.left = true, t.piece
	}
	n, err := t.r.Read(p[:min(len(p), t.left)])
	t.left -= n
	return n, err
}
