package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/kvjson"
)

// groupCommitBus is a bus on a server that fsyncs every write (so callers
// pile up behind the disk and batches form) with a stream T that allows
// atomic batches.
func groupCommitBus(t testing.TB) (*bus.Bus, jetstream.Stream) {
	t.Helper()
	srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := testContext(t)
	b, err := bus.Open(ctx, nc, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"},
		AllowAtomicPublish: true, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return b, st
}

// publishConcurrently hands every message to the committer at once and
// returns each one's answer.
func publishConcurrently(t *testing.T, c *bus.Committer, msgs []*nats.Msg) ([]*jetstream.PubAck, []error) {
	t.Helper()
	ctx := testContext(t)
	acks, errs := make([]*jetstream.PubAck, len(msgs)), make([]error, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() { acks[i], errs[i] = c.Publish(ctx, m) })
	}
	wg.Wait()
	return acks, errs
}

func testMsg(subject, msgID string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = []byte("data of " + subject)
	if msgID != "" {
		m.Header.Set(nats.MsgIdHdr, msgID)
	}
	return m
}

// Every caller is told the sequence its own message was stored at, whether
// it went alone or in a batch with others.
func TestCommitterAnswersEachMessage(t *testing.T) {
	b, st := groupCommitBus(t)
	var msgs []*nats.Msg
	for i := range 300 {
		msgs = append(msgs, testMsg(fmt.Sprintf("t.%d", i), fmt.Sprintf("id-%d", i)))
	}
	acks, errs := publishConcurrently(t, b.Committer("T"), msgs)
	ctx := testContext(t)
	seen := map[uint64]bool{}
	for i, ack := range acks {
		if errs[i] != nil {
			t.Fatalf("message %d: %v", i, errs[i])
		}
		if seen[ack.Sequence] {
			t.Fatalf("sequence %d answered twice", ack.Sequence)
		}
		seen[ack.Sequence] = true
		m, err := st.GetMsg(ctx, ack.Sequence)
		if err != nil || m.Subject != msgs[i].Subject || string(m.Data) != string(msgs[i].Data) {
			t.Fatalf("message %d (%s) acknowledged at %d, which holds %v %v", i, msgs[i].Subject, ack.Sequence, m, err)
		}
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 300 {
		t.Fatalf("stream holds %v messages, want 300 (%v)", info.State.Msgs, err)
	}
	// 300 callers behind four flushers that each wait on an fsync: they
	// cannot all have gone alone.
	if commits, n := b.Committer("T").Stats(); n != 300 || commits >= 300 {
		t.Errorf("%d messages in %d commits: nothing was grouped", n, commits)
	}
}

// A message the stream refuses fails only its own caller: a batch holding
// a duplicate or a stale compare-and-set is stored message by message.
func TestCommitterIsolatesRefusedMessages(t *testing.T) {
	b, st := groupCommitBus(t)
	ctx := testContext(t)
	if _, err := b.JS.PublishMsg(ctx, testMsg("t.first", "dup")); err != nil {
		t.Fatal(err)
	}
	stale := testMsg("t.cas", "")
	stale.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "7") // the subject has no message
	msgs := []*nats.Msg{stale, testMsg("t.again", "dup")}
	for i := range 100 {
		msgs = append(msgs, testMsg(fmt.Sprintf("t.%d", i), fmt.Sprintf("id-%d", i)))
	}
	acks, errs := publishConcurrently(t, b.Committer("T"), msgs)
	if !kvjson.IsConflict(errs[0]) {
		t.Errorf("stale compare-and-set: %v, want a wrong-last-sequence conflict", errs[0])
	}
	if errs[1] != nil || !acks[1].Duplicate {
		t.Errorf("duplicate: %+v %v, want acknowledged as a duplicate", acks[1], errs[1])
	}
	for i := 2; i < len(msgs); i++ {
		if errs[i] != nil {
			t.Fatalf("message %d failed beside refused ones: %v", i, errs[i])
		}
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 101 {
		t.Fatalf("stream holds %v messages, want 101 (%v)", info.State.Msgs, err)
	}
	var apiErr *jetstream.APIError
	if !errors.As(errs[0], &apiErr) {
		t.Errorf("refusal is %T, want the server's API error", errs[0])
	}
}

// With its server gone a committer answers every caller with an error
// (which ingest turns into 503) instead of leaving them waiting, and
// stores nothing it did not acknowledge.
func TestCommitterAnswersWhenJetStreamIsGone(t *testing.T) {
	srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.Open(testContext(t), nc, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	var msgs []*nats.Msg
	for i := range 50 {
		msgs = append(msgs, testMsg(fmt.Sprintf("result.0.%d", i), fmt.Sprintf("id-%d", i)))
	}
	_, errs := publishConcurrently(t, b.Committer("RESULTS"), msgs)
	for i, err := range errs {
		if err == nil {
			t.Fatalf("message %d acknowledged by a server that is gone", i)
		}
	}
}

// BenchmarkGroupCommit: 64 concurrent writers, each storing its messages
// one after another (as uploads and recorders do), on a server that fsyncs
// every write. It reports messages/s for a plain publish each, the
// committer sending its batches pipelined one by one, and the committer
// with atomic batches, and their ratios to the plain publish measured in
// the same run:
//
//	go test -run '^$' -bench GroupCommit -benchtime 1x ./pkg/bus/
func BenchmarkGroupCommit(b *testing.B) {
	bs, _ := groupCommitBus(b)
	const writers, each = 64, 50
	run := func(store func(context.Context, *nats.Msg) (*jetstream.PubAck, error), name string) float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					m := testMsg(fmt.Sprintf("t.%s.%d.%d", name, w, i), "")
					if _, err := store(ctx, m); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return writers * each / time.Since(t0).Seconds()
	}
	for range b.N {
		plain := run(func(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) { return bs.JS.PublishMsg(ctx, m) }, "plain")
		pipelined := run(bus.NewCommitterForBench(bs, 1<<30).Publish, "pipelined")
		atomic := run(bs.Committer("T").Publish, "atomic")
		b.ReportMetric(plain, "plain-msgs/s")
		b.ReportMetric(pipelined, "pipelined-msgs/s")
		b.ReportMetric(atomic, "atomic-msgs/s")
		b.ReportMetric(pipelined/plain, "pipelined/plain")
		b.ReportMetric(atomic/plain, "atomic/plain")
	}
}
