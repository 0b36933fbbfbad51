package assembler

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/session"
)

const pid = "0123456789abcdef0123456789abcdef"

func openPresigned() *events.UploadEvent {
	return &events.UploadEvent{Kind: events.UploadOpen, DataID: pid, Meta: &events.FileMeta{Workflow: "w"},
		CreatedAt: time.Unix(0, 0), ExpiresAt: time.Unix(3600, 0), Presigned: &events.PresignedOpen{Name: "f.bin"}}
}

func numbered(n int, size int64, etag, version string) *events.UploadEvent {
	return &events.UploadEvent{Kind: events.UploadNumberedPart, DataID: pid, PartNumber: n, Len: size, ETag: etag,
		Staged: pid + ".p" + string(rune('0'+n)) + "x" + version}
}

func complete(minPart, maxSize int64, tags ...events.PartTag) *events.UploadEvent {
	return &events.UploadEvent{Kind: events.UploadComplete, DataID: pid, PartTags: tags, MinPartSize: minPart, MaxSize: maxSize}
}

func tag(n int, etag string) events.PartTag { return events.PartTag{PartNumber: n, ETag: etag} }

// fold applies events in order, the sequence numbering them from 1, and
// returns the state after each.
func fold(t *testing.T, evs ...*events.UploadEvent) []*state {
	t.Helper()
	var st *state
	var out []*state
	for i, ev := range evs {
		st = apply(st, ev, 2, uint64(i+1))
		if st != nil {
			st.LastSeq = uint64(i + 1)
		}
		out = append(out, deepCopy(t, st))
	}
	return out
}

// deepCopy is st as it is now, whatever later events change.
func deepCopy(t *testing.T, st *state) *state {
	t.Helper()
	if st == nil {
		return nil
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var c state
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	c.release, c.concat = slices.Clone(st.release), st.concat
	return &c
}

// Parts are kept by number, the last PUT of each counting; the blob of the
// PUT it replaces is released; a complete checks every ETag, refusing
// (and naming the part) without changing anything, and then makes the
// file of the listed parts in number order, releasing the others.
func TestApplyPresignedParts(t *testing.T) {
	sts := fold(t,
		openPresigned(),
		numbered(3, 4, "c", "00000001"),
		numbered(1, 10, "a", "00000001"),
		numbered(2, 10, "x", "00000001"),
		numbered(2, 10, "b", "00000002"), // a re-PUT
		numbered(4, 1, "d", "00000001"),  // uploaded, then left out
		complete(10, 0, tag(1, "a"), tag(2, "x"), tag(3, "c")),
		complete(10, 0, tag(1, "a"), tag(2, "b"), tag(5, "e")),
		complete(10, 0, tag(1, "a"), tag(3, "c"), tag(2, "b"), tag(4, "d")),
		complete(10, 20, tag(3, "C"), tag(1, "A"), tag(2, "B")),
		complete(10, 0, tag(3, "C"), tag(1, "A"), tag(2, "B")),
	)
	if got := sts[4].release; !slices.Equal(got, []string{pid + ".p2x00000001"}) {
		t.Errorf("the re-PUT released %v, want the first PUT's blob", got)
	}
	if s := sts[5].Session; s.ReceivedLength != 25 || len(s.Presigned.Parts) != 4 || s.Status != session.Uploading {
		t.Fatalf("before complete: %+v", s)
	}
	for i, want := range map[int]struct {
		status int
		says   string
	}{
		6: {http.StatusBadRequest, "Part 2: etag"},
		7: {http.StatusBadRequest, "Part 5 was not uploaded"},
		8: {http.StatusBadRequest, "Part 3 is smaller than the minimum part size"},
		9: {http.StatusRequestEntityTooLarge, "too large"},
	} {
		st := sts[i]
		r, ok := st.Session.Presigned.Refusal(uint64(i + 1))
		if !ok || r.Status != want.status || !strings.Contains(r.Err, want.says) {
			t.Errorf("complete #%d: refusal %+v (%v), want %d %q", i, r, ok, want.status, want.says)
		}
		if st.Session.Status != session.Uploading || st.concat || len(st.release) > 0 {
			t.Errorf("complete #%d was refused but changed the upload: %+v", i, st)
		}
	}
	done := sts[10]
	s := done.Session
	if s.Status != session.Complete || s.TotalLength != 24 || !done.concat {
		t.Fatalf("after complete: status %s, total %d, concat %v", s.Status, s.TotalLength, done.concat)
	}
	var order []int
	for _, p := range s.Presigned.Parts {
		order = append(order, p.Number)
	}
	if !slices.Equal(order, []int{1, 2, 3}) || s.Presigned.Parts[1].Blob != "p2x00000002" {
		t.Errorf("file made of %v (%+v)", order, s.Presigned.Parts)
	}
	if !slices.Equal(done.release, []string{pid + ".p4x00000001"}) {
		t.Errorf("complete released %v, want the part left out", done.release)
	}
	// After the end, a late part is not taken and its blob is released.
	late := apply(done, numbered(5, 3, "e", "00000001"), 2, 12)
	if late.Session.Status != session.Complete || len(late.Session.Presigned.Parts) != 3 ||
		!slices.Equal(late.release, []string{pid + ".p5x00000001"}) {
		t.Errorf("a late part: %+v, released %v", late.Session, late.release)
	}
}

// A report keeps the client's ETags by part number; a complete with an
// empty list takes them, and one with a list takes the list alone.
func TestApplyPresignedReport(t *testing.T) {
	sts := fold(t,
		openPresigned(),
		numbered(1, 10, "a", "00000001"),
		numbered(2, 3, "b", "00000001"),
		&events.UploadEvent{Kind: events.UploadReport, DataID: pid, PartTags: []events.PartTag{tag(2, "wrong"), tag(1, "a")}},
		&events.UploadEvent{Kind: events.UploadReport, DataID: pid, PartTags: []events.PartTag{tag(2, "b")}},
		complete(5, 0),
	)
	if got := sts[4].Session.Presigned.Reported; !slices.Equal(got, []events.PartTag{tag(1, "a"), tag(2, "b")}) {
		t.Errorf("reported %v", got)
	}
	if s := sts[5].Session; s.Status != session.Complete || s.TotalLength != 13 {
		t.Errorf("complete from the report: %s, %d bytes", s.Status, s.TotalLength)
	}
	none := fold(t, openPresigned(), complete(5, 0))[1]
	if r, ok := none.Session.Presigned.Refusal(2); !ok || !strings.Contains(r.Err, "No parts") {
		t.Errorf("a complete with nothing to complete: %+v", r)
	}
}

// An open of a pre-signed upload has no size; an abort ends it like any.
func TestApplyPresignedAbort(t *testing.T) {
	sts := fold(t, openPresigned(), numbered(1, 10, "a", "00000001"), &events.UploadEvent{Kind: events.UploadAbort, DataID: pid},
		complete(1, 0, tag(1, "a")))
	if s := sts[3].Session; s.Status != session.Cancelled || sts[3].concat {
		t.Errorf("after abort and a late complete: %s", s.Status)
	}
}
