package kvjson_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/kvjson"
)

type rec struct{ N int }

func newStore(t *testing.T) kvjson.Store[rec] {
	e, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect("kvjson-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return kvjson.Store[rec]{KV: kv, Name: "test"}
}

// Writes name the revision they replace: a stale writer loses, a second
// create loses, and Update retries until its change lands.
func TestCompareAndSet(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, _, err := s.Get(ctx, "k"); !errors.Is(err, kvjson.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	rev, err := s.Put(ctx, "k", &rec{1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "k", &rec{2}, 0); !errors.Is(err, kvjson.ErrConflict) {
		t.Errorf("second create: %v", err)
	}
	if _, err := s.Put(ctx, "k", &rec{3}, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "k", &rec{4}, rev); !errors.Is(err, kvjson.ErrConflict) {
		t.Errorf("stale revision: %v", err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := s.Update(ctx, "k", func(r *rec) (bool, error) { r.N++; return true, nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got, _, _ := s.Get(ctx, "k"); got.N != 23 {
		t.Errorf("20 concurrent increments from 3 gave %d: an update was lost", got.N)
	}
}
