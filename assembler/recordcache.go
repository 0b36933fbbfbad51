package assembler

import (
	"sync"

	"github.com/scangate/scangate/pkg/result"
)

// recordCache keeps the records this recorder wrote last, so applying a
// file's next event needs no read of the results bucket: the recorder is
// their only writer. It can only be behind the bucket, never ahead (an
// entry is what our own successful write stored), and a stale entry (the
// partition moved away and back) is caught by the compare-and-set of the
// next write, which evicts it.
type recordCache struct {
	mu   sync.Mutex
	m    map[string]cachedRecord
	ring []string // insertion order, for eviction
	next int
}

type cachedRecord struct {
	rec *result.Record
	rev uint64
}

// recordCacheSize bounds the cache: files between their first event and
// their verdict, across every partition this recorder owns. A miss only
// costs a read.
const recordCacheSize = 16384

func newRecordCache() *recordCache {
	return &recordCache{m: make(map[string]cachedRecord, recordCacheSize), ring: make([]string, recordCacheSize)}
}

func (c *recordCache) get(dataID string) (*result.Record, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[dataID]
	return e.rec, e.rev, ok
}

// put remembers rec at rev; a final record is dropped instead, as nothing
// but ignored late events follow it.
func (c *recordCache) put(rec *result.Record, rev uint64) {
	id := rec.Result.DataID
	c.mu.Lock()
	defer c.mu.Unlock()
	if rec.Final() {
		delete(c.m, id)
		return
	}
	if _, ok := c.m[id]; !ok {
		if old := c.ring[c.next]; old != "" {
			delete(c.m, old)
		}
		c.ring[c.next] = id
		c.next = (c.next + 1) % len(c.ring)
	}
	c.m[id] = cachedRecord{rec, rev}
}

func (c *recordCache) drop(dataID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, dataID)
}
