package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v, min string
		want   bool
	}{
		{"2.12.0", "2.12.0", true},
		{"2.12.1", "2.12.0", true},
		{"2.15.2", "2.12.0", true},
		{"3.0.0", "2.12.0", true},
		{"2.11.9", "2.12.0", false},
		{"2.2.0", "2.12.0", false}, // numbers, not strings: 2 < 12
		{"1.99.99", "2.12.0", false},
		{"v2.12.0", "2.12.0", true},
		{"2.12.0-RC.1", "2.12.0", false}, // a pre-release comes before its release
		{"2.12.1-beta", "2.12.0", true},
		{"2.12.0+build.5", "2.12.0", true},
		{"2.12.0-RC.1", "2.12.0-RC.1", true},
	} {
		got, err := atLeast(tc.v, tc.min)
		if err != nil || got != tc.want {
			t.Errorf("atLeast(%q, %q) = %v, %v; want %v", tc.v, tc.min, got, err, tc.want)
		}
	}
	for _, v := range []string{"", "2.12", "2.12.x", "2.12.0.1", "2.12.0-", "-1.2.3", "dev"} {
		if _, err := atLeast(v, MinServerVersion); err == nil {
			t.Errorf("atLeast(%q) accepted a malformed version", v)
		}
	}
}

func TestCheckServerVersion(t *testing.T) {
	for _, tc := range []struct {
		version string
		level   int
		want    string // in the error; "" for none
	}{
		{"2.12.0", 2, ""},
		{"2.15.2", 5, ""},
		{"2.11.4", 1, "nats-server 2.11.4 is too old: scangate needs nats-server 2.12.0 or later"},
		{"2.10.22", 0, "nats-server 2.10.22 is too old"},
		{"2.12.0-RC.2", 2, "nats-server 2.12.0-RC.2 is too old"},
		{"2.12.0", 1, "JetStream API level 1 (nats-server 2.12.0, or an older server in its cluster) is too old: scangate needs level 2"},
		{"custom", 5, `nats-server version "custom"`},
	} {
		err := checkVersion(tc.version)
		if err == nil {
			err = checkAPILevel(tc.version, tc.level)
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s (level %d): %v", tc.version, tc.level, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s (level %d): %v, want %q", tc.version, tc.level, err, tc.want)
		case err != nil && notReady(err):
			t.Errorf("%s: an old server is waited for: %v", tc.version, err)
		}
	}
}

// Only errors of a JetStream that is coming up are waited out.
func TestNotReady(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("stream UPLOADS: %w", context.DeadlineExceeded), true},
		{nats.ErrNoResponders, true},
		{nats.ErrTimeout, true},
		{errNotConnected, true},
		{jetstream.ErrJetStreamNotEnabled, true},
		{jetstream.ErrJetStreamNotEnabledForAccount, true},
		{&jetstream.APIError{ErrorCode: jsErrCodeNotAvail, Code: 503, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{ErrorCode: jsErrCodeNoPeers, Code: 400, Description: "no suitable peers for placement"}, true},
		{&jetstream.APIError{ErrorCode: 10074, Code: 500, Description: "replicas > 1 not supported in non-clustered mode"}, false},
		{fmt.Errorf("create bucket hashes: %w: %w", errSettling, jetstream.ErrStreamNotFound), true},
		{jetstream.ErrStreamNotFound, false},
		{&DriftError{}, false},
		{fmt.Errorf("wrapped: %w", &DriftError{}), false},
		{nats.ErrConnectionClosed, false},
		{errors.New("something else"), false},
	} {
		if got := notReady(tc.err); got != tc.want {
			t.Errorf("notReady(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
