package scanner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime/debug"
	"strings"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/scanner/cdr"
)

// sanitize runs the workflow's CDR step: the file rewritten without its
// active content, stored through the blob store, and post_processing
// filled in. It returns the verdict codes the step adds (30 when the
// workflow blocks files it cannot sanitize, 3 when the sanitizer
// panicked). A file that would take more than the memory budget to
// sanitize is not sanitized, like one the sanitizer cannot parse. Files an
// engine found infected are not sanitized: a clean-looking copy of known
// malware is not something to hand out.
func (s *Scanner) sanitize(ctx context.Context, wf *config.Workflow, fc *events.FileComplete, obj io.ReaderAt,
	mime string, codes map[int]bool, rec *result.Record) map[int]bool {
	add := map[int]bool{}
	pp := &rec.Result.ProcessInfo.PostProcessing
	if !wf.Sanitize.Enabled || codes[result.Infected] || codes[result.Blocklisted] {
		return add
	}
	log := s.log.With().Str("data_id", fc.DataID).Str("mime", mime).Logger()
	san, ok := sanitizerFor(mime)
	if !ok {
		pp.ActionsRan = cdr.Skipped
		if wf.Sanitize.BlockUnsanitized {
			add[result.BlockedByCDR] = true
		}
		return add
	}
	res, n, err := s.runSanitizer(cdr.WithMemoryBudget(ctx, s.memoryBudget()), san, fc, obj)
	if err != nil {
		log.Warn().Err(err).Msg("sanitization failed")
		pp.ActionsFailed = "Sanitization"
		_ = s.blobs.Delete(context.WithoutCancel(ctx), blob.SanitizedKey(fc.DataID))
		if wf.Sanitize.BlockUnsanitized {
			add[result.BlockedByCDR] = true
		}
		if errors.Is(err, errPanic) {
			add[result.Failed] = true
		}
		return add
	}
	pp.ActionsRan = res.Action
	pp.ConvertedTo = res.ConvertedTo
	pp.ConvertedDestination = convertedName(fc.Meta.DisplayName, res.ConvertedTo)
	log.Info().Str("action", res.Action).Strs("removed", res.Removed).Int64("bytes", n).Msg("sanitized")
	return add
}

// sanitizerFor is cdr.For; tests replace it to make a sanitizer panic.
var sanitizerFor = cdr.For

// runSanitizer streams the sanitizer's output into the blob store. A
// panic in the sanitizer becomes an error wrapping errPanic.
func (s *Scanner) runSanitizer(ctx context.Context, san cdr.Sanitizer, fc *events.FileComplete, obj io.ReaderAt) (cdr.Result, int64, error) {
	pr, pw := io.Pipe()
	type out struct {
		res cdr.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		var o out
		defer func() {
			if v := recover(); v != nil {
				o.err = s.recovered(fc.DataID, "sanitization", v, debug.Stack())
			}
			pw.CloseWithError(o.err)
			done <- o
		}()
		o.res, o.err = san.Sanitize(ctx, obj, fc.Size, pw)
	}()
	key := blob.SanitizedKey(fc.DataID)
	_ = s.blobs.Delete(ctx, key) // a redelivered scan starts from nothing
	n, werr := storeStream(ctx, s, key, pr)
	pr.CloseWithError(werr)
	o := <-done
	if o.err != nil {
		return o.res, 0, o.err
	}
	if werr != nil {
		return o.res, 0, fmt.Errorf("store sanitized file: %w", werr)
	}
	return o.res, n, nil
}

// convertedName is the sanitized file's name: the original's, with the
// extension of what it became (a .docm comes out as .docx).
func convertedName(name, ext string) string {
	if name == "" {
		name = "file"
	}
	if ext == "" {
		return name
	}
	return strings.TrimSuffix(name, path.Ext(name)) + "." + ext
}
