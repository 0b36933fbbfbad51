package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Result is GET /file/{data_id} (and GET /hash/{hash}) in the MetaDefender
// shape. Fields a client rarely needs are left out; Raw keeps the whole
// answer.
type Result struct {
	DataID         string          `json:"data_id"`
	FileID         string          `json:"file_id"`
	FileInfo       FileInfo        `json:"file_info"`
	ProcessInfo    ProcessInfo     `json:"process_info"`
	ScanResults    ScanResults     `json:"scan_results"`
	ExtractedFiles *ExtractedFiles `json:"extracted_files,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`

	// Raw is the answer as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// FileInfo describes the file.
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

// ProcessInfo is the workflow's decision.
type ProcessInfo struct {
	Result             string         `json:"result"` // "Allowed", "Blocked" or "Processing"
	BlockedReason      string         `json:"blocked_reason"`
	BlockedReasons     []string       `json:"blocked_reasons"`
	Verdicts           []string       `json:"verdicts"`
	Profile            string         `json:"profile"` // the workflow that ran
	UserAgent          string         `json:"user_agent"`
	Username           string         `json:"username"`
	ProgressPercentage int            `json:"progress_percentage"`
	QueueTime          int64          `json:"queue_time"`
	ProcessingTime     int64          `json:"processing_time"`
	PostProcessing     PostProcessing `json:"post_processing"`
}

// PostProcessing reports sanitization and other actions.
type PostProcessing struct {
	ActionsRan           string `json:"actions_ran"`
	ActionsFailed        string `json:"actions_failed"`
	ConvertedTo          string `json:"converted_to"`
	ConvertedDestination string `json:"converted_destination"`
	CopyMoveDestination  string `json:"copy_move_destination"`
}

// ScanResults is the verdict of every engine and the overall one.
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

// EngineScan is one engine's verdict.
type EngineScan struct {
	ScanResultI int    `json:"scan_result_i"`
	ThreatFound string `json:"threat_found"`
	DefTime     string `json:"def_time"`
	ScanTime    int64  `json:"scan_time"`
	EngID       string `json:"eng_id"`
}

// ExtractedFiles lists an archive's children (one page of them).
type ExtractedFiles struct {
	FilesExtractedCount int           `json:"files_extracted_count"`
	FirstIndex          int           `json:"first_index"`
	PageSize            int           `json:"page_size"`
	WorstDataID         string        `json:"worst_data_id"`
	FilesInArchive      []ArchiveFile `json:"files_in_archive"`
}

// ArchiveFile is a child of an archive.
type ArchiveFile struct {
	DataID              string `json:"data_id"`
	DisplayName         string `json:"display_name"`
	FileSize            int64  `json:"file_size"`
	FileTypeDescription string `json:"file_type_description"`
	ScanAllResultI      int    `json:"scan_all_result_i"`
	ScanAllResultA      string `json:"scan_all_result_a"`
	DetectedBy          int    `json:"detected_by"`
	ProgressPercentage  int    `json:"progress_percentage"`
}

// Result codes of scan_all_result_i and scan_result_i that clients test for.
const (
	NoThreatDetected   = 0
	Infected           = 1
	Suspicious         = 2
	Failed             = 3
	Cancelled          = 19
	MultipartTimedOut  = 47
	InProgress         = 255
	MultipartUploading = 256
)

// Done reports whether the scan has finished (progress 100).
func (r *Result) Done() bool { return r.ScanResults.ProgressPercentage == 100 }

// Blocked reports whether the workflow blocked the file
// (process_info.result "Blocked"): what a gate acts on.
func (r *Result) Blocked() bool { return r.ProcessInfo.Result == "Blocked" }

// Infected reports whether the overall verdict, or any engine's, is
// Infected.
func (r *Result) Infected() bool {
	if r.ScanResults.ScanAllResultI == Infected {
		return true
	}
	for _, d := range r.ScanResults.ScanDetails {
		if d.ScanResultI == Infected {
			return true
		}
	}
	return false
}

// Threats returns the distinct threat names the engines found, sorted.
func (r *Result) Threats() []string {
	var out []string
	for _, d := range r.ScanResults.ScanDetails {
		if d.ThreatFound != "" && !slices.Contains(out, d.ThreatFound) {
			out = append(out, d.ThreatFound)
		}
	}
	slices.Sort(out)
	return out
}

// parseResult decodes a lookup answer; {"<key>": "Not Found"} is a
// *NotFoundError.
func parseResult(key string, raw []byte) (*Result, error) {
	var nf map[string]json.RawMessage
	if json.Unmarshal(raw, &nf) == nil && len(nf) == 1 {
		if v, ok := nf[key]; ok && bytes.Equal(v, []byte(`"Not Found"`)) {
			return nil, &NotFoundError{ID: key}
		}
		for k, v := range nf { // ids are matched case-insensitively by some servers
			if bytes.Equal(v, []byte(`"Not Found"`)) {
				return nil, &NotFoundError{ID: k}
			}
		}
	}
	r := &Result{Raw: raw}
	if err := json.Unmarshal(raw, r); err != nil {
		return nil, fmt.Errorf("scangate: result of %s: %w", key, err)
	}
	return r, nil
}

// Result returns the current state of a file's scan (GET /file/{data_id}),
// finished or not. An unknown data_id is ErrNotFound.
func (c *Client) Result(ctx context.Context, dataID string) (*Result, error) {
	resp, err := c.exchange(ctx, &request{method: http.MethodGet, path: "/file/" + url.PathEscape(dataID), idempotent: true})
	if err != nil {
		return nil, err
	}
	return parseResult(dataID, resp.body)
}

// Hash returns the most recent result for a md5, sha1, sha256 or sha512
// (GET /hash/{hash}); rule, when not empty, narrows the lookup to a
// workflow. An unknown hash is ErrNotFound.
func (c *Client) Hash(ctx context.Context, hash, rule string) (*Result, error) {
	var h http.Header
	if rule != "" {
		h = http.Header{"Rule": {headerValue(rule)}}
	}
	resp, err := c.exchange(ctx, &request{method: http.MethodGet, path: "/hash/" + url.PathEscape(hash), header: h, idempotent: true})
	if err != nil {
		return nil, err
	}
	return parseResult(hash, resp.body)
}

// WaitOptions paces Wait.
type WaitOptions struct {
	MinInterval time.Duration // first pause between looks (default 250ms)
	MaxInterval time.Duration // longest pause (default 5s)
	// Progress, when set, sees every result read while waiting.
	Progress func(*Result)
}

// Wait polls GET /file/{data_id} until the scan is done (progress 100) and
// returns the final result. Pauses between looks grow from MinInterval to
// MaxInterval with jitter, so many waiting clients do not poll in step.
// It stops when ctx ends; bound it with a deadline if needed.
func (c *Client) Wait(ctx context.Context, dataID string, o *WaitOptions) (*Result, error) {
	var opts WaitOptions
	if o != nil {
		opts = *o
	}
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = orDefault(opts.MinInterval, 250*time.Millisecond)
	eb.MaxInterval = orDefault(opts.MaxInterval, 5*time.Second)
	eb.Multiplier = 1.5
	eb.RandomizationFactor = 0.3
	eb.Reset()
	for {
		r, err := c.Result(ctx, dataID)
		if err != nil {
			return nil, err
		}
		if opts.Progress != nil {
			opts.Progress(r)
		}
		if r.Done() {
			return r, nil
		}
		t := time.NewTimer(eb.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
	}
}

func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// Cancel stops a queued or running scan (POST /file/{data_id}/cancel).
func (c *Client) Cancel(ctx context.Context, dataID string) error {
	_, err := c.exchange(ctx, &request{method: http.MethodPost, path: "/file/" + url.PathEscape(dataID) + "/cancel", idempotent: true})
	return err
}
