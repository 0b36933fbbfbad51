package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/events"
)

// QueuedFile returns the work item of dataID while it waits for or is in a
// scan (ErrNoEvent when there is none): what a file is between its
// acceptance being recorded and its scanner's acknowledgement. A small
// file's bytes travel in it (events.FileComplete.Data).
func (b *Bus) QueuedFile(ctx context.Context, dataID string) (*events.FileComplete, error) {
	st, err := b.stream(ctx, events.StreamFiles)
	if err != nil {
		return nil, err
	}
	subj := events.FileSubject("*", dataID)
	m, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subj))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrNoEvent
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subj, err)
	}
	var fc events.FileComplete
	if err := json.Unmarshal(m.Data, &fc); err != nil {
		return nil, fmt.Errorf("decode %s: %w", subj, err)
	}
	return &fc, nil
}

// KeepOriginal stores the bytes of a small file (one that travels inside
// its events and has no blob) under its data_id in the originals bucket,
// where they expire retention.originals later. It goes through the
// bucket's group committer: concurrent scanners' copies share fsyncs, so a
// kept copy costs a share of one disk write rather than one of its own.
func (b *Bus) KeepOriginal(ctx context.Context, dataID string, data []byte) error {
	msg := &nats.Msg{Subject: "$KV." + events.BucketOriginals + "." + dataID, Data: data}
	if _, err := b.Committer(BucketStream(events.BucketOriginals)).Publish(ctx, msg); err != nil {
		return fmt.Errorf("keep original of %s: %w", dataID, b.Check(err))
	}
	return nil
}

// Original returns the kept bytes of a small file; nil when none are kept
// (not a small file, not scanned yet, or past retention.originals).
func (b *Bus) Original(ctx context.Context, dataID string) ([]byte, error) {
	e, err := b.Originals.Get(ctx, dataID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("original of %s: %w", dataID, err)
	}
	return e.Value(), nil
}
