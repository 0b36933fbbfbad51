package ingest

import (
	"math"
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func reading(at time.Duration, waiting, scanning, finished uint64) bus.ScanQueue {
	return bus.ScanQueue{At: t0.Add(at), Waiting: waiting, Scanning: scanning, Finished: finished}
}

func onTheirWay(q bus.ScanQueue, unfinished uint64) bus.ScanQueue {
	q.Unfinished = unfinished
	return q
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestDrainObserve(t *testing.T) {
	halfLife := drainHalfLife
	tests := []struct {
		name       string
		d          drain
		prev, cur  bus.ScanQueue
		want       float64
		wantKnown  bool
		wantSameAs bool // d unchanged
	}{
		{"nothing finished yet stays unknown", drain{},
			reading(0, 5, 0, 100), reading(time.Second, 9, 0, 100), 0, false, true},
		{"completions over less than a half-life: not known yet", drain{},
			reading(0, 5, 1, 100), reading(2*time.Second, 5, 1, 110), 0, false, false},
		{"completions over a half-life set the rate: their average", drain{seedDone: 10, seedSpan: 2},
			reading(0, 5, 1, 110), reading(time.Second, 0, 1, 115), 5, true, false},
		{"busy at both ends: a half-life moves halfway", drain{Rate: 10, Known: true},
			reading(0, 5, 4, 0), reading(halfLife, 5, 4, 2*uint64(halfLife.Seconds())), 6, true, false},
		{"busy and nothing finished: the rate falls", drain{Rate: 10, Known: true},
			reading(0, 5, 4, 50), reading(halfLife, 8, 4, 50), 5, true, false},
		{"idle scanners finishing little do not lower it", drain{Rate: 10, Known: true},
			reading(0, 0, 1, 50), reading(time.Hour, 0, 0, 51), 10, true, true},
		{"idle scanners finishing more raise it", drain{Rate: 10, Known: true},
			reading(0, 0, 4, 0), reading(halfLife, 0, 4, 30*uint64(halfLife.Seconds())), 20, true, false},
		{"consumer declared again: counter went back", drain{Rate: 10, Known: true},
			reading(0, 5, 4, 500), reading(time.Second, 5, 4, 3), 10, true, true},
		{"no time passed", drain{Rate: 10, Known: true},
			reading(0, 5, 4, 0), reading(0, 5, 4, 100), 10, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.d.observe(tt.prev, tt.cur)
			if got.Known != tt.wantKnown || !near(got.Rate, tt.want) {
				t.Errorf("observe = %+v, want rate %v known %v", got, tt.want, tt.wantKnown)
			}
			if tt.wantSameAs && got != tt.d {
				t.Errorf("observe changed %+v to %+v", tt.d, got)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	lim := admissionLimits{MaxQueued: 1000, MaxQueueWait: 10 * time.Second}
	now := t0.Add(time.Minute)
	waitingSince := func(q bus.ScanQueue, ago time.Duration) bus.ScanQueue {
		q.OldestWaiting = now.Add(-ago)
		return q
	}
	unknown := drain{}
	tests := []struct {
		name      string
		q         bus.ScanQueue
		admitted  uint64
		d         drain
		lim       admissionLimits
		refuse    bool
		retry     int
		wantWait  time.Duration
		wantDepth uint64
	}{
		{name: "empty queue, scanners gone", q: reading(0, 0, 0, 0), d: drain{Rate: 0, Known: true}, lim: lim,
			wantWait: -1},
		{name: "empty at the reading, admitted since, scanners gone", q: reading(0, 0, 0, 0), admitted: 3, d: drain{Rate: 0, Known: true}, lim: lim,
			refuse: true, retry: 10, wantWait: time.Duration(math.MaxInt64), wantDepth: 3},
		{name: "empty at the reading, burst admitted since, no rate yet", q: reading(0, 0, 0, 0), admitted: 999, d: unknown, lim: lim,
			wantWait: -1, wantDepth: 999},
		{name: "empty queue, max_queued 1", q: reading(0, 0, 0, 0), d: unknown, lim: admissionLimits{MaxQueued: 1},
			wantWait: -1},
		{name: "start-up: depth only, under the ceiling", q: waitingSince(reading(0, 999, 0, 0), 5*time.Second), d: unknown, lim: lim,
			wantWait: -1, wantDepth: 999},
		{name: "start-up: at the ceiling", q: waitingSince(reading(0, 999, 0, 0), time.Second), admitted: 1, d: unknown, lim: lim,
			refuse: true, retry: retryAfterUnknown, wantWait: -1, wantDepth: 1000},
		{name: "start-up: oldest waited too long", q: waitingSince(reading(0, 3, 0, 0), 11*time.Second), d: unknown, lim: lim,
			refuse: true, retry: retryAfterUnknown, wantWait: -1, wantDepth: 3},
		{name: "predicted wait within bound", q: waitingSince(reading(0, 90, 4, 0), time.Second), admitted: 5, d: drain{Rate: 10, Known: true}, lim: lim,
			wantWait: 9900 * time.Millisecond, wantDepth: 99},
		{name: "admitted since the reading tip it over", q: waitingSince(reading(0, 90, 4, 0), time.Second), admitted: 7, d: drain{Rate: 10, Known: true}, lim: lim,
			refuse: true, retry: 1, wantWait: 10100 * time.Millisecond, wantDepth: 101},
		{name: "slow scanners: Retry-After is the predicted wait beyond max_queue_wait", q: waitingSince(reading(0, 30, 1, 0), 0), d: drain{Rate: 2, Known: true}, lim: lim,
			refuse: true, retry: 6, wantWait: 15500 * time.Millisecond, wantDepth: 31},
		{name: "Retry-After no longer than max_queue_wait", q: waitingSince(reading(0, 40, 1, 0), 0), d: drain{Rate: 2, Known: true}, lim: lim,
			refuse: true, retry: 10, wantWait: 20500 * time.Millisecond, wantDepth: 41},
		{name: "Retry-After clamped to 60", q: waitingSince(reading(0, 900, 4, 0), 0), d: drain{Rate: 1, Known: true}, lim: admissionLimits{MaxQueueWait: 5 * time.Minute},
			refuse: true, retry: 60, wantWait: 904 * time.Second, wantDepth: 904},
		{name: "scanners stopped", q: waitingSince(reading(0, 1, 0, 0), 0), d: drain{Rate: 0, Known: true}, lim: lim,
			refuse: true, retry: 10, wantWait: time.Duration(math.MaxInt64), wantDepth: 1},
		{name: "fast scanners but the oldest is stuck", q: waitingSince(reading(0, 2, 4, 0), 12*time.Second), d: drain{Rate: 100, Known: true}, lim: lim,
			refuse: true, retry: 1, wantWait: 60 * time.Millisecond, wantDepth: 6},
		{name: "all queued files with a scanner: long scans refuse nothing", q: reading(0, 0, 8, 0), d: drain{Rate: 0.1, Known: true}, lim: lim,
			wantWait: 80 * time.Second, wantDepth: 8},
		{name: "max_queue_wait off: depth only", q: waitingSince(reading(0, 500, 4, 0), time.Hour), d: drain{Rate: 1, Known: true},
			lim: admissionLimits{MaxQueued: 1000}, wantWait: 504 * time.Second, wantDepth: 504},
		{name: "files accepted but not queued yet count", q: onTheirWay(reading(0, 0, 2, 0), 150), d: drain{Rate: 10, Known: true}, lim: lim,
			refuse: true, retry: 5, wantWait: 15 * time.Second, wantDepth: 150},
		{name: "the ceiling counts them too", q: onTheirWay(reading(0, 0, 2, 0), 1000), d: unknown, lim: lim,
			refuse: true, retry: retryAfterUnknown, wantWait: -1, wantDepth: 1000},
		{name: "results not purged yet do not shrink the queue", q: onTheirWay(waitingSince(reading(0, 90, 4, 0), time.Second), 50), admitted: 5, d: drain{Rate: 10, Known: true}, lim: lim,
			wantWait: 9900 * time.Millisecond, wantDepth: 99},
		{name: "over max_queued: Retry-After is the time to drain the excess", q: waitingSince(reading(0, 1046, 4, 0), 0), d: drain{Rate: 10, Known: true},
			lim: admissionLimits{MaxQueued: 1000}, refuse: true, retry: 6, wantWait: 105 * time.Second, wantDepth: 1050},
		{name: "ceiling holds with a fast drain", q: waitingSince(reading(0, 996, 4, 0), 0), d: drain{Rate: 1e6, Known: true}, lim: lim,
			refuse: true, retry: 1, wantWait: time.Millisecond, wantDepth: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := decide(tt.q, tt.admitted, tt.d, tt.lim, now)
			if v.Refuse != tt.refuse || v.RetryAfter != tt.retry || v.Wait != tt.wantWait || v.Depth != tt.wantDepth {
				t.Errorf("decide = %+v, want refuse %v retry %d wait %v depth %d", v, tt.refuse, tt.retry, tt.wantWait, tt.wantDepth)
			}
		})
	}
}

func TestRetryAfterFor(t *testing.T) {
	tests := []struct {
		wait, maxQueueWait time.Duration
		want               int
	}{
		{-1, 10 * time.Second, retryAfterUnknown},
		{0, 10 * time.Second, 1},
		{time.Millisecond, 10 * time.Second, 1},
		{1500 * time.Millisecond, 10 * time.Second, 2},
		{30 * time.Second, 10 * time.Second, 10},
		{30 * time.Second, 0, 30},
		{30 * time.Second, time.Minute, 30},
		{time.Hour, 0, 60},
		{time.Hour, 5 * time.Minute, 60},
		{time.Hour, 1500 * time.Millisecond, 2},
	}
	for _, tt := range tests {
		if got := retryAfterFor(tt.wait, tt.maxQueueWait); got != tt.want {
			t.Errorf("retryAfterFor(%v, %v) = %d, want %d", tt.wait, tt.maxQueueWait, got, tt.want)
		}
	}
}

// Each priority is admitted against the files ahead of it: a backlog of
// rescans (low) refuses more rescans, never an upload, whether by depth or
// by the age of its oldest file.
func TestDecideByPriority(t *testing.T) {
	lim := admissionLimits{MaxQueued: 5, MaxQueueWait: 10 * time.Second}
	now := t0.Add(time.Hour)
	q := bus.ScanQueue{At: now, Waiting: 11, OldestWaiting: now.Add(-time.Minute), Priorities: map[events.Priority]bus.PriorityQueue{
		events.PriorityLow:    {Waiting: 10, OldestWaiting: now.Add(-time.Minute)},
		events.PriorityNormal: {Waiting: 1, OldestWaiting: now.Add(-time.Second)},
	}}
	d := drain{Rate: 100, Known: true}
	for _, tc := range []struct {
		p      events.Priority
		refuse bool
	}{
		{events.PriorityLow, true},
		{events.PriorityNormal, false},
		{events.PriorityHigh, false},
	} {
		if v := decide(q.Ahead(tc.p), 0, d, lim, now); v.Refuse != tc.refuse {
			t.Errorf("%s: %+v, want refused %v", tc.p, v, tc.refuse)
		}
	}
	// Uploads past max_queued ahead of them are refused as before.
	q.Priorities[events.PriorityNormal] = bus.PriorityQueue{Waiting: 5, OldestWaiting: now.Add(-time.Second)}
	q.Waiting = 15
	if v := decide(q.Ahead(events.PriorityNormal), 0, d, lim, now); !v.Refuse || v.Reason != "max_queued" {
		t.Errorf("uploads past max_queued: %+v, want refused", v)
	}
}
