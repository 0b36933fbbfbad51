package node

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/scangate/scangate/pkg/health"
)

// startOps serves /livez, /readyz and /metrics on their own listener
// (ops.listen), with net/http, so an orchestrator can probe and scrape
// every process — scanners, assemblers and notifiers have no HTTP API. It
// answers from the start: /readyz says "starting" (503) until the roles
// are up.
func (n *Node) startOps(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /livez", health.LiveHandler())
	mux.Handle("GET /readyz", health.ReadyHandler(n.readyChecks))
	mux.Handle("GET /metrics", n.metrics.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.ops, n.opsAddr = srv, ln.Addr()
	n.log.Info().Str("addr", ln.Addr().String()).Msg("ops listening: /livez, /readyz, /metrics")
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error().Err(err).Msg("ops listener stopped")
		}
	}()
	return nil
}

// readyChecks are the process's readiness checks, or "starting" before
// Start has finished.
func (n *Node) readyChecks() []health.Check {
	if c := n.ready.Load(); c != nil {
		return *c
	}
	return []health.Check{health.Starting}
}
