package blob_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
)

// The object store and its index are declared like the streams: created
// once, found unchanged afterwards, and never rewritten by a process
// started with other settings.
func TestJetStreamStoreRefusesDrift(t *testing.T) {
	js := startJetStream(t)()
	ctx := context.Background()
	if _, err := blob.NewJetStream(ctx, js, blob.JetStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	changes, err := bus.Inspect(ctx, js, blob.JetStreamAssets(blob.JetStreamOptions{}))
	if err != nil || len(changes) > 0 {
		t.Fatalf("after NewJetStream: %v %v", changes, err)
	}
	if _, err := blob.NewJetStream(ctx, js, blob.JetStreamOptions{}); err != nil {
		t.Fatalf("second NewJetStream: %v", err)
	}

	_, err = blob.NewJetStream(ctx, js, blob.JetStreamOptions{Replicas: 3})
	var drift *bus.DriftError
	if !errors.As(err, &drift) {
		t.Fatalf("NewJetStream with replicas 3: %v, want a DriftError", err)
	}
	for _, want := range []string{
		"object store blobs (stream OBJ_blobs): replicas: want 3, have 1",
		"bucket blobs-parts (stream KV_blobs-parts): replicas: want 3, have 1",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	info, err := js.Stream(ctx, "OBJ_blobs")
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 1 {
		t.Errorf("object store replicas %d after a refused start", r)
	}
}

// lateView is a cluster server that has not applied the assignments it
// acknowledged yet: the first look at the index bucket finds nothing.
type lateView struct {
	jetstream.JetStream
	missed bool
}

func (l *lateView) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	if !l.missed {
		l.missed = true
		return nil, jetstream.ErrBucketNotFound
	}
	return l.JetStream.KeyValue(ctx, bucket)
}

// A store whose buckets were just created, and are not visible yet on the
// server that answers, is waited for: an assembler starting with its
// cluster met this and stopped.
func TestJetStreamStoreWaitsForJustDeclaredBuckets(t *testing.T) {
	view := &lateView{JetStream: startJetStream(t)()}
	ctx := context.Background()
	err := bus.Wait(ctx, zerolog.Nop(), func(ctx context.Context) error {
		_, err := blob.NewJetStream(ctx, view, blob.JetStreamOptions{})
		return err
	})
	if err != nil || !view.missed {
		t.Fatalf("NewJetStream: %v (late view consulted: %v)", err, view.missed)
	}
}
