package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/result"
)

// publish sends v as JSON to a stream subject and waits for JetStream's
// acknowledgement; msgID makes a re-publish (a retry, a redelivered
// handler) a no-op within the stream's duplicate window.
func (b *Bus) publish(ctx context.Context, subject, msgID string, v any) (*jetstream.PubAck, error) {
	return b.send(ctx, subject, msgID, v, func(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
		return b.JS.PublishMsg(ctx, m)
	})
}

// commit is publish through the stream's group committer: for the streams
// every file passes through, where concurrent files share fsyncs.
func (b *Bus) commit(ctx context.Context, stream, subject, msgID string, v any) (*jetstream.PubAck, error) {
	return b.send(ctx, subject, msgID, v, b.Committer(stream).Publish)
}

// send encodes v as a message with msgID and stores it with store.
func (b *Bus) send(ctx context.Context, subject, msgID string, v any,
	store func(context.Context, *nats.Msg) (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", subject, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(events.HeaderMsgID, msgID)
	ack, err := store(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", subject, b.Check(err))
	}
	return ack, nil
}

// PublishFileComplete queues a file for scanning.
func (b *Bus) PublishFileComplete(ctx context.Context, ev *events.FileComplete) error {
	_, err := b.commit(ctx, events.StreamFiles, ev.Subject(), "file-"+ev.DataID, ev)
	return err
}

// PublishUpload appends an event to an upload session's log and returns
// its stream sequence. msgID makes a retried publish of the same event a
// no-op.
func (b *Bus) PublishUpload(ctx context.Context, partition int, ev *events.UploadEvent, msgID string) (uint64, error) {
	ack, err := b.publish(ctx, events.UploadSubject(partition, ev.DataID), msgID, ev)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// stream returns a handle on a stream, looked up once: purges and message
// reads happen for every file, and a handle needs no stream-info request
// each time.
func (b *Bus) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if st, ok := b.streams.Load(name); ok {
		return st.(jetstream.Stream), nil
	}
	st, err := b.JS.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	b.streams.Store(name, st)
	return st, nil
}

// PublishResult appends an event to a file's result log. msgID makes a
// retried publish of the same event a no-op.
func (b *Bus) PublishResult(ctx context.Context, ev *result.Event, msgID string) error {
	_, err := b.commit(ctx, events.StreamResults, events.ResultSubject(events.Partition(ev.DataID, b.Opts.Partitions), ev.DataID), msgID, ev)
	return err
}

// FirstResultEvent returns the oldest event still in a file's result log
// (ErrNoEvent when there is none): what a file is before the recorder has
// applied it. The recorder acknowledges an event, which removes it, only
// after writing the record it makes.
func (b *Bus) FirstResultEvent(ctx context.Context, dataID string) (*result.Event, error) {
	st, err := b.stream(ctx, events.StreamResults)
	if err != nil {
		return nil, err
	}
	subj := events.ResultSubject(events.Partition(dataID, b.Opts.Partitions), dataID)
	m, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subj))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrNoEvent
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subj, err)
	}
	var ev result.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return nil, fmt.Errorf("decode %s: %w", subj, err)
	}
	return &ev, nil
}

// ErrNoEvent: a file has no result events (unknown, or already recorded).
var ErrNoEvent = errors.New("no result event")

// PublishScanDone announces a final result.
func (b *Bus) PublishScanDone(ctx context.Context, ev *events.ScanDone) error {
	_, err := b.publish(ctx, events.ScanDoneSubject(ev.DataID), "done-"+ev.DataID, ev)
	return err
}

// ReplayScanDone announces a final result again, for a webhook replay: a
// fresh message id gets it past the duplicate window.
func (b *Bus) ReplayScanDone(ctx context.Context, ev *events.ScanDone) error {
	_, err := b.publish(ctx, events.ScanDoneSubject(ev.DataID), fmt.Sprintf("replay-%s-%d", ev.DataID, time.Now().UnixNano()), ev)
	return err
}

// ScheduleExpiry arranges for an expire event to reach the session's
// partition at when. Publishing it again replaces the schedule.
func (b *Bus) ScheduleExpiry(ctx context.Context, partition int, dataID string, when time.Time) error {
	data, err := json.Marshal(&events.UploadEvent{Kind: events.UploadExpire, DataID: dataID})
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: events.ExpirySubject(dataID), Data: data, Header: nats.Header{}}
	msg.Header.Set("Nats-Schedule", "@at "+when.UTC().Format(time.RFC3339))
	msg.Header.Set("Nats-Schedule-Target", events.UploadSubject(partition, dataID))
	if _, err := b.JS.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("schedule expiry of %s: %w", dataID, err)
	}
	return nil
}

// PurgeUpload drops an ended session's log and pending expiry.
func (b *Bus) PurgeUpload(ctx context.Context, partition int, dataID string) error {
	st, err := b.stream(ctx, events.StreamUploads)
	if err != nil {
		return err
	}
	for _, subj := range []string{events.UploadSubject(partition, dataID), events.ExpirySubject(dataID)} {
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return fmt.Errorf("purge %s: %w", subj, err)
		}
	}
	return nil
}

// BucketStream is the stream behind a KV bucket.
func BucketStream(bucket string) string { return "KV_" + bucket }

// PutAll writes several keys of a bucket at once, through its group
// committer, and waits until JetStream has stored every one. Keys already
// stored when another fails stay written, which is harmless for puts a
// retry repeats.
func (b *Bus) PutAll(ctx context.Context, bucket string, kv map[string]string) error {
	c := b.Committer(BucketStream(bucket))
	errs := make(chan error, len(kv))
	for k, v := range kv {
		go func() {
			msg := &nats.Msg{Subject: "$KV." + bucket + "." + k, Data: []byte(v)}
			_, err := c.Publish(ctx, msg)
			if err != nil {
				err = fmt.Errorf("put %s/%s: %w", bucket, k, b.Check(err))
			}
			errs <- err
		}()
	}
	var all []error
	for range kv {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// CompactResults drops the result events every recorder has acknowledged,
// in one purge up to the lowest sequence still needed, and returns how many
// went. Events are removed in bulk rather than one by one as they are
// acknowledged: JetStream fsyncs each single removal (with `sync: always`),
// which made acknowledging a result event as dear as storing it, and a
// purge of one file's subject made every consumer recount its pending
// messages.
//
// An event is still needed while its partition's recorder has not
// acknowledged it: below a consumer's ack floor everything is acknowledged,
// and a consumer with nothing delivered-but-unacknowledged and nothing
// pending needs nothing at all. Events stored after the stream's last
// sequence read first are never touched.
func (b *Bus) CompactResults(ctx context.Context) (uint64, error) {
	st, err := b.stream(ctx, events.StreamResults)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	floor := info.State.LastSeq // keep everything after it
	for p := range b.Opts.Partitions {
		c, err := st.Consumer(ctx, events.RecorderConsumer(p))
		if err != nil {
			return 0, err
		}
		ci := c.CachedInfo()
		switch {
		case ci.NumPending == 0 && ci.NumAckPending == 0:
			// Everything of this partition is applied.
		case ci.NumAckPending == 0:
			floor = min(floor, ci.Delivered.Stream) // what comes next is after it
		default:
			floor = min(floor, ci.AckFloor.Stream)
		}
	}
	if floor < info.State.FirstSeq {
		return 0, nil
	}
	before := info.State.Msgs
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return 0, fmt.Errorf("compact %s up to %d: %w", events.StreamResults, floor, b.Check(err))
	}
	after, err := st.Info(ctx)
	if err != nil || after.State.Msgs > before {
		return 0, err
	}
	return before - after.State.Msgs, nil
}
