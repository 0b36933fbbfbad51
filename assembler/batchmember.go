package assembler

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/scangate/scangate/pkg/batch"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

// member writes the batch summary of rec's file when the file belongs to a
// batch. The recorder is the summary's one writer because it is the one
// writer of the record the summary is made from: it writes the summary as
// part of applying the event that changed the record, before the event is
// acknowledged, so a crash between the two writes is mended by the
// redelivery (which finds the record at the event's sequence and repeats
// the effects, this one included). Writing the same summary twice changes
// nothing.
func (r *recorder) member(ctx context.Context, rec *result.Record) error {
	batchID := rec.Meta.Batch
	if batchID == "" || !ids.Valid(batchID) {
		return nil
	}
	data, err := json.Marshal(batch.MemberOf(rec))
	if err != nil {
		return err
	}
	msg := nats.NewMsg("$KV." + events.BucketBatchFiles + "." + events.BatchMemberKey(batchID, rec.Result.DataID))
	msg.Data = data
	// Through the bucket's group committer: the summaries of files
	// recorded at once share their fsyncs, like the records.
	if _, err := r.b.Committer(bus.BucketStream(events.BucketBatchFiles)).Publish(ctx, msg); err != nil {
		return fmt.Errorf("batch member %s of %s: %w", rec.Result.DataID, batchID, err)
	}
	return nil
}
