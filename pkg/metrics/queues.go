package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scangate/scangate/pkg/events"
)

// QueueStreams are the pipeline's streams whose depth is exported.
var QueueStreams = []string{events.StreamUploads, events.StreamFiles, events.StreamResults, events.StreamScans}

// Queue reads are cached: every process of a deployment may be scraped
// every few seconds by more than one Prometheus, and each read costs
// JetStream a stream-info and a consumer-list request per stream. A read
// that takes longer than queueTimeout is given up (the series are left out
// of that scrape) rather than holding the scrape.
const (
	queueCacheFor = 2 * time.Second
	queueTimeout  = time.Second
)

var (
	streamMessagesDesc = prometheus.NewDesc("scangate_stream_messages",
		"Messages stored in a pipeline stream (UPLOADS, FILES, RESULTS, SCANS). The same cluster-wide value from every process: aggregate with max, not sum.",
		[]string{"stream"}, nil)
	queuePendingDesc = prometheus.NewDesc("scangate_queue_pending_messages",
		"Messages of a stream not yet delivered to its durable consumers (summed over them): work waiting for a role. Cluster-wide: aggregate with max.",
		[]string{"stream"}, nil)
	queueAckPendingDesc = prometheus.NewDesc("scangate_queue_ack_pending_messages",
		"Messages of a stream delivered to its durable consumers and not yet acknowledged: work in progress. Cluster-wide: aggregate with max.",
		[]string{"stream"}, nil)
)

// WatchQueues exports the depth of the pipeline's streams, read from
// JetStream when scraped (at most every couple of seconds).
func (m *Metrics) WatchQueues(js jetstream.JetStream) {
	if m == nil {
		return
	}
	_ = m.reg.Register(&queueCollector{js: js, streams: QueueStreams})
}

type queueDepth struct {
	stream                    string
	msgs, pending, ackPending uint64
}

// queueCollector asks JetStream at scrape time and caches the answer.
type queueCollector struct {
	js      jetstream.JetStream
	streams []string

	mu   sync.Mutex // one read at a time; concurrent scrapes share it
	at   time.Time  // when last was read (or the read failed)
	last []queueDepth
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- streamMessagesDesc
	ch <- queuePendingDesc
	ch <- queueAckPendingDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	for _, q := range c.depths() {
		ch <- prometheus.MustNewConstMetric(streamMessagesDesc, prometheus.GaugeValue, float64(q.msgs), q.stream)
		ch <- prometheus.MustNewConstMetric(queuePendingDesc, prometheus.GaugeValue, float64(q.pending), q.stream)
		ch <- prometheus.MustNewConstMetric(queueAckPendingDesc, prometheus.GaugeValue, float64(q.ackPending), q.stream)
	}
}

// depths returns the cached reading, reading again once it is older than
// queueCacheFor. A failed read is cached too (as nothing), so a JetStream
// in trouble is not asked again by every scrape.
func (c *queueCollector) depths() []queueDepth {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < queueCacheFor {
		return c.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), queueTimeout)
	defer cancel()
	// A new slice every time: a scrape may still be reading the last one.
	var read []queueDepth
	for _, name := range c.streams {
		q, err := readDepth(ctx, c.js, name)
		if err != nil {
			read = nil
			break
		}
		read = append(read, q)
	}
	c.last, c.at = read, time.Now()
	return c.last
}

// readDepth reads one stream's size and its durable consumers' backlog.
// Ephemeral consumers (a session replayed from the log) are not queues.
func readDepth(ctx context.Context, js jetstream.JetStream, name string) (queueDepth, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return queueDepth{}, err
	}
	q := queueDepth{stream: name, msgs: s.CachedInfo().State.Msgs}
	list := s.ListConsumers(ctx)
	for ci := range list.Info() {
		if ci.Config.Durable == "" {
			continue
		}
		q.pending += ci.NumPending
		q.ackPending += uint64(max(ci.NumAckPending, 0))
	}
	return q, list.Err()
}
