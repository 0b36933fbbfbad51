// Package stats keeps the registry of live scanners and their engines
// (KV bucket "nodes", entries expire unless refreshed), for GET /stat/engines
// and GET /stat/nodes.
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

// EngineInfo is one entry of GET /stat/engines. MetaDefender's own clients
// require every field, so none is omitempty.
type EngineInfo struct {
	EngID   string `json:"eng_id"`
	EngName string `json:"eng_name"`
	EngVer  string `json:"eng_ver"`
	EngType string `json:"eng_type"`
	DefTime string `json:"def_time"`
	// DownloadTime is when the scanner took up these definitions.
	DownloadTime string `json:"download_time"`
	// DownloadProgress is always 100: a scanner lists only definitions it
	// has loaded.
	DownloadProgress int    `json:"download_progress"`
	Active           bool   `json:"active"`
	State            string `json:"state"`
	EngineType       string `json:"engine_type"`
	Type             string `json:"type"`
}

// EngTypeBundled is the eng_type of every scangate engine: each ships with
// scangate (ClamAV through its bundled client).
const EngTypeBundled = "Bundled engine"

// Node is a scanner process as the registry lists it.
type Node struct {
	ID      string    `json:"id"`
	Address string    `json:"address"` // host the scanner runs on
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// InProgress is the files this scanner is scanning; Capacity how many
	// it scans at once.
	InProgress int `json:"in_progress"`
	Capacity   int `json:"capacity"`
	// FreeDisk and TotalDisk are the bytes of the scanner's data disk.
	FreeDisk  int64        `json:"free_disk"`
	TotalDisk int64        `json:"total_disk"`
	Engines   []EngineInfo `json:"engines"`
}

// NodeStatus is one entry of GET /stat/nodes.
type NodeStatus struct {
	ID             string       `json:"id"`
	Address        string       `json:"address"`
	Version        string       `json:"version"`
	Uptime         int64        `json:"uptime"` // seconds
	ScanQueue      int          `json:"scan_queue"`
	TotalScanQueue int          `json:"total_scan_queue"`
	FreeDiskSpace  int64        `json:"free_disk_space"`
	TotalDiskSpace int64        `json:"total_disk_space"`
	Engines        []EngineInfo `json:"engines"`
}

func nodeKey(id string) string { return "scanner." + id }

// Register writes (or refreshes) a scanner's entry.
func Register(ctx context.Context, kv jetstream.KeyValue, n Node) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, nodeKey(n.ID), b); err != nil {
		return fmt.Errorf("register scanner: %w", err)
	}
	return nil
}

// Deregister removes a scanner's entry at once, so a scanner shut down
// cleanly leaves the lists now rather than when its entry expires.
func Deregister(ctx context.Context, kv jetstream.KeyValue, id string) error {
	if err := kv.Purge(ctx, nodeKey(id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deregister scanner: %w", err)
	}
	return nil
}

// nodes reads every live scanner's entry, ordered by id.
func nodes(ctx context.Context, kv jetstream.KeyValue) ([]Node, error) {
	keys, err := kv.ListKeysFiltered(ctx, "scanner.*")
	if err != nil {
		return nil, fmt.Errorf("list scanners: %w", err)
	}
	var out []Node
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var n Node
		if json.Unmarshal(e.Value(), &n) != nil {
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Nodes lists every live scanner as GET /stat/nodes shows it; uptime is
// counted to now.
func Nodes(ctx context.Context, kv jetstream.KeyValue, now time.Time) ([]NodeStatus, error) {
	ns, err := nodes(ctx, kv)
	if err != nil {
		return nil, err
	}
	out := make([]NodeStatus, 0, len(ns))
	for _, n := range ns {
		up := int64(now.Sub(n.Started) / time.Second)
		if up < 0 {
			up = 0 // clocks of different hosts
		}
		engs := n.Engines
		if engs == nil {
			engs = []EngineInfo{}
		}
		out = append(out, NodeStatus{ID: n.ID, Address: n.Address, Version: n.Version, Uptime: up,
			ScanQueue: n.InProgress, TotalScanQueue: n.Capacity, FreeDiskSpace: n.FreeDisk,
			TotalDiskSpace: n.TotalDisk, Engines: engs})
	}
	return out, nil
}

// Engines merges the engines of every live scanner, by eng_id.
func Engines(ctx context.Context, kv jetstream.KeyValue) ([]EngineInfo, error) {
	ns, err := nodes(ctx, kv)
	if err != nil {
		return nil, err
	}
	out := []EngineInfo{}
	seen := map[string]bool{}
	for _, n := range ns {
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
