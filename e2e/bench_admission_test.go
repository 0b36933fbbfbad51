package e2e

// BenchmarkSustainedLoad: many clients post 4 KiB files back to back for a
// fixed period, honouring Retry-After on a 503 as real clients do. It
// reports how many files were accepted and how many the scanners finished
// during that period, and how long the queue took to drain after it:
//
//	go test -run '^$' -bench SustainedLoad -benchtime 1x ./e2e/
//
// SCANGATE_BENCH_CLIENTS (default 200) and SCANGATE_BENCH_SECONDS (default
// 20) change the load. The sub-benchmark "admission=depth-only" is the
// previous behaviour (a fixed max_queued of 100000, no max_queue_wait), for
// comparison on the same host.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/bus"
)

func BenchmarkSustainedLoad(b *testing.B) {
	clients := int(envInt("SCANGATE_BENCH_CLIENTS", 200))
	period := time.Duration(envInt("SCANGATE_BENCH_SECONDS", 20)) * time.Second
	for _, mode := range []string{"drain-rate", "depth-only"} {
		b.Run("admission="+mode, func(b *testing.B) {
			n := sustainedLoadNode(b, mode)
			for range b.N {
				r := sustainedLoad(b, n.URL(""), n.Bus(), clients, period)
				secs := period.Seconds()
				b.ReportMetric(float64(r.accepted)/secs, "accepted/s")
				b.ReportMetric(float64(r.refused)/secs, "refused/s")
				b.ReportMetric(float64(r.completed)/secs, "completed/s")
				ratio := 0.0
				if r.accepted > 0 {
					ratio = float64(r.completed) / float64(r.accepted)
				}
				b.ReportMetric(ratio, "completed/accepted")
				b.ReportMetric(r.drain.Seconds(), "drain-s")
				b.ReportMetric(float64(r.maxDepth), "max-queued")
				b.ReportMetric(r.maxAge.Seconds(), "max-oldest-wait-s")
				b.Logf("%s: %d clients, %v: accepted %d, refused %d (Retry-After %v), other %d; completed during the load %d (%.2f of accepted); "+
					"queue drained %v after; deepest queue %d, oldest wait %v",
					mode, clients, period, r.accepted, r.refused, r.retryAfters, r.other, r.completed, ratio, r.drain.Round(time.Millisecond), r.maxDepth, r.maxAge.Round(time.Millisecond))
			}
		})
	}
}

// sustainedLoadNode starts the in-process node BenchmarkSustainedLoad
// measures: admission by drain rate (the default), or "depth-only".
func sustainedLoadNode(b *testing.B, mode string) *node.Node {
	cfg := testConfig(b)
	cfg.Log.Level = "error"
	if mode == "depth-only" {
		cfg.Limits.MaxQueued = 100000
		cfg.Limits.MaxQueueWait = 0
	}
	return startNode(b, cfg)
}

type loadResult struct {
	accepted, refused, other int64
	retryAfters              map[string]int
	completed                uint64 // files the scanners finished during the load
	drain                    time.Duration
	maxDepth                 uint64
	maxAge                   time.Duration
}

// sustainedLoad runs clients posting distinct 4 KiB files for period.
// Completions are read from the scanners' consumer (files acked off the
// work queue) at the start and the end of the period.
func sustainedLoad(b *testing.B, base string, bs *bus.Bus, clients int, period time.Duration) loadResult {
	ctx := context.Background()
	queue := func() bus.ScanQueue {
		q, err := bs.ScanQueueState(ctx)
		if err != nil {
			b.Fatalf("scan queue: %v", err)
		}
		return q
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer hc.CloseIdleConnections()
	template := randomBytes(b, 4096)

	var (
		res     loadResult
		mu      sync.Mutex
		samples sync.WaitGroup
	)
	res.retryAfters = map[string]int{}
	first := queue()
	start := time.Now()
	end := start.Add(period)

	// The queue's depth and oldest wait, sampled while the load runs.
	stopSampling := make(chan struct{})
	samples.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			q := queue()
			mu.Lock()
			res.maxDepth = max(res.maxDepth, q.Depth())
			if !q.OldestWaiting.IsZero() {
				res.maxAge = max(res.maxAge, q.At.Sub(q.OldestWaiting))
			}
			mu.Unlock()
		}
	})

	var accepted, refused, other atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; time.Now().Before(end); i++ {
				body := bytes.Clone(template)
				copy(body, fmt.Sprintf("%05d-%07d-%d", c, i, start.UnixNano())) // distinct files
				resp, err := hc.Post(base+"/file", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					other.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					accepted.Add(1)
				case http.StatusServiceUnavailable:
					refused.Add(1)
					ra := resp.Header.Get("Retry-After")
					mu.Lock()
					res.retryAfters[ra]++
					mu.Unlock()
					secs, _ := strconv.Atoi(ra)
					// A real client comes back when asked; this one stops
					// at the end of the period.
					time.Sleep(min(time.Duration(max(secs, 1))*time.Second, time.Until(end)))
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	loadEnd := time.Now()
	last := queue()
	close(stopSampling)
	samples.Wait()

	res.accepted, res.refused, res.other = accepted.Load(), refused.Load(), other.Load()
	res.completed = last.Finished - first.Finished

	// Every accepted file reaches the queue (the recorder queues it
	// shortly after the 200) and leaves it scanned.
	deadline := time.Now().Add(30 * time.Minute)
	for {
		q := queue()
		if q.Depth() == 0 && q.Finished-first.Finished >= uint64(res.accepted) {
			res.drain = time.Since(loadEnd)
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("queue not drained 30 min after the load: %+v, %d finished of %d accepted", q, q.Finished-first.Finished, res.accepted)
		}
		time.Sleep(100 * time.Millisecond) // sampling pace of a benchmark figure, no assertion depends on it
	}
	return res
}
