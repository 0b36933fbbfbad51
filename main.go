// Command scangate is a MetaDefender-compatible file ingestion and scanning
// gateway. One binary: `scangate serve` runs everything in one process with
// an embedded JetStream server; `scangate ingest|assembler|scanner|notifier
// --nats URL` run one role each against an external NATS server or cluster.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/scangate/scangate/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
