package result

import (
	"time"

	"github.com/scangate/scangate/pkg/events"
)

// Result event kinds, in the order a file goes through them. Each role that
// learns something about a file's result publishes an Event to the RESULTS
// stream; the recorder, the one writer of the results bucket, applies them in
// stream order with Apply. No role writes a result record itself.
const (
	EventUploading = "uploading" // a multipart or chunked session opened (256)
	EventQueued    = "queued"    // the bytes are complete; File waits for a scanner (255)
	EventProgress  = "progress"  // a scanner's heartbeat on a long scan
	EventFinal     = "final"     // a scanner's verdict: Record
	EventClosed    = "closed"    // the file ends without a scan: Code (cancelled, timed out, failed)
)

// Event is one step of a file's result.
type Event struct {
	Kind   string `json:"kind"`
	DataID string `json:"data_id"`

	// uploading, closed: what a record is made of when there is none yet.
	Size      int64            `json:"size,omitempty"`
	Meta      *events.FileMeta `json:"meta,omitempty"`
	CreatedAt time.Time        `json:"created_at,omitzero"`

	// queued: the scanner's work item; the recorder queues it once the
	// record says 255.
	File *events.FileComplete `json:"file,omitempty"`

	// progress
	Progress  int       `json:"progress,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`

	// final
	Record *Record `json:"record,omitempty"`

	// closed
	Code   int       `json:"code,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// Apply folds one event into a file's record (nil: none yet) and returns
// the record after it, or nil when there still is none. It has no side
// effects and ignores whatever an event cannot change: a final record never
// changes again, progress never goes back, a late upload event never
// overwrites a queued file. Which of a cancel and a verdict wins is decided
// by their order in the stream, nothing else.
func Apply(rec *Record, ev *Event) *Record {
	if rec != nil && rec.Final() {
		return rec
	}
	switch ev.Kind {
	case EventUploading:
		if rec == nil && ev.Meta != nil {
			return New(ev.DataID, ev.Size, events.Hashes{}, *ev.Meta, ev.CreatedAt, MultipartUploading)
		}
	case EventQueued:
		if ev.File == nil {
			return rec
		}
		f := ev.File
		if rec == nil || rec.Result.ScanResults.ScanAllResultI == MultipartUploading {
			return NewFile(ev.DataID, f, InProgress)
		}
	case EventProgress:
		if rec == nil || rec.Result.ScanResults.ScanAllResultI != InProgress {
			return rec
		}
		next := *rec
		pct := min(max(ev.Progress, next.Result.ScanResults.ProgressPercentage), 99)
		next.Result.ScanResults.ProgressPercentage = pct
		next.Result.ProcessInfo.ProgressPercentage = pct
		if !ev.StartedAt.IsZero() && next.Result.ScanResults.StartTime == "" {
			next.Result.ScanResults.StartTime = FormatTime(ev.StartedAt)
		}
		return &next
	case EventFinal:
		if ev.Record != nil && ev.Record.Final() && ev.Record.Result.DataID == ev.DataID {
			next := *ev.Record
			return &next
		}
	case EventClosed:
		next := rec
		if next == nil {
			if ev.Meta == nil {
				return nil // closing a file nothing is known of: nothing to show
			}
			next = New(ev.DataID, ev.Size, events.Hashes{}, *ev.Meta, ev.CreatedAt, ev.Code)
		} else {
			cp := *next
			next = &cp
		}
		at := ev.At
		if at.IsZero() {
			at = time.Now()
		}
		var reasons []string
		if ev.Reason != "" {
			reasons = []string{ev.Reason}
		}
		start := at
		if t, err := time.Parse(TimeFormat, next.Result.ScanResults.StartTime); err == nil {
			start = t
		} else if !ev.CreatedAt.IsZero() {
			start = ev.CreatedAt
		}
		next.Finish(ev.Code, reasons, start, at)
		return next
	}
	return rec
}
