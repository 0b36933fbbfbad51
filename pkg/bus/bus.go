// Package bus connects scangate to NATS JetStream and declares, in one place,
// every stream, consumer and KV bucket the roles use. Declaration is
// idempotent: every role calls Open at start, in any order, on any host.
package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/events"
)

// Embedded is a JetStream server running inside the scangate process.
type Embedded struct {
	Server *server.Server
}

// EmbeddedOptions configure StartEmbedded.
type EmbeddedOptions struct {
	DataDir      string        // JetStream store goes under DataDir/jetstream
	Listen       string        // host:port for other processes; "" serves this process only
	SyncAlways   bool          // fsync every write before acknowledging it
	SyncInterval time.Duration // otherwise fsync this often
	Log          zerolog.Logger
}

// StartEmbedded starts a JetStream server and waits until it accepts
// connections.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	opts := &server.Options{
		ServerName:   "scangate",
		JetStream:    true,
		StoreDir:     filepath.Join(o.DataDir, "jetstream"),
		SyncAlways:   o.SyncAlways,
		SyncInterval: o.SyncInterval,
		NoSigs:       true, // scangate handles signals itself
		MaxPayload:   8 << 20,
	}
	if o.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats.listen: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(&natsLogger{o.Log.With().Str("component", "nats-server").Logger()}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready after 30s")
	}
	return &Embedded{Server: ns}, nil
}

// Connect opens a client connection to the embedded server, in process.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	return nats.Connect("", nats.InProcessServer(e.Server), nats.Name(name), nats.MaxReconnects(-1))
}

// Shutdown stops the server and waits for it to finish writing.
func (e *Embedded) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}

// Dial connects to an external NATS server or cluster, retrying for ever
// while it is unreachable: a role started before its NATS comes up waits.
func Dial(url, name string, log zerolog.Logger) (*nats.Conn, error) {
	return nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("disconnected from nats")
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info().Str("url", c.ConnectedUrl()).Msg("reconnected to nats")
		}),
	)
}

// Options size the topology.
type Options struct {
	Replicas  int   // 1 for a single server, 3 on a cluster
	MaxQueued int64 // files waiting for a scanner before publishes are refused
}

// Bus is a role's handle on JetStream: the context and the bound buckets.
type Bus struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Results  jetstream.KeyValue
	Hashes   jetstream.KeyValue
	Webhooks jetstream.KeyValue
}

// Open declares the topology (creating or updating it) and binds the buckets.
func Open(ctx context.Context, nc *nats.Conn, o Options) (*Bus, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	b := &Bus{NC: nc, JS: js}
	for _, sc := range Streams(o) {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	for stream, cc := range Consumers() {
		if _, err := js.CreateOrUpdateConsumer(ctx, stream, cc); err != nil {
			return nil, fmt.Errorf("consumer %s/%s: %w", stream, cc.Durable, err)
		}
	}
	for _, kc := range Buckets(o) {
		kv, err := js.CreateOrUpdateKeyValue(ctx, kc)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", kc.Bucket, err)
		}
		switch kc.Bucket {
		case events.BucketResults:
			b.Results = kv
		case events.BucketHashes:
			b.Hashes = kv
		case events.BucketWebhooks:
			b.Webhooks = kv
		}
	}
	return b, nil
}

// Streams are scangate's streams.
func Streams(o Options) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			// Work queue: a message is gone once a scanner acknowledges it,
			// which it does only after the result is written. Publishing is
			// refused (not silently dropped) when MaxQueued files wait.
			Name:       events.StreamFiles,
			Subjects:   []string{events.FilesSubjects},
			Retention:  jetstream.WorkQueuePolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   o.Replicas,
			MaxMsgs:    o.MaxQueued,
			Discard:    jetstream.DiscardNew,
			Duplicates: 10 * time.Minute,
		},
		{
			// Interest: kept until every declared consumer (the notifier) has
			// it acknowledged. Consumers are declared with the stream, so a
			// scan-done published before the notifier runs is never dropped.
			Name:       events.StreamScans,
			Subjects:   []string{events.ScanDoneSubjects},
			Retention:  jetstream.InterestPolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   o.Replicas,
			Duplicates: 10 * time.Minute,
		},
	}
}

// Scanner heartbeat and redelivery tuning. A scanner that dies holds its file
// for at most ScanAckWait; a live one extends it every ScanHeartbeat.
const (
	ScanAckWait    = 30 * time.Second
	ScanHeartbeat  = 10 * time.Second
	ScanMaxDeliver = 5 // after this many deliveries a file gets a Failed result instead of another try
)

// NotifyAckWait bounds one delivery attempt plus bookkeeping.
const NotifyAckWait = 2 * time.Minute

// Consumers are scangate's durable consumers, keyed by stream.
func Consumers() map[string]jetstream.ConsumerConfig {
	return map[string]jetstream.ConsumerConfig{
		events.StreamFiles: {
			Durable:       events.ConsumerScanners,
			Description:   "shared by every scanner; one file to one scanner at a time",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       ScanAckWait,
			MaxDeliver:    ScanMaxDeliver,
			MaxAckPending: 10000,
			FilterSubject: events.FilesSubjects,
		},
		events.StreamScans: {
			Durable:     events.ConsumerNotifier,
			Description: "webhook deliveries; retries are parked as delayed redeliveries",
			AckPolicy:   jetstream.AckExplicitPolicy,
			AckWait:     NotifyAckWait,
			MaxDeliver:  -1,
			// Deliveries waiting for their next retry count as pending; keep
			// room for many so a few dead receivers never stall the rest.
			MaxAckPending: 100000,
			FilterSubject: events.ScanDoneSubjects,
		},
	}
}

// Buckets are scangate's KV buckets.
func Buckets(o Options) []jetstream.KeyValueConfig {
	kv := func(name, desc string) jetstream.KeyValueConfig {
		return jetstream.KeyValueConfig{Bucket: name, Description: desc, History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas}
	}
	return []jetstream.KeyValueConfig{
		kv(events.BucketResults, "scan results by data_id"),
		kv(events.BucketHashes, "latest data_id by file hash"),
		kv(events.BucketWebhooks, "webhook delivery state by data_id"),
	}
}

// natsLogger routes the embedded server's log into zerolog.
type natsLogger struct{ l zerolog.Logger }

func (n *natsLogger) Noticef(f string, v ...any) { n.l.Debug().Msgf(f, v...) }
func (n *natsLogger) Warnf(f string, v ...any)   { n.l.Warn().Msgf(f, v...) }
func (n *natsLogger) Fatalf(f string, v ...any)  { n.l.Error().Msgf(f, v...) }
func (n *natsLogger) Errorf(f string, v ...any)  { n.l.Error().Msgf(f, v...) }
func (n *natsLogger) Debugf(f string, v ...any)  { n.l.Trace().Msgf(f, v...) }
func (n *natsLogger) Tracef(f string, v ...any)  { n.l.Trace().Msgf(f, v...) }

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port %q", p)
	}
	return host, port, nil
}
