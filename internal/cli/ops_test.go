package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/testwait"

	"github.com/rs/zerolog"

	"github.com/scangate/scangate/internal/cli"
	"github.com/scangate/scangate/pkg/bus"
)

// freeAddr is a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// probe GETs url and returns the status and the decoded JSON (0 when
// nothing answers).
func probe(url string) (int, map[string]any) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// waitProbe polls url until it answers want (polling only paces the looks).
func waitProbe(t *testing.T, url string, want int, stderr func() string) map[string]any {
	t.Helper()
	var code int
	var body map[string]any
	if !testwait.Until(30*time.Second, func() bool { code, body = probe(url); return code == want }) {
		t.Fatalf("%s answered %d %v, want %d\n%s", url, code, body, want, stderr())
	}
	return body
}

// A role process started with --ops-listen answers probes there at once:
// alive but not ready while its NATS is not reachable, ready once it is;
// it stops cleanly.
func TestOpsListenFlag(t *testing.T) {
	ops, natsAddr := "http://"+freeAddr(t), freeAddr(t)
	var stderr bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"notifier", "--nats", "nats://" + natsAddr, "--data", t.TempDir(),
			"--ops-listen", ops[len("http://"):]}, strings.NewReader(""), io.Discard, &stderr)
	}()
	// Read only once Run has returned: it writes stderr until then.
	log := func() string {
		cancel()
		<-done
		return stderr.String()
	}

	waitProbe(t, ops+"/livez", http.StatusOK, log)
	body := waitProbe(t, ops+"/readyz?verbose=true", http.StatusServiceUnavailable, log)
	if checks, _ := body["checks"].(map[string]any); checks["startup"] != "starting" {
		t.Errorf("readyz while NATS is away: %v", body)
	}

	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Listen: natsAddr, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	waitProbe(t, ops+"/readyz", http.StatusOK, log)
	if code, _ := probe(ops + "/metrics"); code != http.StatusOK {
		t.Errorf("/metrics on the ops address: %d", code)
	}

	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit code %d after a clean stop:\n%s", code, stderr.String())
	}
	if code, _ := probe(ops + "/livez"); code != 0 {
		t.Errorf("the ops address still answers after the process stopped: %d", code)
	}
}
