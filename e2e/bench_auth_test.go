package e2e

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAuthLookups: what identifying a caller costs. 32 clients poll
// GET /file/{id} of their own finished file for 3 s each way: without a
// key (anonymous), with a static key, and with a login session (one KV
// read per request). The figures are lookups per second and each way's
// ratio to anonymous, measured in the same run:
//
//	go test -run '^$' -bench AuthLookups -benchtime 1x ./e2e/
func BenchmarkAuthLookups(b *testing.B) {
	cfg := testConfig(b)
	cfg.Log.Level = "error"
	withAccounts(b, cfg)
	n := startNode(b, cfg)
	base := n.URL("")
	_, out, _ := call(b, "POST", base+"/login", "", []byte(`{"user":"alice","password":"secret"}`), nil)
	session := str(out["session_id"])
	if session == "" {
		b.Fatalf("login: %v", out)
	}
	ids := map[string]string{}
	for way, key := range map[string]string{"anonymous": "", "static key": aliceKey, "session": session} {
		_, out, _ := call(b, "POST", base+"/file", key, []byte("lookup target "+way), nil)
		ids[way] = str(out["data_id"])
		waitFor(b, "the verdict", func() bool {
			_, r, _ := call(b, "GET", base+"/file/"+ids[way], key, nil, nil)
			return path(r, "scan_results", "progress_percentage") == float64(100)
		})
	}
	rate := func(key, id string) float64 {
		const clients, period = 32, 3 * time.Second
		var done atomic.Int64
		stop := time.Now().Add(period)
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for time.Now().Before(stop) {
					req, _ := http.NewRequest("GET", base+"/file/"+id, nil)
					if key != "" {
						req.Header.Set("apikey", key)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("lookup: %d", resp.StatusCode)
						return
					}
					done.Add(1)
				}
			})
		}
		wg.Wait()
		return float64(done.Load()) / period.Seconds()
	}
	for range b.N {
		anon := rate("", ids["anonymous"])
		static := rate(aliceKey, ids["static key"])
		sess := rate(session, ids["session"])
		b.ReportMetric(anon, "anonymous/s")
		b.ReportMetric(static, "static-key/s")
		b.ReportMetric(sess, "session/s")
		b.ReportMetric(static/anon, "static/anonymous")
		b.ReportMetric(sess/anon, "session/anonymous")
	}
}
