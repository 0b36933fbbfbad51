package clustertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A three-node cluster keeps taking writes to a replicated stream when the
// node leading that stream dies, and the node catches up when it returns:
// it then carries the quorum when another node goes down.
func TestClusterKeepsQuorumWithOneNodeDown(t *testing.T) {
	c := Start(t, 3)
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			// The ack means a quorum stored it; retry while a new leader
			// is being elected, as any publisher does.
			var last string
			for {
				// Each attempt has its own deadline: a request sent
				// just before its node died is never answered.
				attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(attempt, "t.x", fmt.Appendf(nil, "m%d", i), jetstream.WithMsgID(fmt.Sprint(i)))
				cancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
				if err.Error() != last {
					last = err.Error()
					t.Logf("publish %d: %v (retrying)", i, err)
				}
				time.Sleep(50 * time.Millisecond) // a client's pause before retrying, not a wait for state
			}
		}
	}
	publish(0, 10)

	leader := -1
	for i := range 3 {
		if c.Server(i).JetStreamIsStreamLeader("$G", "T") {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no node leads stream T")
	}
	c.Kill(leader)
	publish(10, 20) // two of three nodes are a quorum
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 20 {
		t.Errorf("with a node down: %d messages, want 20", info.State.Msgs)
	}

	c.Restart(leader)
	deadline := time.Now().Add(readyTimeout)
	for !c.Server(leader).JetStreamIsStreamCurrent("$G", "T") {
		if time.Now().After(deadline) {
			t.Fatalf("restarted node %d never caught up with stream T", leader)
		}
		time.Sleep(25 * time.Millisecond) // polling pace: the test waits on the condition above
	}
	// Now the restarted node is needed for a quorum: with another node
	// down, writes and reads go on only if it rejoined as a full replica.
	other := (leader + 1) % 3
	c.Kill(other)
	publish(20, 30)
	cons, err := js.OrderedConsumer(ctx, "T", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < 30 {
		// The client may be reconnecting from the node just killed.
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("after %d of 30 messages: %v", len(seen), err)
			}
			time.Sleep(50 * time.Millisecond) // a client's pause before retrying, not a wait for state
			continue
		}
		seen[string(m.Data())] = true
	}
	c.Restart(other)
}
