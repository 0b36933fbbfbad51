package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// MinServerVersion is the oldest nats-server scangate runs against. Upload
// expiry is a message schedule (`Nats-Schedule: @at`, stream setting
// allow_msg_schedules), which nats-server 2.12.0 introduced; partition
// owners are pinned priority-group consumers, which came in 2.11.0. An
// older server fails on them obscurely, or ignores the schedule.
const MinServerVersion = "2.12.0"

// MinAPILevel is the JetStream API level of MinServerVersion: a stream
// that allows message schedules requires level 2. In a cluster, the level
// comes from the server answering the account info request, so it also
// catches a meta leader older than the server this process connected to.
const MinAPILevel = 2

// CheckServer checks that the connected server is recent enough and that
// its JetStream answers. Not being connected yet, or a JetStream that is
// not ready, is an error Wait retries; an old server is not.
func CheckServer(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error {
	v := nc.ConnectedServerVersion()
	if v == "" {
		return errNotConnected
	}
	if err := checkVersion(v); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return fmt.Errorf("jetstream account info: %w", err)
	}
	return checkAPILevel(v, info.API.Level)
}

var errNotConnected = errors.New("not connected to NATS")

// oldServerError: the server lacks what scangate needs. Waiting does not
// cure it.
type oldServerError struct{ msg string }

func (e *oldServerError) Error() string { return e.msg }

func checkVersion(version string) error {
	newer, err := atLeast(version, MinServerVersion)
	if err != nil {
		return &oldServerError{fmt.Sprintf("nats-server version %q: %v; scangate needs nats-server %s or later",
			version, err, MinServerVersion)}
	}
	if !newer {
		return &oldServerError{fmt.Sprintf("nats-server %s is too old: scangate needs nats-server %s or later "+
			"(message schedules for upload expiry, pinned consumers for partition owners)", version, MinServerVersion)}
	}
	return nil
}

func checkAPILevel(version string, level int) error {
	if level < MinAPILevel {
		return &oldServerError{fmt.Sprintf("JetStream API level %d (nats-server %s, or an older server in its cluster) "+
			"is too old: scangate needs level %d, nats-server %s or later", level, version, MinAPILevel, MinServerVersion)}
	}
	return nil
}

// atLeast reports whether version v is min or later, as semantic versions:
// a pre-release (2.12.0-RC.1) comes before its release.
func atLeast(v, min string) (bool, error) {
	a, aPre, err := parseVersion(v)
	if err != nil {
		return false, err
	}
	b, bPre, err := parseVersion(min)
	if err != nil {
		return false, err
	}
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i], nil
		}
	}
	return !aPre || bPre, nil
}

func parseVersion(v string) (n [3]int, pre bool, err error) {
	v = strings.TrimPrefix(v, "v")
	v, _, _ = strings.Cut(v, "+") // build metadata does not order
	v, p, pre := strings.Cut(v, "-")
	if pre && p == "" {
		return n, false, errors.New("not a version")
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return n, false, errors.New("not a version")
	}
	for i, s := range parts {
		if n[i], err = strconv.Atoi(s); err != nil || n[i] < 0 {
			return n, false, errors.New("not a version")
		}
	}
	return n, pre, nil
}

// Backoff between attempts while JetStream is not ready.
const (
	waitFirst = 250 * time.Millisecond
	waitMax   = 4 * time.Second
)

// Wait runs fn until it succeeds, fails for a reason waiting cannot cure, or
// ctx ends. While JetStream is not ready (the server is not up yet, a
// cluster has no meta leader, JetStream is not enabled yet) it logs one
// warning per attempt and tries again with backoff: roles and their NATS
// cluster start together, in no particular order.
func Wait(ctx context.Context, log zerolog.Logger, fn func(context.Context) error) error {
	pause := waitFirst
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for JetStream: %w (last error: %v)", ctx.Err(), err)
		}
		if !notReady(err) {
			return err
		}
		log.Warn().Dur("retry_in", pause).Msg("waiting for JetStream: " + err.Error())
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for JetStream: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(pause):
		}
		pause = min(2*pause, waitMax)
	}
}

// JetStream API errors that say "not now" rather than "no".
const (
	jsErrCodeNoPeers     jetstream.ErrorCode = 10005 // no suitable peers for placement: the cluster is still forming
	jsErrCodeNotAssigned jetstream.ErrorCode = 10007 // the asset is being assigned
	jsErrCodeNotAvail    jetstream.ErrorCode = 10008 // JetStream system temporarily unavailable: no meta leader
	jsErrCodeNotLeader   jetstream.ErrorCode = 10009 // cluster can not handle request
)

// errSettling marks an asset that was just declared and is not visible yet
// on the server that answered: a cluster applies assignments on each server
// in its own time.
var errSettling = errors.New("just declared, not visible yet")

// JustDeclared marks err as "not visible yet" when it says that an asset
// Declare has just made is not found: the server that answered has not
// applied the assignment yet. Wait then tries again instead of failing.
func JustDeclared(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("%w: %w", errSettling, err)
	}
	return err
}

// notReady tells the errors of a JetStream that is starting up from those
// of one that answered and refused.
func notReady(err error) bool {
	var drift *DriftError
	var old *oldServerError
	if errors.As(err, &drift) || errors.As(err, &old) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, errNotConnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, errSettling) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jsErrCodeNoPeers, jsErrCodeNotAssigned, jsErrCodeNotAvail, jsErrCodeNotLeader:
			return true
		}
	}
	return false
}
