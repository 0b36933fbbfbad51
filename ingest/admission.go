package ingest

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
)

// queueCheckEvery bounds how stale the queue depth admission decides on
// may be: one stream-info request per interval per node, however many
// uploads arrive.
const queueCheckEvery = 250 * time.Millisecond

// retryAfterBusy is the Retry-After (seconds) sent with a 503 for a full
// queue.
const retryAfterBusy = 5

// queueDepth caches the number of files waiting for a scanner.
type queueDepth struct {
	mu      sync.Mutex
	checked time.Time
	depth   uint64
	err     error
}

func (q *queueDepth) get(ctx context.Context, b *bus.Bus) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if time.Since(q.checked) < queueCheckEvery {
		return q.depth, q.err
	}
	q.checked = time.Now()
	st, err := b.JS.Stream(ctx, events.StreamFiles)
	if err != nil {
		q.err = err
		return 0, err
	}
	q.depth, q.err = st.CachedInfo().State.Msgs, nil
	return q.depth, nil
}

// admit refuses a new file, before its body is read, while
// limits.max_queued files wait for a scanner: nothing is written for an
// upload that is refused, and the client is told when to come back.
func (s *Server) admit(c *fiber.Ctx) error {
	if s.opts.MaxQueued <= 0 {
		return nil
	}
	depth, err := s.queue.get(c.UserContext(), s.b)
	if err != nil {
		s.log.Warn().Err(err).Msg("scan queue depth unknown; admitting")
		return nil
	}
	if depth >= uint64(s.opts.MaxQueued) {
		s.log.Warn().Uint64("queued", depth).Int64("max_queued", s.opts.MaxQueued).Msg("scan queue full; upload refused")
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(retryAfterBusy))
		return apiError(fiber.StatusServiceUnavailable, "Server is too busy. Try again later.")
	}
	return nil
}
