package result

import "strconv"

// ChildPageSize is how many child summaries share one KV entry: a page of
// GET /file/{id}?first=&size= reads a few entries, and no entry grows past
// the NATS payload limit however large the archive.
const ChildPageSize = 100

// MaxExtractionErrors bounds what GET /file/{id}/extraction-errors keeps.
const MaxExtractionErrors = 100

// ChildrenKey names page p of an archive's child summaries in the results bucket.
func ChildrenKey(dataID string, page int) string { return dataID + ".files." + strconv.Itoa(page) }

// ErrorsKey names an archive's extraction errors in the results bucket.
func ErrorsKey(dataID string) string { return dataID + ".errors" }

// ExtractionError is one problem met while extracting an archive or one
// of its nested archives.
type ExtractionError struct {
	Archive string `json:"archive"` // display name of the (nested) archive
	DataID  string `json:"data_id"` // its data_id
	Entry   string `json:"entry"`   // the entry, "" for the archive as a whole
	Error   string `json:"error"`
}

// ExtractionErrors is what the results bucket keeps under ErrorsKey.
type ExtractionErrors struct {
	Total  int               `json:"total"` // all errors met; Errors keeps the first MaxExtractionErrors
	Errors []ExtractionError `json:"errors"`
}
