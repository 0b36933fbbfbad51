package ingest

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
)

// Admission keeps the scan queue no longer than the scanners drain in
// limits.max_queue_wait. Accepting files faster than they are scanned only
// moves the wait from the client, who can be told to come back, to the
// queue, where a file's verdict is late for everyone and the backlog
// outlives the load by minutes. So a new upload is refused, before its body
// is read, while the oldest waiting file has waited longer than that, or
// while the queue holds more than the scanners are seen to finish in that
// time. The queue counts every accepted file without a verdict, including
// those the recorder has not handed to the scanners yet: under load that
// hand-over lags too, and a queue measured after it looks short while
// uploads pile up in front of it. limits.max_queued stays as a ceiling for when no drain rate is
// known yet.

// queueCheckEvery bounds how stale the queue state admission decides on
// may be: one consumer-info request (and, while files wait, one message
// read) per interval per node, however many uploads arrive.
const queueCheckEvery = 250 * time.Millisecond

// drainHalfLife smooths the drain rate: long enough that one slow file or
// a pause in the scanners' acks does not shut the door, short enough that
// scanners going away show within seconds.
const drainHalfLife = 3 * time.Second

// Retry-After bounds (seconds). Without a drain rate there is no
// prediction; retryAfterUnknown is a short guess.
const (
	retryAfterMin     = 1
	retryAfterMax     = 60
	retryAfterUnknown = 5
)

// refusalLogEvery: under overload every request would be refused; the log
// says so once per interval, with the figures.
const refusalLogEvery = time.Second

// admissionLimits are the configured bounds.
type admissionLimits struct {
	MaxQueued    int64         // hard ceiling on the queue depth; 0: none
	MaxQueueWait time.Duration // longest a file should wait for a scanner; 0: depth only
}

// drain is the smoothed rate, in files per second, at which scanners
// finish files. Known is false until scanners have been seen finishing
// files for drainHalfLife: a first rate taken from one interval of a few
// files, while the scanners are starting, is noise, and a low one would
// refuse uploads for a minute.
type drain struct {
	Rate  float64
	Known bool

	seedDone uint64  // files finished while the rate is not known yet
	seedSpan float64 // seconds over which seedDone were counted
}

// observe folds the queue's change from prev to cur into d.
//
// Completions measure the scanners' capacity only while files wait at both
// readings: then they were never short of work. Otherwise the count is
// capped by what arrived, so it may raise the estimate but not lower it: a
// quiet hour must not make the next burst look like a month of work.
func (d drain) observe(prev, cur bus.ScanQueue) drain {
	dt := cur.At.Sub(prev.At).Seconds()
	if dt <= 0 || cur.Finished < prev.Finished {
		return d // clock step, or the consumer was declared again
	}
	done := cur.Finished - prev.Finished
	sample := float64(done) / dt
	if !d.Known {
		if done == 0 && d.seedDone == 0 {
			return d
		}
		d.seedDone += done
		d.seedSpan += dt
		if d.seedSpan >= drainHalfLife.Seconds() {
			return drain{Rate: float64(d.seedDone) / d.seedSpan, Known: true}
		}
		return d
	}
	busy := prev.Waiting > 0 && cur.Waiting > 0
	if !busy && sample <= d.Rate {
		return d
	}
	alpha := 1 - math.Exp2(-dt/drainHalfLife.Seconds())
	d.Rate += alpha * (sample - d.Rate)
	return d
}

// admissionVerdict is the decision on one new upload.
type admissionVerdict struct {
	Refuse     bool
	Reason     string
	Depth      uint64        // files queued, counting the ones admitted since the reading
	Age        time.Duration // how long the oldest waiting file has waited
	Wait       time.Duration // predicted wait of a file queued now; -1 when unknown
	RetryAfter int           // seconds, for a refusal: until the queue is back within the limits
}

// decide admits or refuses one new upload given the last reading q, the
// files this node has admitted since (not yet in q), and the drain rate.
func decide(q bus.ScanQueue, admitted uint64, d drain, lim admissionLimits, now time.Time) admissionVerdict {
	v := admissionVerdict{Depth: q.Depth() + admitted, Wait: -1}
	if v.Depth == 0 {
		return v // scanners are idle: never turn a file away from them
	}
	if q.Waiting > 0 && !q.OldestWaiting.IsZero() {
		v.Age = max(0, now.Sub(q.OldestWaiting))
	}
	if d.Known {
		if d.Rate > 0 {
			v.Wait = time.Duration(float64(v.Depth) / d.Rate * float64(time.Second))
		} else {
			v.Wait = time.Duration(math.MaxInt64)
		}
	}
	switch {
	case lim.MaxQueued > 0 && v.Depth >= uint64(lim.MaxQueued):
		v.Refuse, v.Reason = true, "max_queued"
	case lim.MaxQueueWait <= 0 || q.Pending()+admitted == 0:
		// Every queued file is already with a scanner: a new one waits
		// at most for one of them to finish. (Files admitted since the
		// reading count as waiting: they may be queued by now.)
	case v.Age > lim.MaxQueueWait:
		v.Refuse, v.Reason = true, "oldest file waited longer than max_queue_wait"
	case v.Wait > lim.MaxQueueWait:
		v.Refuse, v.Reason = true, "predicted wait longer than max_queue_wait"
	}
	if v.Refuse {
		v.RetryAfter = retryAfterFor(comeBackIn(v, d, lim), lim.MaxQueueWait)
	}
	return v
}

// comeBackIn is how long until the scanners have drained the queue back
// under both limits: the part of the predicted wait beyond max_queue_wait,
// and the time to finish the files above max_queued. Not the whole
// predicted wait: every client refused at the same moment hears the same
// figure, and if they all came back only once the queue is empty the
// scanners would idle until their uploads arrive. Unknown (-1) without a
// drain rate.
func comeBackIn(v admissionVerdict, d drain, lim admissionLimits) time.Duration {
	if !d.Known {
		return -1
	}
	if d.Rate <= 0 {
		return time.Duration(math.MaxInt64)
	}
	over := v.Wait - lim.MaxQueueWait
	if lim.MaxQueueWait <= 0 {
		over = 0
	}
	if lim.MaxQueued > 0 && v.Depth >= uint64(lim.MaxQueued) {
		excess := float64(v.Depth-uint64(lim.MaxQueued)+1) / d.Rate
		over = max(over, time.Duration(excess*float64(time.Second)))
	}
	return max(over, 0)
}

// retryAfterFor is a wait in whole seconds, clamped to 1..60 and to
// max_queue_wait: a client is not sent away for longer than a file would
// wait in the queue, so a drain rate that was wrong, or a queue that
// emptied faster than predicted, costs it little. A short guess when the
// wait is unknown (-1).
func retryAfterFor(wait, maxQueueWait time.Duration) int {
	if wait < 0 {
		return retryAfterUnknown
	}
	hi := float64(retryAfterMax)
	if maxQueueWait > 0 {
		hi = min(hi, max(math.Ceil(maxQueueWait.Seconds()), retryAfterMin))
	}
	s := math.Ceil(wait.Seconds())
	return int(min(max(s, retryAfterMin), hi))
}

// admission holds the last queue reading and the drain rate, shared by
// every request of one node.
type admission struct {
	lim admissionLimits

	mu       sync.Mutex
	checked  time.Time // last attempt to read the queue
	last     bus.ScanQueue
	haveLast bool
	err      error
	drain    drain
	admitted uint64 // admitted since last was read
	// admittedLow is the part of admitted that went to the low queue
	// (rescans): not ahead of a new upload (bus.ScanQueue.Ahead).
	admittedLow uint64

	logged  time.Time // last refusal (or read failure) logged
	refused int       // refusals since then
}

// check decides on n new files of priority p (one upload, or the files of
// one rescan request, admitted or refused together), reading the queue
// again when the last reading is older than queueCheckEvery. Each priority
// is judged by the files ahead of it (bus.ScanQueue.Ahead): a backlog of
// rescans refuses more rescans, never uploads. A failed reading admits:
// the upload then fails or succeeds on its own, and a broken bus must not
// look like a full queue.
func (a *admission) check(ctx context.Context, b *bus.Bus, log zerolog.Logger, p events.Priority, n uint64) admissionVerdict {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	a.read(ctx, b, log, now)
	if a.err != nil {
		return admissionVerdict{Wait: -1}
	}
	ahead, admitted := a.last.Ahead(p), a.admitted
	if p != events.PriorityLow {
		admitted -= a.admittedLow
	}
	v := decide(ahead, admitted, a.drain, a.lim, now)
	if !v.Refuse {
		a.admitted += n
		if p == events.PriorityLow {
			a.admittedLow += n
		}
		return v
	}
	a.refused++
	if now.Sub(a.logged) >= refusalLogEvery {
		ev := log.Warn().Str("reason", v.Reason).Str("priority", string(p)).Uint64("queued", v.Depth).
			Uint64("waiting", ahead.Waiting).Uint64("scanning", ahead.Scanning).
			Dur("oldest_wait", v.Age).Int("refused", a.refused).Int("retry_after_s", v.RetryAfter)
		if a.drain.Known {
			ev = ev.Float64("drain_per_s", math.Round(a.drain.Rate*100)/100)
		}
		ev.Msg("scan queue full; uploads refused")
		a.logged, a.refused = now, 0
	}
	return v
}

// queue is the last reading of the scan queue (read again when older than
// queueCheckEvery), and whether there is one.
func (a *admission) queue(ctx context.Context, b *bus.Bus, log zerolog.Logger) (bus.ScanQueue, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.read(ctx, b, log, time.Now())
	return a.last, a.haveLast && a.err == nil
}

// read reads the queue when the last reading is older than
// queueCheckEvery, and learns the drain rate from the change. a.mu is held.
func (a *admission) read(ctx context.Context, b *bus.Bus, log zerolog.Logger, now time.Time) {
	if now.Sub(a.checked) >= queueCheckEvery {
		a.checked = now
		q, err := b.ScanQueueState(ctx)
		a.err = err
		if err != nil {
			if now.Sub(a.logged) >= refusalLogEvery {
				a.logged = now
				log.Warn().Err(err).Msg("scan queue state unknown; admitting")
			}
		} else {
			if a.haveLast {
				a.drain = a.drain.observe(a.last, q)
			}
			a.last, a.haveLast, a.admitted, a.admittedLow = q, true, 0, 0
		}
	}
}

// admit refuses a new file, before its body is read, while the scan queue
// is longer than the scanners drain in limits.max_queue_wait (or holds
// limits.max_queued files), then counts it against its user's scan limit:
// nothing is written for an upload that is refused, and the client is told
// when to come back.
func (s *Server) admit(c *fiber.Ctx) error {
	return s.admitFiles(c, events.PriorityNormal, 1)
}

// admitFiles is admit for n new files of priority p at once (a rescan
// request): all are admitted or none, and all count against the scan limit.
func (s *Server) admitFiles(c *fiber.Ctx, p events.Priority, n int) error {
	if err := s.admitQueue(c, p, n); err != nil {
		return err
	}
	return s.checkScanLimit(c, n)
}

func (s *Server) admitQueue(c *fiber.Ctx, p events.Priority, n int) error {
	if s.admission.lim == (admissionLimits{}) {
		return nil
	}
	v := s.admission.check(c.UserContext(), s.b, s.log, p, uint64(n))
	if v.Refuse {
		if c.Request().Header.ContentLength() > preReadBody {
			// The rest of the body is not drained for keep-alive: under
			// overload, reading bodies nobody stores is the work to shed.
			// The connection closes after the answer instead.
			c.Locals(bodyKey, &clientBody{err: errRefusedUnread})
		}
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(v.RetryAfter))
		return apiError(fiber.StatusServiceUnavailable, "Server is too busy. Try again later.")
	}
	return nil
}

// preReadBody is how much of a body the HTTP server reads with the headers,
// before any handler runs (fasthttp reads up to 8 KiB of it): a refusal
// cannot spare those bytes, only the rest.
const preReadBody = 8 << 10

// errRefusedUnread marks a refused upload's body as not worth reading.
var errRefusedUnread = errors.New("upload refused before its body was read")
