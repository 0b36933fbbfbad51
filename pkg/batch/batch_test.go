package batch

import (
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/result"
)

// member is a final member with verdict code, Blocked when blocked.
func member(code int, blocked bool) *Member {
	m := &Member{ScanAllResultI: code, ScanAllResultA: result.CodeName(code), ProgressPercentage: 100,
		Result: result.Allowed, StartTime: "2026-01-02T03:04:05.000Z", TotalTime: 10, ScannedWith: 1}
	if blocked {
		m.Result, m.BlockedReason = result.Blocked, result.CodeName(code)
	}
	return m
}

func running(code int) *Member {
	return &Member{ScanAllResultI: code, ScanAllResultA: result.CodeName(code), Result: result.Processing, TotalTime: -1}
}

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []*Member
		code    int
		res     string
		reason  string
	}{
		{"empty", nil, result.NotScanned, result.Allowed, ""},
		{"all clean", []*Member{member(0, false), member(0, false)}, result.NoThreat, result.Allowed, ""},
		{"one infected", []*Member{member(0, false), member(1, true), member(0, false)}, result.Infected, result.Blocked, "Infected"},
		{"a running file holds the verdict", []*Member{member(1, true), running(result.InProgress)}, result.InProgress, result.Processing, ""},
		{"an upload still receiving bytes", []*Member{member(0, false), running(result.MultipartUploading)}, result.InProgress, result.Processing, ""},
		{"cancelled", []*Member{member(0, false), member(result.Cancelled, true)}, result.Cancelled, result.Blocked, "Cancelled"},
		// Severity, not the code's number: 8 Blocklisted is worse than 1
		// Infected, and 2 Suspicious worse than 3 Failed.
		{"blocklisted over infected", []*Member{member(1, true), member(8, true)}, result.Blocklisted, result.Blocked, "Blocklisted"},
		{"suspicious over failed", []*Member{member(3, true), member(2, true)}, result.Suspicious, result.Blocked, "Suspicious"},
		{"sanitized over clean", []*Member{member(0, false), member(result.Sanitized, false)}, result.Sanitized, result.Allowed, ""},
		// A workflow that lets mismatches through: the worst verdict is
		// Mismatch, yet the batch is Blocked by the member that is.
		{"blocked by a milder verdict", []*Member{member(17, false), member(3, true)}, result.Mismatch, result.Blocked, "Failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Fold(tc.members)
			if v.Code != tc.code || v.Result != tc.res || v.BlockedReason != tc.reason {
				t.Errorf("Fold = code %d %q reason %q; want %d %q %q", v.Code, v.Result, v.BlockedReason, tc.code, tc.res, tc.reason)
			}
			if v.Files != len(tc.members) {
				t.Errorf("Files = %d, want %d", v.Files, len(tc.members))
			}
		})
	}
}

// The first of equally bad members gives the reason; the end is the last
// member's.
func TestFoldReasonAndEnd(t *testing.T) {
	a, b := member(1, true), member(1, true)
	a.BlockedReason, b.BlockedReason = "first", "second"
	b.StartTime, b.TotalTime = "2026-01-02T03:04:06.000Z", 2500
	v := Fold([]*Member{a, b})
	if v.BlockedReason != "first" {
		t.Errorf("reason %q, want the first member's", v.BlockedReason)
	}
	want := time.Date(2026, 1, 2, 3, 4, 8, 500e6, time.UTC)
	if !v.End.Equal(want) {
		t.Errorf("End = %v, want %v", v.End, want)
	}
	if v := Fold([]*Member{a, running(255)}); !v.End.IsZero() || v.Finished != 1 {
		t.Errorf("while running: End %v, Finished %d", v.End, v.Finished)
	}
}

func TestMemberOf(t *testing.T) {
	rec := result.New("0123456789abcdef0123456789abcdef", 42, events.Hashes{SHA256: "ab"}, events.FileMeta{DisplayName: "a.txt"}, time.Now(), result.InProgress)
	rec.Seq = 7
	m := MemberOf(rec)
	if m.DataID != rec.Result.DataID || m.DisplayName != "a.txt" || m.FileSize != 42 || m.Final() || m.Seq != 7 || m.TotalTime != -1 {
		t.Errorf("MemberOf(running) = %+v", m)
	}
	rec.Finish(result.Infected, nil, time.Now().Add(-time.Second), time.Now())
	if m := MemberOf(rec); !m.Final() || m.Result != result.Blocked || m.BlockedReason != "Infected" || m.Uploading() {
		t.Errorf("MemberOf(final) = %+v", m)
	}
}
