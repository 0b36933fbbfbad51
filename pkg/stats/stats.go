// Package stats keeps the registry of live scanners and their engines
// (KV bucket "nodes", entries expire unless refreshed), for GET /stat/engines.
package stats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/bus"
)

// TTL is how long a scanner stays listed after its last refresh; scanners
// refresh every TTL/3.
const TTL = bus.NodeTTL

// EngineInfo is one entry of GET /stat/engines.
type EngineInfo struct {
	EngID      string `json:"eng_id"`
	EngName    string `json:"eng_name"`
	EngVer     string `json:"eng_ver"`
	DefTime    string `json:"def_time"`
	Active     bool   `json:"active"`
	State      string `json:"state"`
	EngineType string `json:"engine_type"`
	Type       string `json:"type"`
}

// Node is a scanner process as the registry lists it.
type Node struct {
	ID      string       `json:"id"`
	Version string       `json:"version"`
	Started time.Time    `json:"started"`
	Engines []EngineInfo `json:"engines"`
}

// Register writes (or refreshes) a scanner's entry.
func Register(ctx context.Context, kv jetstream.KeyValue, n Node) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, "scanner."+n.ID, b); err != nil {
		return fmt.Errorf("register scanner: %w", err)
	}
	return nil
}

// Engines merges the engines of every live scanner, by eng_id.
func Engines(ctx context.Context, kv jetstream.KeyValue) ([]EngineInfo, error) {
	out := []EngineInfo{}
	keys, err := kv.ListKeysFiltered(ctx, "scanner.*")
	if err != nil {
		return nil, fmt.Errorf("list scanners: %w", err)
	}
	seen := map[string]bool{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var n Node
		if json.Unmarshal(e.Value(), &n) != nil {
			continue
		}
		for _, eng := range n.Engines {
			if !seen[eng.EngID] {
				seen[eng.EngID] = true
				out = append(out, eng)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].EngID < out[j].EngID })
	return out, nil
}
