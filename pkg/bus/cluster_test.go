package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/internal/clustertest"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
)

// Operators start a NATS cluster and every role at once. Roles started
// before their servers, and before the cluster has a meta leader, wait and
// all come up, on an R3 topology declared by several of them at the same
// time.
func TestRolesAndClusterStartTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	const nodes, roles = 3, 7
	ports := clustertest.FreePorts(t, 2*nodes) // client ports, then route ports
	clients, routes := ports[:nodes], ports[nodes:]
	var routeURLs []string
	for _, r := range routes {
		routeURLs = append(routeURLs, fmt.Sprintf("nats://127.0.0.1:%d", r))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logs := &logBuffer{}
	errs := make(chan error, roles)
	var wg sync.WaitGroup
	for i := range roles {
		nc, err := bus.Dial(fmt.Sprintf("nats://127.0.0.1:%d", clients[i%nodes]), fmt.Sprint("role-", i), zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		wg.Go(func() {
			_, err := bus.Open(ctx, nc, bus.Options{Replicas: 3, Partitions: 4, Log: zerolog.New(logs)})
			errs <- err
		})
	}

	for i := range nodes {
		ns, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprint("n", i), Host: "127.0.0.1", Port: clients[i], NoSigs: true,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "scangate", Host: "127.0.0.1", Port: routes[i]},
			Routes:  server.RoutesFromStr(strings.Join(routeURLs, ",")),
		})
		if err != nil {
			t.Fatal(err)
		}
		waits := strings.Count(logs.String(), "waiting for JetStream")
		go ns.Start()
		t.Cleanup(ns.Shutdown)
		// One by one, so the first servers run without a quorum for a
		// while (JetStream up, no meta leader): the next one starts only
		// once a role has tried this state and said it waits.
		if i < nodes-1 {
			deadline := time.Now().Add(time.Minute)
			for strings.Count(logs.String(), "waiting for JetStream") <= waits {
				if time.Now().After(deadline) {
					t.Fatalf("no role tried the cluster with %d of %d servers up", i+1, nodes)
				}
				time.Sleep(10 * time.Millisecond) // polling pace only
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Open: %v\nlog:\n%s", err, logs)
		}
	}
	if t.Failed() {
		return
	}
	nc, err := bus.Dial(fmt.Sprintf("nats://127.0.0.1:%d", clients[0]), "check", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, events.StreamUploads)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Errorf("UPLOADS has %d replicas, want 3", r)
	}

	// A role configured for R1 is refused, and the cluster stays R3.
	r1 := bus.Options{Replicas: 1, Partitions: 4}
	_, err = bus.Open(ctx, nc, r1)
	var drift *bus.DriftError
	if !errors.As(err, &drift) || !strings.Contains(err.Error(), "stream UPLOADS: replicas: want 1, have 3") {
		t.Fatalf("Open with replicas 1 on an R3 cluster: %v", err)
	}
	if info, err := s.Info(ctx); err != nil || info.Config.Replicas != 3 {
		t.Fatalf("UPLOADS after a refused Open: %v, %v", info, err)
	}
	// What migrate does: in a cluster, replicas can be changed.
	changes, err := bus.Inspect(ctx, js, bus.Topology(r1))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if err := c.Apply(ctx, js); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	if _, err := bus.Open(ctx, nc, r1); err != nil {
		t.Errorf("Open with replicas 1 after migrating: %v", err)
	}
	if !strings.Contains(logs.String(), "waiting for JetStream") {
		t.Errorf("roles started before their servers did not say they were waiting")
	}
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", clustertest.FreePorts(t, 1)[0])
}
