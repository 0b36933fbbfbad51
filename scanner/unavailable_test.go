package scanner

import (
	"bytes"
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/workflow"
)

// flakyStore answers the first failures opens with ErrUnavailable, as a
// JetStream-backed store does while its stream has no leader.
type flakyStore struct {
	blob.Store
	failures atomic.Int32
}

func (f *flakyStore) Open(ctx context.Context, key string) (blob.Object, error) {
	if f.failures.Add(-1) >= 0 {
		return nil, blob.ErrUnavailable
	}
	return f.Store.Open(ctx, key)
}

// A file the store cannot serve for a moment (a NATS node lost) is scanned
// again, not given a Failed verdict.
func TestUnavailableStoreIsRetried(t *testing.T) {
	b, fs := testBus(t)
	nc := b.NC
	store := &flakyStore{Store: fs}
	store.failures.Store(2)
	wf := config.Default().Workflows[0]
	s := New(b, store, Options{Workers: 1, Timeout: time.Minute, Workflows: workflow.NewSet([]config.Workflow{wf})}, zerolog.New(zerolog.NewTestWriter(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	id := ids.New()
	data := []byte("a file the store loses for a moment")
	if err := fs.WriteAt(ctx, id, 0, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(events.ResultSubject(events.Partition(id, b.Opts.Partitions), id))
	if err != nil {
		t.Fatal(err)
	}
	fc := &events.FileComplete{DataID: id, Size: int64(len(data)), Priority: events.PriorityNormal,
		Meta: events.FileMeta{DisplayName: "f.txt", Workflow: wf.Name}, UploadedAt: time.Now()}
	if err := b.PublishFileComplete(ctx, fc); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := sub.NextMsg(time.Minute)
		if err != nil {
			t.Fatalf("no verdict: %v", err)
		}
		var ev result.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Kind != result.EventFinal {
			continue
		}
		if code := ev.Record.Result.ScanResults.ScanAllResultI; code != result.NoThreat {
			t.Errorf("verdict %d after the store came back, want %d", code, result.NoThreat)
		}
		return
	}
}
