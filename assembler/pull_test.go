package assembler

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// laneMsg is a delivered event: only its subject matters to the lanes.
type laneMsg struct {
	jetstream.Msg
	subject string
	n       int
}

func (m laneMsg) Subject() string { return m.subject }

// Each file's events are applied one at a time in the order they came; a
// file whose event is slow holds up no other file.
func TestFileLanesOrderPerFileOnly(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	got := map[string][]int{}
	bDone := make(chan struct{})
	l := newFileLanes(8, func(m jetstream.Msg) {
		lm := m.(laneMsg)
		if lm.subject == "result.0.a" && lm.n == 0 {
			<-release // a's first event is slow
		}
		mu.Lock()
		got[lm.subject] = append(got[lm.subject], lm.n)
		if len(got["result.0.b"]) == 3 && lm.subject == "result.0.b" {
			close(bDone)
		}
		mu.Unlock()
	})
	for i := range 3 {
		l.add(laneMsg{subject: "result.0.a", n: i})
		l.add(laneMsg{subject: "result.0.b", n: i})
	}
	select {
	case <-bDone: // b finished while a was stuck
	case <-time.After(30 * time.Second):
		t.Fatal("file b waited for file a")
	}
	mu.Lock()
	if len(got["result.0.a"]) != 0 {
		t.Errorf("a's later events ran before its first: %v", got["result.0.a"])
	}
	mu.Unlock()
	close(release)
	l.wait()
	for _, k := range []string{"result.0.a", "result.0.b"} {
		if g := got[k]; len(g) != 3 || g[0] != 0 || g[1] != 1 || g[2] != 2 {
			t.Errorf("%s applied in order %v, want [0 1 2]", k, g)
		}
	}
}
