// Package bustest gives tests of one role a real embedded JetStream server
// with scangate's topology declared, in a temporary directory, for the
// test's lifetime: the roles' tests run against the product's own bus,
// never a mock of it.
package bustest

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/bus"
)

// Open starts the server and opens the bus with opts.
func Open(t testing.TB, opts bus.Options) *bus.Bus {
	t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := ns.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.Open(context.Background(), nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
