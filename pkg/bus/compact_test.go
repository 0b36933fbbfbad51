package bus_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

// idIn returns a data_id of partition p.
func idIn(p, partitions int) string {
	for {
		if id := ids.New(); events.Partition(id, partitions) == p {
			return id
		}
	}
}

// Compaction drops exactly the result events their recorder has
// acknowledged: never one that waits to be applied, delivered or not.
func TestCompactResultsKeepsUnappliedEvents(t *testing.T) {
	_, js := startServer(t)
	ctx := testContext(t)
	nc := js.Conn()
	b, err := bus.Open(ctx, nc, bus.Options{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(p int) uint64 {
		id := idIn(p, 2)
		data, _ := json.Marshal(&result.Event{Kind: result.EventProgress, DataID: id})
		ack, err := js.Publish(ctx, events.ResultSubject(p, id), data)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	apply := func(p int) {
		c, err := js.Consumer(ctx, events.StreamResults, events.RecorderConsumer(p))
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch(1, jetstream.FetchPriorityGroup(events.RecorderGroup))
		if err != nil {
			t.Fatal(err)
		}
		for m := range msgs.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	present := func(seqs ...uint64) []bool {
		st, err := js.Stream(ctx, events.StreamResults)
		if err != nil {
			t.Fatal(err)
		}
		var out []bool
		for _, s := range seqs {
			_, err := st.GetMsg(ctx, s)
			out = append(out, err == nil)
		}
		return out
	}
	compact := func() uint64 {
		n, err := b.CompactResults(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	e1, e2, e3 := publish(0), publish(1), publish(0)
	apply(0) // e1
	if n := compact(); n != 0 {
		t.Fatalf("compacted %d events while partition 1 has not applied e2", n)
	}
	apply(1) // e2; e3 of partition 0 still waits
	if n := compact(); n != 1 {
		t.Fatalf("compacted %d events, want 1 (e1)", n)
	}
	if got := present(e1, e2, e3); got[0] || !got[1] || !got[2] {
		t.Fatalf("after e1 and e2 were applied: present %v, want e1 gone, e2 and e3 kept", got)
	}
	apply(0) // e3: everything applied
	if n := compact(); n != 2 {
		t.Fatalf("compacted %d events, want 2 (e2, e3)", n)
	}
}
