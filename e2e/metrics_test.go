package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scangate/scangate/internal/node"
)

// scrape is one read of a /metrics endpoint.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t testing.TB, url string) scrape {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: not the Prometheus text format: %v", url, err)
	}
	return fams
}

// value is the series of name whose labels include the given pairs
// ("kind", "file", ...): a counter's or gauge's value, a histogram's
// sample count. Several matching series are added up.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	f, ok := s[name]
	if !ok {
		return 0, false
	}
	found, sum := false, 0.0
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, found
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		ok := false
		for _, l := range m.GetLabel() {
			if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// want checks that the series exists with exactly v.
func (s scrape) want(t testing.TB, where string, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := s.value(name, labels...)
	if !ok || got != v {
		t.Errorf("%s: %s%v = %v (present: %v), want %v", where, name, labels, got, ok, v)
	}
}

// The API and the ops address serve the node's metrics: uploads of each
// kind, requests by route, verdicts, engine times, webhook outcomes,
// queue depth, blob store size and open upload sessions, beside the Go
// runtime's own; and both answer the probes.
func TestMetricsAndProbes(t *testing.T) {
	var calls atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if calls.Add(1) == 1 {
			http.Error(w, "not yet", http.StatusInternalServerError) // one retry, then delivered
		}
	}))
	defer receiver.Close()
	cfg := testConfig(t)
	cfg.Ops.Listen = "127.0.0.1:0"
	n := startNode(t, cfg)
	base, ops := n.URL(""), "http://"+n.OpsAddr().String()

	// A whole infected file with a callback, under the client's request id.
	req, _ := http.NewRequest(http.MethodPost, base+"/file", bytes.NewReader(eicar()))
	req.Header.Set("callbackurl", receiver.URL+"/done")
	req.Header.Set("X-Request-ID", "e2e-metrics-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var infected struct {
		DataID string `json:"data_id"`
	}
	decodeBody(t, resp, &infected)
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-ID") != "e2e-metrics-1" {
		t.Fatalf("upload: %d, X-Request-ID %q", resp.StatusCode, resp.Header.Get("X-Request-ID"))
	}
	// A clean file too large to travel inline: it lands in the blob store.
	clean := randomBytes(t, 100_000)
	dataIDs := []string{infected.DataID, mustUpload(t, base, clean, nil)}
	// Two sequential chunks.
	chunked := randomBytes(t, 2000)
	first := mustUpload(t, base, chunked[:1000], map[string]string{"X-File-Size": "2000"})
	mustUpload(t, base, chunked[1000:], map[string]string{"X-File-ID": first})
	dataIDs = append(dataIDs, first)
	// A multipart session: open while its parts come in, closed after.
	multi := randomBytes(t, 2000)
	session := openMultipart(t, base, 2000, nil)
	dataIDs = append(dataIDs, session)
	sessionsOpen := func() float64 {
		v, _ := scrapeMetrics(t, base+"/metrics").value("scangate_assembler_sessions_open")
		return v
	}
	waitFor(t, "one open session", func() bool { return sessionsOpen() == 1 })
	for off := 0; off < 2000; off += 1000 {
		if code, out := sendPart(t, base, session, int64(off), multi[off:off+1000], 2000); code != 200 {
			t.Fatalf("part at %d: %d %v", off, code, out)
		}
	}
	waitFor(t, "the session to close", func() bool { return sessionsOpen() == 0 })

	verdicts := map[[2]string]float64{}
	for _, id := range dataIDs {
		r := waitResult(t, base, id)
		verdicts[[2]string{str(path(r, "process_info", "result")), str(path(r, "scan_results", "scan_all_result_a"))}]++
	}
	if len(verdicts) != 2 {
		t.Fatalf("want the infected and the clean verdicts, got %v", verdicts)
	}
	getJSON(t, base+"/no/such/path", nil)

	// Verdicts, webhook outcomes and the blob store's size are counted a
	// moment after they are visible through the API: poll for them.
	var m scrape
	waitFor(t, "scans, webhook and blob store in /metrics", func() bool {
		m = scrapeMetrics(t, base+"/metrics")
		scans, _ := m.value("scangate_scans_total")
		delivered, _ := m.value("scangate_webhook_deliveries_total", "kind", "callback", "outcome", "delivered")
		blobs, _ := m.value("scangate_blob_store_bytes", "store", "fs")
		pending, _ := m.value("scangate_queue_pending_messages", "stream", "FILES")
		return scans == 4 && delivered == 1 && blobs >= float64(len(clean)) && pending == 0
	})
	const api = "API /metrics"
	m.want(t, api, 2, "scangate_uploads_total", "kind", "file")
	m.want(t, api, float64(len(eicar())+len(clean)), "scangate_upload_bytes_total", "kind", "file")
	m.want(t, api, 2, "scangate_uploads_total", "kind", "chunk")
	m.want(t, api, 2000, "scangate_upload_bytes_total", "kind", "chunk")
	m.want(t, api, 2, "scangate_uploads_total", "kind", "part")
	m.want(t, api, 2000, "scangate_upload_bytes_total", "kind", "part")
	m.want(t, api, 4, "scangate_http_requests_total", "method", "POST", "route", "/file", "code", "200")
	m.want(t, api, 4, "scangate_http_request_duration_seconds", "method", "POST", "route", "/file")
	m.want(t, api, 2, "scangate_http_requests_total", "method", "POST", "route", "/file/multipart/:id", "code", "200")
	m.want(t, api, 1, "scangate_http_requests_total", "method", "GET", "route", "unmatched", "code", "404")
	for v, count := range verdicts {
		m.want(t, api, count, "scangate_scans_total", "result", v[0], "verdict", v[1])
	}
	m.want(t, api, 4, "scangate_scan_duration_seconds")
	if v, _ := m.value("scangate_engine_scan_duration_seconds", "engine", "signatures"); v < 4 {
		t.Errorf("signatures engine timed %v times, want at least once per file", v)
	}
	m.want(t, api, 1, "scangate_webhook_deliveries_total", "kind", "callback", "outcome", "retry")
	m.want(t, api, 1, "scangate_build_info", "version", "test")
	for _, s := range []string{"UPLOADS", "FILES", "RESULTS", "SCANS"} {
		for _, name := range []string{"scangate_stream_messages", "scangate_queue_pending_messages", "scangate_queue_ack_pending_messages"} {
			if _, ok := m.value(name, "stream", s); !ok {
				t.Errorf("%s{stream=%q} missing", name, s)
			}
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := m[name]; !ok {
			t.Errorf("%s missing: the Go and process collectors belong in every scrape", name)
		}
	}
	// Raw paths never become label values.
	for _, s := range m["scangate_http_requests_total"].GetMetric() {
		for _, l := range s.GetLabel() {
			if strings.Contains(l.GetValue(), "/no/such") || strings.Contains(l.GetValue(), infected.DataID) {
				t.Errorf("label %s=%q holds a raw path", l.GetName(), l.GetValue())
			}
		}
	}

	// The ops address serves the same registry and the probes.
	o := scrapeMetrics(t, ops+"/metrics")
	o.want(t, "ops /metrics", 2, "scangate_uploads_total", "kind", "file")
	o.want(t, "ops /metrics", 4, "scangate_scans_total")
	if code := getJSON(t, ops+"/livez", nil); code != 200 {
		t.Errorf("ops /livez: %d", code)
	}
	for _, url := range []string{ops + "/readyz?verbose=true", base + "/readyz?verbose=true"} {
		var ready map[string]any
		if code := getJSON(t, url, &ready); code != 200 || ready["status"] != "ok" {
			t.Errorf("%s: %d %v", url, code, ready)
		}
		for _, c := range []string{"nats", "jetstream", "store", "disk"} {
			if path(ready, "checks", c) != "ok" {
				t.Errorf("%s: check %s: %v", url, c, path(ready, "checks", c))
			}
		}
	}
}

func decodeBody(t testing.TB, resp *http.Response, out any) {
	t.Helper()
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("bad JSON %q: %v", raw, err)
	}
}

// fakeClamd answers VERSION and PING like clamd, or, when hangUp is set,
// accepts connections and closes them at once: a clamd that is up but
// broken.
type fakeClamd struct {
	ln     net.Listener
	hangUp atomic.Bool
}

func startFakeClamd(t testing.TB) *fakeClamd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeClamd{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(conn)
		}
	}()
	return f
}

func (f *fakeClamd) serve(conn net.Conn) {
	defer conn.Close()
	if f.hangUp.Load() {
		return
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cmd, err := bufio.NewReader(conn).ReadString(0)
	if err != nil {
		return
	}
	switch strings.TrimSuffix(cmd, "\x00") {
	case "zPING":
		_, _ = io.WriteString(conn, "PONG\x00")
	case "zVERSION":
		_, _ = io.WriteString(conn, "ClamAV 1.4.6/27000/Fri Nov 20 08:00:00 2026\x00")
	}
}

// A scanner process has no HTTP API: its ops address tells an
// orchestrator whether it can scan, and that includes clamd answering.
func TestOpsReadyzOfScannerFollowsClamd(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATS.Listen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	hub, err := node.Start(context.Background(), cfg, []node.Role{node.Notifier}, "test", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })

	clamd := startFakeClamd(t)
	c := testConfig(t)
	c.NATS.URL = hub.NATSURL()
	c.Engines.ClamAV.Address = "tcp://" + clamd.ln.Addr().String()
	c.Engines.ClamAV.Timeout = time.Second
	c.Ops.Listen = "127.0.0.1:0"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	sc, err := node.Start(context.Background(), c, []node.Role{node.Scanner}, "test", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Close() })
	if sc.Addr() != nil {
		t.Fatal("a scanner-only process has an HTTP API")
	}
	ops := "http://" + sc.OpsAddr().String()

	readyz := func(what string, want int) {
		t.Helper()
		var r map[string]any
		code := getJSON(t, ops+"/readyz?verbose=true", &r)
		clamav := str(path(r, "checks", "clamav"))
		if code != want || (want == 200) != (clamav == "ok") || path(r, "checks", "jetstream") != "ok" {
			t.Errorf("%s: /readyz %d %v, want %d", what, code, r, want)
		}
		if code := getJSON(t, ops+"/livez", nil); code != 200 {
			t.Errorf("%s: /livez %d: the process is alive whatever clamd does", what, code)
		}
	}
	readyz("clamd answering", 200)
	clamd.hangUp.Store(true)
	readyz("clamd closing every connection", 503)
	clamd.hangUp.Store(false)
	readyz("clamd back", 200)
	clamd.ln.Close()
	readyz("nothing listening", 503)

	// The queue depth is visible from a scanner's own address.
	if _, ok := scrapeMetrics(t, ops+"/metrics").value("scangate_queue_pending_messages", "stream", "FILES"); !ok {
		t.Error("scanner ops /metrics lacks the FILES queue depth")
	}
}
