package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The callback is retried until the receiver takes it, under one
// webhook-id, each attempt signed so that a Standard Webhooks library
// verifies it, and its delivery state is served.
func TestCallbackRetriedAndSigned(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	verifier, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}

	type attempt struct {
		id       string
		verifyOK error
		body     map[string]any
	}
	var mu sync.Mutex
	var attempts []attempt
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a := attempt{id: r.Header.Get("webhook-id"), verifyOK: verifier.Verify(body, r.Header)}
		json.Unmarshal(body, &a.body)
		mu.Lock()
		attempts = append(attempts, a)
		n := len(attempts)
		mu.Unlock()
		if n <= 2 {
			http.Error(w, "not yet", http.StatusInternalServerError)
		}
	}))
	defer receiver.Close()

	cfg := testConfig(t)
	cfg.Webhooks.Secret = secret
	n := startNode(t, cfg)
	id := mustUpload(t, n.URL(""), eicar(), map[string]string{"callbackurl": receiver.URL + "/scan-done?x=1"})

	var state map[string]any
	waitFor(t, "the callback to be delivered", func() bool {
		getJSON(t, n.URL("/file/webhook/"+id), &state)
		return state["status_code"] == float64(200)
	})
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 3 {
		t.Fatalf("receiver saw %d attempts, want 3 (two failures, then success)", len(attempts))
	}
	for i, a := range attempts {
		if a.id == "" || a.id != attempts[0].id {
			t.Errorf("attempt %d: webhook-id %q, want the same non-empty id on every attempt (%q)", i, a.id, attempts[0].id)
		}
		if a.verifyOK != nil {
			t.Errorf("attempt %d: signature does not verify: %v", i, a.verifyOK)
		}
		if a.body["data_id"] != id || path(a.body, "scan_results", "scan_all_result_i") != float64(1) {
			t.Errorf("attempt %d: body is not the final result: %v", i, a.body)
		}
	}
	if state["attempts"] != float64(3) || state["url"] != receiver.URL+"/scan-done" /* the query may hold a token: never shown */ || state["data_id"] != id {
		t.Errorf("GET /file/webhook: %v", state)
	}
}

// A receiver that answers 503 with Retry-After is not asked again sooner;
// a delivery parked as failed is replayed on request.
func TestRetryAfterAndReplay(t *testing.T) {
	var mu sync.Mutex
	mode := "busy"
	hits := 0
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		hits++
		switch mode {
		case "busy":
			w.Header().Set("Retry-After", "3")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case "down":
			http.Error(w, "down", http.StatusInternalServerError)
		}
	}))
	defer receiver.Close()
	cfg := testConfig(t)
	cfg.Webhooks.MaxAttempts = 2
	withAccounts(t, cfg) // replay is for admins
	n := startNode(t, cfg)
	id := mustUpload(t, n.URL(""), []byte("hello"), map[string]string{"callbackurl": receiver.URL})

	var st map[string]any
	waitFor(t, "the first attempt", func() bool {
		getJSON(t, n.URL("/file/webhook/"+id), &st)
		return st["attempts"] == float64(1) && st["next_attempt"] != ""
	})
	reqAt, _ := time.Parse(time.RFC3339Nano, str(st["request_time"]))
	nextAt, _ := time.Parse(time.RFC3339Nano, str(st["next_attempt"]))
	if nextAt.Sub(reqAt) < 3*time.Second {
		t.Errorf("Retry-After: 3 ignored: next attempt %v after the first (retry interval is 50ms)", nextAt.Sub(reqAt))
	}
	mu.Lock()
	mode = "down"
	mu.Unlock()
	waitFor(t, "the delivery to be parked as failed", func() bool {
		getJSON(t, n.URL("/file/webhook/"+id), &st)
		return st["state"] == "failed"
	})
	mu.Lock()
	mode = "up"
	before := hits
	mu.Unlock()
	req, _ := http.NewRequest(http.MethodPost, n.URL("/file/webhook/"+id+"/replay"), nil)
	req.Header.Set("apikey", adminKey)
	if code, out := do(t, req); code != 200 || out[id] != "replaying" {
		t.Fatalf("replay: %d %v", code, out)
	}
	waitFor(t, "the replayed delivery", func() bool {
		getJSON(t, n.URL("/file/webhook/"+id), &st)
		return st["state"] == "delivered"
	})
	mu.Lock()
	defer mu.Unlock()
	if hits != before+1 || st["attempts"] != float64(1) {
		t.Errorf("replay: %d new requests, state %v", hits-before, st)
	}
}
