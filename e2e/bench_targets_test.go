package e2e

// BenchmarkTargets runs every throughput scenario once and prints one
// markdown table of the targets: what was measured, the baseline measured
// in the same run on the same machine, their ratio, the goal and whether
// it is met. It is `task bench`:
//
//	go test -run '^$' -bench Targets -benchtime 1x -timeout 60m ./e2e/
//
// SCANGATE_BENCH_SIZE (bytes, default 1 GiB) sizes the large-file and
// multipart rows; SCANGATE_BENCH_SECONDS (default 60: several times
// limits.max_queue_wait, the backlog admission allows, which a short window
// counts as lag) and SCANGATE_BENCH_CLIENTS (default 200) the sustained load;
// SCANGATE_BENCH_CONNS (default 1000) the connections row. A row whose
// prerequisite is missing (clamd) says why it was skipped.

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/clamdtest"
)

// connectionsRSSBoundMiB is the bound on the server's RSS under
// SCANGATE_BENCH_CONNS slow uploads that README states.
const connectionsRSSBoundMiB = 256

type targetRow struct {
	target, measured, baseline, ratio, goal, met string
}

func BenchmarkTargets(b *testing.B) {
	size := envInt("SCANGATE_BENCH_SIZE", 1<<30)
	period := time.Duration(envInt("SCANGATE_BENCH_SECONDS", 60)) * time.Second
	loadClients := int(envInt("SCANGATE_BENCH_CLIENTS", 200))
	conns := int(envInt("SCANGATE_BENCH_CONNS", 1000))
	began := time.Now()

	starve := &targetRow{target: fmt.Sprintf("Scanning never starves: scans completed / uploads accepted, %d clients posting 4 KiB files for %v", loadClients, period),
		goal: "≥ 0.8"}
	small := &targetRow{target: "4 KiB files upload → verdict, 32 clients, built-in engines, `sync: always`",
		goal: "≥ 2,000 files/s"}
	clam := &targetRow{target: "4 KiB files upload → verdict, 32 clients, ClamAV in the workflow",
		goal: "≥ 0.8×"}
	large := &targetRow{target: fmt.Sprintf("`POST /file` of %s", sizeText(size)),
		goal: "≥ 0.9×"}
	verdict := &targetRow{target: fmt.Sprintf("Last multipart part → verdict, %s in 8 parallel parts of 64 MiB", sizeText(size)),
		goal: "< 1 s"}
	partsRSS := &targetRow{target: "Peak RSS of `serve` while 8 × 64 MiB parts stream",
		goal: "< 100 MiB"}
	connRSS := &targetRow{target: fmt.Sprintf("Peak RSS of `serve` with `limits.memory: 200MiB`, %d connections trickling uploads (60 KiB; 1 in %d 4 MiB) to the last verdict", conns, connLargeEvery),
		goal: fmt.Sprintf("< %d MiB", connectionsRSSBoundMiB)}
	rows := []*targetRow{starve, small, clam, large, verdict, partsRSS, connRSS}

	// scenario runs fn as a sub-benchmark, so each scenario's nodes,
	// processes and files are gone before the next starts. Rows it did
	// not fill say why.
	scenario := func(name string, fill []*targetRow, fn func(b *testing.B, skipped *string)) {
		var sub *testing.B
		var why string
		b.Run(name, func(b *testing.B) { sub = b; fn(b, &why) })
		note := ""
		switch {
		case sub == nil:
			note = "not run"
		case sub.Skipped():
			note = "skipped: " + why
		case sub.Failed():
			note = "failed: see the log above"
		}
		if note == "" {
			return
		}
		for _, r := range fill {
			if r.met == "" {
				r.measured, r.baseline, r.ratio, r.met = note, "–", "–", "–"
			}
		}
	}

	scenario("sustained-load", []*targetRow{starve}, func(b *testing.B, _ *string) {
		n := sustainedLoadNode(b, "drain-rate")
		r := sustainedLoad(b, n.URL(""), n.Bus(), loadClients, period)
		secs := period.Seconds()
		ratio := 0.0
		if r.accepted > 0 {
			ratio = float64(r.completed) / float64(r.accepted)
		}
		starve.measured = fmt.Sprintf("%.0f scans completed/s", float64(r.completed)/secs)
		starve.baseline = fmt.Sprintf("%.0f uploads accepted/s (%d refused with Retry-After; queue drained %.1f s after)",
			float64(r.accepted)/secs, r.refused, r.drain.Seconds())
		starve.ratio = fmt.Sprintf("%.2f", ratio)
		starve.met = yes(ratio >= 0.8)
	})

	scenario("small-files", []*targetRow{small}, func(b *testing.B, _ *string) {
		var rates [2]smallFilesRate
		for i, policy := range []string{"always", "2m"} {
			b.Run("sync="+policy, func(b *testing.B) {
				n := smallFilesNode(b, policy)
				rates[i] = smallFiles(b, n.URL(""), 32, 100)
			})
		}
		if b.Failed() {
			return
		}
		always, relaxed := rates[0], rates[1]
		small.measured = fmt.Sprintf("%.0f files/s", always.endToEnd)
		small.baseline = fmt.Sprintf("%.0f files/s with `sync: 2m` (the cost of fsync)", relaxed.endToEnd)
		small.ratio = fmt.Sprintf("%.2f×", always.endToEnd/relaxed.endToEnd)
		small.met = yes(always.endToEnd >= 2000)
	})

	scenario("clamav", []*targetRow{clam}, func(b *testing.B, why *string) {
		d := clamdtest.Start(skipNote{b, why})
		r := clamAV4KiB(b, d)()
		clam.measured = fmt.Sprintf("%.0f files/s", r.e2e)
		clam.baseline = fmt.Sprintf("%.0f files/s raw clamd INSTREAM, same files, 32 clients", r.raw)
		clam.ratio = fmt.Sprintf("%.2f×", r.e2e/r.raw)
		clam.met = yes(r.e2e/r.raw >= 0.8)
	})

	var hash4Secs float64 // of size bytes: what the multipart verdict waits for
	scenario("large-file", []*targetRow{large}, func(b *testing.B, _ *string) {
		r := largeFile(b, b.TempDir(), size)
		mb := float64(size) / 1e6
		hash4Secs = r.hash4Secs
		large.measured = fmt.Sprintf("%.0f MB/s", mb/r.uploadSecs)
		large.baseline = fmt.Sprintf("%.0f MB/s fsynced disk write of the same bytes (four digests alone: %.0f MB/s; server %.1f + client %.1f cores busy)",
			mb/r.diskSecs, mb/r.hash4Secs, r.serverCPU.Seconds()/r.uploadSecs, r.clientCPU.Seconds()/r.uploadSecs)
		large.ratio = fmt.Sprintf("%.2f×", r.diskSecs/r.uploadSecs)
		large.met = yes(r.diskSecs/r.uploadSecs >= 0.9)
	})

	scenario("multipart", []*targetRow{verdict, partsRSS}, func(b *testing.B, _ *string) {
		r := multipartLarge(b, b.TempDir(), size)
		verdict.measured = fmt.Sprintf("%.2f s", r.verdict.Seconds())
		if hash4Secs > 0 {
			verdict.baseline = fmt.Sprintf("%.2f s to compute the four digests of %s", hash4Secs, sizeText(size))
			verdict.ratio = fmt.Sprintf("%.2f×", r.verdict.Seconds()/hash4Secs)
		} else {
			verdict.baseline, verdict.ratio = "– (the large-file row did not run)", "–"
		}
		verdict.met = yes(r.verdict < time.Second)
		partsRSS.measured = fmt.Sprintf("%.0f MiB", float64(r.peakRSS)/1024)
		partsRSS.baseline = fmt.Sprintf("%.0f MiB idle (upload %.0f MB/s, %.2f× the fsynced disk write)",
			float64(r.idleRSS)/1024, float64(size)/1e6/r.uploadSecs, r.diskSecs/r.uploadSecs)
		partsRSS.ratio = fmt.Sprintf("%.2f×", float64(r.peakRSS)/float64(r.idleRSS))
		partsRSS.met = yes(r.peakRSS < 100<<10)
	})

	scenario("connections", []*targetRow{connRSS}, func(b *testing.B, _ *string) {
		r := connections(b, b.TempDir(), conns)
		connRSS.measured = fmt.Sprintf("%.0f MiB (%.0f MiB until the last upload was answered)",
			float64(r.peakRSS)/1024, float64(r.peakUploadRSS)/1024)
		connRSS.baseline = fmt.Sprintf("%.0f MiB idle (%d requests in flight at once; %d accepted, %d refused)",
			float64(r.idleRSS)/1024, r.peakOpen, r.accepted, r.refused+r.other)
		connRSS.ratio = fmt.Sprintf("%.2f×", float64(r.peakRSS)/float64(r.idleRSS))
		connRSS.met = yes(r.peakRSS < connectionsRSSBoundMiB<<10)
	})

	var out strings.Builder
	fmt.Fprintf(&out, "\n| Target | Measured | Same-run baseline | Ratio | Goal | Met |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s | %s |\n", r.target, r.measured, r.baseline, r.ratio, r.goal, r.met)
	}
	fmt.Fprintf(&out, "\nMachine: %s, %d cores (GOMAXPROCS %d), %s/%s, %s; table took %v.\n\n",
		cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Since(began).Round(time.Second))
	fmt.Print(out.String())
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// sizeText is n bytes as "1 GiB", "256 MiB" or "1000 bytes".
func sizeText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// cpuModel is the first "model name" in /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// skipNote passes a testing.TB on, noting why it was skipped.
type skipNote struct {
	testing.TB
	why *string
}

func (s skipNote) Skip(args ...any) {
	*s.why = strings.TrimSpace(fmt.Sprintln(args...))
	s.TB.Skip(args...)
}

func (s skipNote) Skipf(format string, args ...any) {
	*s.why = fmt.Sprintf(format, args...)
	s.TB.Skipf(format, args...)
}
