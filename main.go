// Command scangate is a MetaDefender-compatible file ingestion and scanning
// gateway. One binary: `scangate serve` runs everything in one process with
// an embedded JetStream server; `scangate ingest|scanner|notifier --nats URL`
// run one role each against an external NATS server or cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/scangate/scangate/pkg/config"
)

// version is set at build time (-ldflags "-X main.version=v1.2.3"); without
// it the module version from the build info is used.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: scangate <command> [flags]

commands:
  serve       embedded JetStream server and every role in one process
  ingest      the HTTP API only (needs --nats)
  scanner     the scanning role only (needs --nats)
  notifier    the webhook role only (needs --nats)
  assembler   the multipart upload role (needs --nats)
  version     print the version

flags (every command):
  --config FILE   YAML config (defaults: configs/scangate.yaml)
  --listen ADDR   HTTP address (default 127.0.0.1:8008)
  --data DIR      data directory (default ./data)
  --nats URL      external NATS; empty runs an embedded server (serve only)
`

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var roles []role
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "scangate", buildVersion())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	case "serve":
		roles = []role{roleIngest, roleAssembler, roleScanner, roleNotifier}
	case "ingest":
		roles = []role{roleIngest}
	case "scanner":
		roles = []role{roleScanner}
	case "notifier":
		roles = []role{roleNotifier}
	case "assembler":
		roles = []role{roleAssembler}
	default:
		fmt.Fprintf(stderr, "scangate: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	cfg, err := loadConfig(cmd, rest, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "scangate %s: %v\n", cmd, err)
		}
		return 2
	}
	if cmd != "serve" && cfg.NATS.URL == "" {
		fmt.Fprintf(stderr, "scangate %s: --nats (or nats.url) is required: a single role joins an existing NATS\n", cmd)
		return 2
	}
	n, err := start(ctx, cfg, roles, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "scangate %s: %v\n", cmd, err)
		return 1
	}
	<-ctx.Done()
	n.log.Info().Msg("shutting down")
	if err := n.Close(); err != nil {
		n.log.Error().Err(err).Msg("shutdown")
		return 1
	}
	return 0
}

// loadConfig applies, in order: built-in defaults, --config, SCANGATE_*
// environment, flags.
func loadConfig(cmd string, args []string, stderr io.Writer) (*config.Config, error) {
	fs := flag.NewFlagSet("scangate "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file")
	listen := fs.String("listen", "", "HTTP listen address")
	data := fs.String("data", "", "data directory")
	natsURL := fs.String("nats", "", "external NATS URL")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return nil, err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *data != "" {
		cfg.DataDir = *data
	}
	if *natsURL != "" {
		cfg.NATS.URL = *natsURL
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
