package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
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

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/scanner/engines"
)

// BenchmarkClusterScanners: how scanning scales with the number of
// scanners, against a three-node cluster (blob store in JetStream, three
// replicas). Each sub-benchmark queues the same work while no scanner runs,
// then starts N scanners of one worker each. Throughput is taken from the
// results themselves, from the first scan's start to the last scan's end, so
// scanner start-up is not counted; the ratio is against one scanner in the
// same run.
//
// The work is CPU-bound: 64 files of random bytes (SCANGATE_BENCH_CLUSTER_SIZE
// each, 1 MiB by default) read whole from the object store and matched
// against 1,000 body signatures (literals and wildcards, as an operator's
// set has) plus file-type detection. Ingest hashed each file while it
// arrived, so the scanner does not hash again.
//
//	go test -run '^$' -bench ClusterScanners -benchtime 1x ./e2e/
//
// Everything here — the three NATS nodes and every role — shares one
// process and the machine's cores, so the ratio flattens at the core count.
func BenchmarkClusterScanners(b *testing.B) {
	size := 1 << 20
	if v := os.Getenv("SCANGATE_BENCH_CLUSTER_SIZE"); v != "" {
		size, _ = strconv.Atoi(v)
	}
	const files = 64
	sigs := signatureFile(b, 1000)
	matcher := matcherBaseline(b, sigs, 64<<20)
	r := newClusterRig(b)
	ingest := r.start("ingest", node.Ingest)
	r.start("assembler", node.Assembler)
	// files/s of one scanner: the mean of its runs so far (-count repeats
	// each sub-benchmark in turn)
	var baseSum float64
	var baseRuns int
	for _, scanners := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("scanners=%d", scanners), func(b *testing.B) {
			for range b.N {
				ids := queueFiles(b, ingest, files, size)
				stop := startScanners(b, r, scanners, sigs)
				first, last := time.Time{}, time.Time{}
				deadline := time.Now().Add(5 * time.Minute)
				for _, id := range ids {
					res := finalResult(b, ingest.URL(""), id, deadline)
					if res == nil {
						b.Fatalf("%s: no final result", id)
					}
					if got := path(res, "scan_results", "scan_all_result_i"); got != float64(0) {
						b.Fatalf("%s: verdict %v", id, got)
					}
					start, err := time.Parse(result.TimeFormat, str(path(res, "scan_results", "start_time")))
					if err != nil {
						b.Fatalf("%s: start_time: %v", id, err)
					}
					end := start.Add(time.Duration(num(path(res, "scan_results", "total_time"))) * time.Millisecond)
					if first.IsZero() || start.Before(first) {
						first = start
					}
					if end.After(last) {
						last = end
					}
				}
				stop()
				secs := last.Sub(first).Seconds()
				rate := float64(files) / secs
				if scanners == 1 {
					baseSum += rate
					baseRuns++
				}
				b.ReportMetric(rate, "files/s")
				b.ReportMetric(float64(files*size)/1e6/secs, "MB/s")
				b.ReportMetric(matcher, "matcher-alone-MB/s")
				if baseRuns > 0 {
					b.ReportMetric(rate/(baseSum/float64(baseRuns)), "x-one-scanner")
				}
			}
		})
	}
}

// queueFiles uploads n distinct random files of size bytes, four at a time,
// and returns their data_ids.
func queueFiles(b *testing.B, ingest *roleNode, n, size int) []string {
	b.Helper()
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				body := randomBytes(b, size)
				a := send(http.MethodPost, ingest.URL("/file"), body, nil)
				if a.err != nil || a.code != 200 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("file %d: %d %v %v", i, a.code, a.body, a.err))
					mu.Unlock()
					continue
				}
				ids[i] = str(a.body["data_id"])
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		b.Fatalf("uploads failed: %v", failures)
	}
	return ids
}

// matcherBaseline is the signature engine alone, on one goroutine, over size
// random bytes in memory: the MB/s a scanner would reach if reading the
// file, detecting its type and recording its result cost nothing.
func matcherBaseline(b *testing.B, sigs string, size int) float64 {
	b.Helper()
	set, _, err := engines.LoadSignatureFiles([]string{sigs})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := engines.NewSignatures(set)
	if err != nil {
		b.Fatal(err)
	}
	data := randomBytes(b, size)
	t0 := time.Now()
	if _, err := eng.ScanStream(context.Background(), &engines.Input{Size: int64(size)}, bytes.NewReader(data)); err != nil {
		b.Fatal(err)
	}
	return float64(size) / 1e6 / time.Since(t0).Seconds()
}

// signatureFile writes n random body signatures in ClamAV .ndb form: most
// literals, some with ?? and * wildcards. Random bytes never match them.
func signatureFile(b testing.TB, n int) string {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	lit := func(k int) string {
		p := make([]byte, k)
		for i := range p {
			p[i] = byte(rng.UintN(256))
		}
		return hex.EncodeToString(p)
	}
	var sb strings.Builder
	for i := range n {
		sig := lit(12 + rng.IntN(13))
		switch i % 5 {
		case 3:
			sig = lit(6) + "??" + lit(8)
		case 4:
			sig = lit(8) + "*" + lit(8)
		}
		fmt.Fprintf(&sb, "Bench.Sig.%d:0:*:%s\n", i, sig)
	}
	name := filepath.Join(b.TempDir(), "bench.ndb")
	if err := os.WriteFile(name, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return name
}

// startScanners starts n scanner nodes of one worker each, at once, and
// returns what stops them.
func startScanners(b *testing.B, r *clusterRig, n int, sigs string) (stop func()) {
	b.Helper()
	nodes := make([]*node.Node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := r.config(b.TempDir())
		cfg.Log.Level = "error"
		cfg.Scanner.Workers = 1 // one file at a time: N scanners are N workers
		cfg.Engines.Signatures.Paths = []string{sigs}
		wg.Go(func() {
			nodes[i], errs[i] = node.Start(context.Background(), cfg, []node.Role{node.Scanner}, "bench", nodeLog{b, fmt.Sprintf("scanner-%d", i)})
		})
	}
	wg.Wait()
	stop = func() {
		for _, n := range nodes {
			if n != nil {
				_ = n.Close()
			}
		}
	}
	for _, err := range errs {
		if err != nil {
			stop()
			b.Fatalf("start scanner: %v", err)
		}
	}
	return stop
}
