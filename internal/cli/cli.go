// Package cli is the scangate command line: it parses the command and its
// flags, loads the configuration and runs a node until the context ends.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/config"
)

// Version is set at build time
// (-ldflags "-X github.com/scangate/scangate/internal/cli.Version=v1.2.3");
// without it the module version from the build info is used.
var Version = ""

const usage = `usage: scangate <command> [flags]

commands:
  serve       embedded JetStream server and every role in one process
  ingest      the HTTP API only (needs --nats)
  scanner     the scanning role only (needs --nats)
  notifier    the webhook role only (needs --nats)
  assembler   the multipart upload role (needs --nats)
  migrate     show and apply this configuration's streams, buckets and
              consumers to JetStream (--dry-run: show only). Without --nats
              it works on the embedded store in --data: stop serve first
  passwd      read a password on stdin, print its bcrypt hash for
              auth.users[].password_hash
  upload      send files or directories to scangate nodes, resumably;
              --wait prints the verdicts (scangate upload -h)
  version     print the version

flags (every command):
  --config FILE   YAML config (defaults: configs/scangate.yaml)
  --listen ADDR   HTTP address (default 127.0.0.1:8008)
  --data DIR      data directory (default ./data)
  --nats URL      external NATS; empty runs an embedded server (serve only)
  --ops-listen ADDR
                  /livez, /readyz and /metrics on their own address, for
                  probes and scrapes of any role (default off)
  --dry-run       migrate: show the changes, apply none
`

// Run is main without the process: tests call it directly. It returns the
// exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var roles []node.Role
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "scangate", BuildVersion())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	case "serve":
		roles = node.All
	case "ingest":
		roles = []node.Role{node.Ingest}
	case "scanner":
		roles = []node.Role{node.Scanner}
	case "notifier":
		roles = []node.Role{node.Notifier}
	case "assembler":
		roles = []node.Role{node.Assembler}
	case "migrate":
		return migrate(ctx, rest, stdout, stderr)
	case "passwd":
		return passwd(stdin, stdout, stderr)
	case "upload":
		return upload(ctx, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "scangate: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	cfg, err := loadConfig(cmd, rest, stderr, nil)
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
	n, err := node.Start(ctx, cfg, roles, BuildVersion(), stderr)
	if err != nil {
		fmt.Fprintf(stderr, "scangate %s: %v\n", cmd, err)
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
		n.Log().Info().Msg("shutting down")
	case err := <-n.Failed():
		fmt.Fprintf(stderr, "scangate %s: %v\n", cmd, err)
		code = 1
	}
	if err := n.Close(); err != nil {
		n.Log().Error().Err(err).Msg("shutdown")
		return 1
	}
	return code
}

// loadConfig applies, in order: built-in defaults, --config, SCANGATE_*
// environment, flags. extra, if not nil, adds the command's own flags.
func loadConfig(cmd string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*config.Config, error) {
	fs := flag.NewFlagSet("scangate "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file")
	listen := fs.String("listen", "", "HTTP listen address")
	data := fs.String("data", "", "data directory")
	natsURL := fs.String("nats", "", "external NATS URL")
	opsListen := fs.String("ops-listen", "", "address for /livez, /readyz and /metrics")
	if extra != nil {
		extra(fs)
	}
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
	if *opsListen != "" {
		cfg.Ops.Listen = *opsListen
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

// BuildVersion is Version, or the module version from the build info.
func BuildVersion() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
