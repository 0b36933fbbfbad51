package blob_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
)

const (
	benchParts = 4
	benchPart  = 64 << 20
	benchTotal = benchParts * benchPart
)

// patternReader yields n bytes cycling through a random pattern, starting
// at off, so every part carries different bytes and no test buffer holds a
// part.
type patternReader struct {
	pat       []byte
	off, left int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	n := 0
	for n < len(p) {
		n += copy(p[n:], r.pat[(r.off+int64(n))%int64(len(r.pat)):])
	}
	r.off += int64(n)
	r.left -= int64(n)
	return n, nil
}

func benchPattern() []byte {
	pat := make([]byte, 1<<20+13) // not a divisor of the part size
	r := rand.New(rand.NewPCG(1, 2))
	for i := range pat {
		pat[i] = byte(r.Uint32())
	}
	return pat
}

// writeDisk is the baseline: the same 256 MiB written to a plain file and
// fsynced.
func writeDisk(b *testing.B, dir string, pat []byte) time.Duration {
	b.Helper()
	p := filepath.Join(dir, "baseline")
	start := time.Now()
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(f, &patternReader{pat: pat, left: benchTotal}, buf); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	os.Remove(p)
	return d
}

// heapPeak samples the live heap until stop is called and returns the
// peak growth over the heap at start.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return max(peak.Load(), base) - base
	}
}

// BenchmarkWrite256MiB writes 256 MiB as 4 parts of 64 MiB in parallel to
// each store, and reports its speed beside the disk's in the same run:
// x-of-disk is the store's write throughput over a plain file's (written
// and fsynced in the same directory just before). Reading the blob back is
// reported as read-MB/s, and the live-heap growth while writing (the
// embedded NATS server's included) as peak-heap-MiB.
func BenchmarkWrite256MiB(b *testing.B) {
	pat := benchPattern()
	b.Run("fs", func(b *testing.B) {
		dir := b.TempDir()
		s, err := blob.NewFS(filepath.Join(dir, "blobs"))
		if err != nil {
			b.Fatal(err)
		}
		benchStore(b, s, dir, pat)
	})
	// With SCANGATE_BENCH_NATS_URL set, also against that server: its
	// memory is not this process's, so peak-heap-MiB is the client's alone.
	if url := os.Getenv("SCANGATE_BENCH_NATS_URL"); url != "" {
		b.Run("jetstream-external", func(b *testing.B) {
			nc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			bucket := fmt.Sprintf("bench%d", time.Now().UnixNano())
			s, err := blob.NewJetStream(ctx, js, blob.JetStreamOptions{Bucket: bucket})
			if err != nil {
				b.Fatal(err)
			}
			defer js.DeleteObjectStore(ctx, bucket)
			defer js.DeleteKeyValue(ctx, bucket+"-parts")
			benchStore(b, s, b.TempDir(), pat)
		})
	}
	for _, always := range []bool{true, false} {
		name := "jetstream"
		if !always {
			name = "jetstream-nosync" // for comparison only: acks before fsync
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: dir, SyncAlways: always, SyncInterval: 2 * time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown()
			nc, err := srv.Connect("bench")
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			s, err := blob.NewJetStream(context.Background(), js, blob.JetStreamOptions{})
			if err != nil {
				b.Fatal(err)
			}
			benchStore(b, s, dir, pat)
		})
	}
}

func benchStore(b *testing.B, s blob.Store, dir string, pat []byte) {
	ctx := context.Background()
	b.SetBytes(benchTotal)
	var disk, store, read time.Duration
	var peak uint64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		disk += writeDisk(b, dir, pat)
		stop := heapPeak()
		b.StartTimer()

		start := time.Now()
		var wg sync.WaitGroup
		for i := range benchParts {
			wg.Go(func() {
				off := int64(i) * benchPart
				if err := s.WriteAt(ctx, key, off, &patternReader{pat: pat, off: off, left: benchPart}, benchPart); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		store += time.Since(start)

		b.StopTimer()
		peak = max(peak, stop())
		start = time.Now()
		obj, err := s.Open(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.CopyBuffer(io.Discard, obj, make([]byte, 256<<10)); err != nil || n != benchTotal {
			b.Fatalf("read back %d bytes: %v", n, err)
		}
		obj.Close()
		read += time.Since(start)
		if err := s.Delete(ctx, key); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	mbps := func(d time.Duration) float64 { return float64(benchTotal) * float64(b.N) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(disk), "disk-MB/s")
	b.ReportMetric(disk.Seconds()/store.Seconds(), "x-of-disk")
	b.ReportMetric(mbps(read), "read-MB/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
