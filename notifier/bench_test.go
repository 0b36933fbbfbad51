package notifier

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/result"
)

// BenchmarkDeliveries: callbacks per second to a fast local receiver, and
// the p50/p99 time from scan-done to the first delivery attempt arriving:
//
//	go test -run '^$' -bench Deliveries -benchtime 1x ./notifier/
func BenchmarkDeliveries(b *testing.B) {
	const n = 2000
	bs := newBus(b)
	cfg := testConfig(b)
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var lat []time.Duration
	done := make(chan struct{})
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var res struct {
			DataID string `json:"data_id"`
		}
		json.Unmarshal(body, &res)
		mu.Lock()
		defer mu.Unlock()
		if t0, ok := sent[res.DataID]; ok {
			lat = append(lat, time.Since(t0))
			delete(sent, res.DataID)
			if len(lat) == n {
				close(done)
			}
		}
	}))
	defer receiver.Close()

	ctx := context.Background()
	store := result.Store{KV: bs.Results}
	idl := make([]string, n)
	for i := range idl {
		idl[i] = ids.New()
		rec := result.New(idl[i], 5, events.Hashes{}, events.FileMeta{CallbackURL: receiver.URL}, time.Now(), result.InProgress)
		rec.Finish(result.NoThreat, nil, time.Now(), time.Now())
		if _, err := store.Put(ctx, rec, 0); err != nil {
			b.Fatal(err)
		}
	}
	nt, err := New(bs, cfg, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go nt.Run(runCtx)

	b.ResetTimer()
	t0 := time.Now()
	for _, id := range idl {
		mu.Lock()
		sent[id] = time.Now()
		mu.Unlock()
		announce(b, bs, &events.ScanDone{DataID: id, CallbackURL: receiver.URL}, id)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("only %d of %d delivered", len(lat), n)
	}
	elapsed := time.Since(t0)
	slices.Sort(lat)
	b.ReportMetric(n/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
}
