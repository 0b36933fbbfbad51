package scanner

import (
	"errors"
	"fmt"

	"github.com/scangate/scangate/scanner/archive"
)

// DefaultMemoryBudget is the memory budget of a scan when
// Options.MemoryBudget is 0 (the default of scanner.memory_budget).
const DefaultMemoryBudget = 256 << 20

func (s *Scanner) memoryBudget() int64 {
	if s.opts.MemoryBudget > 0 {
		return s.opts.MemoryBudget
	}
	return DefaultMemoryBudget
}

// errPanic marks the error a recovered panic becomes: the file it
// happened on gets verdict Failed, and the scan goes on.
var errPanic = errors.New("internal error")

// recovered logs a panic recovered while processing dataID, with its
// stack, and returns the error to record in the file's result.
func (s *Scanner) recovered(dataID, step string, v any, stack []byte) error {
	s.log.Error().Str("data_id", dataID).Str("step", step).Str("panic", fmt.Sprint(v)).
		Str("stack", string(stack)).Msg("recovered from a panic")
	return fmt.Errorf("%w: %s panicked: %v", errPanic, step, v)
}

// decoderPanic logs a decoder panic that the archive package recovered
// (err wraps an *archive.PanicError) like any other; other errors are
// returned unchanged.
func (s *Scanner) decoderPanic(dataID string, err error) error {
	var pe *archive.PanicError
	if errors.As(err, &pe) {
		return s.recovered(dataID, "archive decoder", pe.Value, pe.Stack)
	}
	return err
}
