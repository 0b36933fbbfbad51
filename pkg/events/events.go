// Package events names everything the roles say to each other over
// JetStream — streams, subjects, buckets, consumers — and the messages
// themselves. Nothing else in scangate spells a subject or a bucket name.
package events

import (
	"encoding/json"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
)

// Streams.
const (
	StreamUploads = "UPLOADS" // upload session events: upload.<partition>.<data_id>
	StreamFiles   = "FILES"   // file-complete work queue: file.<priority>.<data_id>
	StreamScans   = "SCANS"   // scan-done: scan.done.<data_id>
	// StreamResults is the log of every file's result events:
	// result.<partition>.<data_id>. Its consumer, the recorder, is the only
	// writer of the results bucket.
	StreamResults = "RESULTS"
	// StreamLimits holds per-user scan counters (limit.<user>.<minute>):
	// JetStream counters in memory, so every ingest node counts against
	// the same total without a read-modify-write.
	StreamLimits = "LIMITS"
)

// KV buckets.
const (
	BucketResults  = "results"  // data_id → result.Record (written by the recorder only)
	BucketHashes   = "hashes"   // <algo>.<hex> → data_id
	BucketSessions = "sessions" // data_id → upload session status (written by the assembler only)
	BucketNodes    = "nodes"    // scanner.<id> → live scanner and its engines (entries expire)
	BucketWebhooks = "webhooks" // <data_id> (callbackurl), <data_id>.sanitized → webhook delivery state
	BucketLogins   = "logins"   // sha256(session_id) → login session (written by ingest; entries expire)
	// BucketOriginals keeps the bytes of small files (events.InlineMax),
	// which have no blob, for rescans: data_id → bytes, written by the
	// scanner with its verdict, expiring retention.originals later.
	BucketOriginals = "originals"
)

// Batch buckets. A batch is two pieces of state with one writer each:
// what ingest decides (the batch, and which files joined it before it
// closed) and what the recorder knows (how each member file is doing).
const (
	// BucketBatches: <batch_id> → the batch (owner, rule, user data,
	// closed, cancelled); <batch_id>.<data_id> → a file's join, written
	// once, only while the batch is open. Written by ingest only.
	BucketBatches = "batches"
	// BucketBatchFiles: <batch_id>.<data_id> → the member's summary,
	// rewritten with its result record. Written by the recorder only.
	BucketBatchFiles = "batchfiles"
)

// BatchMemberKey is a member's key in both batch buckets: its join in
// BucketBatches, its summary in BucketBatchFiles.
func BatchMemberKey(batchID, dataID string) string { return batchID + "." + dataID }

// BatchMembers matches every member key of one batch (never the batch's
// own key).
func BatchMembers(batchID string) string { return batchID + ".*" }

// Durable consumers.
const (
	ConsumerScanners = "scanners"
	ConsumerNotifier = "notifier"
)

// Priority orders scanner work; rescans run at low priority unless an admin asks.
type Priority string

const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// Subject roots; use the functions below to build full subjects.
const (
	ResultsSubjects  = "result.>"
	UploadsSubjects  = "upload.>"
	FilesSubjects    = "file.>"
	ScanDoneSubjects = "scan.done.>"
)

// Partition spreads upload sessions over the assemblers: every event of one
// session lands in the same partition, owned by one assembler at a time.
func Partition(dataID string, partitions int) int {
	h := fnv.New32a()
	h.Write([]byte(dataID))
	return int(h.Sum32() % uint32(partitions))
}

// ResultSubject is where the result events of one file are published; like
// upload events they are partitioned, so one recorder at a time applies a
// file's events, in order.
func ResultSubject(partition int, dataID string) string {
	return "result." + strconv.Itoa(partition) + "." + dataID
}

// ResultPartitionSubjects matches every file of one partition.
func ResultPartitionSubjects(partition int) string { return "result." + strconv.Itoa(partition) + ".*" }

// RecorderConsumer names the durable consumer of one results partition.
func RecorderConsumer(partition int) string { return "recorder-" + strconv.Itoa(partition) }

// RecorderGroup is the priority group recorders pull with.
const RecorderGroup = "recorders"

// UploadSubject is where the events of one upload session are published.
func UploadSubject(partition int, dataID string) string {
	return "upload." + strconv.Itoa(partition) + "." + dataID
}

// UploadPartitionSubjects matches every session of one partition.
func UploadPartitionSubjects(partition int) string { return "upload." + strconv.Itoa(partition) + ".*" }

// AssemblerConsumer names the durable consumer of one partition.
func AssemblerConsumer(partition int) string { return "assembler-" + strconv.Itoa(partition) }

// AssemblerGroup is the priority group assemblers pull with; JetStream pins
// each partition's consumer to one of them.
const AssemblerGroup = "assemblers"

// ExpirySubject holds the scheduled expire event of an upload session.
func ExpirySubject(dataID string) string { return "upload-expiry." + dataID }

// ExpirySubjects matches every ExpirySubject.
const ExpirySubjects = "upload-expiry.*"

// AbortSubject is a plain NATS subject: every ingest node cuts off parts of
// dataID it is still receiving. (Not under upload.>, which is the stream.)
func AbortSubject(dataID string) string { return "upload-abort." + dataID }

// AbortSubjects matches every AbortSubject.
const AbortSubjects = "upload-abort.*"

// FileSubject is where a file-complete event for dataID is published.
func FileSubject(p Priority, dataID string) string { return "file." + string(p) + "." + dataID }

// Priorities lists the scan priorities in the order scanners prefer them.
var Priorities = []Priority{PriorityHigh, PriorityNormal, PriorityLow}

// PrioritySubjects matches the work of one priority, rescans included.
func PrioritySubjects(p Priority) string { return "file." + string(p) + ".>" }

// ScannerConsumer names the durable consumer of one priority's work. The
// normal one keeps the name of the single consumer earlier releases
// declared (ConsumerScanners, then filtered on every priority): narrowing
// its filter in place keeps the files it was holding and their delivery
// state across `scangate migrate`.
func ScannerConsumer(p Priority) string {
	if p == PriorityNormal {
		return ConsumerScanners
	}
	return ConsumerScanners + "-" + string(p)
}

// RescanSubject is where the work of a rescan that reads another file's
// stored bytes is queued: file.<priority>.<data_id>.<file_id>. The last
// token names the file whose bytes it needs, so that the retention sweep
// (bus.InFlight) keeps them while the rescan waits or runs.
func RescanSubject(p Priority, dataID, fileID string) string {
	return FileSubject(p, dataID) + "." + fileID
}

// ScanDoneSubject is where the final result of dataID is announced.
func ScanDoneSubject(dataID string) string { return "scan.done." + dataID }

// CancelSubject is a plain NATS subject (not a stream): every scanner listens
// and stops the scan of dataID if it is running it. The durable record of the
// cancel is its result event, published before this is sent.
func CancelSubject(dataID string) string { return "scan.cancel." + dataID }

// CancelSubjects matches every CancelSubject.
const CancelSubjects = "scan.cancel.*"

// HashKey is the hashes-bucket key of a hex digest for one user
// ("sha256.<hex>.<user token>", see auth.Token): each user's lookups and
// de-duplication find only that user's files.
func HashKey(algo, hexDigest, userToken string) string {
	return algo + "." + strings.ToLower(hexDigest) + "." + userToken
}

// HashKeys matches a digest's keys of every user (admin lookups).
func HashKeys(algo, hexDigest string) string { return algo + "." + strings.ToLower(hexDigest) + ".*" }

// LegacyHashKey is the key the hash index used before it was per user;
// such entries belong to anonymous until they expire.
func LegacyHashKey(algo, hexDigest string) string { return algo + "." + strings.ToLower(hexDigest) }

// LimitSubject counts one user's files in one window (the window's
// number since the Unix epoch).
func LimitSubject(userToken string, window int64) string {
	return "limit." + userToken + "." + strconv.FormatInt(window, 10)
}

// LimitsSubjects matches every LimitSubject.
const LimitsSubjects = "limit.>"

// Header names on JetStream messages.
const (
	HeaderMsgID = "Nats-Msg-Id" // JetStream de-duplication
)

// Hashes of a file's bytes, lowercase hex. Empty when not yet computed.
type Hashes struct {
	MD5    string `json:"md5"`
	SHA1   string `json:"sha1"`
	SHA256 string `json:"sha256"`
	SHA512 string `json:"sha512"`
}

// Complete reports whether every hash is known.
func (h Hashes) Complete() bool {
	return h.MD5 != "" && h.SHA1 != "" && h.SHA256 != "" && h.SHA512 != ""
}

// FileMeta is what a client said about a file when it submitted it. It travels
// with the file to the scanner, the result and the webhooks.
type FileMeta struct {
	DisplayName      string          `json:"display_name"`
	Workflow         string          `json:"workflow"`
	UserAgent        string          `json:"user_agent,omitempty"`
	Username         string          `json:"username,omitempty"`
	Source           string          `json:"source,omitempty"`
	OriginalFilePath string          `json:"original_file_path,omitempty"`
	CallbackURL      string          `json:"callbackurl,omitempty"`
	SanitizedURL     string          `json:"sanitizedurl,omitempty"`
	Batch            string          `json:"batch,omitempty"`
	ArchivePasswords []string        `json:"archivepwd,omitempty"`
	Metadata         json.RawMessage `json:"metadata,omitempty"`
}

// FileComplete says: the bytes of DataID are all in the blob store; scan them.
type FileComplete struct {
	DataID string `json:"data_id"`
	Size   int64  `json:"size"`
	Hashes Hashes `json:"hashes"` // computed while the bytes streamed in, where possible
	// HashState, when Hashes is empty, is the hashing of the first
	// HashedBytes bytes (pkg/hashing state): the scanner hashes only the rest.
	HashState   []byte    `json:"hash_state,omitempty"`
	HashedBytes int64     `json:"hashed_bytes,omitempty"`
	Meta        FileMeta  `json:"meta"`
	Priority    Priority  `json:"priority"`
	UploadedAt  time.Time `json:"uploaded_at"`
	// Data, when set, is the whole file (at most InlineMax bytes): it
	// travels in the events, durable in JetStream with them, and has no
	// blob. A small file then costs no file of its own to create, fsync,
	// open and delete.
	Data []byte `json:"data,omitempty"`
	// DownloadFrom, when set, is the URL the file's bytes are to be fetched
	// from (POST /file with header downloadfrom): the scanner that takes
	// the file downloads it into the blob store before scanning, so a
	// scanner that dies mid-download leaves the work to a peer. Size and
	// hashes are then unknown until it has.
	DownloadFrom string `json:"download_from,omitempty"`
	// FileID, when set, is the stored file this scan is of: a rescan names
	// the original's data_id, which its result reports as file_id. Without
	// Data, the bytes are read from that file's blob.
	FileID string `json:"file_id,omitempty"`
}

// Rescan reports whether fc scans the stored bytes of another file.
func (fc *FileComplete) Rescan() bool { return fc.FileID != "" && fc.FileID != fc.DataID }

// BlobKey is the blob holding the bytes to scan when they are not inline:
// the file's own, or for a rescan the original's.
func (fc *FileComplete) BlobKey() string {
	if fc.Rescan() {
		return fc.FileID
	}
	return fc.DataID
}

// Subject is where fc waits for a scanner.
func (fc *FileComplete) Subject() string {
	if fc.Rescan() && fc.Data == nil {
		return RescanSubject(fc.Priority, fc.DataID, fc.FileID)
	}
	return FileSubject(fc.Priority, fc.DataID)
}

// InlineMax is the largest file carried inside its events rather than in
// the blob store. Three of them in base64 fit well within JetStream's
// default 1 MiB message limit with room for the metadata.
const InlineMax = 64 << 10

// ScanDone says: DataID has its final result in the results bucket, at
// Revision (0: unknown). A reader that finds an older revision (a replica
// behind the write) reads again rather than act on it.
type ScanDone struct {
	DataID       string `json:"data_id"`
	Revision     uint64 `json:"revision,omitempty"`
	CallbackURL  string `json:"callbackurl,omitempty"`
	SanitizedURL string `json:"sanitizedurl,omitempty"`
}

// Upload event kinds.
const (
	UploadOpen   = "open"   // a session was created (multipart init, first chunk)
	UploadPart   = "part"   // bytes [Off, Off+Len) are durable in the blob store
	UploadChunk  = "chunk"  // a sequential chunk of Len bytes is durable in blob Staged; append it
	UploadAbort  = "abort"  // the client cancelled the session
	UploadExpire = "expire" // the session outlived its time to live
)

// Upload event kinds of pre-signed part uploads (/file/v1/files/upload/parts).
// Their parts arrive by number, each stored whole in a blob of its own
// (Staged); the file is their concatenation, made at complete.
const (
	UploadNumberedPart = "numbered-part" // part PartNumber (Len bytes, ETag) is durable in blob Staged
	UploadReport       = "report"        // the client's progress report: the ETags it holds (PartTags)
	UploadComplete     = "complete"      // concatenate the parts PartTags names, checking their ETags
)

// PartTag names one part of a pre-signed upload by its number and the ETag
// its PUT was answered with (hex md5 of its bytes).
type PartTag struct {
	PartNumber int    `json:"partNumber"`
	ETag       string `json:"etag"`
}

// PresignedOpen is what the open event of a pre-signed upload carries
// besides FileMeta: the name and type the client gave, echoed back to it.
type PresignedOpen struct {
	Name     string `json:"name"`
	MimeType string `json:"mime_type"`
}

// UploadEvent is one event of an upload session, in stream order.
type UploadEvent struct {
	Kind   string `json:"kind"`
	DataID string `json:"data_id"`
	// open
	Total     int64     `json:"total,omitempty"`
	Meta      *FileMeta `json:"meta,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Chunked   bool      `json:"chunked,omitempty"` // X-File-Size upload: de-duplicate by hash when complete
	// part
	Off int64 `json:"off,omitempty"`
	Len int64 `json:"len,omitempty"`
	// Digest is the sha256 of the part's bytes (hex). A part that rewrites
	// bytes the assembler already hashed keeps the prefix hash only when it
	// repeats an earlier part exactly.
	Digest string `json:"digest,omitempty"`
	// chunk
	Staged string `json:"staged,omitempty"`

	// Pre-signed uploads. open: Presigned (Total is 0: the size is known
	// at complete). numbered-part: PartNumber, Len, ETag, Staged. report,
	// complete: PartTags. complete: the limits in force when the client
	// asked, so that a replay decides as the first application did.
	Presigned   *PresignedOpen `json:"presigned,omitempty"`
	PartNumber  int            `json:"part_number,omitempty"`
	ETag        string         `json:"etag,omitempty"`
	PartTags    []PartTag      `json:"part_tags,omitempty"`
	MinPartSize int64          `json:"min_part_size,omitempty"`
	MaxSize     int64          `json:"max_size,omitempty"` // 0: no limit
}
