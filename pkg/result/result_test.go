package result

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/events"
)

const dataID = "0123456789abcdef0123456789abcdef"

var (
	uploaded = time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.FixedZone("CET", 3600))
	hashes   = events.Hashes{MD5: "m", SHA1: "s1", SHA256: "s256", SHA512: "s512"}
)

func newRecord(meta events.FileMeta, code int) *Record {
	return New(dataID, 1234, hashes, meta, uploaded, code)
}

// marshal encodes the public result and fails the test if it holds a null.
func marshal(t *testing.T, r *Record) []byte {
	t.Helper()
	b, err := json.Marshal(r.Result)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if bytes.Contains(b, []byte("null")) {
		t.Errorf("result JSON contains null: %s", b)
	}
	return b
}

func TestNew(t *testing.T) {
	for _, code := range []int{InProgress, MultipartUploading} {
		r := newRecord(events.FileMeta{DisplayName: "a.pdf", Workflow: "File process", UserAgent: "ua", Username: "bob"}, code)
		res := r.Result
		if res.DataID != dataID || res.FileID != dataID || res.ScanResults.DataID != dataID {
			t.Errorf("ids = %q/%q/%q, want %s everywhere", res.DataID, res.FileID, res.ScanResults.DataID, dataID)
		}
		if res.ScanResults.ScanAllResultI != code || res.ScanResults.ScanAllResultA != CodeName(code) {
			t.Errorf("scan_all_result = %d %q, want %d %q", res.ScanResults.ScanAllResultI, res.ScanResults.ScanAllResultA, code, CodeName(code))
		}
		if res.ScanResults.ProgressPercentage != 0 || res.ProcessInfo.ProgressPercentage != 0 {
			t.Errorf("progress = %d/%d, want 0", res.ScanResults.ProgressPercentage, res.ProcessInfo.ProgressPercentage)
		}
		if res.ScanResults.TotalTime != -1 {
			t.Errorf("total_time = %d, want -1 while running", res.ScanResults.TotalTime)
		}
		if res.ProcessInfo.Result != Processing {
			t.Errorf("process_info.result = %q, want %q", res.ProcessInfo.Result, Processing)
		}
		if r.Final() {
			t.Error("a new record reports Final()")
		}
		fi := res.FileInfo
		if fi.DisplayName != "a.pdf" || fi.FileSize != 1234 || fi.MD5 != "m" || fi.SHA1 != "s1" || fi.SHA256 != "s256" || fi.SHA512 != "s512" {
			t.Errorf("file_info = %+v", fi)
		}
		if fi.UploadTimestamp != "2026-03-04T04:06:07.890Z" {
			t.Errorf("upload_timestamp = %q, want UTC 2026-03-04T04:06:07.890Z", fi.UploadTimestamp)
		}
		pi := res.ProcessInfo
		if pi.Profile != "File process" || pi.UserAgent != "ua" || pi.Username != "bob" {
			t.Errorf("process_info profile/user_agent/username = %q/%q/%q", pi.Profile, pi.UserAgent, pi.Username)
		}
	}
}

func TestNewMetadata(t *testing.T) {
	tests := []struct {
		name string
		in   json.RawMessage
		want string
	}{
		{"absent", nil, `{}`},
		{"empty", json.RawMessage{}, `{}`},
		{"set", json.RawMessage(`{"ticket":"T-1","n":2}`), `{"ticket":"T-1","n":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := marshal(t, newRecord(events.FileMeta{Metadata: tt.in}, InProgress))
			var got struct{ Metadata json.RawMessage }
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if string(got.Metadata) != tt.want {
				t.Errorf("metadata = %s, want %s", got.Metadata, tt.want)
			}
		})
	}
}

// documentedKeys are the paths API.md lists for GET /file/{data_id}
// (extracted_files is present only for archives).
var documentedKeys = []string{
	"data_id", "file_id", "metadata",
	"file_info.display_name", "file_info.file_size", "file_info.file_type", "file_info.file_type_description",
	"file_info.file_type_extension", "file_info.md5", "file_info.sha1", "file_info.sha256", "file_info.sha512",
	"file_info.upload_timestamp",
	"process_info.result", "process_info.blocked_reason", "process_info.blocked_reasons", "process_info.verdicts",
	"process_info.profile", "process_info.user_agent", "process_info.username", "process_info.progress_percentage",
	"process_info.file_type_skipped_scan", "process_info.queue_time", "process_info.processing_time",
	"process_info.post_processing.actions_ran", "process_info.post_processing.actions_failed",
	"process_info.post_processing.converted_to", "process_info.post_processing.converted_destination",
	"process_info.post_processing.copy_move_destination",
	"scan_results.data_id", "scan_results.scan_all_result_i", "scan_results.scan_all_result_a",
	"scan_results.progress_percentage", "scan_results.start_time", "scan_results.total_time",
	"scan_results.total_avs", "scan_results.total_detected_avs", "scan_results.scan_details",
}

func checkDocumentedKeys(t *testing.T, b []byte) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, path := range documentedKeys {
		var cur any = doc
		for _, k := range strings.Split(path, ".") {
			m, ok := cur.(map[string]any)
			if !ok {
				cur = nil
				break
			}
			if cur, ok = m[k]; !ok {
				break
			}
		}
		if cur == nil {
			t.Errorf("JSON lacks %s (or it is null): %s", path, b)
		}
	}
	if _, ok := doc["extracted_files"]; ok {
		t.Errorf("extracted_files present for a file that is not an archive")
	}
}

func TestJSONShape(t *testing.T) {
	// Nothing but the required arguments: every string must still be "".
	r := New(dataID, 0, events.Hashes{}, events.FileMeta{}, uploaded, InProgress)
	checkDocumentedKeys(t, marshal(t, r))

	r.Finish(NoThreat, nil, uploaded, uploaded.Add(time.Second))
	checkDocumentedKeys(t, marshal(t, r))

	r = New(dataID, 0, events.Hashes{}, events.FileMeta{}, uploaded, InProgress)
	r.Finish(Infected, nil, uploaded, uploaded.Add(time.Second))
	checkDocumentedKeys(t, marshal(t, r))
}

func TestRecordRoundTrip(t *testing.T) {
	r := newRecord(events.FileMeta{DisplayName: "x", Metadata: json.RawMessage(`{"k":"v"}`)}, InProgress)
	r.Finish(Infected, []string{"Infected"}, uploaded, uploaded.Add(2*time.Second))
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(&back)
	if !bytes.Equal(b, again) {
		t.Errorf("record changed in a JSON round trip:\n%s\n%s", b, again)
	}
	if !back.Final() {
		t.Error("decoded finished record is not Final()")
	}
}

func TestFinish(t *testing.T) {
	start := uploaded.Add(time.Second)
	end := start.Add(1500 * time.Millisecond)
	tests := []struct {
		name        string
		code        int
		reasons     []string
		wantResult  string
		wantReason  string
		wantReasons []string
	}{
		{"infected", Infected, nil, Blocked, "Infected", []string{"Infected"}},
		{"no threat", NoThreat, nil, Allowed, "", []string{}},
		{"allowlisted", Allowlisted, nil, Allowed, "", []string{}},
		{"failed", Failed, nil, Blocked, "Failed", []string{"Failed"}},
		{"given reasons", Infected, []string{"Infected", "Suspicious"}, Blocked, "Infected", []string{"Infected", "Suspicious"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecord(events.FileMeta{}, InProgress)
			r.Finish(tt.code, tt.reasons, start, end)
			res := r.Result
			if !r.Final() {
				t.Error("not Final() after Finish")
			}
			if res.ScanResults.ScanAllResultI != tt.code || res.ScanResults.ScanAllResultA != CodeName(tt.code) {
				t.Errorf("scan_all_result = %d %q", res.ScanResults.ScanAllResultI, res.ScanResults.ScanAllResultA)
			}
			if res.ScanResults.ProgressPercentage != 100 || res.ProcessInfo.ProgressPercentage != 100 {
				t.Errorf("progress = %d/%d, want 100", res.ScanResults.ProgressPercentage, res.ProcessInfo.ProgressPercentage)
			}
			if res.ProcessInfo.Result != tt.wantResult || res.ProcessInfo.BlockedReason != tt.wantReason {
				t.Errorf("process_info = %q / blocked_reason %q, want %q / %q",
					res.ProcessInfo.Result, res.ProcessInfo.BlockedReason, tt.wantResult, tt.wantReason)
			}
			if strings.Join(res.ProcessInfo.BlockedReasons, "|") != strings.Join(tt.wantReasons, "|") || res.ProcessInfo.BlockedReasons == nil {
				t.Errorf("blocked_reasons = %#v, want %#v", res.ProcessInfo.BlockedReasons, tt.wantReasons)
			}
			if len(res.ProcessInfo.Verdicts) != 1 || res.ProcessInfo.Verdicts[0] != CodeName(tt.code) {
				t.Errorf("verdicts = %v, want [%s]", res.ProcessInfo.Verdicts, CodeName(tt.code))
			}
			if res.ScanResults.TotalTime != 1500 || res.ProcessInfo.ProcessingTime != 1500 {
				t.Errorf("total_time/processing_time = %d/%d, want 1500", res.ScanResults.TotalTime, res.ProcessInfo.ProcessingTime)
			}
			if res.ScanResults.StartTime != FormatTime(start) {
				t.Errorf("start_time = %q, want %q", res.ScanResults.StartTime, FormatTime(start))
			}
			marshal(t, r)
		})
	}
}

func TestFinishKeepsStartTime(t *testing.T) {
	r := newRecord(events.FileMeta{}, InProgress)
	first := uploaded.Add(time.Second)
	r.Result.ScanResults.StartTime = FormatTime(first)
	r.Finish(NoThreat, nil, first.Add(time.Minute), first.Add(time.Minute+time.Second))
	if r.Result.ScanResults.StartTime != FormatTime(first) {
		t.Errorf("start_time = %q, want the one already set, %q", r.Result.ScanResults.StartTime, FormatTime(first))
	}
}

func TestCancel(t *testing.T) {
	t.Run("not started", func(t *testing.T) {
		r := newRecord(events.FileMeta{}, MultipartUploading)
		now := uploaded.Add(time.Minute)
		r.Cancel(now)
		res := r.Result
		if res.ScanResults.ScanAllResultI != Cancelled || res.ScanResults.ScanAllResultA != "Cancelled" {
			t.Errorf("scan_all_result = %d %q, want 19 Cancelled", res.ScanResults.ScanAllResultI, res.ScanResults.ScanAllResultA)
		}
		if res.ProcessInfo.Result != Blocked || res.ProcessInfo.BlockedReason != "Cancelled" {
			t.Errorf("process_info = %q / %q, want Blocked / Cancelled", res.ProcessInfo.Result, res.ProcessInfo.BlockedReason)
		}
		if !r.Final() || res.ScanResults.TotalTime != 0 {
			t.Errorf("Final()=%v total_time=%d, want true and 0", r.Final(), res.ScanResults.TotalTime)
		}
		marshal(t, r)
	})
	t.Run("running", func(t *testing.T) {
		r := newRecord(events.FileMeta{}, InProgress)
		started := uploaded.Add(time.Second)
		r.Result.ScanResults.StartTime = FormatTime(started)
		r.Cancel(started.Add(2500 * time.Millisecond))
		if r.Result.ScanResults.TotalTime != 2500 {
			t.Errorf("total_time = %d, want 2500 (from the recorded start)", r.Result.ScanResults.TotalTime)
		}
	})
}

func TestBlocks(t *testing.T) {
	for code := range codeNames {
		want := true
		switch code {
		case NoThreat, Cleaned, Allowlisted, NotScanned, Sanitized:
			want = false
		}
		if got := Blocks(code); got != want {
			t.Errorf("Blocks(%d %s) = %v, want %v", code, CodeName(code), got, want)
		}
	}
}

func TestWorseOrdering(t *testing.T) {
	chain := []int{Blocklisted, Infected, Suspicious, Failed, NoThreat}
	for i, hi := range chain {
		for _, lo := range chain[i+1:] {
			if got := Worse(hi, lo); got != hi {
				t.Errorf("Worse(%s, %s) = %s, want %s", CodeName(hi), CodeName(lo), CodeName(got), CodeName(hi))
			}
			if got := Worse(lo, hi); got != hi {
				t.Errorf("Worse(%s, %s) = %s, want %s", CodeName(lo), CodeName(hi), CodeName(got), CodeName(hi))
			}
		}
	}
	for _, c := range chain {
		if Worse(c, c) != c {
			t.Errorf("Worse(%d, %d) = %d", c, c, Worse(c, c))
		}
	}
}

func TestWorseSymmetricAndConsistentWithSeverityOrder(t *testing.T) {
	order := SeverityOrder()
	seen := map[int]bool{}
	for _, c := range order {
		if seen[c] {
			t.Errorf("code %d listed twice in SeverityOrder", c)
		}
		seen[c] = true
	}
	for i, a := range order {
		for j, b := range order {
			ab, ba := Worse(a, b), Worse(b, a)
			if ab != ba {
				t.Errorf("Worse(%d, %d) = %d but Worse(%d, %d) = %d", a, b, ab, b, a, ba)
			}
			if want := order[min(i, j)]; ab != want {
				t.Errorf("Worse(%d, %d) = %d, want %d (earlier in SeverityOrder)", a, b, ab, want)
			}
		}
	}
	// Every final verdict has a place in the order; only the two
	// "not finished" codes have none.
	for code := range codeNames {
		if !seen[code] && code != InProgress && code != MultipartUploading {
			t.Errorf("code %d %q missing from SeverityOrder", code, CodeName(code))
		}
	}
}

func TestCodeName(t *testing.T) {
	// The list in API.md, verbatim.
	documented := map[int]string{
		0: "No Threat Detected", 1: "Infected", 2: "Suspicious", 3: "Failed", 4: "Cleaned / Deleted",
		7: "Allowlisted", 8: "Blocklisted", 9: "Exceeded Archive Depth", 10: "Not Scanned",
		12: "Encrypted Archive", 13: "Exceeded Archive Size", 14: "Exceeded Archive File Number",
		15: "Password Protected Document", 16: "Exceeded Archive Timeout", 17: "Mismatch",
		18: "Potentially Vulnerable File", 19: "Cancelled", 20: "Sensitive Data Found",
		21: "Yara Rule Matched", 22: "Potentially Unwanted", 23: "Unsupported File Type",
		24: "Extraction Failed", 30: "Blocked Verdict by Deep CDR", 31: "Global Timeout Exceeded",
		46: "Blocked Verdict by File Type", 47: "Multipart Upload Timed Out", 48: "Sanitized",
		52: "Blocked Verdict by Archive Extraction", 60: "Exceeded Archive Expansion Factor",
		255: "In Progress", 256: "Multipart Uploading",
	}
	for code, want := range documented {
		if got := CodeName(code); got != want {
			t.Errorf("CodeName(%d) = %q, want %q", code, got, want)
		}
	}
	for _, code := range []int{-1, 5, 6, 11, 25, 254, 257, 1000} {
		if got := CodeName(code); got != "Unknown" {
			t.Errorf("CodeName(%d) = %q, want Unknown", code, got)
		}
	}
}

func TestFormatTime(t *testing.T) {
	got := FormatTime(time.Date(2026, 1, 2, 3, 4, 5, 6_700_000, time.FixedZone("X", -2*3600)))
	if got != "2026-01-02T05:04:05.006Z" {
		t.Errorf("FormatTime = %q, want 2026-01-02T05:04:05.006Z", got)
	}
}

// A rescan's record reports the file it rescanned as its file_id (the
// same across rescans, as in MetaDefender Cloud); an upload's is its own
// data_id. Both from the queued event and from the scanner's record.
func TestFileIDOfRescans(t *testing.T) {
	upload := &events.FileComplete{DataID: "0123456789abcdef0123456789abcdef", Size: 3, Meta: events.FileMeta{Workflow: "default"}}
	rescan := &events.FileComplete{DataID: "fedcba9876543210fedcba9876543210", Size: 3, Meta: events.FileMeta{Workflow: "default"},
		FileID: upload.DataID}
	for _, tc := range []struct {
		f    *events.FileComplete
		want string
	}{{upload, upload.DataID}, {rescan, upload.DataID}} {
		queued := Apply(nil, &Event{Kind: EventQueued, DataID: tc.f.DataID, File: tc.f})
		if queued == nil || queued.Result.FileID != tc.want || queued.Result.DataID != tc.f.DataID {
			t.Errorf("queued %s: %+v, want file_id %s", tc.f.DataID, queued, tc.want)
		}
		if rec := NewFile(tc.f.DataID, tc.f, InProgress); rec.Result.FileID != tc.want {
			t.Errorf("NewFile(%s): file_id %s, want %s", tc.f.DataID, rec.Result.FileID, tc.want)
		}
	}
}
