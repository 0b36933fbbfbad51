// Package clustertest runs a JetStream cluster of several nats-server
// instances inside the test process, the way nats-server's own cluster tests
// do: every node listens on loopback on free ports, has its own store
// directory, and routes to every other node. Tests point scangate's roles at
// URLs() exactly as an operator points them at a real cluster, then take
// nodes away (Kill) and bring them back (Restart) to see what clients notice.
package clustertest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds every wait for the cluster to settle. Elections on a
// loaded two-core machine take seconds, not milliseconds.
const readyTimeout = 60 * time.Second

// Cluster is an in-process JetStream cluster.
type Cluster struct {
	t     testing.TB
	name  string
	mu    sync.Mutex
	nodes []*member
}

// member is one node: what it needs to come back as itself after a Kill.
type member struct {
	name        string
	storeDir    string
	clientPort  int
	clusterPort int
	srv         *server.Server // nil while killed
}

// Start runs an n-node cluster and returns once a JetStream meta leader is
// elected, every node is its peer and every node's meta state is current.
// The nodes are stopped when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("clustertest: %d nodes", n)
	}
	c := &Cluster{t: t, name: "scangate-test"}
	// Every port must be known before the first node starts, since each
	// node's route list names all of them.
	ports := FreePorts(t, 2*n)
	for i := range n {
		c.nodes = append(c.nodes, &member{
			name:        fmt.Sprintf("n%d", i+1),
			storeDir:    t.TempDir(),
			clientPort:  ports[2*i],
			clusterPort: ports[2*i+1],
		})
	}
	t.Cleanup(c.shutdown)
	for i := range c.nodes {
		c.start(i)
	}
	c.WaitLeader()
	return c
}

// URLs is the comma-separated client URLs of every node, killed or not, as
// nats.Connect and scangate's nats.url take them: a client whose node dies
// reconnects to another one.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i := range c.nodes {
		urls[i] = c.URL(i)
	}
	return strings.Join(urls, ",")
}

// URL is the client URL of node i.
func (c *Cluster) URL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].clientPort)
}

// Server is node i's server, nil while it is killed.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// Kill stops node i. The library has no crash stop, so this is Shutdown:
// the node steps down from what it leads and closes its store, but its
// clients and routes are cut as they would be by a crash, and the other
// nodes must elect new leaders and carry on with a quorum.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	s := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if s == nil {
		c.t.Fatalf("clustertest: node %d is not running", i)
	}
	s.Shutdown()
	s.WaitForShutdown()
}

// Restart starts node i again as itself: the same name, store directory and
// ports, so it rejoins the cluster and catches up from its own store. It
// returns once the cluster has a leader and every running node is current.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.Server(i) != nil {
		c.t.Fatalf("clustertest: node %d is already running", i)
	}
	c.start(i)
	c.WaitLeader()
}

// WaitLeader waits until a JetStream meta leader exists, it counts every
// running node as a peer, and every running node's meta state is current.
func (c *Cluster) WaitLeader() {
	c.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		err := c.ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("clustertest: cluster not ready after %v: %v", readyTimeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Leader is the index of the current meta leader, or -1.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.nodes {
		if m.srv != nil && m.srv.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// ready says why the cluster is not settled yet, or nil.
func (c *Cluster) ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var leader *member
	running := 0
	for _, m := range c.nodes {
		if m.srv == nil {
			continue
		}
		running++
		if m.srv.JetStreamIsLeader() {
			leader = m
		}
		if !m.srv.JetStreamIsCurrent() {
			return fmt.Errorf("%s is not current", m.name)
		}
	}
	if leader == nil {
		return fmt.Errorf("no meta leader")
	}
	// The leader lists only the peers it hears from: a killed node drops
	// out, a restarted one is back once it has reported in.
	if peers := len(leader.srv.JetStreamClusterPeers()); peers != running {
		return fmt.Errorf("meta leader %s sees %d of %d running peers", leader.name, peers, running)
	}
	return nil
}

// start runs node i and waits until it accepts client connections.
func (c *Cluster) start(i int) {
	c.t.Helper()
	m := c.nodes[i]
	var routes []string
	for _, o := range c.nodes {
		if o != m {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.clusterPort))
		}
	}
	opts := &server.Options{
		ServerName: m.name,
		Host:       "127.0.0.1",
		Port:       m.clientPort,
		JetStream:  true,
		StoreDir:   m.storeDir,
		// What the configs in configs/cluster ask for: an acknowledged
		// message is on disk on a quorum of nodes.
		SyncAlways: true,
		Cluster: server.ClusterOpts{
			Name: c.name,
			Host: "127.0.0.1",
			Port: m.clusterPort,
		},
		Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		NoSigs: true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		c.t.Fatalf("clustertest: node %s: %v", m.name, err)
	}
	s.SetLoggerV2(warnLogger{t: c.t, name: m.name}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		c.t.Fatalf("clustertest: node %s not accepting connections after %v", m.name, readyTimeout)
	}
	c.mu.Lock()
	m.srv = s
	c.mu.Unlock()
}

// shutdown stops every running node.
func (c *Cluster) shutdown() {
	c.mu.Lock()
	var running []*server.Server
	for _, m := range c.nodes {
		if m.srv != nil {
			running = append(running, m.srv)
			m.srv = nil
		}
	}
	c.mu.Unlock()
	for _, s := range running {
		s.Shutdown()
	}
	for _, s := range running {
		s.WaitForShutdown()
	}
}

// FreePorts reserves n distinct loopback ports and releases them for
// servers to bind. Holding every listener until all are chosen keeps the
// kernel from handing out the same port twice.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("clustertest: free port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

// warnLogger passes a node's warnings and errors to the test log, where
// they explain a failure; notices and traces would drown it.
type warnLogger struct {
	t    testing.TB
	name string
}

func (l warnLogger) Noticef(string, ...any) {}
func (l warnLogger) Debugf(string, ...any)  {}
func (l warnLogger) Tracef(string, ...any)  {}
func (l warnLogger) Warnf(f string, v ...any) {
	l.t.Logf("nats %s: WARN "+f, append([]any{l.name}, v...)...)
}
func (l warnLogger) Errorf(f string, v ...any) {
	// The survivors dial a killed node's route port until it returns.
	if strings.HasPrefix(f, "Error trying to connect to route") {
		return
	}
	l.t.Logf("nats %s: ERROR "+f, append([]any{l.name}, v...)...)
}
func (l warnLogger) Fatalf(f string, v ...any) {
	l.t.Logf("nats %s: FATAL "+f, append([]any{l.name}, v...)...)
}
