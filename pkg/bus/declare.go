package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Declaration. Every role declares the topology at start, on any host, in
// any order, so declaring must never change what an operator runs: a role
// creates what is missing and checks the rest. A stream, bucket or consumer
// whose settings differ from the declared ones is reported (DriftError) and
// left alone; `scangate migrate` shows and applies the differences. The
// exceptions are differences nothing under way relies on (Diff.Safe: a
// description, a bucket's TTL), which a role applies itself.
//
// Only the settings scangate owns are compared: those it sets, and the
// limits its guarantees rest on (a limit on a stream would drop accepted
// work). The rest (compression, placement, what the server fills in) is the
// operator's and the server's.

// Asset is one stream, KV bucket, object store or consumer scangate
// declares.
type Asset struct {
	name    string // as operators see it: "stream UPLOADS", "bucket results (stream KV_results)"
	inspect func(ctx context.Context, js jetstream.JetStream) (*Change, error)
}

// String names the asset.
func (a Asset) String() string { return a.name }

// Change is what it takes to bring one asset to its declared settings.
type Change struct {
	Asset  string // the asset's name
	Create bool   // it does not exist
	Diffs  []Diff // it exists with these differences
	apply  func(ctx context.Context, js jetstream.JetStream) error
}

// Diff is one setting of an existing asset that differs from its
// declaration.
type Diff struct {
	Field      string // as in the server's JSON (max_age), or the KV name (history, ttl)
	Want, Have string
	// Safe: it only describes (a description), or changes nothing any
	// work under way relies on (a bucket's TTL), so declaring applies it
	// without asking.
	Safe bool
}

func (d Diff) String() string { return fmt.Sprintf("%s: want %s, have %s", d.Field, d.Want, d.Have) }

// String says what the change does, e.g. "update stream UPLOADS:
// replicas: want 3, have 1".
func (c Change) String() string {
	if c.Create {
		return "create " + c.Asset
	}
	parts := make([]string, len(c.Diffs))
	for i, d := range c.Diffs {
		parts[i] = d.String()
	}
	return "update " + c.Asset + ": " + strings.Join(parts, "; ")
}

// Apply makes the change on the server and returns the server's error, if
// any. An update rewrites only the settings scangate owns; the server
// refuses what it cannot change (storage, or replicas above 1 on a server
// that is not in a cluster).
func (c Change) Apply(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	return c.apply(ctx, js)
}

func (c Change) safe() bool {
	if c.Create {
		return true
	}
	for _, d := range c.Diffs {
		if !d.Safe {
			return false
		}
	}
	return true
}

// DriftError: existing assets differ from the declaration in ways a role
// must not change on its own. Waiting does not cure it.
type DriftError struct {
	Changes []Change // the updates, every difference listed
}

func (e *DriftError) Error() string {
	var b strings.Builder
	b.WriteString("JetStream assets differ from this configuration; a role never changes them, " +
		"run `scangate migrate` with the same configuration to apply it (`--dry-run` shows the changes first):")
	for _, c := range e.Changes {
		for _, d := range c.Diffs {
			fmt.Fprintf(&b, "\n  %s: %s", c.Asset, d)
		}
	}
	return b.String()
}

// Each look-up and each change has its own bound: a server that never
// answers (a cluster without a meta leader does not) fails one step, which
// Open retries, rather than the whole declaration. A change waits longer:
// creating a replicated stream waits for its group to elect a leader.
const (
	requestTimeout = 5 * time.Second
	applyTimeout   = 15 * time.Second
)

// Inspect compares the assets on the server with their declarations and
// returns the changes that would bring them in line, in declaration order
// (streams before their consumers). It changes nothing.
func Inspect(ctx context.Context, js jetstream.JetStream, assets []Asset) ([]Change, error) {
	var changes []Change
	for _, a := range assets {
		actx, cancel := context.WithTimeout(ctx, requestTimeout)
		c, err := a.inspect(actx, js)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		if c != nil {
			changes = append(changes, *c)
		}
	}
	return changes, nil
}

// Declare creates the assets that are missing and checks the others. It
// applies safe differences (Diff.Safe); any other difference makes it
// return a *DriftError having changed nothing.
func Declare(ctx context.Context, js jetstream.JetStream, assets []Asset) error {
	_, err := declare(ctx, js, assets)
	return err
}

// declare is Declare, returning the changes it applied.
func declare(ctx context.Context, js jetstream.JetStream, assets []Asset) ([]Change, error) {
	for attempt := 1; ; attempt++ {
		changes, err := Inspect(ctx, js, assets)
		if err != nil {
			return nil, err
		}
		var drift []Change
		for _, c := range changes {
			if !c.safe() {
				drift = append(drift, c)
			}
		}
		if len(drift) > 0 {
			return nil, &DriftError{Changes: drift}
		}
		err = applyAll(ctx, js, changes)
		if err == nil {
			return changes, nil
		}
		// Another process created an asset between our look and our
		// create (roles start together): look again, it may differ.
		if attempt == 3 || !alreadyExists(err) {
			return nil, err
		}
	}
}

func applyAll(ctx context.Context, js jetstream.JetStream, changes []Change) error {
	for _, c := range changes {
		if err := c.Apply(ctx, js); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	return nil
}

func alreadyExists(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, jetstream.ErrBucketExists) ||
		errors.Is(err, jetstream.ErrConsumerExists)
}

// StreamAsset declares a stream.
func StreamAsset(cfg jetstream.StreamConfig) Asset {
	return streamBacked("stream "+cfg.Name, cfg, streamFields, func(ctx context.Context, js jetstream.JetStream) error {
		_, err := js.CreateStream(ctx, cfg)
		return err
	})
}

// BucketAsset declares a KV bucket (the stream KV_<bucket>); groupCommit
// lets a Committer write its keys (see Committer).
func BucketAsset(cfg jetstream.KeyValueConfig, groupCommit bool) Asset {
	want := jetstream.StreamConfig{
		Name:               "KV_" + cfg.Bucket,
		Description:        cfg.Description,
		MaxMsgsPerSubject:  max(int64(cfg.History), 1), // as nats.go creates it
		MaxAge:             cfg.TTL,
		Storage:            cfg.Storage,
		Replicas:           max(cfg.Replicas, 1),
		MaxBytes:           cfg.MaxBytes,
		MaxMsgSize:         cfg.MaxValueSize,
		AllowAtomicPublish: groupCommit,
	}
	name := fmt.Sprintf("bucket %s (stream %s)", cfg.Bucket, want.Name)
	return streamBacked(name, want, bucketFields, func(ctx context.Context, js jetstream.JetStream) error {
		if _, err := js.CreateKeyValue(ctx, cfg); err != nil || !groupCommit {
			return err
		}
		// nats.go has no such bucket option: switch it on in the stream.
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			// In a cluster the server that answers may not have applied
			// the assignment it just acknowledged yet.
			return fmt.Errorf("%w: %w", errSettling, err)
		}
		if err != nil {
			return err
		}
		sc := s.CachedInfo().Config
		sc.AllowAtomicPublish = true
		_, err = js.UpdateStream(ctx, sc)
		return err
	})
}

// ObjectStoreAsset declares an object store (the stream OBJ_<bucket>).
func ObjectStoreAsset(cfg jetstream.ObjectStoreConfig) Asset {
	want := jetstream.StreamConfig{
		Name:        "OBJ_" + cfg.Bucket,
		Description: cfg.Description,
		MaxAge:      cfg.TTL,
		Storage:     cfg.Storage,
		Replicas:    max(cfg.Replicas, 1),
		MaxBytes:    cfg.MaxBytes,
	}
	name := fmt.Sprintf("object store %s (stream %s)", cfg.Bucket, want.Name)
	return streamBacked(name, want, objectFields, func(ctx context.Context, js jetstream.JetStream) error {
		_, err := js.CreateObjectStore(ctx, cfg)
		return err
	})
}

func streamBacked(name string, want jetstream.StreamConfig, fields []field[jetstream.StreamConfig],
	create func(context.Context, jetstream.JetStream) error) Asset {
	return Asset{name: name, inspect: func(ctx context.Context, js jetstream.JetStream) (*Change, error) {
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return &Change{Asset: name, Create: true, apply: create}, nil
		}
		if err != nil {
			return nil, err
		}
		have := s.CachedInfo().Config
		diffs := compare(fields, &want, &have)
		if len(diffs) == 0 {
			return nil, nil
		}
		return &Change{Asset: name, Diffs: diffs, apply: func(ctx context.Context, js jetstream.JetStream) error {
			cfg := have
			for _, f := range fields {
				f.copy(&cfg, &want)
			}
			// The server refuses a duplicate window longer than the max
			// age; nats.go creates a bucket with its window cut to the
			// TTL, and a shortened TTL cuts it the same way.
			if cfg.MaxAge > 0 && cfg.Duplicates > cfg.MaxAge {
				cfg.Duplicates = cfg.MaxAge
			}
			_, err := js.UpdateStream(ctx, cfg)
			return err
		}}, nil
	}}
}

// ConsumerAsset declares a durable consumer.
func ConsumerAsset(c Consumer) Asset {
	name := "consumer " + c.Stream + "/" + c.Config.Durable
	want := c.Config
	return Asset{name: name, inspect: func(ctx context.Context, js jetstream.JetStream) (*Change, error) {
		cons, err := js.Consumer(ctx, c.Stream, want.Durable)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return &Change{Asset: name, Create: true, apply: func(ctx context.Context, js jetstream.JetStream) error {
				_, err := js.CreateConsumer(ctx, c.Stream, want)
				if errors.Is(err, jetstream.ErrStreamNotFound) {
					// Streams are declared first: this server has not
					// applied the stream's assignment yet.
					return fmt.Errorf("%w: %w", errSettling, err)
				}
				return err
			}}, nil
		}
		if err != nil {
			return nil, err
		}
		have := cons.CachedInfo().Config
		diffs := compare(consumerFields, &want, &have)
		if len(diffs) == 0 {
			return nil, nil
		}
		return &Change{Asset: name, Diffs: diffs, apply: func(ctx context.Context, js jetstream.JetStream) error {
			cfg := have
			for _, f := range consumerFields {
				f.copy(&cfg, &want)
			}
			_, err := js.UpdateConsumer(ctx, c.Stream, cfg)
			return err
		}}, nil
	}}
}

// field is one setting scangate owns in a config of type C.
type field[C any] struct {
	name  string
	safe  bool
	value func(*C) any // normalized: what the server would store
	copy  func(dst, src *C)
}

// own makes the field at (a pointer into C); norm, if any, turns the value
// scangate writes into the one the server stores (0 into -1 for
// "unlimited").
func own[C, T any](name string, at func(*C) *T, norm func(T) T) field[C] {
	return field[C]{
		name: name,
		value: func(c *C) any {
			v := *at(c)
			if norm != nil {
				v = norm(v)
			}
			return v
		},
		copy: func(dst, src *C) { *at(dst) = *at(src) },
	}
}

func describe[C any](at func(*C) *string) field[C] {
	f := own("description", at, nil)
	f.safe = true
	return f
}

// groupCommits is the stream setting that lets a Committer store many
// messages with one fsync (allow_atomic). Turning it on changes nothing
// that is stored or dropped, and a writer that never batches is unaffected,
// so a role applies it on its own.
func groupCommits() field[sc] {
	f := own("allow_atomic", func(c *sc) *bool { return &c.AllowAtomicPublish }, nil)
	f.safe = true
	return f
}

// bucketTTL is a bucket's retention: how long an entry is kept after its
// last write (retention.results, retention.webhooks). Changing it drops
// only entries that have not been written for the new TTL, never a record
// in use: configuration validation makes every retention outlast the
// longest time a live record goes unwritten (an open upload session,
// webhook retries). So a role applies it at start, and a deployment
// whose retention changed gets it without a migration. A stream's max
// age stays the operator's: it would drop accepted work.
func bucketTTL() field[sc] {
	f := own("ttl", func(c *sc) *time.Duration { return &c.MaxAge }, nil)
	f.safe = true
	return f
}

func compare[C any](fields []field[C], want, have *C) []Diff {
	var diffs []Diff
	for _, f := range fields {
		w, h := f.value(want), f.value(have)
		if !reflect.DeepEqual(w, h) {
			diffs = append(diffs, Diff{Field: f.name, Want: show(w), Have: show(h), Safe: f.safe})
		}
	}
	return diffs
}

// limit is a stream limit as the server stores it: -1, or 0 in a config,
// is no limit.
type limit int64

func (l limit) String() string {
	if l < 0 {
		return "unlimited"
	}
	return strconv.FormatInt(int64(l), 10)
}

func unlimited[T int | int32 | int64](v T) T {
	if v <= 0 {
		return -1
	}
	return v
}

// show prints a value the way an operator recognises it: durations as
// "30s", policies by name.
func show(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case int:
		return limit(v).String()
	case int64:
		return limit(v).String()
	case int32:
		return limit(v).String()
	case fmt.Stringer:
		return v.String()
	case json.Marshaler:
		if b, err := v.MarshalJSON(); err == nil {
			if s := strings.Trim(string(b), `"`); s != "" {
				return s
			}
			return "none"
		}
	}
	return fmt.Sprint(v)
}

func sorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func noEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

type sc = jetstream.StreamConfig

// Replicas, retention, storage and limits are never applied on their own:
// they decide what survives a lost node and what a stream may drop.
var streamFields = []field[sc]{
	describe(func(c *sc) *string { return &c.Description }),
	own("subjects", func(c *sc) *[]string { return &c.Subjects }, sorted),
	own("retention", func(c *sc) *jetstream.RetentionPolicy { return &c.Retention }, nil),
	own("storage", func(c *sc) *jetstream.StorageType { return &c.Storage }, nil),
	own("replicas", func(c *sc) *int { return &c.Replicas }, nil),
	own("max_age", func(c *sc) *time.Duration { return &c.MaxAge }, nil),
	own("max_msgs", func(c *sc) *int64 { return &c.MaxMsgs }, unlimited),
	own("max_bytes", func(c *sc) *int64 { return &c.MaxBytes }, unlimited),
	own("max_msgs_per_subject", func(c *sc) *int64 { return &c.MaxMsgsPerSubject }, unlimited),
	own("max_msg_size", func(c *sc) *int32 { return &c.MaxMsgSize }, unlimited),
	own("discard", func(c *sc) *jetstream.DiscardPolicy { return &c.Discard }, nil),
	own("discard_new_per_subject", func(c *sc) *bool { return &c.DiscardNewPerSubject }, nil),
	own("duplicate_window", func(c *sc) *time.Duration { return &c.Duplicates }, nil),
	own("deny_purge", func(c *sc) *bool { return &c.DenyPurge }, nil), // roles purge the logs of ended uploads and files
	own("allow_msg_schedules", func(c *sc) *bool { return &c.AllowMsgSchedules }, nil),
	groupCommits(),
}

// A bucket's settings by their KV names; nats.go sets the rest of its
// stream (rollups, discard new, direct get) the same way for every bucket.
var bucketFields = []field[sc]{
	describe(func(c *sc) *string { return &c.Description }),
	own("history", func(c *sc) *int64 { return &c.MaxMsgsPerSubject }, nil),
	bucketTTL(),
	own("storage", func(c *sc) *jetstream.StorageType { return &c.Storage }, nil),
	own("replicas", func(c *sc) *int { return &c.Replicas }, nil),
	own("max_bytes", func(c *sc) *int64 { return &c.MaxBytes }, unlimited),
	own("max_value_size", func(c *sc) *int32 { return &c.MaxMsgSize }, unlimited),
	groupCommits(),
}

var objectFields = []field[sc]{
	describe(func(c *sc) *string { return &c.Description }),
	own("ttl", func(c *sc) *time.Duration { return &c.MaxAge }, nil),
	own("storage", func(c *sc) *jetstream.StorageType { return &c.Storage }, nil),
	own("replicas", func(c *sc) *int { return &c.Replicas }, nil),
	own("max_bytes", func(c *sc) *int64 { return &c.MaxBytes }, unlimited),
}

type cc = jetstream.ConsumerConfig

// A consumer's delivery settings decide who gets a message and when it
// comes back, so they are not applied on their own either. An inactive
// threshold would delete a durable whose role is down.
var consumerFields = []field[cc]{
	describe(func(c *cc) *string { return &c.Description }),
	own("deliver_policy", func(c *cc) *jetstream.DeliverPolicy { return &c.DeliverPolicy }, nil),
	own("ack_policy", func(c *cc) *jetstream.AckPolicy { return &c.AckPolicy }, nil),
	own("ack_wait", func(c *cc) *time.Duration { return &c.AckWait }, nil),
	own("max_deliver", func(c *cc) *int { return &c.MaxDeliver }, unlimited),
	own("max_ack_pending", func(c *cc) *int { return &c.MaxAckPending }, nil),
	own("filter_subject", func(c *cc) *string { return &c.FilterSubject }, nil),
	own("filter_subjects", func(c *cc) *[]string { return &c.FilterSubjects }, sorted),
	own("inactive_threshold", func(c *cc) *time.Duration { return &c.InactiveThreshold }, nil),
	own("priority_policy", func(c *cc) *jetstream.PriorityPolicy { return &c.PriorityPolicy }, nil),
	own("priority_groups", func(c *cc) *[]string { return &c.PriorityGroups }, noEmpty),
	own("priority_timeout", func(c *cc) *time.Duration { return &c.PinnedTTL }, nil),
}
