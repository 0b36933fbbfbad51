package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/logging"
)

// migrateWait bounds the wait for JetStream: migrate is run by an operator
// (or a deployment script), who wants an answer rather than a silent wait.
const migrateWait = 60 * time.Second

// migrate brings the JetStream assets in line with the configuration: the
// one place where scangate changes an existing stream, bucket or consumer.
// Roles only create what is missing and refuse the rest.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var dryRun bool
	cfg, err := loadConfig("migrate", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&dryRun, "dry-run", false, "show the changes, apply none")
	})
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "scangate migrate: %v\n", err)
		}
		return 2
	}
	nc, where, closeFn, err := migrateConnect(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "scangate migrate: %v\n", err)
		return 1
	}
	defer closeFn()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintf(stderr, "scangate migrate: jetstream: %v\n", err)
		return 1
	}
	waitCtx, cancel := context.WithTimeout(ctx, migrateWait)
	defer cancel()
	log := logging.New(cfg.Log, stderr)
	if err := bus.Wait(waitCtx, log, func(ctx context.Context) error { return bus.CheckServer(ctx, nc, js) }); err != nil {
		fmt.Fprintf(stderr, "scangate migrate: %v\n", err)
		return 1
	}

	assets := bus.Topology(node.BusOptions(cfg))
	if cfg.Blob.Store == "jetstream" {
		assets = append(assets, blob.JetStreamAssets(blob.JetStreamOptions{Replicas: cfg.NATS.Replicas})...)
	}
	changes, err := bus.Inspect(ctx, js, assets)
	if err != nil {
		fmt.Fprintf(stderr, "scangate migrate: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s (nats-server %s), replicas %d\n", where, nc.ConnectedServerVersion(), max(cfg.NATS.Replicas, 1))
	if len(changes) == 0 {
		fmt.Fprintln(stdout, "nothing to change: JetStream matches this configuration")
		return 0
	}
	failed := 0
	for _, c := range changes {
		fmt.Fprintln(stdout, c)
		if dryRun {
			continue
		}
		if err := c.Apply(ctx, js); err != nil {
			fmt.Fprintf(stdout, "  failed: %v\n", err)
			failed++
		}
	}
	switch {
	case dryRun:
		fmt.Fprintf(stdout, "%d changes, none applied (--dry-run)\n", len(changes))
	case failed > 0:
		fmt.Fprintf(stdout, "applied %d of %d changes\n", len(changes)-failed, len(changes))
		fmt.Fprintf(stderr, "scangate migrate: %d of %d changes failed (the server's reasons are above)\n", failed, len(changes))
		return 1
	default:
		fmt.Fprintf(stdout, "applied %d changes\n", len(changes))
	}
	return 0
}

// migrateConnect joins the configured NATS, or opens the embedded store in
// the data directory when there is none (serve must not be running on it:
// two servers on one store would corrupt it).
func migrateConnect(cfg *config.Config, stderr io.Writer) (nc *nats.Conn, where string, closeFn func(), err error) {
	log := logging.New(cfg.Log, stderr)
	if cfg.NATS.URL != "" {
		// Not bus.Dial: its disconnect log would outlive the command. A
		// server that is not up yet is waited for, like JetStream.
		nc, err := nats.Connect(cfg.NATS.URL, nats.Name("scangate migrate"),
			nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
		if err != nil {
			return nil, "", nil, fmt.Errorf("nats: %w", err)
		}
		return nc, "JetStream at " + cfg.NATS.URL, nc.Close, nil
	}
	always, every, err := cfg.NATS.SyncInterval()
	if err != nil {
		return nil, "", nil, err
	}
	srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: cfg.DataDir, SyncAlways: always, SyncInterval: every, Log: log})
	if err != nil {
		return nil, "", nil, err
	}
	nc, err = srv.Connect("scangate migrate")
	if err != nil {
		srv.Shutdown()
		return nil, "", nil, fmt.Errorf("nats: %w", err)
	}
	return nc, "embedded JetStream in " + cfg.DataDir, func() { nc.Close(); srv.Shutdown() }, nil
}
