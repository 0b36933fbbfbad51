// Package health holds scangate's readiness checks and the /readyz and
// /livez answers, shared by the HTTP API (fiber) and every process's ops
// address (net/http), so both say the same thing about the same process.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
)

// Timeout bounds one /readyz: a dependency that has not answered by then
// counts as not ready. Orchestrator probes should allow a little more
// (e.g. a Kubernetes timeoutSeconds of 3).
const Timeout = 2 * time.Second

// Check is one named readiness condition; Run returns nil when it holds.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Report is the outcome of a set of checks.
type Report struct {
	OK     bool
	Checks map[string]string // name → "ok" or what is wrong
}

// Run runs the checks at once, each bounded by Timeout.
func Run(ctx context.Context, checks []Check) Report {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	rep := Report{OK: true, Checks: make(map[string]string, len(checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Go(func() {
			err := c.Run(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.OK = false
				rep.Checks[c.Name] = err.Error()
			} else {
				rep.Checks[c.Name] = "ok"
			}
		})
	}
	wg.Wait()
	return rep
}

// Answer is the status code and JSON body of /readyz for rep: 200
// {"status":"ok"} or 503 {"status":"unavailable"}, with "checks" (each
// check's "ok" or error) when verbose.
func (rep Report) Answer(verbose bool) (int, map[string]any) {
	status, body := http.StatusOK, map[string]any{"status": "ok"}
	if !rep.OK {
		status, body["status"] = http.StatusServiceUnavailable, "unavailable"
	}
	if verbose {
		body["checks"] = rep.Checks
	}
	return status, body
}

// Bus is what every role needs: the NATS connection up, JetStream
// answering, and its store taking writes.
func Bus(b *bus.Bus) []Check {
	return []Check{
		{Name: "nats", Run: func(context.Context) error {
			if st := b.NC.Status(); st != nats.CONNECTED {
				return errors.New(strings.ToLower(st.String()))
			}
			return nil
		}},
		{Name: "jetstream", Run: func(ctx context.Context) error {
			_, err := b.JS.Stream(ctx, events.StreamFiles)
			return err
		}},
		{Name: "store", Run: func(context.Context) error { return b.StoreFailure() }},
	}
}

// Pinger is a dependency that can be asked whether it answers (clamd).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Ping is the check that p answers.
func Ping(name string, p Pinger) Check { return Check{Name: name, Run: p.Ping} }

// Starting is the check of a process still starting up: never ready.
var Starting = Check{Name: "startup", Run: func(context.Context) error { return errors.New("starting") }}

// ReadyHandler serves /readyz with net/http; checks is called per request,
// so the set may change (a process that finished starting).
func ReadyHandler(checks func() []Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, body := Run(r.Context(), checks()).Answer(r.URL.Query().Get("verbose") == "true")
		writeJSON(w, status, body)
	})
}

// LiveHandler serves /livez: the process answers.
func LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	raw, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}
