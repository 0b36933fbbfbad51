package notifier

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

// waitLimit bounds every wait for a condition; tests never assert durations.
const waitLimit = 20 * time.Second

// newBus starts an embedded JetStream server in a temp dir and opens the
// topology on it.
func newBus(t testing.TB) *bus.Bus {
	t.Helper()
	e, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect("notifier-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.Open(context.Background(), nc, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testConfig(t testing.TB) config.WebhooksConfig {
	key := make([]byte, 32)
	rand.Read(key)
	return config.WebhooksConfig{
		AllowPrivateTargets: true, // httptest receivers are on loopback
		Secret:              "whsec_" + base64.StdEncoding.EncodeToString(key),
		MaxAttempts:         5,
		Timeout:             5 * time.Second,
		Retry:               config.RetryConfig{InitialInterval: 50 * time.Millisecond, MaxInterval: 200 * time.Millisecond},
	}
}

// startNotifier runs a Notifier until the returned stop (also run at
// cleanup) is called; stop waits for Run to return.
func startNotifier(t *testing.T, b *bus.Bus, cfg config.WebhooksConfig) (stop func()) {
	t.Helper()
	n, err := New(b, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitLimit):
				t.Errorf("Run did not return within %s of cancel", waitLimit)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// finish stores a final result for a new data_id and announces it; it
// returns the id and the result JSON a callback must carry.
func finish(t *testing.T, b *bus.Bus, callbackURL string) (string, []byte) {
	t.Helper()
	ctx := context.Background()
	id := ids.New()
	now := time.Now()
	rec := result.New(id, 5, events.Hashes{}, events.FileMeta{DisplayName: "x.txt", CallbackURL: callbackURL}, now, result.InProgress)
	rec.Finish(result.NoThreat, nil, now, now.Add(time.Millisecond))
	store := result.Store{KV: b.Results}
	if _, err := store.Put(ctx, rec, 0); err != nil {
		t.Fatal(err)
	}
	raw, _, err := store.GetRaw(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	body, err := result.ResultJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	announce(t, b, &events.ScanDone{DataID: id, CallbackURL: callbackURL}, id)
	return id, body
}

func announce(t testing.TB, b *bus.Bus, ev *events.ScanDone, msgID string) {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: events.ScanDoneSubject(ev.DataID), Data: data, Header: nats.Header{}}
	msg.Header.Set(events.HeaderMsgID, msgID)
	if _, err := b.JS.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// hit is one request a receiver got.
type hit struct {
	method string
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is an httptest server answering the n-th request (from 1) with
// answer(w, req, n) and remembering every request.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	hits []hit
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	t.Helper()
	return newAnswering(t, func(w http.ResponseWriter, _ *http.Request, n int) { w.WriteHeader(status(n)) })
}

func newAnswering(t *testing.T, answer func(w http.ResponseWriter, req *http.Request, n int)) *receiver {
	t.Helper()
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.hits = append(r.hits, hit{method: req.Method, header: req.Header.Clone(), body: body, at: time.Now()})
		n := len(r.hits)
		r.mu.Unlock()
		answer(w, req, n)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) all() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}

func (r *receiver) count() int { return len(r.all()) }

func always(code int) func(int) int { return func(int) int { return code } }

// waitFor polls cond until it holds or waitLimit passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitLimit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// state reads dataID's callback state, nil when there is none.
func state(t *testing.T, b *bus.Bus, dataID string) *State {
	t.Helper()
	raw, err := LoadState(context.Background(), b.Webhooks, dataID)
	if errors.Is(err, ErrNoState) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("state JSON %s: %v", raw, err)
	}
	return &s
}

func waitState(t *testing.T, b *bus.Bus, dataID, want string) *State {
	t.Helper()
	var s *State
	waitFor(t, "state "+want, func() bool {
		s = state(t, b, dataID)
		return s != nil && s.State == want
	})
	return s
}

// waitAcked waits until the notifier has acknowledged the first n
// scan-done events of the stream. A delivery's state is written before its
// event is acknowledged, and an acknowledged event is never handled again:
// from then on no further attempt can be made for it.
func waitAcked(t *testing.T, b *bus.Bus, n uint64) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, fmt.Sprintf("%d scan-done events to be acknowledged", n), func() bool {
		c, err := b.JS.Consumer(ctx, events.StreamScans, events.ConsumerNotifier)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.AckFloor.Stream >= n && info.NumAckPending == 0 && info.NumPending == 0
	})
}

func TestRetriedUntilAcceptedAndSigned(t *testing.T) {
	b := newBus(t)
	cfg := testConfig(t)
	rcv := newReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	startNotifier(t, b, cfg)
	target := rcv.URL + "/scan-done?x=1"
	id, want := finish(t, b, target)

	st := waitState(t, b, id, StateDelivered)
	waitAcked(t, b, 1)

	verifier, err := standardwebhooks.NewWebhook(cfg.Secret)
	if err != nil {
		t.Fatal(err)
	}
	hits := rcv.all()
	if len(hits) != 3 {
		t.Fatalf("receiver got %d attempts, want 3", len(hits))
	}
	for i, h := range hits {
		if got := h.header.Get("webhook-id"); got != "msg_"+id {
			t.Errorf("attempt %d: webhook-id %q, want %q on every attempt", i+1, got, "msg_"+id)
		}
		if err := verifier.Verify(h.body, h.header); err != nil {
			t.Errorf("attempt %d: signature does not verify: %v", i+1, err)
		}
		if !bytes.Equal(h.body, want) {
			t.Errorf("attempt %d: body\n%s\nwant the result JSON\n%s", i+1, h.body, want)
		}
		if ct := h.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("attempt %d: Content-Type %q", i+1, ct)
		}
		if ua := h.header.Get("User-Agent"); ua != "scangate-webhooks" {
			t.Errorf("attempt %d: User-Agent %q", i+1, ua)
		}
	}
	if st.Attempts != 3 || st.StatusCode != 200 || st.URL != target || st.DataID != id ||
		st.RequestTime == "" || st.NextAttempt != "" || st.WebhookID != "msg_"+id || st.LastError != "" {
		t.Errorf("final state: %+v", st)
	}
	if _, err := time.Parse(result.TimeFormat, st.RequestTime); err != nil {
		t.Errorf("request_time %q: %v", st.RequestTime, err)
	}
}

// A delivery is a POST of the result: a redirect is not followed (it would
// arrive as a GET without the body), it is a failed attempt like any other.
func TestRedirectIsAFailedAttempt(t *testing.T) {
	b := newBus(t)
	cfg := testConfig(t)
	cfg.MaxAttempts = 2
	moved := newReceiver(t, always(http.StatusOK))
	rcv := newAnswering(t, func(w http.ResponseWriter, req *http.Request, _ int) {
		http.Redirect(w, req, moved.URL+"/new-home", http.StatusFound)
	})
	startNotifier(t, b, cfg)
	id, want := finish(t, b, rcv.URL)

	var st *State
	waitFor(t, "the delivery to settle", func() bool {
		st = state(t, b, id)
		return st != nil && st.Final()
	})
	waitAcked(t, b, 1)
	if st.State != StateFailed || st.Attempts != 2 || st.StatusCode != http.StatusFound || !strings.Contains(st.LastError, "302") {
		t.Errorf("state: %+v, want 2 failed attempts answered 302", st)
	}
	hits := rcv.all()
	if len(hits) != 2 {
		t.Errorf("receiver got %d attempts, want 2", len(hits))
	}
	for i, h := range hits {
		if h.method != http.MethodPost || !bytes.Equal(h.body, want) {
			t.Errorf("attempt %d: %s with %d bytes, want a POST of the result", i+1, h.method, len(h.body))
		}
	}
	if n := moved.count(); n != 0 {
		t.Errorf("the redirect target got %d requests, want none", n)
	}
}

// The stored JSON has every field GET /file/webhook/{data_id} documents.
func TestStateJSONShape(t *testing.T) {
	b := newBus(t)
	rcv := newReceiver(t, always(http.StatusNoContent))
	startNotifier(t, b, testConfig(t))
	id, _ := finish(t, b, rcv.URL)
	waitState(t, b, id, StateDelivered)

	raw, err := LoadState(context.Background(), b.Webhooks, id)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"data_id", "url", "request_time", "status_code", "attempts", "next_attempt"} {
		if _, ok := m[k]; !ok {
			t.Errorf("state JSON lacks %q: %s", k, raw)
		}
	}
	if m["status_code"] != float64(204) || m["next_attempt"] != "" {
		t.Errorf("state JSON: %s", raw)
	}
}

func TestGoneStopsRetries(t *testing.T) {
	b := newBus(t)
	cfg := testConfig(t)
	rcv := newReceiver(t, always(http.StatusGone))
	startNotifier(t, b, cfg)
	id, _ := finish(t, b, rcv.URL)

	waitState(t, b, id, StateGone)
	waitAcked(t, b, 1)
	if n := rcv.count(); n != 1 {
		t.Errorf("receiver got %d attempts, want 1", n)
	}
	if st := state(t, b, id); st.State != StateGone || st.Attempts != 1 || st.StatusCode != 410 || st.NextAttempt != "" {
		t.Errorf("state: %+v", st)
	}
}

func TestFailedAfterMaxAttempts(t *testing.T) {
	b := newBus(t)
	cfg := testConfig(t)
	cfg.MaxAttempts = 3
	rcv := newReceiver(t, always(http.StatusInternalServerError))
	startNotifier(t, b, cfg)
	id, _ := finish(t, b, rcv.URL)

	waitState(t, b, id, StateFailed)
	waitAcked(t, b, 1)
	if n := rcv.count(); n != 3 {
		t.Errorf("receiver got %d attempts, want 3", n)
	}
	st := state(t, b, id)
	if st.Attempts != 3 || st.StatusCode != 500 || st.NextAttempt != "" || !strings.Contains(st.LastError, "500") {
		t.Errorf("state: %+v", st)
	}
}

// A receiver that hangs holds one delivery slot until the attempt times out;
// a healthy receiver for another file is served meanwhile.
func TestHangingReceiverDoesNotBlockOthers(t *testing.T) {
	b := newBus(t)
	cfg := testConfig(t)
	cfg.MaxAttempts = 1
	cfg.Timeout = 4 * time.Second

	var hanging atomic.Int32
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hanging.Add(1)
		defer hanging.Add(-1)
		// Read the body so the server notices when the notifier hangs up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done(): // the notifier gave up on it
		case <-release:
		}
	}))
	defer slow.Close()
	defer close(release)
	var fastSawHanging atomic.Bool
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fastSawHanging.Store(hanging.Load() > 0)
	}))
	defer fast.Close()

	startNotifier(t, b, cfg)
	slowID, _ := finish(t, b, slow.URL)
	waitFor(t, "the slow receiver to get its request", func() bool { return hanging.Load() > 0 })
	fastID, _ := finish(t, b, fast.URL)

	waitState(t, b, fastID, StateDelivered)
	// Delivery takes milliseconds; the hanging attempt lasts cfg.Timeout.
	if !fastSawHanging.Load() {
		t.Error("the healthy receiver was served only after the hanging attempt ended")
	}
	st := waitState(t, b, slowID, StateFailed)
	if st.Attempts != 1 || st.StatusCode != 0 || !strings.Contains(st.LastError, "no answer within") {
		t.Errorf("hanging receiver state: %+v", st)
	}
}

// A retry parked in JetStream outlives the notifier that scheduled it: a new
// notifier makes it, and the attempt count carries over.
func TestRetrySurvivesRestart(t *testing.T) {
	b := newBus(t)
	cfg := testConfig(t)
	// Long enough that the first notifier is stopped before its retry is due.
	cfg.Retry = config.RetryConfig{InitialInterval: 2 * time.Second, MaxInterval: 2 * time.Second}
	rcv := newReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	stop := startNotifier(t, b, cfg)
	id, _ := finish(t, b, rcv.URL)
	waitFor(t, "the first attempt to be recorded with a retry planned", func() bool {
		st := state(t, b, id)
		return st != nil && st.Attempts == 1 && st.NextAttempt != ""
	})
	stop()
	stoppedAt := time.Now()

	startNotifier(t, b, cfg)
	st := waitState(t, b, id, StateDelivered)
	hits := rcv.all()
	if len(hits) != 3 || st.Attempts != 3 || st.StatusCode != 200 {
		t.Fatalf("receiver got %d attempts, state %+v; want 3 attempts in all", len(hits), st)
	}
	if !hits[2].at.After(stoppedAt) {
		t.Error("the final attempt was made by the first notifier, after it was stopped")
	}
}

func TestPrivateTargetRefused(t *testing.T) {
	b := newBus(t)
	cfg := testConfig(t)
	cfg.AllowPrivateTargets = false
	rcv := newReceiver(t, always(http.StatusOK))
	startNotifier(t, b, cfg)

	port := rcv.URL[strings.LastIndex(rcv.URL, ":")+1:]
	for _, target := range []string{rcv.URL + "/hook", "http://localhost:" + port + "/hook", "http://[::1]:" + port + "/"} {
		id, _ := finish(t, b, target)
		st := waitState(t, b, id, StateFailed)
		if st.Attempts != 1 || st.StatusCode != 0 || !strings.Contains(st.LastError, "refused") ||
			!strings.Contains(st.LastError, "allow_private_targets") {
			t.Errorf("%s: state %+v, want failed at once with an explanation", target, st)
		}
	}
	waitAcked(t, b, 3)
	if n := rcv.count(); n != 0 {
		t.Errorf("loopback receiver got %d requests, want none", n)
	}
}

func TestNoCallbackIsAcknowledged(t *testing.T) {
	b := newBus(t)
	startNotifier(t, b, testConfig(t))
	id := ids.New()
	announce(t, b, &events.ScanDone{DataID: id}, id)

	waitAcked(t, b, 1)
	if st := state(t, b, id); st != nil {
		t.Errorf("state written for a file without callback: %+v", st)
	}
}

// A scan-done seen again after the delivery settled changes nothing.
func TestDuplicateEventIsIdempotent(t *testing.T) {
	b := newBus(t)
	cfg := testConfig(t)
	rcv := newReceiver(t, always(http.StatusOK))
	startNotifier(t, b, cfg)
	id, _ := finish(t, b, rcv.URL)
	before := waitState(t, b, id, StateDelivered)

	announce(t, b, &events.ScanDone{DataID: id, CallbackURL: rcv.URL}, id+"-again") // escapes de-duplication
	waitAcked(t, b, 2)
	if n := rcv.count(); n != 1 {
		t.Errorf("receiver got %d requests, want 1", n)
	}
	if after := state(t, b, id); *after != *before {
		t.Errorf("state changed: %+v → %+v", before, after)
	}
}

func TestLoadStateUnknown(t *testing.T) {
	b := newBus(t)
	for _, id := range []string{ids.New(), "not a key!"} {
		if _, err := LoadState(context.Background(), b.Webhooks, id); !errors.Is(err, ErrNoState) {
			t.Errorf("LoadState(%q) = %v, want ErrNoState", id, err)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	cfg := testConfig(t)
	cfg.Retry = config.RetryConfig{InitialInterval: time.Second, MaxInterval: 30 * time.Second}
	n := &Notifier{cfg: cfg}
	for attempts := 1; attempts <= 12; attempts++ {
		base := min(cfg.Retry.InitialInterval<<(attempts-1), cfg.Retry.MaxInterval)
		lo, hi := time.Duration(float64(base)*(1-jitter)), min(time.Duration(float64(base)*(1+jitter))+1, cfg.Retry.MaxInterval)
		for range 50 {
			if d := n.retryDelay(attempts); d < lo || d > hi {
				t.Fatalf("retryDelay(%d) = %s, want within [%s, %s]", attempts, d, lo, hi)
			}
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	b := newBus(t)
	for name, mutate := range map[string]func(*config.WebhooksConfig){
		"secret":       func(c *config.WebhooksConfig) { c.Secret = "nope" },
		"max_attempts": func(c *config.WebhooksConfig) { c.MaxAttempts = 0 },
		"timeout":      func(c *config.WebhooksConfig) { c.Timeout = 0 },
		"retry":        func(c *config.WebhooksConfig) { c.Retry.MaxInterval = c.Retry.InitialInterval / 2 },
	} {
		cfg := testConfig(t)
		mutate(&cfg)
		if _, err := New(b, cfg, zerolog.Nop()); err == nil {
			t.Errorf("%s: New accepted a bad config", name)
		}
	}
}

// Attempts are counted from KV: a last attempt whose notifier died before
// recording its outcome still used up the budget, whatever JetStream's
// delivery count says.
func TestInterruptedLastAttemptCounts(t *testing.T) {
	b := newBus(t)
	cfg := testConfig(t)
	cfg.MaxAttempts = 2
	rcv := newReceiver(t, always(http.StatusOK))
	ctx := context.Background()

	id := ids.New()
	st := newState(id, target{kind: kindCallback, url: rcv.URL})
	st.begin(time.Now())
	st.begin(time.Now()) // attempt 2 of 2 started, outcome never written
	if _, err := saveState(ctx, b.Webhooks, callbackKey(id), st, 0); err != nil {
		t.Fatal(err)
	}
	startNotifier(t, b, cfg)
	announce(t, b, &events.ScanDone{DataID: id, CallbackURL: rcv.URL}, id)

	got := waitState(t, b, id, StateFailed)
	if got.Attempts != 2 || !strings.Contains(got.LastError, "interrupted") {
		t.Errorf("state: %+v", got)
	}
	if n := rcv.count(); n != 0 {
		t.Errorf("receiver got %d requests, want none", n)
	}
}

// A scan-done names the revision its final result was written at. A read
// that finds an older record (a replica behind the write, in a cluster) is
// not delivered: the callback waits for the final result every reader sees.
func TestStaleResultIsNotDelivered(t *testing.T) {
	b := newBus(t)
	rcv := newReceiver(t, always(http.StatusOK))
	startNotifier(t, b, testConfig(t))
	ctx := context.Background()
	id := ids.New()
	now := time.Now()
	store := result.Store{KV: b.Results}
	rec := result.New(id, 5, events.Hashes{}, events.FileMeta{DisplayName: "x.txt", CallbackURL: rcv.URL}, now, result.InProgress)
	rev, err := store.Put(ctx, rec, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Announced as written at the next revision, which this reader does
	// not see yet.
	announce(t, b, &events.ScanDone{DataID: id, Revision: rev + 1, CallbackURL: rcv.URL}, id)
	waitFor(t, "the notifier to meet the stale record", func() bool {
		c, err := b.JS.Consumer(ctx, events.StreamScans, events.ConsumerNotifier)
		return err == nil && c.CachedInfo().Delivered.Consumer >= 1
	})
	rec.Finish(result.Infected, nil, now, now.Add(time.Millisecond))
	if _, err := store.Put(ctx, rec, rev); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, id, StateDelivered)
	hits := rcv.all()
	if len(hits) != 1 {
		t.Fatalf("receiver got %d deliveries, want 1", len(hits))
	}
	var got result.Result
	if err := json.Unmarshal(hits[0].body, &got); err != nil || got.ScanResults.ScanAllResultI != result.Infected {
		t.Errorf("delivered %s, want the final result", hits[0].body)
	}
}
