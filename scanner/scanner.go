// Package scanner is the scanning role: it takes file-complete work from the
// FILES work queue (shared by every scanner), runs the file's workflow —
// hashes, file type, engines — on one read of its bytes, writes the result
// and announces scan-done.
package scanner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/config"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/ids"
	"github.com/scangate/scangate/pkg/metrics"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/stats"
	"github.com/scangate/scangate/pkg/workflow"
	"github.com/scangate/scangate/scanner/archive"
	"github.com/scangate/scangate/scanner/engines"
	"github.com/scangate/scangate/scanner/filetype"
)

// Options tune a scanner.
type Options struct {
	Workers int           // files scanned at once
	Timeout time.Duration // a scan longer than this ends with verdict 31
	// Heartbeat is how often a running scan reports progress (default
	// bus.ScanHeartbeat). The work item itself is kept every
	// bus.ScanKeepAlive.
	Heartbeat time.Duration
	Workflows *workflow.Set
	Version   string // reported in the scanner registry
	// Engines by config name ("signatures", "hashlist"), in report order.
	Engines []NamedEngine

	// DataDir is the disk whose space the scanner reports in the registry
	// ("" reports none).
	DataDir string
	// RegisterEvery is how often the scanner refreshes its registry entry
	// and its engines' definitions (default stats.TTL/3).
	RegisterEvery time.Duration

	// MemoryBudget is the most one decoder of a scan may allocate (archive
	// dictionaries and windows, decoded images, PDFs); 0 means
	// DefaultMemoryBudget.
	MemoryBudget int64

	// Metrics records verdicts and engine times (nil: none).
	Metrics *metrics.Metrics

	// Downloads fetch the files submitted by URL (download.go).
	Downloads config.DownloadFromConfig
}

// NamedEngine is an engine under the name workflows use for it.
type NamedEngine struct {
	Name   string
	Engine engines.Engine
}

// Scanner runs workflows on queued files.
type Scanner struct {
	b       *bus.Bus
	blobs   blob.Store
	results result.Store
	opts    Options
	log     zerolog.Logger

	id string // this process, in the scanner registry

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc

	// committing bounds the verdicts being published while workers scan
	// on; commits waits for them at shutdown.
	committing chan struct{}
	commits    sync.WaitGroup

	fetch     *fetcher      // files submitted by URL (download.go)
	downloads chan struct{} // one per download running
}

// commitsPerWorker: a worker hands its verdict to a committer and takes the
// next file, so the fsyncs a verdict waits for (hash index, result event,
// acknowledgement) overlap the next scan instead of idling the worker.
const commitsPerWorker = 16

// errCancelled is the cause of a scan stopped by POST /file/{id}/cancel.
var errCancelled = errors.New("cancelled by request")

// New returns a scanner; Run starts it.
func New(b *bus.Bus, blobs blob.Store, opts Options, log zerolog.Logger) *Scanner {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = bus.ScanHeartbeat
	}
	if opts.RegisterEvery <= 0 {
		opts.RegisterEvery = stats.TTL / 3
	}
	opts.Downloads = withDownloadDefaults(opts.Downloads)
	return &Scanner{
		b: b, blobs: blobs, results: result.Store{KV: b.Results}, opts: opts,
		log:        log.With().Str("role", "scanner").Logger(),
		running:    map[string]context.CancelCauseFunc{},
		id:         ids.New(),
		committing: make(chan struct{}, commitsPerWorker*opts.Workers),
		fetch:      newFetcher(opts.Downloads, nil),
		downloads:  make(chan struct{}, opts.Downloads.MaxConcurrent),
	}
}

// Run scans until ctx ends, then lets the scans in progress finish their
// current step and returns. Unfinished files are redelivered to a peer.
func (s *Scanner) Run(ctx context.Context) error {
	sub, err := s.b.NC.Subscribe(events.CancelSubjects, func(m *nats.Msg) {
		id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		s.stopRunning(id, errCancelled)
	})
	if err != nil {
		return fmt.Errorf("scanner: subscribe cancels: %w", err)
	}
	defer sub.Unsubscribe()
	q, err := bindQueues(ctx, s.b.JS)
	if err != nil {
		return fmt.Errorf("scanner: %w", err)
	}
	s.log.Info().Int("workers", s.opts.Workers).Msg("scanner started")
	var wg sync.WaitGroup
	wg.Go(func() { s.register(ctx) })
	slots := make(chan struct{}, s.opts.Workers)
	for range s.opts.Workers * fetchersPerWorker {
		wg.Go(func() { s.work(ctx, q, slots) })
	}
	wg.Wait()
	q.release()
	s.commits.Wait()
	return nil
}

// fetchersPerWorker: each worker slot has two fetchers, so the next file's
// fetch (a round trip to JetStream, slow on a busy server) overlaps the
// current scan instead of following it. A fetched file waits for a free
// slot kept alive, and at most one file per worker waits that way: a busy
// scanner never hoards work a peer could take.
const fetchersPerWorker = 2

// work fetches one file at a time, highest priority first (queues.next),
// and scans it once a worker slot is free.
func (s *Scanner) work(ctx context.Context, q *queues, slots chan struct{}) {
	for ctx.Err() == nil {
		msg, err := q.next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("fetch failed")
				time.Sleep(time.Second)
			}
			continue
		}
		if !s.waitForSlot(ctx, msg, slots) {
			_ = msg.Nak() // shutting down: a peer or our next start takes it
			return
		}
		s.handle(ctx, msg)
		<-slots
	}
}

// waitForSlot takes a worker slot, keeping msg ours meanwhile.
func (s *Scanner) waitForSlot(ctx context.Context, msg jetstream.Msg, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	keep := time.NewTicker(bus.ScanKeepAlive)
	defer keep.Stop()
	for {
		select {
		case slots <- struct{}{}:
			return true
		case <-keep.C:
			_ = msg.InProgress()
		case <-ctx.Done():
			return false
		}
	}
}

// handle processes one delivery. It is idempotent: a file whose result is
// already final (cancelled while queued, or finished by an earlier
// delivery whose ack was lost) is only acknowledged.
//
// The scanner never writes a result record: it publishes result events
// (progress, its verdict) that the recorder applies in order.
func (s *Scanner) handle(ctx context.Context, msg jetstream.Msg) {
	var fc events.FileComplete
	if err := json.Unmarshal(msg.Data(), &fc); err != nil {
		s.log.Error().Err(err).Str("subject", msg.Subject()).Msg("undecodable file-complete event; dropped")
		_ = msg.TermWithReason("undecodable")
		return
	}
	log := s.log.With().Str("data_id", fc.DataID).Logger()
	md, _ := msg.Metadata()
	rec := result.NewFile(fc.DataID, &fc, result.InProgress)
	keep := originalToKeep(&fc)
	start := time.Now()
	defer func() {
		// A panic anywhere in the workflow fails this file, not the process.
		if v := recover(); v != nil {
			log.Error().Any("panic", v).Str("stack", string(debug.Stack())).Msg("scan panicked; the file gets a Failed verdict")
			failed := result.NewFile(fc.DataID, &fc, result.InProgress)
			failed.Finish(result.Failed, []string{"internal error during the scan"}, start, time.Now())
			s.commit(ctx, msg, failed, keep, log)
		}
	}()

	// A file cancelled (or finished) before a scanner took it needs no
	// scan. Looking that up is skipped for a small file on its first
	// delivery: scanning it costs less than the look-up under load, and a
	// verdict for a file already final changes nothing (the first final
	// event wins).
	var cur *result.Record
	var err error
	if fc.Data == nil || md == nil || md.NumDelivered > 1 {
		cur, _, err = s.results.Get(ctx, fc.DataID)
	}
	switch {
	case cur == nil && err == nil:
	case errors.Is(err, result.ErrNotFound):
	case err != nil:
		log.Error().Err(err).Msg("reading result failed; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	case cur.Final():
		log.Debug().Int("verdict", cur.Result.ScanResults.ScanAllResultI).Msg("result already final; nothing to scan")
		// A scanner that died between its verdict and its ack may not
		// have kept the copy yet.
		s.keepOriginal(ctx, fc.DataID, keep, log)
		_ = msg.Ack()
		return
	}

	if md != nil && md.NumDelivered > bus.ScanMaxAttempts {
		// Every earlier attempt died mid-scan (a crash, a hung engine): the
		// file gets a Failed verdict rather than another try.
		log.Error().Uint64("deliveries", md.NumDelivered).Msg("scan failed on every attempt; giving up")
		rec.Finish(result.Failed, []string{"scan did not complete after repeated attempts"}, start, time.Now())
		s.commit(ctx, msg, rec, keep, log)
		return
	}

	rec.Result.ScanResults.StartTime = result.FormatTime(start)
	rec.Result.ProcessInfo.QueueTime = max(0, start.Sub(fc.UploadedAt).Milliseconds())

	scanCtx, stop := context.WithCancelCause(ctx)
	scanCtx, stopTimeout := context.WithTimeoutCause(scanCtx, s.opts.Timeout, context.DeadlineExceeded)
	s.track(fc.DataID, stop)
	defer func() {
		stopTimeout()
		s.untrack(fc.DataID)
		stop(nil)
	}()

	// A file submitted by URL is fetched first (download.go).
	if err = s.download(scanCtx, msg, &fc, rec, log); err == nil {
		var read atomic.Int64
		hb := s.heartbeat(scanCtx, msg, fc.DataID, start, fc.Size, &read, log)
		log.Debug().Int64("size", fc.Size).Str("workflow", fc.Meta.Workflow).Msg("scan started")
		err = s.scan(scanCtx, &fc, rec, &read)
		hb()
	}

	switch cause := context.Cause(scanCtx); {
	case ctx.Err() != nil:
		// Shutting down: leave the file to a peer or to our next start.
		_ = msg.Nak()
		return
	case errors.Is(cause, errCancelled):
		// The cancel's own result event is in the stream (it is published
		// before scanners are told), and it is the file's verdict.
		log.Info().Msg("scan cancelled")
		s.keepOriginal(ctx, fc.DataID, keep, log)
		_ = msg.Ack()
		return
	case errors.Is(scanCtx.Err(), context.DeadlineExceeded):
		log.Warn().Dur("timeout", s.opts.Timeout).Msg("scan timed out")
		rec.Finish(result.GlobalTimeout, nil, start, time.Now())
	case errors.Is(err, blob.ErrUnavailable):
		// The store could not serve the bytes just now (a node lost): the
		// file is scanned again shortly, by us or a peer, rather than
		// failed. Repeated failures end in Failed via the attempt limit.
		log.Warn().Err(err).Msg("file unreadable for now; scanning again later")
		_ = msg.NakWithDelay(2 * time.Second)
		return
	case err != nil:
		log.Error().Err(err).Msg("scan failed")
		rec.Finish(result.Failed, []string{err.Error()}, start, time.Now())
	}
	s.commitAsync(ctx, msg, rec, keep, log)
}

// commitAsync commits in the background once a committer slot is free. The
// work item stays unacknowledged until its verdict is published, so a
// scanner killed meanwhile only costs a rescan by a peer.
func (s *Scanner) commitAsync(ctx context.Context, msg jetstream.Msg, rec *result.Record, keep []byte, log zerolog.Logger) {
	// Kept ours until committed: on a loaded server the commit may wait
	// longer than the ack wait, and a peer must not scan the file again.
	stop := bus.KeepAlive(msg, bus.ScanKeepAlive)
	select {
	case s.committing <- struct{}{}:
	case <-ctx.Done():
		stop()
		_ = msg.Nak()
		return
	}
	s.commits.Go(func() {
		defer func() { <-s.committing }()
		defer stop()
		s.commit(ctx, msg, rec, keep, log)
	})
}

// commit indexes the file's hashes and publishes its verdict, then
// acknowledges the work. Publishing is retried here, with the work kept
// ours, until it lands or the scanner shuts down: a verdict in hand is never
// given up, and a file never stays at 255 because one publish failed.
//
// keep, when not nil, is a small file's bytes, kept for rescans (see
// keepOriginal) while the verdict is published, so that the copy never
// delays it, and before the ack, so that a scanner that dies first leaves
// the work to a peer, which keeps them.
func (s *Scanner) commit(ctx context.Context, msg jetstream.Msg, rec *result.Record, keep []byte, log zerolog.Logger) {
	kept := s.keepOriginalAsync(ctx, rec.Result.DataID, keep, log)
	defer kept()
	// Index first: a client that sees the final result can look it up by
	// hash at once.
	ev := &result.Event{Kind: result.EventFinal, DataID: rec.Result.DataID, Record: rec}
	delay := 100 * time.Millisecond
	for {
		err := s.indexHashes(ctx, rec)
		if err == nil {
			err = s.b.PublishResult(ctx, ev, "final-"+rec.Result.DataID)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			_ = msg.Nak() // shutting down: the next delivery scans again
			return
		}
		log.Error().Err(err).Dur("retry_in", delay).Msg("publishing the verdict failed; retrying")
		_ = msg.InProgress()
		select {
		case <-ctx.Done():
			_ = msg.Nak()
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, bus.ScanKeepAlive)
	}
	kept()
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn().Err(err).Msg("ack failed; the file will be redelivered and found final")
	}
	// Counted once the verdict is published: a scan cut short by a
	// shutdown is done again, and counted then.
	s.opts.Metrics.Scan(rec.Result.ProcessInfo.Result, rec.Result.ScanResults.ScanAllResultA,
		time.Duration(rec.Result.ScanResults.TotalTime)*time.Millisecond)
	log.Info().
		Int("scan_all_result_i", rec.Result.ScanResults.ScanAllResultI).
		Str("result", rec.Result.ProcessInfo.Result).
		Int64("total_time_ms", rec.Result.ScanResults.TotalTime).
		Int64("queue_time_ms", rec.Result.ProcessInfo.QueueTime).
		Msg("scan done")
}

// indexHashes points each of the file's hashes at its data_id, in the
// index of the user who sent it: the most recent scan of the same bytes by
// that user answers their GET /hash/{hash}. The scanner is the only writer
// of the hash index.
func (s *Scanner) indexHashes(ctx context.Context, rec *result.Record) error {
	fi := rec.Result.FileInfo
	owner := auth.Token(rec.Meta.Username)
	keys := make(map[string]string, 4)
	for algo, h := range map[string]string{"md5": fi.MD5, "sha1": fi.SHA1, "sha256": fi.SHA256, "sha512": fi.SHA512} {
		if h != "" {
			keys[events.HashKey(algo, h, owner)] = rec.Result.DataID
		}
	}
	if err := s.b.PutAll(ctx, events.BucketHashes, keys); err != nil {
		return fmt.Errorf("index hashes: %w", err)
	}
	return nil
}

// heartbeat keeps the work item ours while a long scan runs (JetStream
// would otherwise hand it to a peer) and reports progress as result events.
// It returns a function that stops it.
func (s *Scanner) heartbeat(ctx context.Context, msg jetstream.Msg, dataID string, started time.Time, size int64,
	read *atomic.Int64, log zerolog.Logger) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		keep := time.NewTicker(min(bus.ScanKeepAlive, s.opts.Heartbeat))
		defer keep.Stop()
		t := time.NewTicker(s.opts.Heartbeat)
		defer t.Stop()
		reports := 0
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-keep.C:
				if err := msg.InProgress(); err != nil {
					log.Warn().Err(err).Msg("keeping the work item failed")
				}
				continue
			case <-t.C:
			}
			reports++
			pct := 99
			if size > 0 {
				pct = min(99, int(read.Load()*100/size))
			}
			ev := &result.Event{Kind: result.EventProgress, DataID: dataID, Progress: pct, StartedAt: started}
			if err := s.b.PublishResult(ctx, ev, fmt.Sprintf("progress-%s-%d-%d", dataID, started.UnixNano(), reports)); err != nil && ctx.Err() == nil {
				log.Warn().Err(err).Msg("progress report failed")
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// blobOpenWait bounds how long a file that was announced complete may be
// missing from the blob store: in a cluster, a replica behind the write
// answers "not found" for a moment.
const blobOpenWait = 10 * time.Second

// openBlob opens a file's bytes, reading again while the store says they
// are not there yet.
func (s *Scanner) openBlob(ctx context.Context, key string) (blob.Object, error) {
	deadline := time.Now().Add(blobOpenWait)
	delay := 20 * time.Millisecond
	for {
		obj, err := s.blobs.Open(ctx, key)
		if !errors.Is(err, blob.ErrNotFound) && !errors.Is(err, blob.ErrIncomplete) || time.Now().After(deadline) {
			return obj, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// scan runs the workflow's steps and fills rec with the verdict.
func (s *Scanner) scan(ctx context.Context, fc *events.FileComplete, rec *result.Record, read *atomic.Int64) error {
	start := time.Now()
	wf, ok := s.opts.Workflows.Get(fc.Meta.Workflow)
	if !ok {
		return fmt.Errorf("workflow %q is no longer configured", fc.Meta.Workflow)
	}
	var obj blob.Object
	var err error
	if fc.Data != nil {
		obj = blob.Bytes(fc.Data)
	} else if obj, err = s.openBlob(ctx, fc.BlobKey()); err != nil {
		return fmt.Errorf("open file: %w", err)
	}
	defer obj.Close()
	if obj.Size() != fc.Size {
		return fmt.Errorf("stored file has %d bytes, expected %d", obj.Size(), fc.Size)
	}

	head := make([]byte, min(int64(filetype.HeadSize), fc.Size))
	if _, err := obj.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read file head: %w", err)
	}
	ft := filetype.Detect(head)
	fi := &rec.Result.FileInfo
	fi.FileType, fi.FileTypeDescription, fi.FileTypeExtension = ft.MIME, ft.Description, ft.Extension
	in := &engines.Input{DataID: fc.DataID, Size: fc.Size, DisplayName: fc.Meta.DisplayName, MIME: ft.MIME, Hashes: fc.Hashes}

	// Hashes: known from the upload, or the tail after the part the
	// assembler hashed in order (read beside the engines' pass), or —
	// when external is nil — computed in the engines' pass.
	var external func() (events.Hashes, error)
	switch {
	case fc.Hashes.Complete():
		external = func() (events.Hashes, error) { return fc.Hashes, nil }
	case fc.HashedBytes > 0:
		h, err := newHashingJob(fc.HashState)
		if err != nil {
			return fmt.Errorf("hash state: %w", err)
		}
		done := make(chan error, 1)
		go func() { done <- h.consume(blob.Section(obj, fc.HashedBytes, fc.Size-fc.HashedBytes)) }()
		external = func() (events.Hashes, error) {
			if err := <-done; err != nil {
				return events.Hashes{}, err
			}
			return h.sums(), nil
		}
	}
	details, hashes, _, err := s.runEngines(ctx, wf, in, blob.Section(obj, 0, fc.Size), read, external)
	if err != nil {
		return err
	}
	read.Store(fc.Size)
	fi.MD5, fi.SHA1, fi.SHA256, fi.SHA512 = hashes.MD5, hashes.SHA1, hashes.SHA256, hashes.SHA512

	codes := stepCodes(wf, fc.Meta.DisplayName, head)
	if kind, ok := archive.Detect(head); ok && wf.Archive.Enabled {
		sub, ef, err := s.extract(ctx, wf, fc, kind, obj)
		if err != nil {
			return err
		}
		for c := range sub {
			codes[c] = true
		}
		rec.Result.ExtractedFiles = ef
	}
	for _, d := range details {
		codes[d.ScanResultI] = true
	}
	for c := range s.sanitize(ctx, wf, fc, obj, ft.MIME, codes, rec) {
		codes[c] = true
	}
	conclude(rec, wf, details, codes, start)
	return nil
}

// extract opens a top-level archive under the workflow's limits.
func (s *Scanner) extract(ctx context.Context, wf *config.Workflow, fc *events.FileComplete, kind archive.Kind, obj io.ReaderAt) (map[int]bool, *result.ExtractedFiles, error) {
	lim := wf.Archive
	x := &extraction{s: s, wf: wf, root: fc, limits: lim, started: time.Now(),
		budget: int64(min(float64(lim.MaxSize), lim.MaxExpansion*float64(max(fc.Size, 1))))}
	xctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	codes, ef, err := x.extractArchive(xctx, fc.DataID, fc.Meta.DisplayName, kind, obj, fc.Size, 1)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err() // cancelled or shutting down: children stop with the parent
		}
		if xctx.Err() == nil {
			return nil, nil, err
		}
		codes, ef = map[int]bool{result.ExceededTimeout: true}, nil
		x.addError(fc.Meta.DisplayName, fc.DataID, "", fmt.Errorf("extraction took longer than %s", lim.Timeout))
	}
	if len(x.errs) > 0 {
		b, _ := json.Marshal(result.ExtractionErrors{Total: x.nerrs, Errors: x.errs})
		if _, err := s.b.Results.Put(ctx, result.ErrorsKey(fc.DataID), b); err != nil {
			return nil, nil, fmt.Errorf("store extraction errors: %w", err)
		}
	}
	return codes, ef, nil
}

// runEngines reads r once, feeding every streaming engine of the workflow
// and, unless external supplies the hashes, the hasher; then it runs the
// hash engines. It returns each engine's entry, the hashes and the number
// of bytes read.
func (s *Scanner) runEngines(ctx context.Context, wf *config.Workflow, in *engines.Input, r io.Reader, read *atomic.Int64,
	external func() (events.Hashes, error)) (map[string]result.EngineScan, events.Hashes, int64, error) {
	start := time.Now()
	selected := s.selectEngines(wf.Engines)
	details := make(map[string]result.EngineScan, len(selected))
	var mu sync.Mutex
	record := func(e engines.Engine, f engines.Finding, err error, began time.Time) {
		info := e.Info()
		took := time.Since(began)
		s.opts.Metrics.Engine(info.ID, took)
		d := result.EngineScan{ScanResultI: f.Code, ThreatFound: f.Threat, DefTime: info.DefTime,
			ScanTime: took.Milliseconds(), WaitTime: began.Sub(start).Milliseconds(), EngID: info.ID}
		if err != nil {
			d.ScanResultI, d.ThreatFound = result.Failed, err.Error()
		}
		mu.Lock()
		details[info.Name] = d
		mu.Unlock()
	}
	var consumers []func(io.Reader) error
	var hasher *hashingJob
	if external == nil {
		hasher, _ = newHashingJob(nil)
		consumers = append(consumers, hasher.consume)
	}
	var hashEngines []engines.HashEngine
	for _, e := range selected {
		switch e := e.(type) {
		case engines.StreamEngine:
			consumers = append(consumers, func(r io.Reader) error {
				began := time.Now()
				f, err := scanStream(ctx, e, in, r)
				record(e, f, err, began)
				return nil
			})
		case engines.HashEngine:
			hashEngines = append(hashEngines, e)
		}
	}
	if read == nil {
		read = new(atomic.Int64)
	}
	var errs []error
	if len(consumers) > 0 {
		errs = fanOut(ctx, r, read, consumers...)
	}
	if err := ctx.Err(); err != nil {
		return nil, events.Hashes{}, 0, err
	}
	if hasher != nil {
		if errs[0] != nil {
			return nil, events.Hashes{}, 0, fmt.Errorf("hashing: %w", errs[0])
		}
		in.Hashes = hasher.sums()
	} else {
		h, err := external()
		if err != nil {
			return nil, events.Hashes{}, 0, fmt.Errorf("hashing: %w", err)
		}
		in.Hashes = h
	}
	for _, e := range hashEngines {
		began := time.Now()
		f, err := scanHashes(ctx, e, in)
		record(e, f, err, began)
	}
	return details, in.Hashes, read.Load(), ctx.Err()
}

// scanStream runs one engine on a stream; a panicking engine is that
// engine's Failed entry, not a dead process. (It runs on its own goroutine,
// out of reach of handle's recovery.)
func scanStream(ctx context.Context, e engines.StreamEngine, in *engines.Input, r io.Reader) (f engines.Finding, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("engine panicked: %v", v) // the fan-out drops a reader that returns
		}
	}()
	return e.ScanStream(ctx, in, r)
}

// scanHashes is scanStream for hash engines.
func scanHashes(ctx context.Context, e engines.HashEngine, in *engines.Input) (f engines.Finding, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("engine panicked: %v", v)
		}
	}()
	return e.ScanHashes(ctx, in)
}

// stepCodes are the verdicts of the workflow's file-type steps.
func stepCodes(wf *config.Workflow, name string, head []byte) map[int]bool {
	codes := map[int]bool{}
	if wf.FileType.DetectMismatch && filetype.Mismatch(name, head) {
		codes[result.Mismatch] = true
	}
	if filetype.Blocked(head, wf.FileType.Block) {
		codes[result.BlockedByFileType] = true
	}
	return codes
}

// conclude fills the scan results and closes the record: the overall
// verdict is the most severe of every engine and step, and the file is
// Blocked when the workflow's policy says one of them blocks. It returns
// the overall code.
func conclude(rec *result.Record, wf *config.Workflow, details map[string]result.EngineScan, codes map[int]bool, start time.Time) int {
	sr := &rec.Result.ScanResults
	sr.ScanDetails = details
	sr.TotalAVs = len(details)
	sr.TotalDetectedAVs = 0
	for _, d := range details {
		codes[d.ScanResultI] = true
		if d.ScanResultI == result.Infected || d.ScanResultI == result.Suspicious {
			sr.TotalDetectedAVs++
		}
	}
	code := result.NoThreat
	for c := range codes {
		code = result.Worse(code, c)
	}
	rec.Conclude(code, result.Policy{Families: wf.Block}.Reasons(codes), start, time.Now())
	return code
}

// selectEngines returns the workflow's engines, or all when it names none.
func (s *Scanner) selectEngines(names []string) []engines.Engine {
	var out []engines.Engine
	for _, ne := range s.opts.Engines {
		if len(names) == 0 || slices.Contains(names, ne.Name) {
			out = append(out, ne.Engine)
		}
	}
	return out
}

func (s *Scanner) track(id string, stop context.CancelCauseFunc) {
	s.mu.Lock()
	s.running[id] = stop
	s.mu.Unlock()
}

func (s *Scanner) untrack(id string) {
	s.mu.Lock()
	delete(s.running, id)
	s.mu.Unlock()
}

func (s *Scanner) stopRunning(id string, cause error) {
	s.mu.Lock()
	stop := s.running[id]
	s.mu.Unlock()
	if stop != nil {
		stop(cause)
	}
}

// register keeps this scanner and its engines listed for GET /stat/engines
// and GET /stat/nodes until ctx ends, then removes the entry; the entry
// expires on its own if the process dies.
func (s *Scanner) register(ctx context.Context) {
	host, _ := os.Hostname()
	node := stats.Node{ID: s.id, Address: host, Version: s.opts.Version, Started: time.Now(), Capacity: s.opts.Workers}
	for {
		s.refreshEngines(ctx)
		node.Engines = node.Engines[:0]
		for _, ne := range s.opts.Engines {
			info := ne.Engine.Info()
			if info.Loaded.IsZero() {
				// An engine that does not say had its definitions from the start.
				info.Loaded = node.Started
			}
			node.Engines = append(node.Engines, stats.EngineInfo{EngID: info.ID, EngName: info.Name, EngVer: info.Version,
				EngType: stats.EngTypeBundled, DefTime: info.DefTime, DownloadTime: result.FormatTime(info.Loaded),
				DownloadProgress: 100, Active: true, State: "production", EngineType: "av", Type: "engine"})
		}
		s.mu.Lock()
		node.InProgress = len(s.running)
		s.mu.Unlock()
		node.FreeDisk, node.TotalDisk = diskSpace(s.opts.DataDir)
		if err := stats.Register(ctx, s.b.Nodes, node); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("registering scanner failed")
		}
		select {
		case <-ctx.Done():
			// ctx is over; the entry is removed on a context of its own.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := stats.Deregister(dctx, s.b.Nodes, s.id); err != nil {
				s.log.Warn().Err(err).Msg("deregistering scanner failed; its entry expires on its own")
			}
			return
		case <-time.After(s.opts.RegisterEvery):
		}
	}
}

// refreshEngines asks engines whose definitions can change while running
// (clamd reloading its database) for their current ones. A failure keeps
// the last known definitions: a scan failing on the engine reports it.
func (s *Scanner) refreshEngines(ctx context.Context) {
	for _, ne := range s.opts.Engines {
		r, ok := ne.Engine.(engines.Refresher)
		if !ok {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, s.opts.RegisterEvery)
		err := r.Refresh(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Str("engine", ne.Name).Msg("refreshing engine definitions failed")
		}
	}
}

// diskSpace is the free (to an unprivileged writer) and total bytes of
// dir's disk; zeros when unknown.
func diskSpace(dir string) (free, total int64) {
	if dir == "" {
		return 0, 0
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize)
}

// originalToKeep is what of fc is kept as its stored original: the bytes
// of a small file, which travel inside its events and have no blob (a
// larger file's upload is its stored original). A rescan keeps nothing:
// its bytes are the original's, already kept.
func originalToKeep(fc *events.FileComplete) []byte {
	if fc.Data == nil || fc.Rescan() {
		return nil
	}
	return fc.Data
}

// keepOriginal keeps a small file's bytes for rescans: a larger file's
// upload is its stored original, a small one travels inside its events and
// has no blob. They go to the originals bucket under the file's data_id,
// where they expire retention.originals after this write, that is after
// the verdict (bus.KeepOriginal).
//
// Not the blob store: a file and an fsync of its own per small file is
// what carrying small files inside their events avoids, and millions of
// them would make every retention sweep list millions of files. The bucket
// takes the copies of concurrent scans in shared group commits and expires
// them on its own. A failure is logged and otherwise ignored: the verdict
// does not depend on the copy, and a rescan of a file without one answers
// that the file is no longer stored.
func (s *Scanner) keepOriginal(ctx context.Context, dataID string, data []byte, log zerolog.Logger) {
	if data == nil {
		return
	}
	if err := s.b.KeepOriginal(ctx, dataID, data); err != nil && ctx.Err() == nil {
		log.Warn().Err(err).Msg("keeping the bytes of a small file failed; it cannot be rescanned")
	}
}

// keepOriginalAsync is keepOriginal beside the caller; the function it
// returns waits for it (and may be called again).
func (s *Scanner) keepOriginalAsync(ctx context.Context, dataID string, data []byte, log zerolog.Logger) (wait func()) {
	if data == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.keepOriginal(ctx, dataID, data, log)
	}()
	return func() { <-done }
}
