// Package batch is what scangate keeps about batches (MetaDefender
// Cluster's grouping of files under one batch_id): the batch itself, the
// files that joined it, each member's summary, the batch verdict folded
// from the summaries, and the signing of batch reports.
//
// State, one writer each (see events.BucketBatches):
//   - ingest writes the batch (created, closed, cancelled: compare-and-set,
//     so it only ever moves forward) and each file's join, exactly once,
//     fenced on the batch still being open;
//   - the recorder writes each member's summary whenever it writes the
//     member's result record, from that record alone.
//
// No value grows with the batch: a batch of ten thousand files is ten
// thousand small joins and summaries, read with one filtered listing each.
package batch

import (
	"time"

	"github.com/scangate/scangate/pkg/result"
)

// Batch is the batch itself (key <batch_id> in events.BucketBatches).
type Batch struct {
	BatchID string `json:"batch_id"`
	// Owner is the user who created it: only they (and admins) see it or
	// add files to it.
	Owner string `json:"owner"`
	// Workflow is the rule of the batch: a file sent into it without a
	// rule or user_agent of its own is processed with it.
	Workflow  string    `json:"workflow"`
	UserAgent string    `json:"user_agent,omitempty"`
	UserData  string    `json:"user_data,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Closed    bool      `json:"closed,omitempty"`
	ClosedAt  time.Time `json:"closed_at,omitzero"`
	Cancelled bool      `json:"cancelled,omitempty"`
}

// Join records that a file joined a batch (key <batch_id>.<data_id> in
// events.BucketBatches). It is written once, before the file is accepted,
// and never changes: listing the joins gives the members in the order they
// joined, whatever their results do meanwhile.
type Join struct {
	DataID   string    `json:"data_id"`
	JoinedAt time.Time `json:"joined_at"`
}

// Member is a member file's summary (key <batch_id>.<data_id> in
// events.BucketBatchFiles): what the batch status lists for it and what
// the batch verdict is folded from.
type Member struct {
	DataID              string `json:"data_id"`
	DisplayName         string `json:"display_name"`
	FileSize            int64  `json:"file_size"`
	FileType            string `json:"file_type"`
	FileTypeDescription string `json:"file_type_description"`
	SHA256              string `json:"sha256"`
	ScanAllResultI      int    `json:"scan_all_result_i"`
	ScanAllResultA      string `json:"scan_all_result_a"`
	DetectedBy          int    `json:"detected_by"`
	ScannedWith         int    `json:"scanned_with"`
	ProgressPercentage  int    `json:"progress_percentage"`
	Result              string `json:"result"`
	BlockedReason       string `json:"blocked_reason"`
	StartTime           string `json:"start_time"`
	TotalTime           int64  `json:"total_time"`
	UploadTimestamp     string `json:"upload_timestamp"`
	// Seq is the RESULTS sequence of the record it summarises.
	Seq uint64 `json:"seq"`
}

// MemberOf summarises a file's result record.
func MemberOf(rec *result.Record) *Member {
	r := &rec.Result
	return &Member{
		DataID:              r.DataID,
		DisplayName:         r.FileInfo.DisplayName,
		FileSize:            r.FileInfo.FileSize,
		FileType:            r.FileInfo.FileType,
		FileTypeDescription: r.FileInfo.FileTypeDescription,
		SHA256:              r.FileInfo.SHA256,
		ScanAllResultI:      r.ScanResults.ScanAllResultI,
		ScanAllResultA:      r.ScanResults.ScanAllResultA,
		DetectedBy:          r.ScanResults.TotalDetectedAVs,
		ScannedWith:         r.ScanResults.TotalAVs,
		ProgressPercentage:  r.ScanResults.ProgressPercentage,
		Result:              r.ProcessInfo.Result,
		BlockedReason:       r.ProcessInfo.BlockedReason,
		StartTime:           r.ScanResults.StartTime,
		TotalTime:           r.ScanResults.TotalTime,
		UploadTimestamp:     r.FileInfo.UploadTimestamp,
		Seq:                 rec.Seq,
	}
}

// Final reports whether the member has its final verdict.
func (m *Member) Final() bool { return m.ProgressPercentage == 100 }

// Uploading reports whether the member is a multipart or chunked upload
// still receiving bytes: such a member keeps its batch from closing.
func (m *Member) Uploading() bool { return m.ScanAllResultI == result.MultipartUploading }

// end is when the member finished (zero when it has not, or its times are
// unknown).
func (m *Member) end() time.Time {
	start, err := time.Parse(result.TimeFormat, m.StartTime)
	if !m.Final() || err != nil || m.TotalTime < 0 {
		return time.Time{}
	}
	return start.Add(time.Duration(m.TotalTime) * time.Millisecond)
}

// Verdict is a batch's verdict, folded from its members.
type Verdict struct {
	// Code is scan_all_result_i: 255 In Progress while any member is not
	// final, else the worst of the members' verdicts (result.Worse), and
	// 10 Not Scanned for a batch without files.
	Code int
	// Result is process_info.result: Processing while any member is not
	// final, else Blocked when any member is Blocked, else Allowed.
	Result string
	// BlockedReason is the blocked_reason of the Blocked member with the
	// worst verdict (the first to join among equals); "" unless Blocked.
	BlockedReason string
	// TotalAVs is the most engines any member was scanned with.
	TotalAVs int
	// End is when the last member finished; zero unless every member is
	// final.
	End time.Time
	// Files and Finished count the members and those with a final verdict.
	Files, Finished int
}

// Fold computes a batch's verdict from its members, given in the order
// they joined. "Worst" is result.Worse: scangate's one severity order of
// verdict codes (blocklisted and infected first, then policy verdicts,
// failures, limits, and the outcomes that let a file through last), the
// same order that makes a file's own verdict from its engines'. A member
// still running makes the whole batch In Progress: a batch verdict that
// could still turn worse is no verdict.
func Fold(members []*Member) Verdict {
	v := Verdict{Files: len(members), Result: result.Allowed}
	worst, worstBlocked := -1, -1
	for _, m := range members {
		v.TotalAVs = max(v.TotalAVs, m.ScannedWith)
		if !m.Final() {
			continue
		}
		v.Finished++
		if e := m.end(); e.After(v.End) {
			v.End = e
		}
		if worst < 0 || result.Worse(worst, m.ScanAllResultI) != worst {
			worst = m.ScanAllResultI
		}
		if m.Result == result.Blocked && (worstBlocked < 0 || result.Worse(worstBlocked, m.ScanAllResultI) != worstBlocked) {
			worstBlocked = m.ScanAllResultI
			v.BlockedReason = m.BlockedReason
			if v.BlockedReason == "" {
				v.BlockedReason = m.ScanAllResultA
			}
		}
	}
	switch {
	case v.Finished < v.Files:
		v.Code, v.Result, v.BlockedReason, v.End = result.InProgress, result.Processing, "", time.Time{}
	case v.Files == 0:
		v.Code = result.NotScanned
	default:
		v.Code = worst
		if worstBlocked >= 0 {
			v.Result = result.Blocked
		}
	}
	return v
}
