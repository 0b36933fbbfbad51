package metrics

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/internal/bustest"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
)

// countingJS counts the stream look-ups the queue collector makes.
type countingJS struct {
	jetstream.JetStream
	streams atomic.Int64
}

func (c *countingJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	c.streams.Add(1)
	return c.JetStream.Stream(ctx, name)
}

// gauge scrapes m and returns name{stream}.
func gauge(t *testing.T, m *Metrics, name, stream string) (float64, bool) {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "stream" && l.GetValue() == stream {
					return s.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// The depth of every pipeline stream is exported, and a file waiting for
// a scanner shows in FILES; scrapes in a burst ask JetStream once.
func TestQueueDepth(t *testing.T) {
	b := bustest.Open(t, bus.Options{MaxQueued: 100})
	js := &countingJS{JetStream: b.JS}
	m := New()
	m.WatchQueues(js)

	for _, s := range QueueStreams {
		for _, name := range []string{"scangate_stream_messages", "scangate_queue_pending_messages", "scangate_queue_ack_pending_messages"} {
			if v, ok := gauge(t, m, name, s); !ok || v != 0 {
				t.Errorf("%s{stream=%q} = %v (present %v), want 0 on an empty pipeline", name, s, v, ok)
			}
		}
	}
	before := js.streams.Load()
	if before != int64(len(QueueStreams)) {
		t.Fatalf("%d stream look-ups for the first scrape, want %d", before, len(QueueStreams))
	}

	if err := b.PublishFileComplete(t.Context(), &events.FileComplete{DataID: ids.New(), Size: 1, Priority: events.PriorityNormal}); err != nil {
		t.Fatal(err)
	}
	// Right after a read, scrapes are answered from it.
	if v, _ := gauge(t, m, "scangate_queue_pending_messages", events.StreamFiles); v != 0 || js.streams.Load() != before {
		t.Fatalf("a scrape within the cache time asked JetStream again (pending %v)", v)
	}
	waitUntil(t, "the queued file in FILES", func() bool {
		v, _ := gauge(t, m, "scangate_queue_pending_messages", events.StreamFiles)
		return v == 1
	})
	if v, _ := gauge(t, m, "scangate_stream_messages", events.StreamFiles); v != 1 {
		t.Errorf("FILES holds %v messages, want 1", v)
	}
	// Constant scraping for about two seconds cost one more read.
	if n := js.streams.Load(); n != 2*int64(len(QueueStreams)) {
		t.Errorf("%d stream look-ups, want %d (two reads)", n, 2*len(QueueStreams))
	}
}
