// Package node wires one scangate process: its NATS connection (and the
// embedded server, if any) and the roles it runs. `scangate serve` and the
// single-role commands use it; so do the end-to-end tests.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/assembler"
	"github.com/scangate/scangate/ingest"
	"github.com/scangate/scangate/notifier"
	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/batch"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/health"
	"github.com/scangate/scangate/pkg/localfile"
	"github.com/scangate/scangate/pkg/logging"
	"github.com/scangate/scangate/pkg/metrics"
	"github.com/scangate/scangate/pkg/presign"
	"github.com/scangate/scangate/pkg/workflow"
	"github.com/scangate/scangate/scanner"
	"github.com/scangate/scangate/scanner/engines"
)

// Role is one of scangate's four roles.
type Role string

const (
	Ingest    Role = "ingest"
	Scanner   Role = "scanner"
	Notifier  Role = "notifier"
	Assembler Role = "assembler"
)

// All is every role, what `scangate serve` runs.
var All = []Role{Ingest, Assembler, Scanner, Notifier}

// Node is one scangate process: its NATS connection (and embedded server,
// if any) and the roles it runs.
type Node struct {
	cfg      *config.Config
	log      zerolog.Logger
	embedded *bus.Embedded
	nc       *nats.Conn
	bus      *bus.Bus
	http     *ingest.Server
	pprof    *http.Server // debug.pprof, when on
	addr     net.Addr     // where the HTTP API listens, when ingest runs
	metrics  *metrics.Metrics
	ops      *http.Server                   // ops.listen, when on
	opsAddr  net.Addr                       // where it listens
	ready    atomic.Pointer[[]health.Check] // the process's readiness checks, once started
	// localFiles are the directories filepath may name (ingest), held
	// open while the node runs.
	localFiles *localfile.Dirs

	runCtx  context.Context // ends when the node shuts down
	closing atomic.Bool     // Close has begun: roles returning now are expected
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	failed  chan error // the first role or component that stopped with an error
}

// Start brings up NATS and the given roles. It returns once the HTTP API
// (if any) accepts connections.
func Start(ctx context.Context, cfg *config.Config, roles []Role, version string, logOut io.Writer) (_ *Node, err error) {
	n := &Node{cfg: cfg, log: logging.New(cfg.Log, logOut), failed: make(chan error, 1), metrics: metrics.New()}
	n.metrics.BuildInfo(version)
	n.runCtx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if cfg.Limits.Memory > 0 {
		// Process-wide, like GOMEMLIMIT (which it overrides).
		debug.SetMemoryLimit(int64(cfg.Limits.Memory))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if cfg.Ops.Listen != "" {
		// Before connecting: a role waiting for its NATS is alive (and
		// says it is not ready), not a process to restart.
		if err := n.startOps(cfg.Ops.Listen); err != nil {
			return nil, fmt.Errorf("ops.listen: %w", err)
		}
	}
	if err := n.connect(ctx); err != nil {
		return nil, err
	}
	n.metrics.WatchQueues(n.bus.JS)
	blobs, err := n.blobStore(ctx)
	if err != nil {
		return nil, err
	}
	if u, ok := blobs.(blob.UsageReporter); ok {
		n.metrics.WatchBlobStore(cfg.Blob.Store, u.UsedBytes)
	}
	wfs := workflow.NewSet(cfg.Workflows)
	runCtx := n.runCtx
	n.bus.OnStoreFailure(func(err error) {
		if n.embedded != nil {
			// Our own server's store refuses writes; it recovers only
			// when it starts again (after space is freed).
			n.fail(fmt.Errorf("the embedded JetStream store refuses writes: %w", err))
		}
	})
	if n.embedded != nil {
		n.wg.Go(n.watchJetStream)
	}
	if cfg.Debug.Pprof != "" {
		if err := n.startPprof(cfg.Debug.Pprof); err != nil {
			return nil, fmt.Errorf("debug.pprof: %w", err)
		}
	}

	// Engines first: their checks belong to the readiness of the whole
	// process, the HTTP API's /readyz included.
	var engs []scanner.NamedEngine
	var engineChecks []health.Check
	if slices.Contains(roles, Scanner) {
		if engs, err = BuildEngines(ctx, cfg, n.log); err != nil {
			return nil, err
		}
		for _, ne := range engs {
			if p, ok := ne.Engine.(health.Pinger); ok {
				engineChecks = append(engineChecks, health.Ping(ne.Name, p))
			}
		}
	}

	for _, r := range roles {
		switch r {
		case Scanner:
			sc := scanner.New(n.bus, blobs, scanner.Options{Workers: cfg.Scanner.Workers, Timeout: cfg.Scanner.Timeout,
				MemoryBudget: int64(cfg.Scanner.MemoryBudget), Workflows: wfs, Engines: engs, Version: version,
				DataDir: cfg.DataDir, Metrics: n.metrics, Downloads: cfg.Sources.DownloadFrom}, n.log)
			n.goRun("scanner", func() error { return sc.Run(runCtx) })
		case Assembler:
			as, err := assembler.New(n.bus, blobs, filepath.Join(cfg.DataDir, "assembler.db"), assembler.Options{
				Metrics:   n.metrics,
				Retention: assembler.BlobRetention{Originals: cfg.Retention.Originals, Sanitized: cfg.Retention.Sanitized},
			}, n.log)
			if err != nil {
				return nil, err
			}
			n.goRun("assembler", func() error { return as.Run(runCtx) })
		case Notifier:
			nt, err := notifier.New(n.bus, cfg.Webhooks, n.log, notifier.WithBlobs(blobs), notifier.WithMetrics(n.metrics))
			if err != nil {
				return nil, err
			}
			n.goRun("notifier", func() error { return nt.Run(runCtx) })
		case Ingest:
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return nil, fmt.Errorf("listen: %w", err)
			}
			n.addr = ln.Addr()
			signer, err := batch.OpenSigner(cfg.Batches.SigningKey, cfg.Batches.Certificate, cfg.DataDir)
			if err != nil {
				ln.Close()
				return nil, err
			}
			presigned, err := n.presignedOptions()
			if err != nil {
				ln.Close()
				return nil, err
			}
			localFiles, err := localfile.OpenDirs(cfg.Sources.FilePath.AllowedDirs)
			if err != nil {
				ln.Close()
				return nil, fmt.Errorf("sources.filepath.allowed_dirs: %w", err)
			}
			n.localFiles = localFiles
			n.http = ingest.New(n.bus, blobs, ingest.Options{
				Workflows:               wfs,
				DiskReserve:             int64(cfg.Limits.DiskReserve),
				MaxQueued:               cfg.Limits.MaxQueued,
				MaxQueueWait:            cfg.Limits.MaxQueueWait,
				MinPartSize:             int64(cfg.Limits.MinPartSize),
				MaxRanges:               cfg.Limits.MaxRanges,
				MaxConnections:          cfg.Limits.MaxConnections,
				MaxConnectionsPerClient: cfg.Limits.MaxConnectionsPerClient,
				Auth:                    auth.NewDirectory(cfg.Auth),
				SessionTTL:              cfg.Auth.SessionTTL,
				AllowPrivateCallbacks:   cfg.Webhooks.AllowPrivateTargets,
				Version:                 version,
				Metrics:                 n.metrics,
				ReadyChecks:             engineChecks,
				BatchSigner:             signer,
				LocalFiles:              localFiles,
				DownloadFrom:            cfg.Sources.DownloadFrom.Enabled,
				AllowPrivateDownloads:   cfg.Sources.DownloadFrom.AllowPrivateTargets,
				Presigned:               presigned,
			}, n.log)
			n.goRun("ingest", func() error { return n.http.Serve(ln) })
		}
	}
	// The ops address answers /readyz like the HTTP API where there is
	// one; elsewhere with the bus and the engines.
	checks := append(health.Bus(n.bus), engineChecks...)
	if n.http != nil {
		checks = n.http.ReadyChecks()
	}
	n.ready.Store(&checks)
	n.log.Info().Str("version", version).Str("data_dir", cfg.DataDir).Any("roles", roles).Msg("scangate started")
	return n, nil
}

// Addr is where the HTTP API listens (nil when this node runs no ingest).
func (n *Node) Addr() net.Addr { return n.addr }

// URL is the HTTP API's base URL followed by path.
func (n *Node) URL(path string) string { return "http://" + n.addr.String() + path }

// NATSURL is the client URL of the embedded NATS server, for other nodes to
// join ("" when the node runs none or it listens only in process).
func (n *Node) NATSURL() string {
	if n.embedded == nil {
		return ""
	}
	return n.embedded.Server.ClientURL()
}

// OpsAddr is where /livez, /readyz and /metrics listen (nil when ops.listen
// is off).
func (n *Node) OpsAddr() net.Addr { return n.opsAddr }

// Metrics is the node's metrics registry and recorders.
func (n *Node) Metrics() *metrics.Metrics { return n.metrics }

// Bus is the node's JetStream handle.
func (n *Node) Bus() *bus.Bus { return n.bus }

// Config is the configuration the node runs with.
func (n *Node) Config() *config.Config { return n.cfg }

// Log is the node's logger.
func (n *Node) Log() *zerolog.Logger { return &n.log }

// connect starts the embedded JetStream server or dials the external one,
// then declares the topology.
func (n *Node) connect(ctx context.Context) error {
	cfg := n.cfg
	var err error
	if cfg.NATS.URL == "" {
		always, every, _ := cfg.NATS.SyncInterval()
		n.embedded, err = bus.StartEmbedded(bus.EmbeddedOptions{DataDir: cfg.DataDir, Listen: cfg.NATS.Listen,
			SyncAlways: always, SyncInterval: every, Log: n.log})
		if err != nil {
			return err
		}
		n.nc, err = n.embedded.Connect("scangate")
	} else {
		n.nc, err = bus.Dial(cfg.NATS.URL, "scangate", n.log)
	}
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	// Open waits while JetStream is not ready. Our own server is up in
	// seconds or broken; an external one (a cluster electing its leader,
	// a server started after this role) is waited for until the process
	// is stopped.
	openCtx := ctx
	if n.embedded != nil {
		var cancel context.CancelFunc
		openCtx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	opts := BusOptions(cfg)
	opts.Log = n.log
	n.bus, err = bus.Open(openCtx, n.nc, opts)
	return err
}

// BusOptions are the topology settings cfg gives. Every role, and `scangate
// migrate`, declares the topology from them: roles started with different
// ones would each bring the assets in line with theirs.
func BusOptions(cfg *config.Config) bus.Options {
	return bus.Options{
		Replicas:   cfg.NATS.Replicas,
		MaxQueued:  cfg.Limits.MaxQueued,
		Partitions: cfg.Assembler.Partitions,
		Retention:  bus.Retention{Results: cfg.Retention.Results, Webhooks: cfg.Retention.Webhooks, Originals: cfg.Retention.Originals},
		SessionTTL: cfg.Auth.SessionTTL,
	}
}

// blobStore opens the configured blob store: local sparse files, or a
// JetStream object store every host reaches.
func (n *Node) blobStore(ctx context.Context) (blob.Store, error) {
	if n.cfg.Blob.Store == "jetstream" {
		// Declared like the streams: waited for while the cluster is not
		// ready (roles started at once on a fresh cluster), never retried
		// on a real mismatch.
		var js *blob.JetStream
		err := bus.Wait(ctx, n.log, func(ctx context.Context) (err error) {
			js, err = blob.NewJetStream(ctx, n.bus.JS, blob.JetStreamOptions{Replicas: n.cfg.NATS.Replicas})
			return err
		})
		return js, err
	}
	return blob.NewFS(filepath.Join(n.cfg.DataDir, "blobs"))
}

// goRun runs a role until it returns. A role that returns while the node
// is not shutting down — with an error or without — fails the node: the
// process then ends with a non-zero exit and its supervisor restarts it,
// rather than living on half-dead behind a live listener.
func (n *Node) goRun(name string, fn func() error) {
	n.wg.Go(func() {
		err := fn()
		if n.closing.Load() || n.runCtx.Err() != nil {
			if err != nil {
				n.log.Warn().Err(err).Str("role", name).Msg("role stopped with an error during shutdown")
			}
			return
		}
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		n.fail(fmt.Errorf("role %s: %w", name, err))
	})
}

// fail records the node's first fatal error; Failed delivers it.
func (n *Node) fail(err error) {
	select {
	case n.failed <- err:
		n.log.Error().Err(err).Msg("scangate cannot go on; stopping so that it is restarted")
	default:
	}
}

// Failed delivers the error that ended the node's ability to work: a role
// that stopped, or an embedded JetStream server that disabled itself. The
// command line then shuts the node down and exits non-zero.
func (n *Node) Failed() <-chan error { return n.failed }

// jetStreamCheckEvery is how often the embedded server is checked.
const jetStreamCheckEvery = time.Second

// watchJetStream fails the node when the embedded server turns JetStream
// off (it does so on a critical store error, such as a full disk): nothing
// could be accepted any more, yet the HTTP API would still answer.
func (n *Node) watchJetStream() {
	t := time.NewTicker(jetStreamCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-n.runCtx.Done():
			return
		case <-t.C:
		}
		if !n.embedded.Server.JetStreamEnabled() {
			n.fail(errors.New("the embedded JetStream server disabled itself (see its log above: out of disk space?)"))
			return
		}
	}
}

// EmbeddedServer is the in-process NATS server (nil when the node joined
// an external one).
func (n *Node) EmbeddedServer() *server.Server {
	if n.embedded == nil {
		return nil
	}
	return n.embedded.Server
}

// Close stops the roles (the HTTP API first, so no new work arrives),
// drains the NATS connection and stops the embedded server.
func (n *Node) Close() error {
	n.closing.Store(true)
	var errs []error
	if n.pprof != nil {
		n.pprof.Close()
	}
	if n.ops != nil {
		n.ops.Close()
	}
	if n.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, n.http.Shutdown(ctx))
		cancel()
	}
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	if n.nc != nil {
		if err := n.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
		}
		for n.nc.IsDraining() {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n.embedded != nil {
		n.embedded.Shutdown()
	}
	errs = append(errs, n.localFiles.Close())
	return errors.Join(errs...)
}

// BuildEngines makes the configured engines, in report order. An engine
// that is configured but cannot start (a signature file that does not
// parse, a clamd that does not answer) stops start-up with the reason.
func BuildEngines(ctx context.Context, cfg *config.Config, log zerolog.Logger) ([]scanner.NamedEngine, error) {
	var set *engines.SignatureSet
	if paths := cfg.Engines.Signatures.Paths; len(paths) > 0 {
		var warnings []string
		var err error
		if set, warnings, err = engines.LoadSignatureFiles(paths); err != nil {
			return nil, err
		}
		for _, w := range warnings {
			log.Warn().Str("engine", "signatures").Msg(w)
		}
	}
	sig, err := engines.NewSignatures(set)
	if err != nil {
		return nil, err
	}
	log.Info().Int("body_signatures", sig.Len()).Msg("signatures loaded")
	out := []scanner.NamedEngine{{Name: "signatures", Engine: sig}}
	if hs := set.HashEngine(); hs != nil {
		log.Info().Int("hash_signatures", hs.Len()).Msg("hash signatures loaded")
		out = append(out, scanner.NamedEngine{Name: "signatures", Engine: hs})
	}
	if p := cfg.Engines.HashList.Path; p != "" {
		hl, err := engines.LoadHashList(p)
		if err != nil {
			return nil, err
		}
		log.Info().Str("path", p).Int("hashes", hl.Len()).Msg("hash list loaded")
		out = append(out, scanner.NamedEngine{Name: "hashlist", Engine: hl})
	}
	if c := cfg.Engines.ClamAV; c.Address != "" {
		cl, err := engines.NewClamAV(ctx, engines.ClamAVOptions{Address: c.Address, Timeout: c.Timeout,
			StreamMaxLength: int64(c.StreamMaxLength)})
		if err != nil {
			return nil, fmt.Errorf("engines.clamav: %w", err)
		}
		info := cl.Info()
		log.Info().Str("address", c.Address).Str("version", info.Version).Str("def_time", info.DefTime).Msg("clamd connected")
		out = append(out, scanner.NamedEngine{Name: "clamav", Engine: cl})
	}
	return out, nil
}

// presignedOptions are the ingest settings of pre-signed part uploads,
// with the key that signs their URLs: the configured one, or one generated
// into the data directory and kept there, so URLs handed out stay valid
// across a restart.
func (n *Node) presignedOptions() (ingest.PresignedOptions, error) {
	p := n.cfg.Presigned
	key, generated, err := presign.LoadKey(p.Key, n.cfg.DataDir)
	if err != nil {
		return ingest.PresignedOptions{}, err
	}
	if generated && (n.cfg.NATS.URL != "" || n.cfg.NATS.Listen != "") {
		// Other nodes may serve this deployment's clients, and they
		// cannot check URLs signed with this node's own key.
		n.log.Warn().Str("key_file", filepath.Join(n.cfg.DataDir, presign.KeyFile)).
			Msg("presigned.key is not configured: part URLs signed here are valid on this node only; give every ingest node the same presigned.key")
	}
	return ingest.PresignedOptions{Key: key, URLTTL: p.URLTTL, MinPartSize: int64(p.MinPartSize), MaxParts: p.MaxParts,
		BaseURL: p.BaseURL}, nil
}
