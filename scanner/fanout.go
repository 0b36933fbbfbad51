package scanner

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// errConsumerDone tells the fan-out that a consumer has all it wants.
var errConsumerDone = errors.New("consumer done")

// fanOut reads r once, from the start, and hands every chunk to each
// consumer through its own pipe, so consumers run in parallel on one read
// of the file. A consumer that returns early is dropped; reading stops as
// soon as no consumer is left (an engine that needs only the first bytes of
// a 1 GiB file costs only those bytes). read counts the bytes read, for
// progress reports. fanOut returns the consumers' errors, in order.
func fanOut(ctx context.Context, r io.Reader, read *atomic.Int64, consumers ...func(io.Reader) error) []error {
	errs := make([]error, len(consumers))
	pws := make([]*io.PipeWriter, len(consumers))
	var wg sync.WaitGroup
	for i, consume := range consumers {
		pr, pw := io.Pipe()
		pws[i] = pw
		wg.Go(func() {
			errs[i] = consume(pr)
			pr.CloseWithError(errConsumerDone)
		})
	}

	buf := make([]byte, 256<<10)
	live := len(pws)
	var readErr error
	for live > 0 {
		if err := ctx.Err(); err != nil {
			readErr = err
			break
		}
		n, err := r.Read(buf)
		if n > 0 {
			read.Add(int64(n))
			// Write returns once the consumer has copied the chunk out of
			// buf, so buf is free again when the loop comes round.
			for i, pw := range pws {
				if pw != nil {
					if _, werr := pw.Write(buf[:n]); werr != nil {
						pws[i] = nil
						live--
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	// Consumers still reading see readErr (or io.EOF when it is nil) and
	// report it themselves.
	for _, pw := range pws {
		if pw != nil {
			pw.CloseWithError(readErr)
		}
	}
	wg.Wait()
	return errs
}
