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
// allows. An error means no usable output was produced. ctx may carry a
// memory budget (WithMemoryBudget).
type Sanitizer interface {
	Sanitize(ctx context.Context, in io.ReaderAt, size int64, w io.Writer) (Result, error)
}

// ErrUnsupported: no sanitizer for this type.
var ErrUnsupported = errors.New("cdr: unsupported file type")

// ErrMemoryBudget: sanitizing the input would take more memory than the
// budget (a huge image, a PDF larger than the budget). It is refused
// before that memory is allocated.
var ErrMemoryBudget = errors.New("cdr: over the memory budget")

// DefaultMemoryBudget is the memory budget under a context that carries
// none.
const DefaultMemoryBudget = 256 << 20

type memoryBudgetKey struct{}

// WithMemoryBudget returns a context under which a sanitizer, and the
// sanitizers of an archive's members, refuse with ErrMemoryBudget an input
// whose decoding would need more than n bytes at once: a decoded image's
// pixels, a PDF (held in memory whole).
func WithMemoryBudget(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, memoryBudgetKey{}, n)
}

func memoryBudget(ctx context.Context) int64 {
	if n, ok := ctx.Value(memoryBudgetKey{}).(int64); ok && n > 0 {
		return n
	}
	return DefaultMemoryBudget
}

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
