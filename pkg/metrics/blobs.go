package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The blob store's size is read in the background, never by the scrape
// itself: for the fs store a read is a walk of its directory, which grows
// with the number of files. A read starts when a scrape finds the value
// older than its pace allows, and the scrape answers with the last value at
// once. The pace is blobPace times what the last read took, within
// [blobMinEvery, blobMaxEvery]: a small store is fresh within a second or
// two, and a store whose walk takes a second is walked at most every
// minute, so reading the size never costs more than ~2% of one core.
const (
	blobPace        = 50
	blobMinEvery    = time.Second
	blobMaxEvery    = 5 * time.Minute
	blobReadTimeout = time.Minute
)

var blobBytesDesc = prometheus.NewDesc("scangate_blob_store_bytes",
	"Bytes the blob store holds: for fs the disk space its files take under the blob directory, for jetstream the bytes of the object store's stream. "+
		"Read in the background and up to a few seconds old (minutes for a very large fs store). Every process sharing the store reports it: aggregate with max.",
	[]string{"store"}, nil)

// WatchBlobStore exports scangate_blob_store_bytes{store}, read with
// used. The first read starts now, so the first scrape usually has it.
func (m *Metrics) WatchBlobStore(store string, used func(context.Context) (int64, error)) {
	if m == nil {
		return
	}
	c := &blobCollector{store: store, used: used, clock: time.Now}
	c.mu.Lock()
	c.startRead()
	c.mu.Unlock()
	_ = m.reg.Register(c)
}

type blobCollector struct {
	store string
	used  func(context.Context) (int64, error)
	clock func() time.Time

	mu      sync.Mutex
	value   int64
	known   bool      // value is from the last read, which succeeded
	next    time.Time // no read starts before this
	reading bool
	reads   int // reads started (tests count them)
}

func (c *blobCollector) Describe(ch chan<- *prometheus.Desc) { ch <- blobBytesDesc }

func (c *blobCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if !c.reading && !c.clock().Before(c.next) {
		c.startRead()
	}
	v, known := c.value, c.known
	c.mu.Unlock()
	if known {
		ch <- prometheus.MustNewConstMetric(blobBytesDesc, prometheus.GaugeValue, float64(v), c.store)
	}
}

// startRead reads the size in the background; c.mu is held.
func (c *blobCollector) startRead() {
	c.reading = true
	c.reads++
	go func() {
		start := c.clock()
		ctx, cancel := context.WithTimeout(context.Background(), blobReadTimeout)
		v, err := c.used(ctx)
		cancel()
		took := c.clock().Sub(start)
		c.mu.Lock()
		defer c.mu.Unlock()
		// A failed read leaves the series out rather than showing a value
		// that may be long stale.
		c.value, c.known = v, err == nil
		c.next = c.clock().Add(min(max(took*blobPace, blobMinEvery), blobMaxEvery))
		c.reading = false
	}()
}
