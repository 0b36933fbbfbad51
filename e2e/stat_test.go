package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/scangate/scangate/internal/node"
	"github.com/scangate/scangate/pkg/result"
)

// engineFields is every field of a GET /stat/engines entry (also listed in
// each /stat/nodes status) and its JSON type; OPSWAT's clients require
// them all.
var engineFields = map[string]string{
	"eng_id": "string", "eng_name": "string", "eng_ver": "string", "eng_type": "string",
	"def_time": "string", "download_time": "string", "download_progress": "number",
	"active": "bool", "state": "string", "engine_type": "string", "type": "string",
}

// nodeFields is every field of a GET /stat/nodes status and its JSON type.
var nodeFields = map[string]string{
	"id": "string", "address": "string", "version": "string", "uptime": "number",
	"scan_queue": "number", "total_scan_queue": "number", "free_disk_space": "number",
	"total_disk_space": "number", "engines": "array",
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return "?"
}

// checkFields reports fields of obj missing or of the wrong JSON type.
func checkFields(t *testing.T, what string, obj map[string]any, want map[string]string) {
	t.Helper()
	for k, typ := range want {
		v, ok := obj[k]
		if !ok {
			t.Errorf("%s lacks %s: %v", what, k, obj)
			continue
		}
		if got := jsonType(v); got != typ {
			t.Errorf("%s: %s is %s %v, want a %s", what, k, got, v, typ)
		}
	}
}

// checkEngine checks an engine entry's fields and values.
func checkEngine(t *testing.T, e map[string]any) {
	t.Helper()
	checkFields(t, "engine "+str(e["eng_id"]), e, engineFields)
	if num(e["download_progress"]) != 100 || e["eng_type"] != "Bundled engine" || e["type"] != "engine" ||
		e["active"] != true {
		t.Errorf("engine entry %v", e)
	}
	for _, k := range []string{"def_time", "download_time"} {
		if _, err := time.Parse(result.TimeFormat, str(e[k])); err != nil {
			t.Errorf("engine %s: %s %q is not in the result time format: %v", str(e["eng_id"]), k, e[k], err)
		}
	}
}

// GET /stat/engines and GET /stat/nodes carry every field with its type;
// GET /stat/nodes lists each running scanner, and one stopped cleanly
// drops off at once.
func TestStatNodes(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.Blob.Store = "jetstream"
	n := startNode(t, cfg)

	var engines []map[string]any
	waitFor(t, "the scanner to register", func() bool {
		getJSON(t, n.URL("/stat/engines"), &engines)
		return len(engines) > 0
	})
	for _, e := range engines {
		checkEngine(t, e)
	}

	c := testConfig(t)
	c.NATS.URL = n.NATSURL()
	c.Blob.Store = "jetstream"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	second, err := node.Start(context.Background(), c, []node.Role{node.Scanner}, "test-2", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = second.Close()
		}
	})

	var nodes struct {
		Statuses []map[string]any `json:"statuses"`
	}
	waitFor(t, "two scanners in /stat/nodes", func() bool {
		if code := getJSON(t, n.URL("/stat/nodes"), &nodes); code != 200 {
			t.Fatalf("GET /stat/nodes: %d", code)
		}
		return len(nodes.Statuses) == 2
	})
	versions := map[string]bool{}
	for _, s := range nodes.Statuses {
		checkFields(t, "node "+str(s["id"]), s, nodeFields)
		versions[str(s["version"])] = true
		if str(s["id"]) == "" || str(s["address"]) == "" || num(s["uptime"]) < 0 || num(s["scan_queue"]) != 0 ||
			num(s["total_scan_queue"]) < 1 || num(s["free_disk_space"]) <= 0 ||
			num(s["total_disk_space"]) < num(s["free_disk_space"]) {
			t.Errorf("node status %v", s)
		}
		engs, _ := s["engines"].([]any)
		if len(engs) == 0 {
			t.Errorf("node %s lists no engines", str(s["id"]))
		}
		for _, e := range engs {
			m, _ := e.(map[string]any)
			checkEngine(t, m)
		}
	}
	if !versions["test"] || !versions["test-2"] {
		t.Errorf("versions %v, want test and test-2", versions)
	}

	// Stopped cleanly, the second scanner removes its entry: gone well
	// before the minute its entry would take to expire.
	stopped = true
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the stopped scanner to leave /stat/nodes", 10*time.Second, func() bool {
		getJSON(t, n.URL("/stat/nodes"), &nodes)
		return len(nodes.Statuses) == 1 && nodes.Statuses[0]["version"] == "test"
	})
}
