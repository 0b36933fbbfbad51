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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/bus"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/result"
	"github.com/scangate/scangate/pkg/workflow"
	"github.com/scangate/scangate/scanner/engines"
	"github.com/scangate/scangate/scanner/filetype"
)

// Options tune a scanner.
type Options struct {
	Workers   int           // files scanned at once
	Timeout   time.Duration // a scan longer than this ends with verdict 31
	Workflows *workflow.Set
	// Engines by config name ("signatures", "hashlist"), in report order.
	Engines []NamedEngine
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

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc
}

// errCancelled is the cause of a scan stopped by POST /file/{id}/cancel.
var errCancelled = errors.New("cancelled by request")

// New returns a scanner; Run starts it.
func New(b *bus.Bus, blobs blob.Store, opts Options, log zerolog.Logger) *Scanner {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	return &Scanner{
		b: b, blobs: blobs, results: result.Store{KV: b.Results}, opts: opts,
		log:     log.With().Str("role", "scanner").Logger(),
		running: map[string]context.CancelCauseFunc{},
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
	cons, err := s.b.JS.Consumer(ctx, events.StreamFiles, events.ConsumerScanners)
	if err != nil {
		return fmt.Errorf("scanner: consumer: %w", err)
	}
	s.log.Info().Int("workers", s.opts.Workers).Msg("scanner started")
	var wg sync.WaitGroup
	for range s.opts.Workers {
		wg.Go(func() { s.work(ctx, cons) })
	}
	wg.Wait()
	return nil
}

// work takes one file at a time: a worker only asks for work when it is
// free, so no file waits in a busy scanner's buffer while a peer is idle.
func (s *Scanner) work(ctx context.Context, cons jetstream.Consumer) {
	for ctx.Err() == nil {
		fetchCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(fetchCtx))
		cancel()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
				s.log.Warn().Err(err).Msg("fetch failed")
				time.Sleep(time.Second)
			}
			continue
		}
		s.handle(ctx, msg)
	}
}

// handle processes one delivery. It is idempotent: a file whose final
// result already exists is only announced again (deduplicated) and acked.
func (s *Scanner) handle(ctx context.Context, msg jetstream.Msg) {
	var fc events.FileComplete
	if err := json.Unmarshal(msg.Data(), &fc); err != nil {
		s.log.Error().Err(err).Str("subject", msg.Subject()).Msg("undecodable file-complete event; dropped")
		_ = msg.TermWithReason("undecodable")
		return
	}
	log := s.log.With().Str("data_id", fc.DataID).Logger()
	md, _ := msg.Metadata()

	rec, rev, err := s.results.Get(ctx, fc.DataID)
	switch {
	case errors.Is(err, result.ErrNotFound):
		rec = result.New(fc.DataID, fc.Size, fc.Hashes, fc.Meta, fc.UploadedAt, result.InProgress)
	case err != nil:
		log.Error().Err(err).Msg("reading result failed; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if rec.Final() {
		s.finish(ctx, msg, rec, log)
		return
	}

	start := time.Now()
	if md != nil && md.NumDelivered >= bus.ScanMaxDeliver {
		// Every earlier attempt died mid-scan (a crash, a hung engine): the
		// file gets a Failed verdict rather than another try.
		log.Error().Uint64("deliveries", md.NumDelivered).Msg("scan failed on every attempt; giving up")
		rec.Finish(result.Failed, []string{"scan did not complete after repeated attempts"}, start, time.Now())
		s.commit(ctx, msg, rec, rev, log)
		return
	}

	// No write at scan start: the queued record already says 255 In
	// Progress, and every write costs an fsync. The final write names the
	// revision read here, so a cancel that lands meanwhile still wins;
	// heartbeats report progress on long scans.
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

	var read atomic.Int64
	hb := s.heartbeat(scanCtx, stop, msg, rec, &rev, fc.Size, &read, log)
	log.Debug().Int64("size", fc.Size).Str("workflow", fc.Meta.Workflow).Msg("scan started")
	err = s.scan(scanCtx, &fc, rec, &read)
	hb()

	switch cause := context.Cause(scanCtx); {
	case ctx.Err() != nil:
		// Shutting down: leave the file to a peer or to our next start.
		_ = msg.Nak()
		return
	case errors.Is(cause, errCancelled):
		log.Info().Msg("scan cancelled")
		_ = msg.Ack() // the canceller wrote the final result
		return
	case errors.Is(scanCtx.Err(), context.DeadlineExceeded):
		log.Warn().Dur("timeout", s.opts.Timeout).Msg("scan timed out")
		rec.Finish(result.GlobalTimeout, nil, start, time.Now())
	case err != nil:
		log.Error().Err(err).Msg("scan failed")
		rec.Finish(result.Failed, []string{err.Error()}, start, time.Now())
	}
	s.commit(ctx, msg, rec, rev, log)
}

// commit writes the final result (only over the revision this scan
// started from: a cancel that came first wins), indexes the hashes and
// announces the result.
func (s *Scanner) commit(ctx context.Context, msg jetstream.Msg, rec *result.Record, rev uint64, log zerolog.Logger) {
	// Index first: a client that sees the final result can look it up by
	// hash at once.
	if err := s.indexHashes(ctx, rec); err != nil {
		log.Error().Err(err).Msg("indexing hashes failed; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if _, err := s.results.Put(ctx, rec, rev); err != nil {
		if errors.Is(err, result.ErrConflict) {
			log.Info().Msg("result changed during scan (cancelled); keeping the newer one")
			_ = msg.NakWithDelay(100 * time.Millisecond) // next delivery finds it final and announces it
			return
		}
		log.Error().Err(err).Msg("writing result failed; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	s.finish(ctx, msg, rec, log)
}

// finish indexes and announces a final record and acknowledges the work.
// Every step is idempotent, so a crash anywhere here is repaired by the
// redelivery.
func (s *Scanner) finish(ctx context.Context, msg jetstream.Msg, rec *result.Record, log zerolog.Logger) {
	if err := s.indexHashes(ctx, rec); err != nil {
		log.Error().Err(err).Msg("indexing hashes failed; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	done := &events.ScanDone{DataID: rec.Result.DataID, CallbackURL: rec.Meta.CallbackURL, SanitizedURL: rec.Meta.SanitizedURL}
	if err := s.b.PublishScanDone(ctx, done); err != nil {
		log.Error().Err(err).Msg("announcing result failed; will retry")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn().Err(err).Msg("ack failed; the file will be redelivered and re-announced harmlessly")
	}
	log.Info().
		Int("scan_all_result_i", rec.Result.ScanResults.ScanAllResultI).
		Str("result", rec.Result.ProcessInfo.Result).
		Int64("total_time_ms", rec.Result.ScanResults.TotalTime).
		Int64("queue_time_ms", rec.Result.ProcessInfo.QueueTime).
		Msg("scan done")
}

// indexHashes points each of the file's hashes at its data_id: the most
// recent scan of the same bytes answers GET /hash/{hash}.
func (s *Scanner) indexHashes(ctx context.Context, rec *result.Record) error {
	fi := rec.Result.FileInfo
	for algo, h := range map[string]string{"md5": fi.MD5, "sha1": fi.SHA1, "sha256": fi.SHA256, "sha512": fi.SHA512} {
		if h == "" {
			continue
		}
		if _, err := s.b.Hashes.PutString(ctx, events.HashKey(algo, h), rec.Result.DataID); err != nil {
			return fmt.Errorf("index %s: %w", algo, err)
		}
	}
	return nil
}

// heartbeat keeps the work item ours while a long scan runs (JetStream
// would otherwise hand it to a peer) and publishes progress. It returns a
// function that stops it.
func (s *Scanner) heartbeat(ctx context.Context, cancelScan context.CancelCauseFunc, msg jetstream.Msg,
	rec *result.Record, rev *uint64, size int64, read *atomic.Int64, log zerolog.Logger) (stop func()) {
	done := make(chan struct{})
	// A copy taken before the scan starts filling rec in: progress reports
	// never read what the scan is writing.
	base := *rec
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(bus.ScanHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := msg.InProgress(); err != nil {
				log.Warn().Err(err).Msg("heartbeat failed")
			}
			pct := 99
			if size > 0 {
				pct = min(99, int(read.Load()*100/size))
			}
			snapshot := base
			snapshot.Result.ScanResults.ProgressPercentage = pct
			snapshot.Result.ProcessInfo.ProgressPercentage = pct
			r, err := s.results.Put(ctx, &snapshot, *rev)
			switch {
			case err == nil:
				*rev = r
			case errors.Is(err, result.ErrConflict):
				// Only a cancel writes over a running scan. The cancel
				// broadcast normally stops us first; this covers a scanner
				// that missed it (reconnecting to NATS at that moment).
				cancelScan(errCancelled)
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// scan runs the workflow's steps and fills rec with the verdict.
func (s *Scanner) scan(ctx context.Context, fc *events.FileComplete, rec *result.Record, read *atomic.Int64) error {
	start := time.Now()
	wf, ok := s.opts.Workflows.Get(fc.Meta.Workflow)
	if !ok {
		return fmt.Errorf("workflow %q is no longer configured", fc.Meta.Workflow)
	}
	obj, err := s.blobs.Open(ctx, fc.DataID)
	if err != nil {
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
	selected := s.selectEngines(wf.Engines)
	details := make(map[string]result.EngineScan, len(selected))
	var mu sync.Mutex
	record := func(e engines.Engine, f engines.Finding, err error, began time.Time) {
		info := e.Info()
		d := result.EngineScan{ScanResultI: f.Code, ThreatFound: f.Threat, DefTime: info.DefTime,
			ScanTime: time.Since(began).Milliseconds(), WaitTime: began.Sub(start).Milliseconds(), EngID: info.ID}
		if err != nil {
			d.ScanResultI, d.ThreatFound = result.Failed, err.Error()
		}
		mu.Lock()
		details[info.Name] = d
		mu.Unlock()
	}

	// One read of the bytes feeds the hasher (when the upload could not
	// hash them on the way in) and every streaming engine.
	var consumers []func(io.Reader) error
	var hasher *hashingJob
	hashErr := make(chan error, 1)
	if !fc.Hashes.Complete() {
		if hasher, err = newHashingJob(fc.HashState); err != nil {
			return fmt.Errorf("hash state: %w", err)
		}
		if fc.HashedBytes > 0 {
			// Only the tail the upload could not hash in order is read
			// again, beside the engines' pass.
			go func() { hashErr <- hasher.consume(io.NewSectionReader(obj, fc.HashedBytes, fc.Size-fc.HashedBytes)) }()
		} else {
			consumers = append(consumers, func(r io.Reader) error {
				err := hasher.consume(r)
				hashErr <- err
				return err
			})
		}
	}
	var hashEngines []engines.HashEngine
	for _, e := range selected {
		switch e := e.(type) {
		case engines.StreamEngine:
			consumers = append(consumers, func(r io.Reader) error {
				began := time.Now()
				f, err := e.ScanStream(ctx, in, r)
				record(e, f, err, began)
				return nil
			})
		case engines.HashEngine:
			hashEngines = append(hashEngines, e)
		}
	}
	if len(consumers) > 0 {
		fanOut(ctx, io.NewSectionReader(obj, 0, fc.Size), read, consumers...)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if hasher != nil {
		if err := <-hashErr; err != nil {
			return fmt.Errorf("hashing: %w", err)
		}
		in.Hashes = hasher.sums()
	}
	read.Store(fc.Size)
	fi.MD5, fi.SHA1, fi.SHA256, fi.SHA512 = in.Hashes.MD5, in.Hashes.SHA1, in.Hashes.SHA256, in.Hashes.SHA512
	for _, e := range hashEngines {
		began := time.Now()
		f, err := e.ScanHashes(ctx, in)
		record(e, f, err, began)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	code, reasons := aggregate(details)
	sr := &rec.Result.ScanResults
	sr.ScanDetails = details
	sr.TotalAVs = len(details)
	sr.TotalDetectedAVs = 0
	for _, d := range details {
		if d.ScanResultI == result.Infected || d.ScanResultI == result.Suspicious {
			sr.TotalDetectedAVs++
		}
	}
	rec.Finish(code, reasons, start, time.Now())
	return nil
}

// selectEngines returns the workflow's engines, or all when it names none.
func (s *Scanner) selectEngines(names []string) []engines.Engine {
	var out []engines.Engine
	for _, ne := range s.opts.Engines {
		if len(names) == 0 || contains(names, ne.Name) {
			out = append(out, ne.Engine)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// aggregate picks the overall verdict — the most severe engine result —
// and lists every distinct blocking reason, most severe first.
func aggregate(details map[string]result.EngineScan) (int, []string) {
	code := result.NoThreat
	seen := map[int]bool{}
	for _, d := range details {
		seen[d.ScanResultI] = true
		code = result.Worse(code, d.ScanResultI)
	}
	reasons := []string{}
	for _, c := range result.SeverityOrder() {
		if seen[c] && result.Blocks(c) {
			reasons = append(reasons, result.CodeName(c))
		}
	}
	return code, reasons
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
