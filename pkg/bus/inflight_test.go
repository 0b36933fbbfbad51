package bus_test

import (
	"testing"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

// InFlight finds a file in whichever stream still holds an event of it,
// and in none once nothing does: what retention asks before it deletes a
// file's bytes.
func TestInFlight(t *testing.T) {
	nc, _ := startServer(t)
	ctx := testContext(t)
	b, err := bus.Open(ctx, nc, bus.Options{Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	uploading, recording, queued, notifying, done := ids.New(), ids.New(), ids.New(), ids.New(), ids.New()
	if _, err := b.PublishUpload(ctx, events.Partition(uploading, 4),
		&events.UploadEvent{Kind: events.UploadOpen, DataID: uploading, Total: 1}, "open-"+uploading); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishResult(ctx, &result.Event{Kind: result.EventProgress, DataID: recording}, "p-"+recording); err != nil {
		t.Fatal(err)
	}
	// Any priority: the work item's subject names it.
	if err := b.PublishFileComplete(ctx, &events.FileComplete{DataID: queued, Priority: events.PriorityLow}); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishScanDone(ctx, &events.ScanDone{DataID: notifying, CallbackURL: "http://example.com/"}); err != nil {
		t.Fatal(err)
	}
	// A rescan that reads another file's blob keeps both in flight: its
	// own scan, and the bytes it needs. A small file's rescan carries its
	// bytes and needs nobody's.
	rescan, original, smallRescan, smallOriginal := ids.New(), ids.New(), ids.New(), ids.New()
	if err := b.PublishFileComplete(ctx, &events.FileComplete{DataID: rescan, FileID: original, Priority: events.PriorityLow}); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishFileComplete(ctx, &events.FileComplete{DataID: smallRescan, FileID: smallOriginal,
		Priority: events.PriorityLow, Data: []byte("small")}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{
		uploading:     events.StreamUploads,
		recording:     events.StreamResults,
		queued:        events.StreamFiles,
		notifying:     events.StreamScans,
		done:          "",
		rescan:        events.StreamFiles,
		original:      events.StreamFiles,
		smallRescan:   events.StreamFiles,
		smallOriginal: "",
	} {
		got, err := b.InFlight(ctx, id)
		if err != nil || got != want {
			t.Errorf("InFlight(%s) = %q, %v; want %q", id, got, err, want)
		}
	}
}
