package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Group commit. With `nats.sync: always` JetStream fsyncs every message it
// stores, one after another per stream: about 0.6 ms each on an ordinary
// disk, so a stream that takes one message per file caps a node at some
// 1,600 files/s however many cores it has, and a small file passes through
// several such streams. A Committer stores the messages that callers hand
// it concurrently as one JetStream atomic batch: one fsync for all of them,
// and each caller is answered only once the batch is stored, so what a
// caller is told is as durable as a single publish.
//
// Batches form only under load: a message that finds an idle flusher is
// stored on its own at once; messages that arrive while every flusher is
// waiting on the disk queue up and leave together.

const (
	// commitFlushers is how many batches of one stream are in flight at
	// once. The server stores a stream's messages one after another
	// anyway, so more flushers only split the queue into smaller batches:
	// with one, everything that arrives while a batch is being stored
	// leaves together in the next.
	commitFlushers = 1
	// commitMaxMsgs and commitMaxBytes bound one batch (the server's limit
	// is 1,000 messages).
	commitMaxMsgs  = 256
	commitMaxBytes = 4 << 20
	// atomicMin is the smallest batch stored as one atomic batch. The
	// server stages an atomic batch in a file store of its own, created
	// and removed for each batch (directories, metadata, fsyncs): some
	// 3 ms of CPU, as much as about ten messages stored one by one.
	atomicMin = 16
	// commitTimeout bounds storing one batch; the server abandons a batch
	// whose commit does not arrive within 10 s.
	commitTimeout = 10 * time.Second
)

// Committer group-commits messages bound for one stream. Every message it
// stores must be safe to store twice or carry a Nats-Msg-Id: when a batch
// fails (one message is a duplicate or fails its expected-sequence check,
// or the answer to the commit is lost), its messages are stored one by one,
// so each caller gets its own message's answer.
type Committer struct {
	b         *Bus
	atomicMin int // atomicMin, or what a benchmark compares it with

	mu       sync.Mutex
	queue    []*commitReq
	flushers int

	commits, messages atomic.Uint64 // stored so far, for Stats
}

// Stats says how many commits stored how many messages: their ratio is the
// fsyncs group commit saved.
func (c *Committer) Stats() (commits, messages uint64) { return c.commits.Load(), c.messages.Load() }

type commitReq struct {
	msg  *nats.Msg
	ack  *jetstream.PubAck
	err  error
	done chan struct{}
}

// Committer returns the group committer of the stream that stores the
// subjects it is given messages for (one per stream name, shared).
func (b *Bus) Committer(stream string) *Committer {
	c, _ := b.committers.LoadOrStore(stream, &Committer{b: b, atomicMin: atomicMin})
	return c.(*Committer)
}

// Publish stores msg and returns its acknowledgement once it is durable.
// If ctx ends first, msg may still be stored.
func (c *Committer) Publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	r := &commitReq{msg: msg, done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, r)
	if c.flushers < commitFlushers {
		c.flushers++
		go c.flush()
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.ack, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// flush stores queued messages until none are left.
func (c *Committer) flush() {
	for {
		c.mu.Lock()
		n, size := 0, 0
		for n < len(c.queue) && n < commitMaxMsgs {
			size += len(c.queue[n].msg.Data) + len(c.queue[n].msg.Subject)
			if n > 0 && size > commitMaxBytes {
				break
			}
			n++
		}
		if n == 0 {
			c.flushers--
			c.mu.Unlock()
			return
		}
		batch := make([]*commitReq, n)
		copy(batch, c.queue)
		c.queue = append(c.queue[:0], c.queue[n:]...)
		c.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		c.store(ctx, batch)
		cancel()
		for _, r := range batch {
			close(r.done)
		}
	}
}

// store stores a batch atomically, or its messages one by one when that
// fails or the batch is too small to be worth it.
func (c *Committer) store(ctx context.Context, batch []*commitReq) {
	if len(batch) >= c.atomicMin {
		last, err := c.storeAtomic(ctx, batch)
		if err == nil {
			for i, r := range batch {
				r.ack = &jetstream.PubAck{Stream: last.Stream, Sequence: last.Sequence - uint64(len(batch)-1-i)}
			}
			c.commits.Add(1)
			c.messages.Add(uint64(len(batch)))
			return
		}
		c.b.Opts.Log.Debug().Err(err).Int("messages", len(batch)).Msg("group commit refused; storing its messages one by one")
	}
	// One by one, but all sent before the first answer is awaited: the
	// server still fsyncs each, without a round trip between them.
	futures := make([]jetstream.PubAckFuture, len(batch))
	for i, r := range batch {
		clearBatchHeaders(r.msg)
		futures[i], r.err = c.b.JS.PublishMsgAsync(r.msg)
	}
	for i, r := range batch {
		if r.err == nil {
			select {
			case r.ack = <-futures[i].Ok():
			case r.err = <-futures[i].Err():
			case <-ctx.Done():
				r.err = ctx.Err()
			}
		}
		if r.err != nil {
			r.err = c.b.Check(r.err)
		}
	}
	c.commits.Add(uint64(len(batch)))
	c.messages.Add(uint64(len(batch)))
}

// batchAck is the server's answer to a batch's commit.
type batchAck struct {
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	Count    int                 `json:"count"`
	Error    *jetstream.APIError `json:"error,omitempty"`
}

func (c *Committer) storeAtomic(ctx context.Context, batch []*commitReq) (*batchAck, error) {
	id := nuid.Next()
	for i, r := range batch {
		if r.msg.Header == nil {
			r.msg.Header = nats.Header{}
		}
		r.msg.Header.Set("Nats-Batch-Id", id)
		r.msg.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(batch)-1 {
			if err := c.b.NC.PublishMsg(r.msg); err != nil {
				return nil, err
			}
		}
	}
	commit := batch[len(batch)-1].msg
	commit.Header.Set("Nats-Batch-Commit", "1")
	reply, err := c.b.NC.RequestMsgWithContext(ctx, commit)
	if err != nil {
		return nil, err
	}
	var ack batchAck
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		return nil, fmt.Errorf("batch commit answer: %w", err)
	}
	if ack.Error != nil {
		return nil, ack.Error
	}
	if ack.Count != len(batch) || ack.Sequence < uint64(len(batch)) {
		return nil, errors.New("batch commit answer does not match the batch")
	}
	return &ack, nil
}

func clearBatchHeaders(m *nats.Msg) {
	if m.Header != nil {
		m.Header.Del("Nats-Batch-Id")
		m.Header.Del("Nats-Batch-Sequence")
		m.Header.Del("Nats-Batch-Commit")
	}
}
