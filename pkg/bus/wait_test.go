package bus_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/bus"
)

// logBuffer collects log lines written from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// openInBackground runs Open until it returns and waits until it has said
// it is waiting for JetStream.
func openInBackground(t *testing.T, nc *nats.Conn, logs *logBuffer) <-chan error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() {
		_, err := bus.Open(ctx, nc, bus.Options{Log: zerolog.New(logs)})
		done <- err
	}()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(logs.String(), "waiting for JetStream") {
		select {
		case err := <-done:
			t.Fatalf("Open returned before JetStream was up: %v", err)
		case <-deadline:
			t.Fatal("Open did not say it was waiting for JetStream")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return done
}

func waitOpen(t *testing.T, done <-chan error, logs *logBuffer) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Open: %v\nlog:\n%s", err, logs)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Open still waiting a minute after JetStream came up")
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) {
		t.Errorf("waiting was not logged as a warning:\n%s", logs)
	}
}

// A role started before its NATS server waits for it (operators start
// everything at once), logging why, and comes up when the server does.
func TestOpenWaitsForServer(t *testing.T) {
	addr := freeAddr(t)
	logs := &logBuffer{}
	nc, err := bus.Dial("nats://"+addr, t.Name(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	done := openInBackground(t, nc, logs)

	srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	waitOpen(t, done, logs)
}

// A server whose JetStream is not enabled yet is waited for too.
func TestOpenWaitsForJetStream(t *testing.T) {
	ns, err := server.NewServer(&server.Options{ServerName: "late", DontListen: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	logs := &logBuffer{}
	done := openInBackground(t, nc, logs)

	if err := ns.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	waitOpen(t, done, logs)
}

// Waiting ends with the caller's context, naming the last reason.
func TestOpenGivesUpWithContext(t *testing.T) {
	nc, err := bus.Dial("nats://"+freeAddr(t), t.Name(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = bus.Open(ctx, nc, bus.Options{})
	if err == nil || !strings.Contains(err.Error(), "waiting for JetStream") || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("Open against no server: %v", err)
	}
}

// nats.listen with port 0 asks for a free port, as any listen address
// does: two embedded servers on ":0" both start, on different ports
// (nats-server itself would read 0 as 4222 and the second would fail).
func TestEmbeddedListenPortZeroPicksAFreePort(t *testing.T) {
	var urls []string
	for range 2 {
		srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatalf("StartEmbedded: %v", err)
		}
		t.Cleanup(srv.Shutdown)
		urls = append(urls, srv.Server.ClientURL())
	}
	if urls[0] == urls[1] || strings.HasSuffix(urls[0], ":4222") {
		t.Errorf("client URLs %v: want two different free ports", urls)
	}
}
