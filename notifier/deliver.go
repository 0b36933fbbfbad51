package notifier

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/rs/zerolog"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/scangate/scangate/pkg/metrics"
	"github.com/scangate/scangate/pkg/netguard"
)

// userAgent identifies scangate's deliveries to receivers.
const userAgent = "scangate-webhooks"

// maxResponseRead is how much of a receiver's answer is read (and thrown
// away) so its connection can be reused; scangate does not use the body.
const maxResponseRead = 64 << 10

// jitter spreads retries of many deliveries that failed together (a
// receiver outage) so they do not all come back at the same instant.
const jitter = 0.5

// deliver makes t's attempt for dataID if one is due, and records it. It
// returns t's state (final: no more attempts will be made) and, when not
// final, how long until its next attempt is due. An error means the state
// could not be read or written: no attempt was lost, the caller should look
// again later; the state returned then is the last one known, if any.
func (n *Notifier) deliver(ctx context.Context, dataID string, t target) (*State, time.Duration, error) {
	key := t.key(dataID)
	st, rev, err := loadState(ctx, n.b.Webhooks, key)
	if errors.Is(err, ErrNoState) {
		st, rev, err = newState(dataID, t), 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if st.Final() {
		n.logFor(st).Debug().Msg("webhook already settled; duplicate scan-done acknowledged")
		return st, 0, nil
	}
	now := time.Now()
	if wait := st.dueIn(now); wait > 0 {
		return st, wait, nil // came back early; keep the schedule
	}
	if st.Attempts >= n.cfg.MaxAttempts {
		why := fmt.Sprintf("retry budget spent: %d attempts (webhooks.max_attempts is %d)", st.Attempts, n.cfg.MaxAttempts)
		if st.NextAttempt == "" {
			// The last attempt began but its outcome was never written: the
			// notifier running it stopped. It counts all the same.
			why = fmt.Sprintf("attempt %d was interrupted before its outcome was recorded; no attempts left", st.Attempts)
		}
		st.finish(StateFailed, why)
		return n.save(ctx, key, st, rev, 0)
	}
	body, err := n.payload(ctx, t, dataID)
	if errors.Is(err, errPermanent) {
		st.finish(StateFailed, err.Error())
		return n.save(ctx, key, st, rev, 0)
	}
	if err != nil {
		return st, 0, err
	}
	// One slow or dead receiver must not take every delivery slot: each
	// host gets a few at a time, and a delivery that finds them taken
	// comes back shortly without spending an attempt.
	release, ok := n.hosts.acquire(hostOf(t.url))
	if !ok {
		return st, hostBusyDelay, nil
	}
	defer release()

	st.begin(now)
	if rev, err = saveState(ctx, n.b.Webhooks, key, st, rev); err != nil {
		return st, 0, err
	}
	out := n.attempt(ctx, t, st.WebhookID, body)
	if out.err != nil {
		// The state tells the client what kind of failure it was; the
		// addresses involved are for the operator's eyes only.
		n.logFor(st).Info().Err(out.err).Msg("webhook attempt failed: detail")
	}
	return n.save(ctx, key, st, rev, n.record(st, out, time.Now()))
}

// Per-host concurrency: one host may hold at most half of the delivery
// slots, so a slow or hanging receiver leaves the other half to everyone
// else. A delivery that finds its host's share taken goes back to
// JetStream for hostBusyDelay (no attempt spent).
const (
	maxPerHost    = MaxInFlight / 2
	hostBusyDelay = 100 * time.Millisecond
)

// hostSlots counts attempts in flight per host.
type hostSlots struct {
	mu   sync.Mutex
	busy map[string]int
}

func (h *hostSlots) acquire(host string) (release func(), ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.busy == nil {
		h.busy = map[string]int{}
	}
	if h.busy[host] >= maxPerHost {
		return nil, false
	}
	h.busy[host]++
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.busy[host]--; h.busy[host] <= 0 {
			delete(h.busy, host)
		}
	}, true
}

// save writes the state an attempt (or the lack of one) left and logs it.
func (n *Notifier) save(ctx context.Context, key string, st *State, rev uint64, retryIn time.Duration) (*State, time.Duration, error) {
	if _, err := saveState(ctx, n.b.Webhooks, key, st, rev); err != nil {
		return st, 0, err
	}
	n.metrics.Webhook(st.Kind, outcomeLabel(st))
	n.logOutcome(st, retryIn)
	return st, retryIn, nil
}

// outcomeLabel names st's latest outcome for the delivery metrics.
func outcomeLabel(st *State) string {
	switch st.State {
	case StateDelivered:
		return metrics.WebhookDelivered
	case StateGone:
		return metrics.WebhookGone
	case StateFailed:
		return metrics.WebhookFailed
	}
	return metrics.WebhookRetry
}

// newState is the state of a delivery nobody has attempted yet.
func newState(dataID string, t target) *State {
	return &State{
		DataID:    dataID,
		URL:       t.url,
		State:     StatePending,
		Kind:      string(t.kind),
		WebhookID: t.webhookID(dataID),
	}
}

// outcome is what one attempt got: a status, or an error and no response.
type outcome struct {
	status     int
	retryAfter time.Duration // the receiver's Retry-After on 429/503
	err        error
}

// attempt POSTs the payload to t once, with the Standard Webhooks headers.
// The client's timeout bounds it. A redirect is not followed: its 3xx is
// the outcome.
func (n *Notifier) attempt(ctx context.Context, t target, webhookID string, p *payload) outcome {
	u, err := netguard.CheckURL(t.url)
	if err != nil {
		return outcome{err: err}
	}
	// Refuse a literal private address without dialling; names are checked
	// on the address actually dialled by the client.
	if !n.cfg.AllowPrivateTargets && netguard.LiteralForbidden(u) {
		return outcome{err: fmt.Errorf("%w: %s", netguard.ErrForbidden, u.Hostname())}
	}
	now := time.Now()
	header := p.header.Clone()
	sig, sum, err := n.sign(p, webhookID, now)
	if err != nil {
		return outcome{err: err}
	}
	header.Set("User-Agent", userAgent)
	header.Set(standardwebhooks.HeaderWebhookID, webhookID)
	header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	if sig != "" {
		header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	}
	if t.kind == kindSanitized {
		header.Set("Sanitized-File-Hash", sum)
	}
	body, err := p.open()
	if err != nil {
		return outcome{err: err}
	}
	defer body.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), body)
	if err != nil {
		return outcome{err: err}
	}
	req.ContentLength = p.size
	req.Header = header
	resp, err := n.client.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	out := outcome{status: resp.StatusCode}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		out.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return out
}

// sign reads the payload once, computing the Standard Webhooks signature
// (v1, HMAC-SHA256 of "id.timestamp.body" with the secret, "" without one)
// and the body's sha256.
func (n *Notifier) sign(p *payload, webhookID string, now time.Time) (sig, sum string, err error) {
	body, err := p.open()
	if err != nil {
		return "", "", err
	}
	defer body.Close()
	h := sha256.New()
	w := io.Writer(h)
	var mac hash.Hash
	if n.key != nil {
		mac = hmac.New(sha256.New, n.key)
		fmt.Fprintf(mac, "%s.%d.", webhookID, now.Unix())
		w = io.MultiWriter(h, mac)
	}
	if _, err := io.Copy(w, body); err != nil {
		return "", "", fmt.Errorf("read payload: %w", err)
	}
	if mac != nil {
		sig = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	return sig, hex.EncodeToString(h.Sum(nil)), nil
}

// maxRetryAfter bounds how long a receiver can ask scangate to wait.
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads Retry-After as seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// record applies an attempt's outcome to st and returns how long until the
// next attempt (0 when st is now final).
func (n *Notifier) record(st *State, out outcome, now time.Time) time.Duration {
	st.StatusCode = out.status
	switch {
	case out.err == nil && out.status >= 200 && out.status <= 299:
		st.finish(StateDelivered, "")
		return 0
	case out.err == nil && out.status == http.StatusGone:
		st.finish(StateGone, "receiver answered 410 Gone; no more attempts")
		return 0
	case refused(out.err):
		// The same URL will be refused next time too.
		st.finish(StateFailed, n.refusal(out.err))
		return 0
	}
	why := n.describe(out)
	if st.Attempts >= n.cfg.MaxAttempts {
		st.finish(StateFailed, fmt.Sprintf("%s; gave up after %d attempts", why, st.Attempts))
		return 0
	}
	delay := max(n.retryDelay(st.Attempts), out.retryAfter)
	st.retryAt(now.Add(delay), why)
	return delay
}

// describe says what went wrong with a retryable attempt.
func (n *Notifier) describe(out outcome) string {
	switch {
	case out.err == nil && out.status >= 300 && out.status <= 399:
		return fmt.Sprintf("receiver answered %d; redirects are not followed", out.status)
	case out.err == nil:
		return fmt.Sprintf("receiver answered %d", out.status)
	case errors.Is(out.err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s (webhooks.timeout)", n.cfg.Timeout)
	}
	return netguard.Describe(out.err)
}

func refused(err error) bool {
	return errors.Is(err, netguard.ErrForbidden) || errors.Is(err, netguard.ErrInvalidURL)
}

// refusal explains a refused target in the state an integrator will read.
func (n *Notifier) refusal(err error) string {
	msg := "target refused, not retried: " + netguard.Describe(err)
	if errors.Is(err, netguard.ErrForbidden) && !n.cfg.AllowPrivateTargets {
		msg += " (loopback, private and link-local targets are allowed only with webhooks.allow_private_targets)"
	}
	return msg
}

// retryDelay is the wait after the given number of failed attempts:
// InitialInterval doubling per attempt, capped at MaxInterval, with jitter.
// It is computed afresh from the count in KV, so any notifier arrives at
// the same schedule.
func (n *Notifier) retryDelay(attempts int) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     n.cfg.Retry.InitialInterval,
		RandomizationFactor: jitter,
		Multiplier:          2,
		MaxInterval:         n.cfg.Retry.MaxInterval,
	}
	b.Reset()
	var d time.Duration
	for range max(attempts, 1) {
		d = b.NextBackOff()
	}
	// The library caps the interval before jitter; cap after it too.
	return min(d, n.cfg.Retry.MaxInterval)
}

// logFor carries what every line about a delivery must say.
func (n *Notifier) logFor(st *State) *zerolog.Logger {
	l := n.log.With().
		Str("data_id", st.DataID).
		Str("host", hostOf(st.URL)).
		Str("kind", st.Kind).
		Int("attempt", st.Attempts).
		Int("status", st.StatusCode).
		Str("state", st.State).
		Logger()
	return &l
}

func (n *Notifier) logOutcome(st *State, retryIn time.Duration) {
	log := n.logFor(st)
	switch st.State {
	case StateDelivered:
		log.Info().Msg("webhook delivered")
	case StateGone:
		log.Info().Msg("webhook receiver gone (410); stopped")
	case StateFailed:
		log.Error().Str("error", st.LastError).Msg("webhook delivery failed")
	default:
		log.Warn().Str("error", st.LastError).Dur("retry_in", retryIn).Str("next_attempt", st.NextAttempt).
			Msg("webhook attempt failed; will retry")
	}
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}
