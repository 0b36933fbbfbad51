package e2e

// End-to-end tests against a three-node JetStream cluster run in process
// (internal/clustertest). Every role runs on a node of its own with its own
// data directory, as in a deployment over several hosts; the tests then take
// roles and cluster nodes away mid-load and check what clients and webhook
// receivers see.
//
// The loss test runs a short load by default; SCANGATE_SOAK=1 runs a longer
// one.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/internal/clustertest"
	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
)

// clusterRig is a scangate deployment over many nodes against one
// three-node JetStream cluster, with a webhook receiver.
type clusterRig struct {
	t    testing.TB
	c    *clustertest.Cluster
	hook *hookLog
	js   jetstream.JetStream // the test's own view of the streams
}

func newClusterRig(t testing.TB) *clusterRig {
	t.Helper()
	c := clustertest.Start(t, 3)
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &clusterRig{t: t, c: c, hook: newHookLog(t), js: js}
}

// roleNode is one scangate process of the deployment.
type roleNode struct {
	*node.Node
	name    string
	dir     string
	stopped atomic.Bool
}

// start runs roles on a node of their own, with a fresh data directory.
func (r *clusterRig) start(name string, roles ...node.Role) *roleNode {
	r.t.Helper()
	return r.startIn(name, r.t.TempDir(), roles...)
}

// startIn runs roles on a node whose data directory is dir: a node started
// again in the directory of one that died finds what that one left there.
func (r *clusterRig) startIn(name, dir string, roles ...node.Role) *roleNode {
	r.t.Helper()
	n, err := node.Start(context.Background(), r.config(dir), roles, "test", nodeLog{r.t, name})
	if err != nil {
		r.t.Fatalf("start %s: %v", name, err)
	}
	rn := &roleNode{Node: n, name: name, dir: dir}
	r.t.Cleanup(rn.stop)
	return rn
}

// config is a node's configuration: the cluster, three replicas of
// everything, uploaded bytes in JetStream.
func (r *clusterRig) config(dir string) *config.Config {
	r.t.Helper()
	cfg := testConfig(r.t)
	cfg.DataDir = dir
	cfg.NATS.URL = r.c.URLs()
	cfg.NATS.Replicas = 3
	cfg.Blob.Store = "jetstream"
	if err := cfg.Validate(); err != nil {
		r.t.Fatal(err)
	}
	return cfg
}

// stop shuts the node down in order, as a supervisor's SIGTERM does.
func (n *roleNode) stop() {
	if n.stopped.CompareAndSwap(false, true) {
		_ = n.Close()
	}
}

// kill ends the node the way a crash does: its NATS connection drops at
// once, with nothing drained and nothing acknowledged, so whatever it was
// working on is redelivered to a peer. Only then are its goroutines reaped.
func (n *roleNode) kill() {
	if n.stopped.CompareAndSwap(false, true) {
		n.Bus().NC.Close()
		_ = n.Close()
	}
}

// nodeLog sends a node's log lines to the test log, named.
type nodeLog struct {
	t    testing.TB
	name string
}

func (l nodeLog) Write(p []byte) (int, error) {
	l.t.Log(l.name + ": " + strings.TrimSpace(string(p)))
	return len(p), nil
}

// hookLog is a webhook receiver that records every delivery attempt. It
// refuses the first attempt for about one file in four with 503, so every
// run sees retries.
type hookLog struct {
	url      string
	mu       sync.Mutex
	attempts map[string][]hookAttempt // by data_id
}

type hookAttempt struct {
	webhookID string
	body      map[string]any
	status    int
}

func newHookLog(t testing.TB) *hookLog {
	h := &hookLog{attempts: map[string][]hookAttempt{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			http.Error(w, "not JSON", http.StatusBadRequest)
			return
		}
		id := str(body["data_id"])
		status := http.StatusOK
		h.mu.Lock()
		if len(h.attempts[id]) == 0 && refusedFirst(id) {
			status = http.StatusServiceUnavailable
		}
		h.attempts[id] = append(h.attempts[id], hookAttempt{webhookID: r.Header.Get("webhook-id"), body: body, status: status})
		h.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/scan-done"
	return h
}

// refusedFirst picks the files whose first webhook attempt is refused.
func refusedFirst(id string) bool {
	return id != "" && strings.ContainsRune("048c", rune(id[len(id)-1]))
}

// delivered is the body the receiver accepted for id, if any.
func (h *hookLog) delivered(id string) map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.attempts[id] {
		if a.status == http.StatusOK {
			return a.body
		}
	}
	return nil
}

// of is every attempt made for id.
func (h *hookLog) of(id string) []hookAttempt {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookAttempt(nil), h.attempts[id]...)
}

// finalsObserver counts, per file, the scan-done announcements stored in
// SCANS and the distinct final results written to KV results. A file
// finished twice shows up as two of either.
type finalsObserver struct {
	mu        sync.Mutex
	announced map[string]map[uint64]bool // data_id → SCANS stream sequences
	finals    map[string]map[string]bool // data_id → distinct final scan_results (JSON)
}

// observeFinals starts watching; the topology must already be declared
// (a role node has started). It has its own durable consumer on SCANS, so
// it sees every announcement the notifier sees.
func (r *clusterRig) observeFinals() *finalsObserver {
	t := r.t
	t.Helper()
	o := &finalsObserver{announced: map[string]map[uint64]bool{}, finals: map[string]map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	js := r.js
	openCtx, openCancel := context.WithTimeout(ctx, 30*time.Second)
	defer openCancel()
	cons, err := js.CreateOrUpdateConsumer(openCtx, events.StreamScans, jetstream.ConsumerConfig{
		Durable:       "test-finals-observer",
		AckPolicy:     jetstream.AckExplicitPolicy,
		FilterSubject: events.ScanDoneSubjects,
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if md, err := m.Metadata(); err == nil {
			id := strings.TrimPrefix(m.Subject(), strings.TrimSuffix(events.ScanDoneSubjects, ">"))
			o.mu.Lock()
			if o.announced[id] == nil {
				o.announced[id] = map[uint64]bool{}
			}
			o.announced[id][md.Sequence.Stream] = true
			o.mu.Unlock()
		}
		_ = m.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	kv, err := js.KeyValue(openCtx, events.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for e := range w.Updates() {
			// Archive children and pages have dotted keys; files do not.
			if e == nil || e.Operation() != jetstream.KeyValuePut || strings.Contains(e.Key(), ".") {
				continue
			}
			var rec struct {
				Result struct {
					ScanResults map[string]any `json:"scan_results"`
				} `json:"result"`
			}
			if json.Unmarshal(e.Value(), &rec) != nil || rec.Result.ScanResults["progress_percentage"] != float64(100) {
				continue
			}
			canon, _ := json.Marshal(rec.Result.ScanResults) // map keys sorted
			o.mu.Lock()
			if o.finals[e.Key()] == nil {
				o.finals[e.Key()] = map[string]bool{}
			}
			o.finals[e.Key()][string(canon)] = true
			o.mu.Unlock()
		}
	}()
	return o
}

// counts is how many announcements and distinct finals id has had.
func (o *finalsObserver) counts(id string) (announced, finals int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.announced[id]), len(o.finals[id])
}

// waitSeen waits until every id has been announced and has a final.
func (o *finalsObserver) waitSeen(t *testing.T, ids []string) {
	t.Helper()
	waitUntil(t, "every file announced and final in KV", 60*time.Second, func() bool {
		for _, id := range ids {
			if a, f := o.counts(id); a == 0 || f == 0 {
				return false
			}
		}
		return true
	})
}

// diagnose logs where a file that never got its final result stands: its
// result events, its recorder's consumer, its work item, its record.
func (r *clusterRig) diagnose(base, id string) {
	t := r.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res map[string]any
	getJSON(t, base+"/file/"+id, &res)
	t.Logf("%s: GET /file: scan_results %v", id, res["scan_results"])
	p := events.Partition(id, bus.DefaultPartitions) // testConfig keeps the default
	dump := func(stream, subject string) {
		c, err := r.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
		if err != nil {
			t.Logf("%s: %s %s: %v", id, stream, subject, err)
			return
		}
		for {
			m, err := c.Next(jetstream.FetchMaxWait(time.Second))
			if err != nil {
				return
			}
			md, _ := m.Metadata()
			var ev struct {
				Kind string `json:"kind"`
			}
			_ = json.Unmarshal(m.Data(), &ev)
			t.Logf("%s: %s seq %d %s kind=%q msg-id=%q", id, stream, md.Sequence.Stream, m.Subject(), ev.Kind, m.Headers().Get(nats.MsgIdHdr))
		}
	}
	dump(events.StreamResults, events.ResultSubject(p, id))
	if st, err := r.js.Stream(ctx, events.StreamFiles); err == nil {
		m, err := st.GetLastMsgForSubject(ctx, "file.*."+id)
		if err != nil {
			t.Logf("%s: FILES: %v", id, err)
		} else {
			t.Logf("%s: FILES seq %d %s", id, m.Sequence, m.Subject)
		}
	}
	for _, c := range []struct{ stream, name string }{
		{events.StreamResults, events.RecorderConsumer(p)}, {events.StreamFiles, events.ConsumerScanners},
	} {
		if cons, err := r.js.Consumer(ctx, c.stream, c.name); err != nil {
			t.Logf("%s: consumer %s: %v", id, c.name, err)
		} else if info, err := cons.Info(ctx); err == nil {
			t.Logf("%s: consumer %s: pending %d, ack pending %d, redelivered %d, delivered %d, ack floor %d, groups %+v",
				id, c.name, info.NumPending, info.NumAckPending, info.NumRedelivered, info.Delivered.Stream, info.AckFloor.Stream, info.PriorityGroups)
		}
	}
	if kv, err := r.js.KeyValue(ctx, events.BucketResults); err == nil {
		if e, err := kv.Get(ctx, id); err == nil {
			t.Logf("%s: KV results rev %d: %.300s", id, e.Revision(), e.Value())
		} else {
			t.Logf("%s: KV results: %v", id, err)
		}
	}
}

// httpClient bounds every request, so a hung answer fails the test rather
// than stalling it.
var httpClient = &http.Client{Timeout: 60 * time.Second}

// answer is what a client saw for one request.
type answer struct {
	code       int
	retryAfter string
	body       map[string]any
	err        error // the request got no answer at all
}

// send makes a request without failing the test, for client goroutines.
func send(method, url string, body []byte, headers map[string]string) answer {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// retryPause is how long a client waits before retrying a 503: what
// Retry-After asks, capped so tests stay short.
func retryPause(a answer) time.Duration {
	secs, err := strconv.Atoi(a.retryAfter)
	if err != nil || secs <= 0 {
		return 100 * time.Millisecond
	}
	return min(time.Duration(secs)*time.Second, time.Second)
}

// checkWebhook checks what the receiver got for id against the result a
// client reads: the same verdict and the same scan_results, under one
// webhook-id on every attempt.
func checkWebhook(t *testing.T, h *hookLog, id string, result map[string]any) {
	t.Helper()
	body := h.delivered(id)
	if body == nil {
		t.Errorf("%s: no webhook delivered", id)
		return
	}
	if got, want := path(body, "scan_results", "scan_all_result_i"), path(result, "scan_results", "scan_all_result_i"); got != want {
		t.Errorf("%s: webhook scan_all_result_i %v, GET /file says %v", id, got, want)
	}
	if !reflect.DeepEqual(body["scan_results"], result["scan_results"]) {
		t.Errorf("%s: webhook scan_results differ from GET /file:\nwebhook %v\nGET     %v", id, body["scan_results"], result["scan_results"])
	}
	ids := map[string]bool{}
	for _, a := range h.of(id) {
		ids[a.webhookID] = true
	}
	if len(ids) != 1 || ids[""] {
		t.Errorf("%s: webhook-ids %v over %d attempts, want one", id, ids, len(h.of(id)))
	}
}

// An operator starts every process of a new deployment at once, against a
// cluster that has never held scangate's streams: every one comes up, since
// each declares the same topology and declaring it is idempotent.
func TestClusterRolesStartTogether(t *testing.T) {
	r := newClusterRig(t)
	roles := []node.Role{node.Ingest, node.Ingest, node.Assembler, node.Assembler, node.Scanner, node.Notifier}
	nodes := make([]*node.Node, len(roles))
	errs := make([]error, len(roles))
	var wg sync.WaitGroup
	for i, role := range roles {
		cfg := r.config(t.TempDir())
		wg.Go(func() {
			nodes[i], errs[i] = node.Start(context.Background(), cfg, []node.Role{role}, "test", nodeLog{t, fmt.Sprintf("%s-%d", role, i)})
		})
	}
	wg.Wait()
	for i, n := range nodes {
		if n != nil {
			t.Cleanup(func() { _ = n.Close() })
		}
		if errs[i] != nil {
			t.Errorf("%s (node %d) did not start: %v", roles[i], i, errs[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	body := randomBytes(t, 4096)
	id := mustUpload(t, nodes[0].URL(""), body, nil)
	res := finalResult(t, nodes[1].URL(""), id, time.Now().Add(60*time.Second))
	if res == nil || path(res, "file_info", "sha256") != digestsOf(body).sha256 {
		t.Errorf("a file through the deployment started at once: %v", res)
	}
}

// Every role on nodes of its own against a three-node cluster, two of each
// where two can run: files posted to either ingest are read from the other,
// a multipart upload's parts are spread over both ingests, and every file
// gets one final result and one webhook (under one webhook-id, retries
// included) that says what GET /file says.
func TestClusterRolesOnManyNodes(t *testing.T) {
	r := newClusterRig(t)
	ingests := []*roleNode{r.start("ingest-1", node.Ingest), r.start("ingest-2", node.Ingest)}
	r.start("assembler-1", node.Assembler)
	r.start("assembler-2", node.Assembler)
	r.start("scanner-1", node.Scanner)
	r.start("scanner-2", node.Scanner)
	r.start("notifier", node.Notifier)
	obs := r.observeFinals()

	type file struct {
		id       string
		sha256   string
		infected bool
		readFrom *roleNode
	}
	const count = 60
	files := make([]file, count)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < count; i = int(next.Add(1) - 1) {
				body := randomBytes(t, 1024+rand.IntN(7*1024))
				infected := i%10 == 0
				if infected {
					copy(body, eicar()) // the built-in signature matches at offset 0
				}
				to, other := ingests[i%2], ingests[(i+1)%2]
				a := send(http.MethodPost, to.URL("/file"), body, map[string]string{"callbackurl": r.hook.url})
				if a.err != nil || a.code != 200 {
					t.Errorf("file %d to %s: %d %v %v", i, to.name, a.code, a.body, a.err)
					continue
				}
				files[i] = file{id: str(a.body["data_id"]), sha256: digestsOf(body).sha256, infected: infected, readFrom: other}
			}
		})
	}

	// One multipart upload, its parts alternating between the ingests and
	// sent at once, its status read from the ingest that did not open it.
	const part, parts = 64 << 10, 8
	big := randomBytes(t, part*parts)
	mpID := openMultipart(t, ingests[0].URL(""), int64(len(big)), map[string]string{"callbackurl": r.hook.url})
	for i := range parts {
		wg.Go(func() {
			a := send(http.MethodPost, ingests[i%2].URL("/file/multipart/"+mpID), big[i*part:(i+1)*part], map[string]string{
				"Content-Type":  "application/octet-stream",
				"content-range": fmt.Sprintf("%d-%d/%d", i*part, part, len(big)),
			})
			if a.err != nil || a.code != 200 {
				t.Errorf("part %d to %s: %d %v %v", i, ingests[i%2].name, a.code, a.body, a.err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	files = append(files, file{id: mpID, sha256: digestsOf(big).sha256, readFrom: ingests[1]})

	deadline := time.Now().Add(90 * time.Second)
	var ids []string
	for _, f := range files {
		ids = append(ids, f.id)
		res := finalResult(t, f.readFrom.URL(""), f.id, deadline)
		if res == nil {
			t.Errorf("%s: no final result", f.id)
			continue
		}
		if got := path(res, "file_info", "sha256"); got != f.sha256 {
			t.Errorf("%s: sha256 %v, want %s", f.id, got, f.sha256)
		}
		want := float64(0)
		if f.infected {
			want = 1
		}
		if got := path(res, "scan_results", "scan_all_result_i"); got != want {
			t.Errorf("%s: scan_all_result_i %v, want %v", f.id, got, want)
		}
		waitUntil(t, "the webhook of "+f.id, 60*time.Second, func() bool { return r.hook.delivered(f.id) != nil })
		checkWebhook(t, r.hook, f.id, res)
	}
	if st := sessionStatus(t, ingests[1].URL(""), mpID); st["status"] != "complete" {
		t.Errorf("multipart session read from the other ingest: %v", st)
	}
	retried := 0
	for _, id := range ids {
		if len(r.hook.of(id)) > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Error("no webhook was retried; the receiver refuses about one first attempt in four")
	}
	obs.waitSeen(t, ids)
	for _, id := range ids {
		if a, f := obs.counts(id); a != 1 || f != 1 {
			t.Errorf("%s: announced %d times, %d distinct final results; want one of each", id, a, f)
		}
	}
	t.Logf("%d files, %d webhooks retried", len(ids), retried)
}

// lossLoad is clients posting files to the ingests until total are
// accepted, retrying a file on 503 as a client honouring Retry-After does.
type lossLoad struct {
	mu        sync.Mutex
	accepted  map[string]acceptedFile
	refusals  map[string]int // "<status> <error>" → count
	noRetry   int            // 503s without Retry-After
	noAnswers []error        // requests that got no HTTP answer
	count     atomic.Int64
	phase     atomic.Value // what had happened to the deployment so far (string)
	done      chan struct{}
}

type acceptedFile struct {
	sha256 string
	phase  string // what had happened when it was answered 200
}

func runLossLoad(ctx context.Context, t *testing.T, ingests []*roleNode, hook string, clients, total int) *lossLoad {
	l := &lossLoad{accepted: map[string]acceptedFile{}, refusals: map[string]int{}, done: make(chan struct{})}
	l.phase.Store("all up")
	var slots atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for slot := slots.Add(1) - 1; slot < int64(total); slot = slots.Add(1) - 1 {
				body := randomBytes(t, 512+rand.IntN(16<<10))
				for try := 0; ctx.Err() == nil; try++ {
					ing := ingests[(c+try)%len(ingests)] // a retry may go to the other ingest
					a := send(http.MethodPost, ing.URL("/file"), body, map[string]string{"callbackurl": hook})
					if a.err == nil && a.code == 200 {
						l.mu.Lock()
						l.accepted[str(a.body["data_id"])] = acceptedFile{digestsOf(body).sha256, l.phase.Load().(string)}
						l.mu.Unlock()
						l.count.Add(1)
						break
					}
					l.mu.Lock()
					if a.err != nil {
						l.noAnswers = append(l.noAnswers, fmt.Errorf("%s: %w", ing.name, a.err))
					} else {
						l.refusals[fmt.Sprintf("%d %s", a.code, str(a.body["err"]))]++
						if a.code == http.StatusServiceUnavailable && a.retryAfter == "" {
							l.noRetry++
						}
					}
					l.mu.Unlock()
					select {
					case <-time.After(retryPause(a)):
					case <-ctx.Done():
					}
				}
			}
		})
	}
	go func() { wg.Wait(); close(l.done) }()
	return l
}

// waitAccepted waits until n files have been answered 200.
func (l *lossLoad) waitAccepted(t *testing.T, n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d files accepted", n), 90*time.Second, func() bool { return l.count.Load() >= int64(n) })
}

// Under load, a scanner and an assembler crash and the NATS meta leader
// goes down, then comes back. Every file answered 200 gets exactly one final
// result and its webhook; a request refused meanwhile is refused with 503
// and Retry-After, never blamed on the client.
func TestClusterSurvivesLosses(t *testing.T) {
	total, clients := 100, 4
	if os.Getenv("SCANGATE_SOAK") == "1" {
		total, clients = 2000, 8
	}
	r := newClusterRig(t)
	ingests := []*roleNode{r.start("ingest-1", node.Ingest), r.start("ingest-2", node.Ingest)}
	assemblers := []*roleNode{r.start("assembler-1", node.Assembler), r.start("assembler-2", node.Assembler)}
	scanners := []*roleNode{r.start("scanner-1", node.Scanner), r.start("scanner-2", node.Scanner)}
	r.start("notifier", node.Notifier)
	obs := r.observeFinals()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := runLossLoad(ctx, t, ingests, r.hook.url, clients, total)
	step := total / 5
	event := func(what string, do func()) {
		t.Logf("%d accepted: %s", load.count.Load(), what)
		load.phase.Store("during: " + what)
		do()
		load.phase.Store("after: " + what)
	}
	load.waitAccepted(t, step)
	event("killing scanner-1", scanners[0].kill)
	load.waitAccepted(t, 2*step)
	event("killing assembler-1", assemblers[0].kill)
	load.waitAccepted(t, 3*step)
	leader := r.c.Leader()
	event(fmt.Sprintf("killing NATS node %d (the meta leader)", leader), func() { r.c.Kill(leader) })
	load.waitAccepted(t, 4*step)
	event(fmt.Sprintf("restarting NATS node %d", leader), func() { r.c.Restart(leader) })
	select {
	case <-load.done:
	case <-time.After(max(2*time.Minute, time.Duration(total)*100*time.Millisecond)):
		t.Fatalf("load did not finish: %d of %d accepted", load.count.Load(), total)
	}

	load.mu.Lock()
	accepted := load.accepted
	load.mu.Unlock()
	deadline := time.Now().Add(90 * time.Second) // a crashed scanner's files come back after its ack wait
	var finals, lost, badHash, duplicates int
	var ids []string
	results := map[string]map[string]any{}
	for id, f := range accepted {
		ids = append(ids, id)
		res := finalResult(t, ingests[len(ids)%2].URL(""), id, deadline)
		if res == nil {
			lost++
			t.Errorf("%s: accepted (%s), no final result", id, f.phase)
			if lost <= 3 {
				r.diagnose(ingests[0].URL(""), id)
			}
			continue
		}
		finals++
		results[id] = res
		if path(res, "file_info", "sha256") != f.sha256 {
			badHash++
			t.Errorf("%s: sha256 %v, want %s", id, path(res, "file_info", "sha256"), f.sha256)
		}
	}
	waitUntil(t, "every final result's webhook", 60*time.Second, func() bool {
		for id := range results {
			if r.hook.delivered(id) == nil {
				return false
			}
		}
		return true
	})
	if lost == 0 {
		obs.waitSeen(t, ids)
	}
	attempts := 0
	for id, res := range results {
		checkWebhook(t, r.hook, id, res)
		attempts += len(r.hook.of(id))
		webhookIDs := map[string]bool{}
		for _, a := range r.hook.of(id) {
			webhookIDs[a.webhookID] = true
		}
		if a, f := obs.counts(id); a > 1 || f > 1 || len(webhookIDs) > 1 {
			duplicates++
			t.Errorf("%s: announced %d times, %d distinct finals, %d webhook-ids", id, a, f, len(webhookIDs))
		}
	}

	load.mu.Lock()
	defer load.mu.Unlock()
	t.Logf("accepted %d, final %d, lost %d, duplicates %d, wrong sha256 %d, webhook attempts %d for %d files",
		len(accepted), finals, lost, duplicates, badHash, attempts, len(results))
	t.Logf("refused meanwhile: %v (503 without Retry-After: %d); no answer at all: %d", load.refusals, load.noRetry, len(load.noAnswers))
	if lost != 0 || duplicates != 0 {
		t.Errorf("lost %d, duplicates %d; want none", lost, duplicates)
	}
	for what, n := range load.refusals {
		if !strings.HasPrefix(what, "503 ") {
			t.Errorf("%d requests refused with %q; a loss on the server side must be 503", n, what)
		}
	}
	if load.noRetry > 0 {
		t.Errorf("%d 503s without Retry-After", load.noRetry)
	}
	for _, err := range load.noAnswers {
		t.Errorf("a request got no answer: %v", err)
	}
}

// Assemblers crash and stop in turn, and come back in the data directory
// they left, while parts of several multipart sessions stream in: every
// part applied before a loss stays applied, and every session completes
// with the right bytes.
func TestClusterAssemblerKillLoop(t *testing.T) {
	r := newClusterRig(t)
	ingests := []*roleNode{r.start("ingest-1", node.Ingest), r.start("ingest-2", node.Ingest)}
	r.start("scanner", node.Scanner)
	assemblers := []*roleNode{
		r.start("assembler-1", node.Assembler), r.start("assembler-2", node.Assembler), r.start("assembler-3", node.Assembler),
	}

	const sessions, rounds, perRound, part = 4, 6, 4, 32 << 10
	const total = rounds * perRound * part
	type session struct {
		id    string
		file  []byte
		order []int // parts, shuffled: ranges stay fragmented until the end
	}
	ss := make([]session, sessions)
	for i := range ss {
		ss[i].file = randomBytes(t, total)
		ss[i].id = openMultipart(t, ingests[i%2].URL(""), total, nil)
		ss[i].order = rand.Perm(rounds * perRound)
	}
	// Which assembler holds a session's partition is the server's business,
	// but the log says how many sessions each loss moved, so a run that
	// never hit an owner is visible.
	owners := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var pins []string
		for _, s := range ss {
			pin := "?"
			cons, err := r.js.Consumer(ctx, events.StreamUploads, events.AssemblerConsumer(events.Partition(s.id, bus.DefaultPartitions)))
			if err == nil {
				if info, err := cons.Info(ctx); err == nil && len(info.PriorityGroups) > 0 {
					pin = info.PriorityGroups[0].PinnedClientID
				}
			}
			pins = append(pins, pin)
		}
		return pins
	}
	moved := 0
	sent := make([]int64, sessions) // bytes answered 200, per session
	refusals := map[string]int{}
	var mu sync.Mutex

	for round := range rounds {
		victim := assemblers[round%len(assemblers)]
		before := owners()
		var wg sync.WaitGroup
		for i := range ss {
			wg.Go(func() {
				for _, p := range ss[i].order[round*perRound : (round+1)*perRound] {
					off := int64(p * part)
					for try := 0; ; try++ {
						ing := ingests[(p+try)%2]
						a := send(http.MethodPost, ing.URL("/file/multipart/"+ss[i].id), ss[i].file[off:off+part], map[string]string{
							"Content-Type":  "application/octet-stream",
							"content-range": fmt.Sprintf("%d-%d/%d", off, part, total),
						})
						if a.err == nil && a.code == 200 {
							mu.Lock()
							sent[i] += part
							mu.Unlock()
							break
						}
						mu.Lock()
						refusals[fmt.Sprintf("%d %s %v", a.code, str(a.body["err"]), a.err)]++
						mu.Unlock()
						if a.err == nil && a.code != http.StatusServiceUnavailable || try > 100 {
							return // recorded; checked below
						}
						time.Sleep(retryPause(a)) // the client honours Retry-After, as a real one does
					}
				}
			})
		}
		// The loss lands while this round's parts are in flight.
		if round%2 == 0 {
			victim.kill()
		} else {
			victim.stop()
		}
		wg.Wait()
		t.Logf("round %d: %s gone; parts sent", round, victim.name)
		assemblers[round%len(assemblers)] = r.startIn(victim.name, victim.dir, node.Assembler)
		// Every part answered so far is applied by whichever assembler
		// owns its partition now.
		waitUntil(t, fmt.Sprintf("round %d's parts applied", round), 60*time.Second, func() bool {
			for i := range ss {
				mu.Lock()
				want := sent[i]
				mu.Unlock()
				st := sessionStatus(t, ingests[(i+round)%2].URL(""), ss[i].id)
				if st["status"] != "complete" && st["received_length"] != float64(want) {
					return false
				}
			}
			return true
		})
		after := owners()
		for i := range before {
			if before[i] != after[i] {
				moved++
			}
		}
	}
	t.Logf("%d losses moved a session's partition to another assembler %d times", rounds, moved)
	for what, n := range refusals {
		if !strings.HasPrefix(what, "503 ") {
			t.Errorf("%d parts answered %q", n, what)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for i, s := range ss {
		res := finalResult(t, ingests[i%2].URL(""), s.id, deadline)
		if res == nil {
			t.Errorf("session %d (%s): no final result; status %v", i, s.id, sessionStatus(t, ingests[0].URL(""), s.id))
			continue
		}
		if got, want := path(res, "file_info", "sha256"), digestsOf(s.file).sha256; got != want {
			t.Errorf("session %d (%s): sha256 %v, want %s", i, s.id, got, want)
		}
		if st := sessionStatus(t, ingests[(i+1)%2].URL(""), s.id); st["status"] != "complete" {
			t.Errorf("session %d (%s): %v", i, s.id, st)
		}
	}
	t.Logf("refusals during the losses: %v", refusals)
}
