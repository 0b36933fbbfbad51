// Package metrics defines every Prometheus series scangate exports, in one
// place: names (all scangate_*), help texts, labels and buckets. Roles only
// call the recording methods below; they never build a metric themselves.
//
// Each node owns its Registry (never the global default one), so that a test
// can run several nodes in one process. A nil *Metrics records nothing:
// roles built without one (unit tests) need no special case.
//
// Label values are always drawn from small fixed sets — route patterns, not
// paths; verdict names, not data_ids — so the number of series stays bounded
// whatever clients send.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Upload kinds (label kind of the upload series).
const (
	UploadFile  = "file"  // a whole file in one POST /file
	UploadChunk = "chunk" // one sequential chunk (POST /file with X-File-Size / X-File-ID)
	UploadPart  = "part"  // one part of a multipart session
)

// Webhook delivery outcomes (label outcome of scangate_webhook_deliveries_total).
const (
	WebhookDelivered = "delivered" // the receiver answered 2xx
	WebhookRetry     = "retry"     // the attempt failed; another is planned
	WebhookFailed    = "failed"    // no more attempts: budget spent or target refused
	WebhookGone      = "gone"      // the receiver answered 410
)

// Metrics holds a node's registry and the series its roles record.
type Metrics struct {
	reg *prometheus.Registry

	uploads      *prometheus.CounterVec
	uploadBytes  *prometheus.CounterVec
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	scans        *prometheus.CounterVec
	scanDuration prometheus.Histogram
	engineTime   *prometheus.HistogramVec
	webhooks     *prometheus.CounterVec
}

// Latency buckets. Requests and scans range from a millisecond (a status
// poll, an inline file) to minutes (a large upload over a slow link, a big
// archive), so the buckets span both.
var (
	httpBuckets   = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	scanBuckets   = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	engineBuckets = []float64{.0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// New returns a registry with the Go runtime and process collectors and
// every scangate series. Series that need a live source (queues, blob
// store, assembler sessions) are added by the Watch methods.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.uploads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scangate_uploads_total",
		Help: "Uploads accepted by this ingest node, by kind: file (whole POST /file), chunk (sequential chunk), part (multipart part).",
	}, []string{"kind"})
	m.uploadBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scangate_upload_bytes_total",
		Help: "Bytes of the uploads counted in scangate_uploads_total, by kind.",
	}, []string{"kind"})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scangate_http_requests_total",
		Help: "HTTP API requests answered, by method, route pattern (\"unmatched\" for unknown paths) and status code.",
	}, []string{"method", "route", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "scangate_http_request_duration_seconds",
		Help:    "Time from receiving an HTTP API request to its answer, uploads included, by method and route pattern.",
		Buckets: httpBuckets,
	}, []string{"method", "route"})
	m.scans = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scangate_scans_total",
		Help: "Files this scanner gave a final verdict, by process_info.result (result) and scan_all_result_a (verdict).",
	}, []string{"result", "verdict"})
	m.scanDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "scangate_scan_duration_seconds",
		Help:    "Scan time of each verdict this scanner gave (scan_results.total_time).",
		Buckets: scanBuckets,
	})
	m.engineTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "scangate_engine_scan_duration_seconds",
		Help:    "Time one engine took on one file or archive member, by engine id.",
		Buckets: engineBuckets,
	}, []string{"engine"})
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scangate_webhook_deliveries_total",
		Help: "Webhook delivery attempts and their outcome (delivered, retry, failed, gone), by kind (callback, sanitized).",
	}, []string{"kind", "outcome"})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.uploads, m.uploadBytes, m.httpRequests, m.httpDuration,
		m.scans, m.scanDuration, m.engineTime, m.webhooks,
	)
	return m
}

// Registry is the node's registry (nil for a nil Metrics).
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in the Prometheus text (or OpenMetrics)
// format. A nil Metrics serves an empty registry.
func (m *Metrics) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	if m != nil {
		reg = m.reg
	}
	// A collector that fails (JetStream not answering) leaves its series
	// out; the rest of the scrape still succeeds.
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, EnableOpenMetrics: true})
}

// BuildInfo exports scangate_build_info{version} = 1, so dashboards can
// tell which version each process runs.
func (m *Metrics) BuildInfo(version string) {
	if m == nil {
		return
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "scangate_build_info",
		Help:        "Always 1; the version label is the scangate version this process runs.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	g.Set(1)
	_ = m.reg.Register(g)
}

// Upload counts one accepted upload of n bytes.
func (m *Metrics) Upload(kind string, n int64) {
	if m == nil {
		return
	}
	m.uploads.WithLabelValues(kind).Inc()
	m.uploadBytes.WithLabelValues(kind).Add(float64(n))
}

// HTTPRequest counts one answered API request. route must be a route
// pattern (or "unmatched"), never a raw path.
func (m *Metrics) HTTPRequest(method, route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.httpRequests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(method, route).Observe(d.Seconds())
}

// Scan counts one final verdict: process_info.result, scan_all_result_a
// and how long the scan took.
func (m *Metrics) Scan(result, verdict string, d time.Duration) {
	if m == nil {
		return
	}
	m.scans.WithLabelValues(result, verdict).Inc()
	m.scanDuration.Observe(d.Seconds())
}

// Engine records how long engine (its eng_id) took on one input.
func (m *Metrics) Engine(engine string, d time.Duration) {
	if m == nil {
		return
	}
	m.engineTime.WithLabelValues(engine).Observe(d.Seconds())
}

// Webhook counts one delivery outcome of kind (callback or sanitized).
func (m *Metrics) Webhook(kind, outcome string) {
	if m == nil {
		return
	}
	m.webhooks.WithLabelValues(kind, outcome).Inc()
}

// WatchAssemblerSessions exports scangate_assembler_sessions_open, read
// from open at scrape time (it must be cheap: a counter, not a scan).
func (m *Metrics) WatchAssemblerSessions(open func() float64) {
	if m == nil {
		return
	}
	_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "scangate_assembler_sessions_open",
		Help: "Upload sessions (multipart or chunked) this assembler holds open: still taking parts, not complete, aborted or expired.",
	}, open))
}
