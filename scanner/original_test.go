package scanner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/workflow"
)

// A small file travels inside its events and has no blob: once scanned,
// its bytes are kept under its data_id in the originals bucket, so that it
// can be rescanned. A rescan keeps nothing of its own.
func TestSmallFileOriginalKept(t *testing.T) {
	b, fs := testBus(t)
	wf := config.Default().Workflows[0]
	s := New(b, fs, Options{Workers: 1, Timeout: time.Minute, Workflows: workflow.NewSet([]config.Workflow{wf})},
		zerolog.New(zerolog.NewTestWriter(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	data := []byte("a small file, carried inside its events")
	original, rescan := ids.New(), ids.New()
	for _, fc := range []*events.FileComplete{
		{DataID: original, Size: int64(len(data)), Data: data, Priority: events.PriorityNormal},
		{DataID: rescan, Size: int64(len(data)), Data: data, Priority: events.PriorityLow, FileID: original},
	} {
		fc.Meta, fc.UploadedAt = events.FileMeta{DisplayName: "small.txt", Workflow: wf.Name}, time.Now()
		sub, err := b.NC.SubscribeSync(events.ResultSubject(events.Partition(fc.DataID, b.Opts.Partitions), fc.DataID))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.PublishFileComplete(ctx, fc); err != nil {
			t.Fatal(err)
		}
		final := waitFinal(t, sub)
		if final.Result.FileID != original {
			t.Errorf("%s: file_id %q, want the original's %s", fc.DataID, final.Result.FileID, original)
		}
	}
	// The copy is stored before the work is acknowledged: once the queue
	// is empty, it is there (and the rescan's is not).
	if !testwait.Until(30*time.Second, func() bool {
		st, err := b.JS.Stream(ctx, events.StreamFiles)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State.Msgs == 0
	}) {
		t.Fatal("the scanner never acknowledged its work")
	}
	kept, err := b.Original(ctx, original)
	if err != nil || !bytes.Equal(kept, data) {
		t.Errorf("kept %q (%v), want the file's bytes", kept, err)
	}
	if kept, err := b.Original(ctx, rescan); kept != nil || err != nil {
		t.Errorf("the rescan kept a copy of its own: %q %v", kept, err)
	}
	if _, err := fs.Open(ctx, original); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("the small file got a blob: %v", err)
	}
}

func waitFinal(t *testing.T, sub *nats.Subscription) *result.Record {
	t.Helper()
	for {
		m, err := sub.NextMsg(time.Minute)
		if err != nil {
			t.Fatalf("no verdict: %v", err)
		}
		var ev result.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Kind == result.EventFinal {
			return ev.Record
		}
	}
}
