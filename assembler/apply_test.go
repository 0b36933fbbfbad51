package assembler

import (
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/session"
)

func open(total int64) *events.UploadEvent {
	return &events.UploadEvent{Kind: events.UploadOpen, DataID: "d", Total: total, Meta: &events.FileMeta{Workflow: "w"},
		CreatedAt: time.Unix(0, 0), ExpiresAt: time.Unix(3600, 0)}
}

func part(off, n int64) *events.UploadEvent {
	return &events.UploadEvent{Kind: events.UploadPart, DataID: "d", Off: off, Len: n}
}

// Replaying a session's log gives the same state whatever the redeliveries:
// duplicates and bad parts change nothing, coverage completes the session.
func TestApplyFoldsALog(t *testing.T) {
	var st *state
	for _, ev := range []*events.UploadEvent{
		part(0, 10), // before open (a purged log): ignored
		open(100),
		open(5), // a second open never resets the session
		part(50, 50),
		part(50, 50), // retried
		part(90, 20), // past the end: ignored
		part(-1, 5),  // hostile: ignored
		part(0, 60),
	} {
		st = apply(st, ev, 3, 0)
	}
	if st == nil {
		t.Fatal("no state")
	}
	s := st.Session
	if s.Status != session.Complete || s.TotalLength != 100 || s.ReceivedLength != 100 || s.Partition != 3 {
		t.Fatalf("state %+v", s)
	}
	// Events after the end change nothing.
	st = apply(st, &events.UploadEvent{Kind: events.UploadAbort, DataID: "d"}, 3, 0)
	st = apply(st, &events.UploadEvent{Kind: events.UploadExpire, DataID: "d"}, 3, 0)
	if st.Session.Status != session.Complete {
		t.Errorf("ended session changed to %s", st.Session.Status)
	}
}

func TestApplyAbortAndExpire(t *testing.T) {
	for kind, want := range map[string]string{events.UploadAbort: session.Cancelled, events.UploadExpire: session.TimedOut} {
		st := apply(nil, open(100), 0, 0)
		st = apply(st, part(0, 10), 0, 0)
		st = apply(st, &events.UploadEvent{Kind: kind, DataID: "d"}, 0, 0)
		st = apply(st, part(10, 90), 0, 0) // a late part does not revive it
		if st.Session.Status != want || st.Session.ReceivedLength != 10 {
			t.Errorf("%s: status %s, received %d", kind, st.Session.Status, st.Session.ReceivedLength)
		}
	}
}
