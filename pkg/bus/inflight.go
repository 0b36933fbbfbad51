package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/events"
)

// InFlight names the first stream that still holds an event of the file
// dataID, or "" when none does. A file's work is under way while one does:
// its upload session is open (UPLOADS, purged once the session ended), its
// result events are not all recorded (RESULTS, compacted once applied), it
// waits for or is in a scan (FILES, acknowledged after the verdict), or its
// webhooks are not all delivered (SCANS, acknowledged after the last).
//
// The streams are read in the order a file moves through them, and every
// step stores the next event before it drops its own: the assembler
// publishes a finished upload's result event before it purges the session;
// the recorder queues the file before its event is acknowledged and
// compacted; the recorder announces a verdict before its event goes. So a
// file that moves on while it is looked at is found further on. A rescan
// waiting for or in a scan names the file whose stored bytes it reads in
// its work item's subject (events.RescanSubject), so that file is in
// flight too until the rescan is done. The one
// step back, a scanner's verdict (RESULTS) published before its work item
// (FILES) is acknowledged, shows in the file's record, which is not final
// until that verdict is recorded: a caller deciding that nothing needs the
// file any more reads the record after this.
func (b *Bus) InFlight(ctx context.Context, dataID string) (string, error) {
	p := events.Partition(dataID, b.Opts.Partitions)
	for _, look := range []struct{ stream, subject string }{
		{events.StreamUploads, events.UploadSubject(p, dataID)},
		{events.StreamResults, events.ResultSubject(p, dataID)},
		{events.StreamFiles, events.FileSubject("*", dataID)},
		{events.StreamFiles, events.RescanSubject("*", dataID, "*")}, // a rescan of another file's bytes
		{events.StreamFiles, events.RescanSubject("*", "*", dataID)}, // a rescan reading this file's bytes
		{events.StreamScans, events.ScanDoneSubject(dataID)},
	} {
		st, err := b.stream(ctx, look.stream)
		if err != nil {
			return "", err
		}
		_, err = st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(look.subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("look for %s in %s: %w", look.subject, look.stream, err)
		}
		return look.stream, nil
	}
	return "", nil
}
