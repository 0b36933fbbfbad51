package scanner

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/stats"
	"github.com/scangate/scangate/pkg/workflow"
	"github.com/scangate/scangate/scanner/engines"
)

// reloadingEngine's definitions change when Refresh finds new ones, as
// clamd's do after a database reload.
type reloadingEngine struct {
	mu        sync.Mutex
	info      engines.Info
	next      string // def_time the next Refresh finds
	refreshes int
}

func (e *reloadingEngine) Info() engines.Info {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.info
}

func (e *reloadingEngine) Refresh(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refreshes++
	if e.next != "" && e.next != e.info.DefTime {
		e.info.DefTime, e.info.Loaded = e.next, time.Now()
	}
	return nil
}

func (e *reloadingEngine) reload(defTime string) {
	e.mu.Lock()
	e.next = defTime
	e.mu.Unlock()
}

// A running scanner's registry entry follows its engines' definitions, and
// a scanner shut down cleanly removes the entry at once.
func TestRegisterRefreshesAndDeregisters(t *testing.T) {
	b, fs := testBus(t)
	start := time.Now().Add(-time.Minute)
	eng := &reloadingEngine{info: engines.Info{ID: "reloading", Name: "Reloading", Version: "1",
		DefTime: "2026-01-01T00:00:00.000Z", Loaded: start}}
	wf := config.Default().Workflows[0]
	s := New(b, fs, Options{Workers: 3, Timeout: time.Minute, Workflows: workflow.NewSet([]config.Workflow{wf}),
		Version: "v-test", DataDir: t.TempDir(), RegisterEvery: 20 * time.Millisecond,
		Engines: []NamedEngine{{Name: "reloading", Engine: eng}}}, zerolog.New(zerolog.NewTestWriter(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error { once.Do(func() { cancel(); runErr = <-done }); return runErr }
	defer stop()

	list := waitNodes(t, b.Nodes, func(l []stats.NodeStatus) bool { return len(l) == 1 })
	n := list[0]
	if n.ID == "" || n.Address == "" || n.Version != "v-test" || n.TotalScanQueue != 3 || n.ScanQueue != 0 ||
		n.FreeDiskSpace <= 0 || n.TotalDiskSpace < n.FreeDiskSpace || n.Uptime < 0 || len(n.Engines) != 1 {
		t.Fatalf("node status %+v", n)
	}
	e := n.Engines[0]
	want := stats.EngineInfo{EngID: "reloading", EngName: "Reloading", EngVer: "1", EngType: stats.EngTypeBundled,
		DefTime: "2026-01-01T00:00:00.000Z", DownloadTime: result.FormatTime(start), DownloadProgress: 100,
		Active: true, State: "production", EngineType: "av", Type: "engine"}
	if e != want {
		t.Fatalf("engine %+v, want %+v", e, want)
	}

	eng.reload("2026-02-01T00:00:00.000Z")
	list = waitNodes(t, b.Nodes, func(l []stats.NodeStatus) bool {
		return len(l) == 1 && l[0].Engines[0].DefTime == "2026-02-01T00:00:00.000Z"
	})
	if got := list[0].Engines[0].DownloadTime; got == result.FormatTime(start) {
		t.Errorf("download_time %s did not move with the new definitions", got)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	l, err := stats.Nodes(context.Background(), b.Nodes, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 0 {
		t.Fatalf("after shutdown the registry lists %+v", l)
	}
}

// waitNodes polls GET /stat/nodes's source until cond holds.
func waitNodes(t *testing.T, kv jetstream.KeyValue, cond func([]stats.NodeStatus) bool) []stats.NodeStatus {
	t.Helper()
	var l []stats.NodeStatus
	if !testwait.Until(30*time.Second, func() bool {
		var err error
		if l, err = stats.Nodes(context.Background(), kv, time.Now()); err != nil {
			t.Fatal(err)
		}
		return cond(l)
	}) {
		t.Fatalf("registry never matched; last %+v", l)
	}
	return l
}
