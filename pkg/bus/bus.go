// Package bus connects scangate to NATS JetStream and declares, in one place,
// every stream, consumer and KV bucket the roles use. Every role calls Open
// at start, in any order, on any host: it creates what is missing and
// refuses to start when what exists differs (see Declare).
package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
		if port == 0 {
			port = server.RANDOM_PORT // nats-server reads 0 as its default, 4222
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
	Replicas   int            // 1 for a single server, 3 on a cluster
	MaxQueued  int64          // files waiting for a scanner before uploads are refused (ingest checks it)
	Partitions int            // upload partitions, each owned by one assembler at a time
	Retention  Retention      // how long KV entries live; zero fields take DefaultRetention
	Log        zerolog.Logger // Open says here why it is still waiting for JetStream
	// SessionTTL is the max age of login sessions (auth.session_ttl): one
	// not used for this long is gone.
	SessionTTL time.Duration
}

// Retention is the life of KV entries after their last write (the KV
// buckets' TTL, their streams' max age): retention.results,
// retention.webhooks and retention.originals in the configuration.
type Retention struct {
	Results  time.Duration // buckets results, hashes and sessions
	Webhooks time.Duration // bucket webhooks
	// Originals: bucket originals, the kept bytes of small files. A zero
	// value takes DefaultOriginalsRetention.
	Originals time.Duration
}

// DefaultOriginalsRetention is retention.originals by default.
const DefaultOriginalsRetention = 24 * time.Hour

// DefaultRetention is what a bucket keeps when Options do not say: the
// configuration's default, so that a role or a test opening the bus
// without a configuration declares the same buckets as a default node.
const DefaultRetention = 7 * 24 * time.Hour

func (o Options) withDefaults() Options {
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	if o.Partitions < 1 {
		o.Partitions = DefaultPartitions
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.Retention.Results <= 0 {
		o.Retention.Results = DefaultRetention
	}
	if o.Retention.Webhooks <= 0 {
		o.Retention.Webhooks = DefaultRetention
	}
	if o.Retention.Originals <= 0 {
		o.Retention.Originals = DefaultOriginalsRetention
	}
	return o
}

// Bus is a role's handle on JetStream: the context and the bound buckets.
type Bus struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Results  jetstream.KeyValue
	Hashes   jetstream.KeyValue
	Webhooks jetstream.KeyValue
	Sessions jetstream.KeyValue
	Nodes    jetstream.KeyValue
	Logins   jetstream.KeyValue
	// Batches and BatchFiles hold batches: ingest writes the first, the
	// recorder the second (see events.BucketBatches).
	Batches    jetstream.KeyValue
	BatchFiles jetstream.KeyValue
	// Originals is the kept bytes of small files (KeepOriginal).
	Originals jetstream.KeyValue
	Opts      Options

	streams    sync.Map // name → jetstream.Stream, see stream
	committers sync.Map // stream name → *Committer

	storeMu      sync.Mutex
	storeFailure error
	onStore      func(error)
}

// OnStoreFailure registers fn to hear of the first store failure Check sees.
func (b *Bus) OnStoreFailure(fn func(error)) {
	b.storeMu.Lock()
	defer b.storeMu.Unlock()
	b.onStore = fn
}

// StoreFailure is the store failure Check saw, if any: a server whose store
// refuses writes (a full disk, an I/O error) is not ready.
func (b *Bus) StoreFailure() error {
	b.storeMu.Lock()
	defer b.storeMu.Unlock()
	return b.storeFailure
}

// Check passes err through, noting it when it says JetStream could not
// write to its store: such a server refuses every later write to that
// stream until it restarts.
func (b *Bus) Check(err error) error {
	if !IsStoreFailure(err) {
		return err
	}
	b.storeMu.Lock()
	first := b.storeFailure == nil
	if first {
		b.storeFailure = err
	}
	fn := b.onStore
	b.storeMu.Unlock()
	if first && fn != nil {
		fn(err)
	}
	return err
}

// IsStoreFailure recognises JetStream's "store failed" answer when it is
// about the disk (not a stream limit, which is the same code).
func IsStoreFailure(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jsErrCodeStreamStoreFailed {
		return false
	}
	return !strings.Contains(apiErr.Description, "maximum")
}

// jsErrCodeStreamStoreFailed is nats-server's JSStreamStoreFailedF, which
// nats.go does not name.
const jsErrCodeStreamStoreFailed jetstream.ErrorCode = 10077

// Open waits for JetStream, declares the topology (see Declare: what is
// missing is created, what differs is refused) and binds the buckets.
//
// It keeps trying while JetStream is not ready, until ctx ends: a server
// that is not up yet, a cluster without a meta leader. A server older than
// MinServerVersion and assets that differ from the declaration
// (*DriftError) fail at once.
func Open(ctx context.Context, nc *nats.Conn, o Options) (*Bus, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	o = o.withDefaults()
	b := &Bus{NC: nc, JS: js, Opts: o}
	err = Wait(ctx, o.Log, func(ctx context.Context) error {
		if err := CheckServer(ctx, nc, js); err != nil {
			return err
		}
		applied, err := declare(ctx, js, Topology(o))
		for _, c := range applied {
			if !c.Create {
				o.Log.Info().Str("change", c.String()).Msg("JetStream asset brought in line with this configuration")
			}
		}
		if err != nil {
			return err
		}
		return b.bind(ctx)
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Bus) bind(ctx context.Context) error {
	for _, kc := range Buckets(b.Opts) {
		kv, err := keyValue(ctx, b.JS, kc.Bucket)
		if err != nil {
			err = JustDeclared(err) // Declare has just made it
			return fmt.Errorf("bucket %s: %w", kc.Bucket, err)
		}
		switch kc.Bucket {
		case events.BucketResults:
			b.Results = kv
		case events.BucketHashes:
			b.Hashes = kv
		case events.BucketWebhooks:
			b.Webhooks = kv
		case events.BucketSessions:
			b.Sessions = kv
		case events.BucketNodes:
			b.Nodes = kv
		case events.BucketLogins:
			b.Logins = kv
		case events.BucketBatches:
			b.Batches = kv
		case events.BucketBatchFiles:
			b.BatchFiles = kv
		case events.BucketOriginals:
			b.Originals = kv
		}
	}
	return nil
}

func keyValue(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return js.KeyValue(ctx, bucket)
}

// Topology is everything Open declares, streams before their consumers.
func Topology(o Options) []Asset {
	o = o.withDefaults()
	var assets []Asset
	for _, sc := range Streams(o) {
		assets = append(assets, StreamAsset(sc))
	}
	for _, kc := range Buckets(o) {
		groupCommit := kc.Bucket == events.BucketResults || kc.Bucket == events.BucketHashes || kc.Bucket == events.BucketOriginals ||
			kc.Bucket == events.BucketBatchFiles // the recorder's member summaries, one per result write
		assets = append(assets, BucketAsset(kc, groupCommit))
	}
	for _, c := range Consumers(o) {
		assets = append(assets, ConsumerAsset(c))
	}
	return assets
}

// Streams are scangate's streams.
func Streams(o Options) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			// The log of every upload session, one subject per session. The
			// assembler's bbolt state is a cache of it; a session's subject
			// is purged once the session has ended.
			// Each session's expiry is a message scheduled at open for its
			// deadline (upload-expiry.<data_id>, delivered to the session's
			// subject), so it fires on whichever assembler owns the
			// partition then — no scan of all sessions, nothing lost when an
			// assembler dies.
			Name:              events.StreamUploads,
			Subjects:          []string{events.UploadsSubjects, events.ExpirySubjects},
			Retention:         jetstream.LimitsPolicy,
			Storage:           jetstream.FileStorage,
			Replicas:          o.Replicas,
			Duplicates:        10 * time.Minute,
			AllowMsgSchedules: true,
		},
		{
			// Every file's result events, one subject per file. The recorder
			// applies them in order to the results bucket; the events every
			// recorder has acknowledged are purged in bulk, about once a
			// second (CompactResults). MaxAge is only the backstop for
			// events of a partition nobody applies.
			Name:               events.StreamResults,
			Subjects:           []string{events.ResultsSubjects},
			Retention:          jetstream.LimitsPolicy,
			Storage:            jetstream.FileStorage,
			Replicas:           o.Replicas,
			MaxAge:             ResultsMaxAge,
			Duplicates:         10 * time.Minute,
			AllowAtomicPublish: true, // group commits (Committer)
		},
		{
			// Work queue: a message is gone once a scanner acknowledges it,
			// which it does only after its verdict is in RESULTS. Only the
			// recorder publishes here, for files the client was already
			// told are accepted, so nothing is refused: admission (the
			// 503 when the queue is longer than scanners drain in
			// limits.max_queue_wait) happens in ingest, before an upload
			// is read.
			Name:               events.StreamFiles,
			Subjects:           []string{events.FilesSubjects},
			Retention:          jetstream.WorkQueuePolicy,
			Storage:            jetstream.FileStorage,
			Replicas:           o.Replicas,
			Duplicates:         10 * time.Minute,
			AllowAtomicPublish: true, // group commits (Committer)
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
		{
			// Scan limits: one counter per user and minute. Memory is
			// enough: a restart that forgets the current minute's counts
			// only forgives it.
			Name:            events.StreamLimits,
			Subjects:        []string{events.LimitsSubjects},
			Retention:       jetstream.LimitsPolicy,
			Storage:         jetstream.MemoryStorage,
			Replicas:        o.Replicas,
			MaxAge:          2 * time.Minute,
			Duplicates:      2 * time.Minute, // the server's default, stated so declarations compare equal
			AllowMsgCounter: true,
		},
	}
}

// DefaultSessionTTL is how long a login session lives unused when Options
// leave it unset.
const DefaultSessionTTL = time.Hour

// Scanner heartbeat and redelivery tuning. A scanner that dies holds its file
// for at most ScanAckWait, so a peer takes it within seconds; a live one
// keeps it with an InProgress every ScanKeepAlive and reports progress
// every ScanHeartbeat.
const (
	ScanAckWait   = 6 * time.Second
	ScanKeepAlive = 2 * time.Second
	ScanHeartbeat = 10 * time.Second
	// ScanMaxAttempts: a file delivered more often than this (every earlier
	// scanner died on it) gets a Failed verdict instead of another scan.
	// The consumer itself never gives up on a message: publishing that
	// verdict is retried until it lands, so no file is left at 255.
	ScanMaxAttempts = 5
)

// ResultsMaxAge bounds how long a file's result events stay in RESULTS when
// the file never reached a final result (they are purged as soon as it does).
const ResultsMaxAge = 7 * 24 * time.Hour

// NotifyAckWait is how long a delivery taken by a notifier that died waits
// before a peer (or the restarted notifier) takes it over. A live notifier
// keeps a delivery ours with a keep-alive every quarter of it, however
// long the receiver takes, so it can be short: webhooks in flight when a
// node was killed resume seconds after it comes back.
const NotifyAckWait = 10 * time.Second

// NodeTTL is how long a scanner stays registered after its last refresh.
const NodeTTL = time.Minute

// DefaultPartitions is the number of upload partitions when not configured.
const DefaultPartitions = 16

// Assembler tuning: a partition's owner holds it while it keeps pulling;
// if it stops for AssemblerPinnedTTL, another assembler takes over.
// Events are small (a hashing step on a large part is kept alive with
// progress acks), so both are short: failover takes seconds.
const (
	AssemblerAckWait   = 10 * time.Second
	AssemblerPinnedTTL = 5 * time.Second
)

// Consumer is a durable consumer on a stream.
type Consumer struct {
	Stream string
	Config jetstream.ConsumerConfig
}

// Consumers are scangate's durable consumers.
func Consumers(o Options) []Consumer {
	cs := scannerConsumers()
	cs = append(cs, []Consumer{
		{events.StreamScans, jetstream.ConsumerConfig{
			Durable:     events.ConsumerNotifier,
			Description: "webhook deliveries; retries are parked as delayed redeliveries",
			AckPolicy:   jetstream.AckExplicitPolicy,
			AckWait:     NotifyAckWait,
			MaxDeliver:  -1,
			// Deliveries waiting for their next retry count as pending; keep
			// room for many so a few dead receivers never stall the rest.
			MaxAckPending: 100000,
			FilterSubject: events.ScanDoneSubjects,
		}},
	}...)
	for p := range o.Partitions {
		recorder := partitionConsumer(events.StreamResults, events.RecorderConsumer(p), events.ResultPartitionSubjects(p),
			events.RecorderGroup, "result events of one partition, pinned to one recorder at a time")
		// Different files' records are independent: the recorder applies
		// up to this many events at once, each file's in order (see
		// assembler.pull), so their writes share group commits.
		recorder.Config.MaxAckPending = RecorderInFlight
		cs = append(cs, recorder,
			partitionConsumer(events.StreamUploads, events.AssemblerConsumer(p), events.UploadPartitionSubjects(p),
				events.AssemblerGroup, "upload partition, pinned to one assembler at a time"))
	}
	return cs
}

// scannerConsumers are the scan work queues, one consumer per priority,
// each shared by every scanner (one file to one scanner at a time).
// Scanners take from high first, then normal, then low, with a share kept
// for the lower ones (scanner.queues); one consumer over every priority
// would hand out files in the order they came, whatever their priority.
//
// A work-queue stream lets no two consumers' filters overlap, so the
// single consumer of earlier releases (ConsumerScanners on file.>) cannot
// stay beside these. It becomes the normal one instead: `scangate
// migrate` narrows its filter to file.normal.> in place, which keeps the
// files it was holding (all normal: earlier releases queued nothing else)
// with their deliveries and acknowledgements, and then creates the others.
func scannerConsumers() []Consumer {
	desc := map[events.Priority]string{
		events.PriorityHigh:   "high-priority scan work (admins' requests); shared by every scanner, taken first",
		events.PriorityNormal: "normal-priority scan work (uploads); shared by every scanner",
		events.PriorityLow:    "low-priority scan work (rescans); shared by every scanner, with a share kept while others wait",
	}
	var cs []Consumer
	// Normal first: declared in this order, a migration narrows the old
	// consumer before it creates the ones it would overlap.
	for _, p := range []events.Priority{events.PriorityNormal, events.PriorityHigh, events.PriorityLow} {
		cs = append(cs, Consumer{events.StreamFiles, jetstream.ConsumerConfig{
			Durable:       events.ScannerConsumer(p),
			Description:   desc[p],
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       ScanAckWait,
			MaxDeliver:    -1,
			MaxAckPending: 10000,
			FilterSubject: events.PrioritySubjects(p),
		}})
	}
	return cs
}

// RecorderInFlight is how many result events of one partition a recorder
// applies at once.
const RecorderInFlight = 64

// partitionConsumer is the consumer of one partition of an ordered stream:
// pinned to one member of group at a time, one event in flight, so a
// file's events apply in sequence.
func partitionConsumer(stream, name, filter, group, desc string) Consumer {
	return Consumer{stream, jetstream.ConsumerConfig{
		Durable:        name,
		Description:    desc,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        AssemblerAckWait,
		MaxDeliver:     -1,
		MaxAckPending:  1,
		FilterSubject:  filter,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{group},
		PinnedTTL:      AssemblerPinnedTTL,
	}}
}

// KeepAlive tells JetStream every interval that msg is still being worked
// on (hashing a large part, a slow webhook receiver), so it is not
// redelivered to a peer meanwhile. It returns the function that stops it.
func KeepAlive(msg jetstream.Msg, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// Buckets are scangate's KV buckets. Each entry expires its bucket's TTL
// after its last write (see Retention): a record rewritten as its file
// progresses is kept that long after its last change.
func Buckets(o Options) []jetstream.KeyValueConfig {
	o = o.withDefaults()
	kv := func(name, desc string, ttl time.Duration) jetstream.KeyValueConfig {
		return jetstream.KeyValueConfig{Bucket: name, Description: desc, History: 1, TTL: ttl,
			Storage: jetstream.FileStorage, Replicas: o.Replicas}
	}
	return []jetstream.KeyValueConfig{
		kv(events.BucketResults, "scan results by data_id", o.Retention.Results),
		kv(events.BucketHashes, "latest data_id by file hash", o.Retention.Results),
		kv(events.BucketWebhooks, "webhook delivery state by data_id", o.Retention.Webhooks),
		kv(events.BucketSessions, "upload session status by data_id", o.Retention.Results),
		kv(events.BucketNodes, "live scanners and their engines", NodeTTL),
		kv(events.BucketLogins, "login sessions by sha256 of their id", o.SessionTTL),
		kv(events.BucketBatches, "batches and the files that joined them, by batch_id", o.Retention.Results),
		kv(events.BucketBatchFiles, "batch members' summaries by batch_id.data_id", o.Retention.Results),
		originals(kv(events.BucketOriginals, "bytes of small files by data_id, kept for rescans", o.Retention.Originals)),
	}
}

// originals bounds the bucket's messages to what a small file can hold
// (the scanner keeps only files that travelled inside their events), with
// room for the headers a group commit adds to each.
func originals(c jetstream.KeyValueConfig) jetstream.KeyValueConfig {
	c.MaxValueSize = events.InlineMax + 4<<10
	return c
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
