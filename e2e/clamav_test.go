package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/clamdtest"
	"github.com/scangate/scangate/internal/node"
)

// ClamAV end to end: a real clamd, configured like an operator would, its
// verdicts in scan_details beside the built-in engines, its version and
// definitions date in /stat/engines.
func TestClamAVEndToEnd(t *testing.T) {
	d := clamdtest.Start(t)
	cfg := testConfig(t)
	cfg.Engines.ClamAV.Address = d.TCPAddr()
	n := startNode(t, cfg)

	r := waitResult(t, n.URL(""), mustUpload(t, n.URL(""), eicar(), nil))
	if got := str(path(r, "scan_results", "scan_details", "ClamAV", "threat_found")); !strings.HasPrefix(got, "Eicar-Test-Signature") {
		t.Errorf("ClamAV on EICAR: %v", path(r, "scan_results", "scan_details"))
	}
	if path(r, "scan_results", "total_detected_avs") != float64(2) || path(r, "scan_results", "total_avs") != float64(2) {
		t.Errorf("two engines should detect EICAR: %v", r["scan_results"])
	}
	// Something only ClamAV knows.
	marked := append(randomBytes(t, 1000), clamdtest.Marker()...)
	r = waitResult(t, n.URL(""), mustUpload(t, n.URL(""), marked, nil))
	if path(r, "scan_results", "scan_all_result_i") != float64(1) ||
		path(r, "scan_results", "scan_details", "Signatures", "scan_result_i") != float64(0) ||
		path(r, "scan_results", "scan_details", "ClamAV", "scan_result_i") != float64(1) {
		t.Errorf("marker: %v", r["scan_results"])
	}
	// Over clamd's StreamMaxLength: a clear Failed from ClamAV.
	r = waitResult(t, n.URL(""), mustUpload(t, n.URL(""), randomBytes(t, clamdtest.StreamMaxLength+500_000), nil))
	if path(r, "scan_results", "scan_details", "ClamAV", "scan_result_i") != float64(3) ||
		!strings.Contains(str(path(r, "scan_results", "scan_details", "ClamAV", "threat_found")), "StreamMaxLength") {
		t.Errorf("over the stream limit: %v", path(r, "scan_results", "scan_details", "ClamAV"))
	}
	var engines []map[string]any
	waitFor(t, "ClamAV in /stat/engines", func() bool {
		getJSON(t, n.URL("/stat/engines"), &engines)
		for _, e := range engines {
			if e["eng_id"] == "clamav" {
				return e["eng_ver"] != "" && strings.HasPrefix(str(e["def_time"]), "2026-11-20")
			}
		}
		return false
	})
	for _, e := range engines {
		checkEngine(t, e)
	}
	// A workflow can leave ClamAV out.
	cfg2 := testConfig(t)
	cfg2.Engines.ClamAV.Address = d.TCPAddr()
	cfg2.Workflows[0].Engines = []string{"signatures"}
	n2 := startNode(t, cfg2)
	r = waitResult(t, n2.URL(""), mustUpload(t, n2.URL(""), marked, nil))
	if path(r, "scan_results", "scan_details", "ClamAV") != nil || path(r, "scan_results", "scan_all_result_i") != float64(0) {
		t.Errorf("workflow without clamav: %v", r["scan_results"])
	}
}

// A clamd that does not answer stops start-up with the reason.
func TestClamAVUnreachableStopsStartup(t *testing.T) {
	cfg := testConfig(t)
	cfg.Engines.ClamAV.Address = "tcp://127.0.0.1:1"
	cfg.Engines.ClamAV.Timeout = 2 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(t.Context(), cfg, node.All, "test", testLog{t})
	if err == nil {
		n.Close()
		t.Fatal("started without its clamd")
	}
	if !strings.Contains(err.Error(), "clamav") {
		t.Errorf("error does not name the engine: %v", err)
	}
}

// BenchmarkClamAV4KiB: 4 KiB files end to end through scangate (signatures,
// hashlist and ClamAV) against clamd's raw INSTREAM rate on the same files
// with the same concurrency, same run:
//
//	go test -run '^$' -bench 'ClamAV4KiB' -benchtime 1x .
func BenchmarkClamAV4KiB(b *testing.B) {
	run := clamAV4KiB(b, clamdtest.Start(b))
	for range b.N {
		r := run()
		b.ReportMetric(r.raw, "clamd-raw-files/s")
		b.ReportMetric(r.e2e, "scangate-files/s")
		b.ReportMetric(r.e2e/r.raw, "scangate/clamd")
	}
}

// clamAVRate is one BenchmarkClamAV4KiB run, in files per second.
type clamAVRate struct{ raw, e2e float64 }

// clamAV4KiB starts a node with ClamAV (d) in its workflow and returns
// the measurement: 32 clients send the same 960 4 KiB files to clamd's raw
// INSTREAM, then through scangate (32 scanner workers) to their verdicts.
func clamAV4KiB(b *testing.B, d *clamdtest.Clamd) func() clamAVRate {
	const clients, perClient = 32, 30
	cfg := testConfig(b)
	cfg.Log.Level = "error"
	cfg.Engines.ClamAV.Address = d.TCPAddr()
	// The same concurrency as the raw run: clamd sees up to 32 scans at
	// once either way (ClamAV scans are I/O for scangate, not CPU).
	cfg.Scanner.Workers = clients
	list := filepath.Join(b.TempDir(), "hashes.txt")
	os.WriteFile(list, []byte(strings.Repeat("0", 64)+" Never.Matches\n"), 0o600)
	cfg.Engines.HashList.Path = list
	n := startNode(b, cfg)
	files := make([][]byte, clients*perClient)
	for i := range files {
		files[i] = bytes.Clone(randomBytes(b, 4096))
	}
	run := func(fn func(body []byte)) float64 {
		var next atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for range clients {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if int(i) >= len(files) {
						return
					}
					fn(files[i])
				}
			})
		}
		wg.Wait()
		return float64(len(files)) / time.Since(t0).Seconds()
	}
	addr := strings.TrimPrefix(d.TCPAddr(), "tcp://")
	return func() clamAVRate {
		raw := run(func(body []byte) {
			if reply, err := clamdtest.RawInstream(addr, body); err != nil || !strings.HasSuffix(reply, "OK") {
				b.Errorf("raw INSTREAM: %q %v", reply, err)
			}
		})
		// Through scangate: every client posts its files back to back,
		// then every verdict is awaited; the rate runs from the first
		// upload to the last verdict (as BenchmarkSmallFiles).
		t0 := time.Now()
		var mu sync.Mutex
		var ids []string
		var refused atomic.Int64
		run(func(body []byte) {
			id := uploadRetrying(b, n.URL(""), body, &refused)
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		})
		for _, id := range ids {
			r := waitResult(b, n.URL(""), id)
			if path(r, "scan_results", "scan_details", "ClamAV", "scan_result_i") != float64(0) {
				b.Errorf("result: %v", fmt.Sprint(r["scan_results"]))
			}
		}
		e2e := float64(len(ids)) / time.Since(t0).Seconds()
		return clamAVRate{raw: raw, e2e: e2e}
	}
}
