package metrics

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"
)

// blobBytes scrapes m and returns scangate_blob_store_bytes{store}.
func blobBytes(t *testing.T, m *Metrics, store string) (float64, bool) {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "scangate_blob_store_bytes" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "store" && l.GetValue() == store {
					return s.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// waitUntil polls cond (polling only paces the looks; the assertion is
// the condition) for at most 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !testwait.Until(10*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A scrape never waits for the store's size, and scrapes in a burst do
// not each measure it: the size is read in the background, at most once
// per pace, and the scrape answers with the last value.
func TestBlobStoreSizeIsReadInTheBackground(t *testing.T) {
	release := make(chan struct{})
	var reads atomic.Int64
	var size atomic.Int64
	size.Store(4096)
	m := New()
	m.WatchBlobStore("fs", func(ctx context.Context) (int64, error) {
		reads.Add(1)
		select {
		case <-release: // a slow walk of a large directory
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return size.Load(), nil
	})

	// The first read is under way and stuck: scrapes answer at once,
	// without the series, and start no other read.
	for range 5 {
		if _, ok := blobBytes(t, m, "fs"); ok {
			t.Fatal("a size was reported before any read finished")
		}
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads during a burst of scrapes, want 1", n)
	}
	close(release)
	waitUntil(t, "the first size", func() bool { v, ok := blobBytes(t, m, "fs"); return ok && v == 4096 })

	// Within the pace the scrapes use that value; the size changing does
	// not show until the next read, which a scrape starts once due.
	size.Store(8192)
	if v, _ := blobBytes(t, m, "fs"); v != 4096 || reads.Load() != 1 {
		t.Fatalf("scrape right after a read: value %v after %d reads, want the cached 4096 after 1", v, reads.Load())
	}
	waitUntil(t, "the new size after the pace", func() bool { v, _ := blobBytes(t, m, "fs"); return v == 8192 })
	if n := reads.Load(); n != 2 {
		t.Errorf("%d reads in about a second of constant scraping, want 2", n)
	}
}

// A store whose size cannot be read leaves the series out rather than
// report a stale or zero size.
func TestBlobStoreSizeUnknownIsLeftOut(t *testing.T) {
	var fail atomic.Bool
	m := New()
	m.WatchBlobStore("jetstream", func(context.Context) (int64, error) {
		if fail.Load() {
			return 0, errors.New("no responders")
		}
		return 100, nil
	})
	waitUntil(t, "the size", func() bool { _, ok := blobBytes(t, m, "jetstream"); return ok })
	fail.Store(true)
	waitUntil(t, "the series to go", func() bool { _, ok := blobBytes(t, m, "jetstream"); return !ok })
}

// Roles built without metrics (nil) record nothing and do not fail.
func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.Upload(UploadFile, 1)
	m.HTTPRequest("GET", "/file/:id", 200, time.Millisecond)
	m.Scan("Allowed", "No Threat Detected", time.Second)
	m.Engine("signatures", time.Millisecond)
	m.Webhook("callback", WebhookDelivered)
	m.WatchAssemblerSessions(func() float64 { return 1 })
	m.WatchBlobStore("fs", func(context.Context) (int64, error) { return 0, nil })
	m.WatchQueues(nil)
	m.BuildInfo("dev")
	if m.Registry() != nil {
		t.Error("a nil Metrics has a registry")
	}
}
