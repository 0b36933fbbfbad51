// Package cdr is content disarm and reconstruction: it rewrites a file
// without its active content (scripts, macros, embedded objects, external
// links, hidden metadata) so that what remains still opens. Each format has
// its own sanitizer; they register themselves by MIME type.
package cdr

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
)

// Actions reported in process_info.post_processing.actions_ran.
const (
	Sanitized          = "Sanitized"
	SanitizedPartially = "Sanitized Partially"
	Skipped            = "Sanitization Skipped"
)

// Result says what a sanitizer did.
type Result struct {
	Action      string   // Sanitized or SanitizedPartially
	ConvertedTo string   // extension of the output ("docx" for a .docm), without the dot
	Removed     []string // what was taken out, for logs and tests ("javascript", "vba project", ...)
}

// Sanitizer rewrites one format. It reads the original from in (size
// bytes) and writes the clean file to w, streaming where the format
// allows. An error means no usable output was produced.
type Sanitizer interface {
	Sanitize(ctx context.Context, in io.ReaderAt, size int64, w io.Writer) (Result, error)
}

// ErrUnsupported: no sanitizer for this type.
var ErrUnsupported = errors.New("cdr: unsupported file type")

var (
	mu       sync.RWMutex
	registry = map[string]Sanitizer{}
)

// Register makes s the sanitizer for the given MIME types (lowercase,
// without parameters). Sanitizers register from init functions.
func Register(s Sanitizer, mimes ...string) {
	mu.Lock()
	defer mu.Unlock()
	for _, m := range mimes {
		registry[strings.ToLower(m)] = s
	}
}

// For returns the sanitizer for a MIME type.
func For(mime string) (Sanitizer, bool) {
	mime, _, _ = strings.Cut(strings.ToLower(mime), ";")
	mu.RLock()
	defer mu.RUnlock()
	s, ok := registry[strings.TrimSpace(mime)]
	return s, ok
}
