// Package result is the scan result in MetaDefender's JSON shape, the verdict
// codes, and the record scangate keeps per data_id in the results bucket.
//
// The shape follows API.md to the letter because existing clients parse it:
// every documented field is present, numbers are integers, strings are never
// null.
package result

import (
	"encoding/json"
	"time"

	"github.com/scangate/scangate/pkg/events"
)

// Verdict codes (scan_result_i, scan_all_result_i).
const (
	NoThreat           = 0
	Infected           = 1
	Suspicious         = 2
	Failed             = 3
	Cleaned            = 4
	Allowlisted        = 7
	Blocklisted        = 8
	ExceededDepth      = 9
	NotScanned         = 10
	Encrypted          = 12
	ExceededSize       = 13
	ExceededFileNumber = 14
	PasswordProtected  = 15
	ExceededTimeout    = 16
	Mismatch           = 17
	PotentiallyVuln    = 18
	Cancelled          = 19
	SensitiveData      = 20
	YaraMatched        = 21
	PotentiallyUnwant  = 22
	UnsupportedType    = 23
	ExtractionFailed   = 24
	BlockedByCDR       = 30
	GlobalTimeout      = 31
	BlockedByFileType  = 46
	MultipartTimedOut  = 47
	Sanitized          = 48
	BlockedByArchive   = 52
	ExceededExpansion  = 60
	InProgress         = 255
	MultipartUploading = 256
)

var codeNames = map[int]string{
	NoThreat: "No Threat Detected", Infected: "Infected", Suspicious: "Suspicious", Failed: "Failed",
	Cleaned: "Cleaned / Deleted", Allowlisted: "Allowlisted", Blocklisted: "Blocklisted",
	ExceededDepth: "Exceeded Archive Depth", NotScanned: "Not Scanned", Encrypted: "Encrypted Archive",
	ExceededSize: "Exceeded Archive Size", ExceededFileNumber: "Exceeded Archive File Number",
	PasswordProtected: "Password Protected Document", ExceededTimeout: "Exceeded Archive Timeout",
	Mismatch: "Mismatch", PotentiallyVuln: "Potentially Vulnerable File", Cancelled: "Cancelled",
	SensitiveData: "Sensitive Data Found", YaraMatched: "Yara Rule Matched",
	PotentiallyUnwant: "Potentially Unwanted", UnsupportedType: "Unsupported File Type",
	ExtractionFailed: "Extraction Failed", BlockedByCDR: "Blocked Verdict by Deep CDR",
	GlobalTimeout: "Global Timeout Exceeded", BlockedByFileType: "Blocked Verdict by File Type",
	MultipartTimedOut: "Multipart Upload Timed Out", Sanitized: "Sanitized",
	BlockedByArchive: "Blocked Verdict by Archive Extraction", ExceededExpansion: "Exceeded Archive Expansion Factor",
	InProgress: "In Progress", MultipartUploading: "Multipart Uploading",
}

// CodeName is the scan_all_result_a text of a verdict code.
func CodeName(code int) string {
	if s, ok := codeNames[code]; ok {
		return s
	}
	return "Unknown"
}

// Process results (process_info.result).
const (
	Allowed    = "Allowed"
	Blocked    = "Blocked"
	Processing = "Processing"
)

// Result is the body of GET /file/{data_id}.
type Result struct {
	DataID         string          `json:"data_id"`
	FileID         string          `json:"file_id"`
	FileInfo       FileInfo        `json:"file_info"`
	ProcessInfo    ProcessInfo     `json:"process_info"`
	ScanResults    ScanResults     `json:"scan_results"`
	ExtractedFiles *ExtractedFiles `json:"extracted_files,omitempty"`
	Metadata       json.RawMessage `json:"metadata"`
}

type FileInfo struct {
	DisplayName         string `json:"display_name"`
	FileSize            int64  `json:"file_size"`
	FileType            string `json:"file_type"`
	FileTypeDescription string `json:"file_type_description"`
	FileTypeExtension   string `json:"file_type_extension"`
	MD5                 string `json:"md5"`
	SHA1                string `json:"sha1"`
	SHA256              string `json:"sha256"`
	SHA512              string `json:"sha512"`
	UploadTimestamp     string `json:"upload_timestamp"`
}

type ProcessInfo struct {
	Result              string         `json:"result"`
	BlockedReason       string         `json:"blocked_reason"`
	BlockedReasons      []string       `json:"blocked_reasons"`
	Verdicts            []string       `json:"verdicts"`
	Profile             string         `json:"profile"`
	UserAgent           string         `json:"user_agent"`
	Username            string         `json:"username"`
	ProgressPercentage  int            `json:"progress_percentage"`
	FileTypeSkippedScan bool           `json:"file_type_skipped_scan"`
	QueueTime           int64          `json:"queue_time"`
	ProcessingTime      int64          `json:"processing_time"`
	PostProcessing      PostProcessing `json:"post_processing"`
}

type PostProcessing struct {
	ActionsRan           string `json:"actions_ran"`
	ActionsFailed        string `json:"actions_failed"`
	ConvertedTo          string `json:"converted_to"`
	ConvertedDestination string `json:"converted_destination"`
	CopyMoveDestination  string `json:"copy_move_destination"`
}

type ScanResults struct {
	DataID             string                `json:"data_id"`
	ScanAllResultI     int                   `json:"scan_all_result_i"`
	ScanAllResultA     string                `json:"scan_all_result_a"`
	ProgressPercentage int                   `json:"progress_percentage"`
	StartTime          string                `json:"start_time"`
	TotalTime          int64                 `json:"total_time"`
	TotalAVs           int                   `json:"total_avs"`
	TotalDetectedAVs   int                   `json:"total_detected_avs"`
	ScanDetails        map[string]EngineScan `json:"scan_details"`
}

// EngineScan is one engine's entry in scan_details.
type EngineScan struct {
	ScanResultI int    `json:"scan_result_i"`
	ThreatFound string `json:"threat_found"`
	DefTime     string `json:"def_time"`
	ScanTime    int64  `json:"scan_time"`
	WaitTime    int64  `json:"wait_time"`
	EngID       string `json:"eng_id"`
}

type ExtractedFiles struct {
	FilesExtractedCount int           `json:"files_extracted_count"`
	FirstIndex          int           `json:"first_index"`
	PageSize            int           `json:"page_size"`
	WorstDataID         string        `json:"worst_data_id"`
	FilesInArchive      []ArchiveFile `json:"files_in_archive"`
}

type ArchiveFile struct {
	DataID              string `json:"data_id"`
	DisplayName         string `json:"display_name"`
	FileSize            int64  `json:"file_size"`
	FileType            string `json:"file_type"`
	FileTypeDescription string `json:"file_type_description"`
	ScanAllResultI      int    `json:"scan_all_result_i"`
	ScanAllResultA      string `json:"scan_all_result_a"`
	DetectedBy          int    `json:"detected_by"`
	ScannedWith         int    `json:"scanned_with"`
	ProgressPercentage  int    `json:"progress_percentage"`
	ProcessInfo         struct {
		Result             string `json:"result"`
		BlockedReason      string `json:"blocked_reason"`
		ProgressPercentage int    `json:"progress_percentage"`
	} `json:"process_info"`
}

// Record is what the results bucket holds per data_id: the public result
// plus what scangate needs to act on it later (webhook targets, workflow).
type Record struct {
	Result Result          `json:"result"`
	Meta   events.FileMeta `json:"meta"`
	// Seq is the RESULTS stream sequence of the last event applied: a
	// redelivered event at or below it changes nothing.
	Seq uint64 `json:"seq,omitempty"`
}

// Final reports whether the record holds a finished verdict.
func (r *Record) Final() bool { return r.Result.ScanResults.ProgressPercentage == 100 }

// TimeFormat is how result timestamps are written (MetaDefender uses ISO 8601 UTC).
const TimeFormat = "2006-01-02T15:04:05.000Z"

// FormatTime renders t in TimeFormat, UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// New is a result for a file accepted but not yet finished: verdict code
// (255 In Progress or 256 Multipart Uploading), progress 0, total_time -1.
func New(dataID string, size int64, h events.Hashes, meta events.FileMeta, uploadedAt time.Time, code int) *Record {
	md := meta.Metadata
	if len(md) == 0 {
		md = json.RawMessage(`{}`)
	}
	return &Record{
		Meta: meta,
		Result: Result{
			DataID: dataID,
			FileID: dataID,
			FileInfo: FileInfo{
				DisplayName:     meta.DisplayName,
				FileSize:        size,
				MD5:             h.MD5,
				SHA1:            h.SHA1,
				SHA256:          h.SHA256,
				SHA512:          h.SHA512,
				UploadTimestamp: FormatTime(uploadedAt),
			},
			ProcessInfo: ProcessInfo{
				Result:         Processing,
				BlockedReasons: []string{},
				Verdicts:       []string{},
				Profile:        meta.Workflow,
				UserAgent:      meta.UserAgent,
				Username:       meta.Username,
			},
			ScanResults: ScanResults{
				DataID:         dataID,
				ScanAllResultI: code,
				ScanAllResultA: CodeName(code),
				TotalTime:      -1,
				ScanDetails:    map[string]EngineScan{},
			},
			Metadata: md,
		},
	}
}

// NewFile is New for a file queued for scanning. A rescan's result reports
// the file it rescanned as its file_id, as MetaDefender Cloud does: the
// file_id stays the same across scans, the data_id is per scan.
func NewFile(dataID string, f *events.FileComplete, code int) *Record {
	rec := New(dataID, f.Size, f.Hashes, f.Meta, f.UploadedAt, code)
	if f.FileID != "" {
		rec.Result.FileID = f.FileID
	}
	return rec
}

// Blocks reports whether a verdict code makes process_info.result "Blocked"
// when the workflow does not say otherwise: anything but a clean or
// deliberately allowed outcome.
func Blocks(code int) bool {
	switch code {
	case NoThreat, Cleaned, Allowlisted, NotScanned, Sanitized:
		return false
	}
	return true
}

// Finish closes the record with a final verdict: progress 100, the overall
// code and text, Allowed or Blocked with the reasons.
func (r *Record) Finish(code int, reasons []string, start, end time.Time) {
	res := &r.Result
	res.ScanResults.ScanAllResultI = code
	res.ScanResults.ScanAllResultA = CodeName(code)
	res.ScanResults.ProgressPercentage = 100
	res.ProcessInfo.ProgressPercentage = 100
	if res.ScanResults.StartTime == "" {
		res.ScanResults.StartTime = FormatTime(start)
	}
	res.ScanResults.TotalTime = end.Sub(start).Milliseconds()
	res.ProcessInfo.ProcessingTime = res.ScanResults.TotalTime
	if reasons == nil {
		reasons = []string{}
	}
	res.ProcessInfo.BlockedReasons = reasons
	res.ProcessInfo.Verdicts = []string{CodeName(code)}
	if Blocks(code) {
		res.ProcessInfo.Result = Blocked
		if len(reasons) == 0 {
			res.ProcessInfo.BlockedReasons = []string{CodeName(code)}
		}
		res.ProcessInfo.BlockedReason = res.ProcessInfo.BlockedReasons[0]
	} else {
		res.ProcessInfo.Result = Allowed
		res.ProcessInfo.BlockedReason = ""
	}
}

// Cancel closes an unfinished record with verdict 19.
func (r *Record) Cancel(now time.Time) {
	start := now
	if t, err := time.Parse(TimeFormat, r.Result.ScanResults.StartTime); err == nil {
		start = t
	}
	r.Finish(Cancelled, nil, start, now)
}

// severity lists verdict codes from most to least severe, in MetaDefender's
// order: blocklist, threats, policy, processing problems, limits, then the
// outcomes that let a file through.
var severity = []int{
	Blocklisted, Infected, Suspicious, PotentiallyUnwant, YaraMatched, SensitiveData, PotentiallyVuln,
	Mismatch, BlockedByFileType, BlockedByCDR, BlockedByArchive, Encrypted, PasswordProtected,
	Failed, ExtractionFailed, UnsupportedType, GlobalTimeout, Cancelled, MultipartTimedOut,
	ExceededDepth, ExceededSize, ExceededFileNumber, ExceededTimeout, ExceededExpansion,
	NotScanned, Cleaned, Sanitized, Allowlisted, NoThreat,
}

var rank = func() map[int]int {
	m := make(map[int]int, len(severity))
	for i, c := range severity {
		m[c] = len(severity) - i
	}
	return m
}()

// SeverityOrder returns verdict codes from most to least severe.
func SeverityOrder() []int { return severity }

// severityOf ranks a code; a code scangate does not know ranks like
// Failed, so it is never hidden behind a clean verdict.
func severityOf(code int) int {
	if r, ok := rank[code]; ok {
		return r
	}
	return rank[Failed]
}

// Worse returns the more severe of two verdict codes (the lower code on a tie).
func Worse(a, b int) int {
	ra, rb := severityOf(a), severityOf(b)
	if rb > ra || rb == ra && b < a {
		return b
	}
	return a
}

// Family is the verdict family of a code, as workflows name them in their
// block lists; "" for clean outcomes.
func Family(code int) string {
	switch code {
	case Infected:
		return "infected"
	case Suspicious:
		return "suspicious"
	case PotentiallyUnwant:
		return "unwanted"
	case Blocklisted:
		return "blocklisted"
	case Encrypted, PasswordProtected:
		return "encrypted"
	case ExceededDepth, ExceededSize, ExceededFileNumber, ExceededTimeout, ExceededExpansion:
		return "archive_limits"
	case Mismatch:
		return "mismatch"
	case BlockedByFileType:
		return "filetype"
	case GlobalTimeout:
		return "timeout"
	case NoThreat, Cleaned, Allowlisted, NotScanned, Sanitized:
		return ""
	}
	return "failed" // Failed, Extraction Failed and anything unknown
}

// Policy is a workflow's choice of verdict families that block a file.
type Policy struct {
	Families []string // empty: every family blocks
}

// Blocks reports whether code makes the file Blocked under p. Verdicts
// that leave no file to allow (cancelled, timed-out uploads, the explicit
// "Blocked Verdict by ..." outcomes) always block.
func (p Policy) Blocks(code int) bool {
	switch code {
	case Cancelled, MultipartTimedOut, BlockedByCDR, BlockedByArchive:
		return true
	}
	f := Family(code)
	if f == "" {
		return false
	}
	if len(p.Families) == 0 {
		return true
	}
	for _, x := range p.Families {
		if x == f {
			return true
		}
	}
	return false
}

// Reasons lists, most severe first, the names of the codes that block
// under p.
func (p Policy) Reasons(codes map[int]bool) []string {
	out := []string{}
	for _, c := range severity {
		if codes[c] && p.Blocks(c) {
			out = append(out, CodeName(c))
		}
	}
	return out
}

// Conclude closes the record with the overall code; the file is Blocked
// exactly when blocking lists a reason.
func (r *Record) Conclude(code int, blocking []string, start, end time.Time) {
	r.Finish(code, blocking, start, end)
	pi := &r.Result.ProcessInfo
	if len(blocking) == 0 {
		pi.Result, pi.BlockedReason, pi.BlockedReasons = Allowed, "", []string{}
	} else {
		pi.Result, pi.BlockedReason, pi.BlockedReasons = Blocked, blocking[0], blocking
	}
}
