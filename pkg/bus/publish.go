package bus

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/events"
)

// publish sends v as JSON to a stream subject and waits for JetStream's
// acknowledgement; msgID makes a re-publish (a retry, a redelivered
// handler) a no-op within the stream's duplicate window.
func (b *Bus) publish(ctx context.Context, subject, msgID string, v any) (*jetstream.PubAck, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", subject, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(events.HeaderMsgID, msgID)
	ack, err := b.JS.PublishMsg(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", subject, err)
	}
	return ack, nil
}

// PublishFileComplete queues a file for scanning.
func (b *Bus) PublishFileComplete(ctx context.Context, ev *events.FileComplete) error {
	_, err := b.publish(ctx, events.FileSubject(ev.Priority, ev.DataID), "file-"+ev.DataID, ev)
	return err
}

// PublishScanDone announces a final result.
func (b *Bus) PublishScanDone(ctx context.Context, ev *events.ScanDone) error {
	_, err := b.publish(ctx, events.ScanDoneSubject(ev.DataID), "done-"+ev.DataID, ev)
	return err
}
