package blob

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/bus"
)

// ErrIncomplete is returned by Open when the parts written so far leave
// bytes of the blob uncovered (an upload still running, or one that lost a
// part). Only stores that keep parts apart can tell; the fs store cannot.
var ErrIncomplete = errors.New("blob incomplete")

// JetStreamOptions configure NewJetStream.
type JetStreamOptions struct {
	Bucket   string // object store bucket; default "blobs". The index is "<Bucket>-parts".
	Replicas int    // default 1; 3 on a cluster
}

// JetStream keeps blobs in a JetStream object store, so ingest nodes on
// several hosts share them with no infrastructure beyond NATS.
//
// Each WriteAt is one object named "<key>.<off>.<n>", streamed from the
// reader chunk by chunk (a few chunks in memory, never the whole part),
// then recorded in the KV bucket "<Bucket>-parts" under the same name with
// an empty value. Open lists the index entries of a key, builds a
// manifest (parts by offset, overlaps trimmed, gaps refused) and reads the
// parts in order as one stream.
type JetStream struct {
	bucket    string
	obs       jetstream.ObjectStore
	objStream jetstream.Stream // OBJ_<bucket>: chunks read by direct get or consumer
	kv        jetstream.KeyValue
	kvStream  jetstream.Stream // KV_<bucket>-parts: index entries purged by subject
	pub       jetstream.JetStream
	chunk     int
	bufs      sync.Pool     // *[]byte of chunk bytes
	inflight  chan struct{} // one token per chunk published and not yet acknowledged
}

// Chunks in flight (published, not yet acknowledged). obs.Put publishes a
// whole object without waiting, which overflows the stream's ingest queue
// (128 MiB; the server answers 429) as soon as a few large parts arrive
// faster than the disk syncs them. A window per write and a budget per
// store keep the server's queue and this process's memory small.
const (
	partWindow   = 4  // chunks per write
	storeBudget  = 16 // chunks per store
	ackTimeout   = 30 * time.Second
	cleanupLimit = 30 * time.Second
)

// JetStreamAssets are the object store and its index bucket NewJetStream
// declares, for `scangate migrate` to check and apply.
func JetStreamAssets(opts JetStreamOptions) []bus.Asset {
	opts = opts.withDefaults()
	return []bus.Asset{
		bus.ObjectStoreAsset(jetstream.ObjectStoreConfig{
			Bucket:      opts.Bucket,
			Description: "scangate blob parts, one object per written range",
			Storage:     jetstream.FileStorage,
			Replicas:    opts.Replicas,
		}),
		bus.BucketAsset(jetstream.KeyValueConfig{
			Bucket:      opts.Bucket + "-parts",
			Description: "scangate blob part index: <key>.<off>.<n> for each part object",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    opts.Replicas,
		}, false),
	}
}

func (o JetStreamOptions) withDefaults() JetStreamOptions {
	if o.Bucket == "" {
		o.Bucket = "blobs"
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	return o
}

// NewJetStream creates the object store and its index bucket if they are
// missing (an existing one that differs from opts is refused, as bus.Open
// refuses its streams) and returns a store on them.
func NewJetStream(ctx context.Context, js jetstream.JetStream, opts JetStreamOptions) (*JetStream, error) {
	opts = opts.withDefaults()
	if err := bus.Declare(ctx, js, JetStreamAssets(opts)); err != nil {
		return nil, fmt.Errorf("blob jetstream: %w", err)
	}
	// Declare has just made these: a cluster server may not show them yet
	// (bus.JustDeclared makes bus.Wait try again).
	obs, err := js.ObjectStore(ctx, opts.Bucket)
	if err != nil {
		err = bus.JustDeclared(err)
		return nil, fmt.Errorf("blob jetstream: object store %q: %w", opts.Bucket, err)
	}
	kvName := opts.Bucket + "-parts"
	kv, err := js.KeyValue(ctx, kvName)
	if err != nil {
		err = bus.JustDeclared(err)
		return nil, fmt.Errorf("blob jetstream: kv %q: %w", kvName, err)
	}
	objStream, err := js.Stream(ctx, "OBJ_"+opts.Bucket)
	if err != nil {
		err = bus.JustDeclared(err)
		return nil, fmt.Errorf("blob jetstream: object stream: %w", err)
	}
	kvStream, err := js.Stream(ctx, "KV_"+kvName)
	if err != nil {
		err = bus.JustDeclared(err)
		return nil, fmt.Errorf("blob jetstream: kv stream: %w", err)
	}
	pub, err := jetstream.New(js.Conn(),
		jetstream.WithPublishAsyncMaxPending(2*storeBudget),
		jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return nil, fmt.Errorf("blob jetstream: %w", err)
	}
	// Large chunks mean fewer messages, acks, syncs and gets per part.
	// Chunks carry no headers, so the server's max_payload bounds them.
	chunk := 1 << 20
	if mp := js.Conn().MaxPayload(); mp > 0 && mp < int64(chunk) {
		chunk = int(mp)
	}
	s := &JetStream{bucket: opts.Bucket, obs: obs, objStream: objStream, kv: kv, kvStream: kvStream,
		pub: pub, chunk: chunk, inflight: make(chan struct{}, storeBudget)}
	s.bufs.New = func() any { b := make([]byte, chunk); return &b }
	return s, nil
}

// partName names both a part's object and its index entry. Keys hold at most
// one dot, so a blob's parts are exactly the entries matching key+".*.*":
// "<id>.*.*" cannot match "<id>.sanitized.0.5", nor the other way round.
func partName(key string, off, n int64) string {
	return key + "." + strconv.FormatInt(off, 10) + "." + strconv.FormatInt(n, 10)
}

// WriteAt stores the n bytes of r as the part object "<key>.<off>.<n>" and
// then indexes it. It returns nil only when JetStream acknowledged both.
func (s *JetStream) WriteAt(ctx context.Context, key string, off int64, r io.Reader, n int64) error {
	if !ValidKey(key) {
		return ErrBadKey
	}
	if off < 0 || n < 0 || off > math.MaxInt64-n {
		return fmt.Errorf("blob jetstream: bad range %d+%d", off, n)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	name := partName(key, off, n)
	if err := s.put(ctx, name, &exactReader{ctx: ctx, r: r, left: n}); err != nil {
		return fmt.Errorf("blob jetstream: write %s: %w", name, err)
	}
	if _, err := s.kv.Put(ctx, name, nil); err != nil {
		s.dropUnindexed(name)
		return fmt.Errorf("blob jetstream: index %s: %w", name, err)
	}
	return nil
}

// put stores the bytes of src as object name, laid down as the object store
// specification (ADR-20) says, so ObjectStore.Get/GetInfo/Delete and the
// nats CLI see an ordinary object: chunks on $O.<bucket>.C.<nuid>, then the
// metadata, rolled up, on $O.<bucket>.M.<name>. Unlike ObjectStore.Put it
// keeps at most partWindow chunks unacknowledged (and the store at most
// storeBudget), reads src only while ctx lasts, and purges what it sent if
// anything fails: no chunk is left behind, and an earlier version of the
// object stays as it was.
func (s *JetStream) put(ctx context.Context, name string, src io.Reader) (err error) {
	old, gerr := s.obs.GetInfo(ctx, name, jetstream.GetObjectInfoShowDeleted())
	if gerr != nil && !errors.Is(gerr, jetstream.ErrObjectNotFound) {
		return gerr
	}
	nuid := rand.Text()
	subj := s.chunkSubject(nuid)
	sum := sha256.New()
	var size uint64
	var chunks uint32

	type sent struct {
		fut jetstream.PubAckFuture
		buf *[]byte
	}
	var window []sent
	// pop retires the oldest chunk, answered.
	pop := func() {
		w := window[0]
		window = window[1:]
		<-s.inflight
		s.bufs.Put(w.buf)
	}
	// settle waits for the oldest chunk's answer (or for ctx, if not nil).
	settle := func(ctx context.Context) error {
		var done <-chan struct{}
		if ctx != nil {
			done = ctx.Done()
		}
		select {
		case <-window[0].fut.Ok():
			pop()
			return nil
		case err := <-window[0].fut.Err():
			pop()
			return err
		case <-done:
			return ctx.Err()
		}
	}
	defer func() {
		if err == nil {
			return
		}
		// Wait until the server answered for every chunk sent (acks time
		// out after ackTimeout) so none lands after the purge.
		for len(window) > 0 {
			_ = settle(nil)
		}
		if size > 0 {
			pctx, cancel := context.WithTimeout(context.Background(), cleanupLimit)
			defer cancel()
			_ = s.objStream.Purge(pctx, jetstream.WithPurgeSubject(subj))
		}
	}()

	for {
		bp := s.bufs.Get().(*[]byte)
		k, rerr := src.Read(*bp)
		if rerr != nil && rerr != io.EOF {
			s.bufs.Put(bp)
			return rerr
		}
		if k == 0 {
			s.bufs.Put(bp)
		} else {
			sum.Write((*bp)[:k])
			size += uint64(k)
			chunks++
			if len(window) == partWindow {
				if err := settle(ctx); err != nil {
					s.bufs.Put(bp)
					return err
				}
			}
			// Take a token from the store's budget, settling our own
			// chunks meanwhile so writers never wait on each other's
			// tokens while holding theirs.
			for acquired := false; !acquired; {
				var oldest <-chan *jetstream.PubAck
				var oldestErr <-chan error
				if len(window) > 0 {
					oldest, oldestErr = window[0].fut.Ok(), window[0].fut.Err()
				}
				select {
				case s.inflight <- struct{}{}:
					acquired = true
				case <-oldest:
					pop()
				case e := <-oldestErr:
					pop()
					s.bufs.Put(bp)
					return e
				case <-ctx.Done():
					s.bufs.Put(bp)
					return ctx.Err()
				}
			}
			fut, perr := s.pub.PublishMsgAsync(&nats.Msg{Subject: subj, Data: (*bp)[:k]})
			if perr != nil {
				<-s.inflight
				s.bufs.Put(bp)
				return perr
			}
			window = append(window, sent{fut, bp})
		}
		if rerr == io.EOF {
			break
		}
	}
	for len(window) > 0 {
		if err := settle(ctx); err != nil {
			return err
		}
	}

	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(s.chunk)}},
		Bucket:     s.bucket,
		NUID:       nuid,
		Size:       size,
		Chunks:     chunks,
		Digest:     jetstream.GetObjectDigestValue(sum),
	}
	meta := nats.NewMsg(s.metaSubject(name))
	meta.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	if meta.Data, err = json.Marshal(info); err != nil {
		return err
	}
	if _, err := s.pub.PublishMsg(ctx, meta); err != nil {
		// The ack may be what got lost: if the metadata is ours, it is in.
		cctx, cancel := context.WithTimeout(context.Background(), cleanupLimit)
		cur, gerr := s.obs.GetInfo(cctx, name)
		cancel()
		if gerr != nil || cur.NUID != nuid {
			return err
		}
	}
	// The previous version's chunks are unreachable now.
	if old != nil && old.NUID != "" && old.NUID != nuid {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupLimit)
		_ = s.objStream.Purge(pctx, jetstream.WithPurgeSubject(s.chunkSubject(old.NUID)))
		cancel()
	}
	return nil
}

// dropUnindexed deletes a part object whose index entry could not be
// written, unless an earlier write of the same range indexed it (then the
// object, now holding the same range again, is still referenced).
func (s *JetStream) dropUnindexed(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupLimit)
	defer cancel()
	if _, err := s.kv.Get(ctx, name); !errors.Is(err, jetstream.ErrKeyNotFound) {
		return
	}
	_ = s.deleteObject(ctx, name)
}

// deleteObject deletes a part object; a missing one is not an error.
func (s *JetStream) deleteObject(ctx context.Context, name string) error {
	err := s.obs.Delete(ctx, name)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return err
	}
	// Delete leaves a tombstone (the metadata marked deleted) for watchers;
	// nobody watches these, and one per part for ever adds up. Purging its
	// subject drops it; failing to is harmless.
	_ = s.objStream.Purge(ctx, jetstream.WithPurgeSubject(s.metaSubject(name)))
	return nil
}

// exactReader yields exactly left bytes of r, filling each buffer it is
// given (so every object chunk but the last is full size), and stops at
// once when ctx ends.
type exactReader struct {
	ctx  context.Context
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n := 0
	for n < len(p) {
		if err := e.ctx.Err(); err != nil {
			return n, err
		}
		k, err := e.r.Read(p[n:])
		n += k
		e.left -= int64(k)
		if err == io.EOF {
			if e.left > 0 {
				return n, io.ErrUnexpectedEOF
			}
			break
		}
		if err != nil {
			return n, err
		}
	}
	if e.left == 0 {
		return n, io.EOF
	}
	return n, nil
}

// part is one index entry: bytes [off, off+n) of a blob.
type part struct{ off, n int64 }

// segment is the stretch [start, end) of a blob read from one part object,
// after skipping the skip bytes at the head of the part that an earlier part
// already supplies. A segment always ends where its part ends.
type segment struct {
	name       string
	start, end int64
	skip       int64
}

// manifest orders parts by offset and trims overlaps: the part with the
// earlier offset (the longer one at equal offsets) wins each byte, so a
// later part only contributes what lies past the bytes covered so far, and a
// part entirely inside covered bytes is left out. A byte covered by no part
// is ErrIncomplete, unless prefix is set: then the manifest ends at the
// first gap. The size is the end of the last part taken.
func manifest(key string, parts []part, prefix bool) ([]segment, int64, error) {
	parts = slices.Clone(parts)
	slices.SortFunc(parts, func(a, b part) int {
		if a.off != b.off {
			return cmp.Compare(a.off, b.off)
		}
		return cmp.Compare(b.n, a.n)
	})
	var segs []segment
	var end int64
	for _, p := range parts {
		pe := p.off + p.n
		if p.n == 0 || pe <= end {
			continue
		}
		if p.off > end {
			if prefix {
				break
			}
			return nil, 0, fmt.Errorf("%w: %s: bytes %d to %d are missing", ErrIncomplete, key, end, p.off-1)
		}
		segs = append(segs, segment{name: partName(key, p.off, p.n), start: end, end: pe, skip: end - p.off})
		end = pe
	}
	return segs, end, nil
}

// parts lists the index entries of key.
func (s *JetStream) parts(ctx context.Context, key string) ([]part, error) {
	var parts []part
	seen := map[string]bool{}
	err := s.index(ctx, key+".*.*", func(e jetstream.KeyValueEntry) error {
		name := e.Key()
		if seen[name] {
			return nil
		}
		seen[name] = true
		p, err := parsePart(key, name)
		if err != nil {
			return err
		}
		parts = append(parts, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("blob jetstream: list %s: %w", key, err)
	}
	return parts, nil
}

// index calls fn with the index entries matching filter as they are now
// (an entry rewritten meanwhile may come twice), metadata only.
func (s *JetStream) index(ctx context.Context, filter string, fn func(jetstream.KeyValueEntry) error) error {
	w, err := s.kv.WatchFiltered(ctx, []string{filter}, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return err
	}
	defer func() {
		_ = w.Stop()
		// A live update racing the Stop must not block the watcher's
		// callback for ever; the channel closes once the sub is gone.
		go func() {
			for range w.Updates() {
			}
		}()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed early")
			}
			if e == nil { // all current entries delivered
				return nil
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// List reads the whole part index (metadata only, no bytes) and reports
// each blob once: its length is the end of its furthest part, its
// modification time that of its latest part. It holds one small entry per
// blob while it reads.
func (s *JetStream) List(ctx context.Context, fn func(Info) error) error {
	blobs := map[string]*Info{}
	err := s.index(ctx, ">", func(e jetstream.KeyValueEntry) error {
		name := e.Key()
		// "<key>.<off>.<n>": the key is what precedes the last two dots.
		i := strings.LastIndexByte(name, '.')
		j := -1
		if i > 0 {
			j = strings.LastIndexByte(name[:i], '.')
		}
		if j <= 0 || !ValidKey(name[:j]) {
			return nil // not an entry WriteAt makes
		}
		key := name[:j]
		p, err := parsePart(key, name)
		if err != nil {
			return nil
		}
		b := blobs[key]
		if b == nil {
			b = &Info{Key: key}
			blobs[key] = b
		}
		b.Size = max(b.Size, p.off+p.n)
		if t := e.Created(); t.After(b.ModTime) {
			b.ModTime = t
		}
		return nil
	})
	if err != nil {
		return unavailable(ctx, fmt.Errorf("blob jetstream: list: %w", err))
	}
	for _, b := range blobs {
		if err := fn(*b); err != nil {
			return err
		}
	}
	return nil
}

func parsePart(key, name string) (part, error) {
	rest, ok := strings.CutPrefix(name, key+".")
	o, l, ok2 := strings.Cut(rest, ".")
	off, err1 := strconv.ParseInt(o, 10, 64)
	n, err2 := strconv.ParseInt(l, 10, 64)
	if !ok || !ok2 || err1 != nil || err2 != nil || off < 0 || n < 0 || off > math.MaxInt64-n {
		return part{}, fmt.Errorf("blob jetstream: bad index entry %q", name)
	}
	return part{off, n}, nil
}

// Open reads key's manifest. Reads of the returned Object use ctx: cancel it
// to stop them.
func (s *JetStream) Open(ctx context.Context, key string) (Object, error) {
	return s.open(ctx, key, false)
}

// OpenPrefix is Open for the bytes of key from offset 0 up to the first
// gap, for a file whose parts are still arriving (its prefix is hashed as
// it grows).
func (s *JetStream) OpenPrefix(ctx context.Context, key string) (Object, error) {
	return s.open(ctx, key, true)
}

func (s *JetStream) open(ctx context.Context, key string, prefix bool) (Object, error) {
	if !ValidKey(key) {
		return nil, ErrBadKey
	}
	opCtx, cancel := context.WithTimeout(ctx, chunkTimeout)
	parts, err := s.parts(opCtx, key)
	cancel()
	if err != nil {
		return nil, unavailable(ctx, err)
	}
	if len(parts) == 0 {
		return nil, ErrNotFound
	}
	segs, size, err := manifest(key, parts, prefix)
	if err != nil {
		return nil, err
	}
	o := &jsObject{s: s, ctx: ctx, segs: segs, size: size}
	o.seq = seqReader{o: o, end: size}
	return o, nil
}

// Delete removes every part object of key, each followed by its index
// entry. A Delete that fails part way can be repeated: the index still
// lists what is left.
func (s *JetStream) Delete(ctx context.Context, key string) error {
	if !ValidKey(key) {
		return ErrBadKey
	}
	parts, err := s.parts(ctx, key)
	if err != nil {
		return err
	}
	// A concatenation owns its parts: they go first, so a Delete cut short
	// leaves links that still name what is left to delete.
	linked, err := s.linkedBlobs(ctx, key, parts)
	if err != nil {
		return fmt.Errorf("blob jetstream: delete %s: %w", key, err)
	}
	for _, b := range linked {
		if err := s.Delete(ctx, b); err != nil {
			return err
		}
	}
	for _, p := range parts {
		name := partName(key, p.off, p.n)
		if err := s.deleteObject(ctx, name); err != nil {
			return fmt.Errorf("blob jetstream: delete %s: %w", name, err)
		}
		// Purging the entry's subject, unlike KeyValue.Delete or Purge,
		// leaves no marker behind.
		if err := s.kvStream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+s.bucket+"-parts."+name)); err != nil {
			return fmt.Errorf("blob jetstream: delete index entry %s: %w", name, err)
		}
	}
	return nil
}

// Subjects of the object store stream, as laid down by the object store
// specification (ADR-20).
func (s *JetStream) metaSubject(name string) string {
	return "$O." + s.bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
}

func (s *JetStream) chunkSubject(nuid string) string { return "$O." + s.bucket + ".C." + nuid }

// jsObject reads a manifest as one blob.
type jsObject struct {
	s    *JetStream
	ctx  context.Context
	segs []segment
	size int64

	mu       sync.Mutex // guards the sequential readers below; ReadAt does not touch them
	closed   bool
	seq      seqReader // Read's
	sections []*seqReader
}

func (o *jsObject) Size() int64 { return o.size }

// segAt is the index of the segment holding blob offset off (< size).
func (o *jsObject) segAt(off int64) int {
	return sort.Search(len(o.segs), func(i int) bool { return o.segs[i].end > off })
}

// openAt opens segment i's part positioned at blob offset off, to read
// want bytes from there (or to the end of the segment, if want < 0).
func (o *jsObject) openAt(i int, off, want int64) (*partReader, error) {
	seg := o.segs[i]
	skip := seg.skip + off - seg.start
	if want < 0 {
		want = seg.end - off
	}
	pr, err := o.s.openPart(o.ctx, seg.name, skip+want)
	if err != nil {
		return nil, err
	}
	if err := pr.discard(skip); err != nil {
		pr.close()
		return nil, err
	}
	return pr, nil
}

func (o *jsObject) Read(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, fs.ErrClosed
	}
	return o.seq.read(p)
}

// Section reads n bytes from off in order, keeping each part open while it
// reads it: ReadAt opens the part anew for every call, which costs the
// part's bytes up to off each time. Sections are closed with the object.
func (o *jsObject) Section(off, n int64) io.Reader {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := &seqReader{o: o, pos: off, end: min(off+n, o.size)}
	o.sections = append(o.sections, r)
	return &lockedReader{mu: &o.mu, closed: &o.closed, r: r}
}

// lockedReader serialises a section's reads with Close.
type lockedReader struct {
	mu     *sync.Mutex
	closed *bool
	r      *seqReader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if *l.closed {
		return 0, fs.ErrClosed
	}
	return l.r.read(p)
}

// seqReader reads an object's bytes in order from pos to end, one part
// reader at a time.
type seqReader struct {
	o        *jsObject
	pos, end int64
	cur      *partReader // open on the segment holding pos, positioned at pos
	curSeg   int
}

func (r *seqReader) read(p []byte) (int, error) {
	o := r.o
	if len(p) == 0 {
		return 0, nil
	}
	if r.pos >= r.end {
		return 0, io.EOF
	}
	if r.cur == nil {
		i := o.segAt(r.pos)
		pr, err := o.openAt(i, r.pos, -1)
		if err != nil {
			return 0, err
		}
		r.cur, r.curSeg = pr, i
	}
	seg := o.segs[r.curSeg]
	n, err := r.cur.Read(p[:min(int64(len(p)), seg.end-r.pos, r.end-r.pos)])
	r.pos += int64(n)
	if err == io.EOF {
		err = nil
		if r.pos < seg.end {
			err = fmt.Errorf("blob jetstream: part %s ended early: %w", seg.name, io.ErrUnexpectedEOF)
		}
	}
	if err == nil && r.pos == seg.end {
		err = r.cur.finish()
		r.cur.close()
		r.cur = nil
	}
	if err == nil && r.pos == r.end && r.cur != nil {
		r.cur.close() // the section ends inside this part
		r.cur = nil
	}
	if err != nil {
		r.closePart() // the next read reopens at pos
		return n, err
	}
	return n, nil
}

func (r *seqReader) closePart() {
	if r.cur != nil {
		r.cur.close()
		r.cur = nil
	}
}

// ReadAt reads len(p) bytes at off, opening the parts that hold them; it
// is independent of Read and safe to call concurrently.
func (o *jsObject) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("blob jetstream: negative offset %d", off)
	}
	o.mu.Lock()
	closed := o.closed
	o.mu.Unlock()
	if closed {
		return 0, fs.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	for n < len(p) && off < o.size {
		i := o.segAt(off)
		seg := o.segs[i]
		want := min(int64(len(p)-n), seg.end-off)
		k, err := o.readSeg(i, off, p[n:n+int(want)])
		n += k
		off += int64(k)
		if err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readSeg fills p (which lies within segment i) from blob offset off.
func (o *jsObject) readSeg(i int, off int64, p []byte) (int, error) {
	seg := o.segs[i]
	pr, err := o.openAt(i, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	defer pr.close()
	k, err := io.ReadFull(pr, p)
	if err != nil {
		return k, fmt.Errorf("blob jetstream: read %s: %w", seg.name, err)
	}
	if off+int64(k) == seg.end {
		return k, pr.finish()
	}
	return k, nil
}

func (o *jsObject) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq.closePart()
	for _, r := range o.sections {
		r.closePart()
	}
	o.closed, o.sections = true, nil
	return nil
}

// Reading a part fetches at most directMax bytes by direct gets (one
// request per chunk, nothing to set up or clean up); longer reads stream
// through an ordered pull consumer that keeps at most prefetchChunks ahead.
// Either way a reader holds a few chunks, never a part.
const (
	directMax      = 4 << 20
	prefetchChunks = 4
)

// chunkTimeout bounds the wait for one chunk: a read whose stream lost its
// leader fails within seconds (and is retried by its caller) instead of
// hanging for as long as the caller's context allows.
const chunkTimeout = 15 * time.Second

// unavailable marks err as ErrUnavailable when it is an operation's own
// deadline or a lost connection (not the caller's ctx ending): the bytes
// may well be there once the store has a leader again.
func unavailable(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// chunkSource yields the chunks of one part object in order.
type chunkSource interface {
	next(ctx context.Context) ([]byte, error)
	close()
}

// partReader reads one part object and checks, when it reaches the end,
// the size and digest recorded when it was written.
type partReader struct {
	ctx  context.Context
	info *jetstream.ObjectInfo
	src  chunkSource
	buf  []byte // unread bytes of the current chunk
	got  uint64 // bytes received
	sum  hash.Hash
}

// openPart opens part object name to read span bytes from its start.
func (s *JetStream) openPart(ctx context.Context, name string, span int64) (*partReader, error) {
	opCtx, cancel := context.WithTimeout(ctx, chunkTimeout)
	defer cancel()
	info, err := s.obs.GetInfo(opCtx, name)
	if err == nil && linkTarget(info) != "" {
		// A concatenation's part (Concat): the bytes are the target's.
		info, err = s.obs.GetInfo(opCtx, linkTarget(info))
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("blob jetstream: part %s is indexed but missing", name)
	}
	if err != nil {
		return nil, unavailable(ctx, fmt.Errorf("blob jetstream: part %s: %w", name, err))
	}
	subj := s.chunkSubject(info.NUID)
	var src chunkSource = &directSource{s: s, name: name, subj: subj, seq: 1}
	if span > directMax {
		if src, err = s.consumerSource(opCtx, name, subj); err != nil {
			return nil, unavailable(ctx, err)
		}
	}
	return &partReader{ctx: ctx, info: info, src: src, sum: sha256.New()}, nil
}

func (r *partReader) next() error {
	data, err := r.src.next(r.ctx)
	if err != nil {
		return err
	}
	r.got += uint64(len(data))
	if r.got > r.info.Size {
		return fmt.Errorf("blob jetstream: part %s holds more than its %d bytes", r.info.Name, r.info.Size)
	}
	r.sum.Write(data)
	r.buf = data
	return nil
}

func (r *partReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.got == r.info.Size {
			if err := r.finish(); err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// discard skips k bytes without copying them.
func (r *partReader) discard(k int64) error {
	for k > 0 {
		if len(r.buf) == 0 {
			if r.got == r.info.Size {
				return fmt.Errorf("blob jetstream: part %s: %w", r.info.Name, io.ErrUnexpectedEOF)
			}
			if err := r.next(); err != nil {
				return err
			}
		}
		d := min(k, int64(len(r.buf)))
		r.buf = r.buf[d:]
		k -= d
	}
	return nil
}

// finish checks, once every byte was read, that the part held exactly its
// size and the digest recorded when it was written.
func (r *partReader) finish() error {
	if len(r.buf) != 0 || r.got != r.info.Size {
		return fmt.Errorf("blob jetstream: part %s: size differs from its %d bytes", r.info.Name, r.info.Size)
	}
	want, err := jetstream.DecodeObjectDigest(r.info.Digest)
	if err != nil {
		return fmt.Errorf("blob jetstream: part %s: %w", r.info.Name, err)
	}
	if !bytes.Equal(r.sum.Sum(nil), want) {
		return fmt.Errorf("blob jetstream: part %s: %w", r.info.Name, jetstream.ErrDigestMismatch)
	}
	return nil
}

func (r *partReader) close() { r.src.close() }

// directSource fetches each chunk with a direct get of the next message
// on the object's chunk subject.
type directSource struct {
	s          *JetStream
	name, subj string
	seq        uint64 // the next chunk is the first at or after this stream sequence
}

// next fetches the next chunk. A replica that is behind may not have it
// yet; it is asked again a few times before giving up.
func (d *directSource) next(ctx context.Context) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		opCtx, cancel := context.WithTimeout(ctx, chunkTimeout)
		m, err := d.s.objStream.GetMsg(opCtx, d.seq, jetstream.WithGetMsgSubject(d.subj))
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: read %s: no chunk within %s", ErrUnavailable, d.name, chunkTimeout)
		}
		if errors.Is(err, jetstream.ErrMsgNotFound) && attempt < 5 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(20<<attempt) * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("blob jetstream: read %s: %w", d.name, err)
		}
		d.seq = m.Sequence + 1
		return m.Data, nil
	}
}

func (d *directSource) close() {}

// consumerSource streams the chunks through an ordered consumer, from the
// stream leader, pulling at most prefetchChunks ahead of the reader.
type consumerSource struct {
	s    *JetStream
	name string
	cons jetstream.Consumer
	it   jetstream.MessagesContext
}

func (s *JetStream) consumerSource(ctx context.Context, name, subj string) (*consumerSource, error) {
	cons, err := s.objStream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{subj},
		InactiveThreshold: time.Minute, // a reader that never finishes
	})
	if err != nil {
		return nil, fmt.Errorf("blob jetstream: read %s: %w", name, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(prefetchChunks))
	if err != nil {
		return nil, fmt.Errorf("blob jetstream: read %s: %w", name, err)
	}
	return &consumerSource{s: s, name: name, cons: cons, it: it}, nil
}

func (c *consumerSource) next(ctx context.Context) ([]byte, error) {
	opCtx, cancel := context.WithTimeout(ctx, chunkTimeout)
	defer cancel()
	m, err := c.it.Next(jetstream.NextContext(opCtx))
	if err != nil && ctx.Err() == nil && opCtx.Err() != nil {
		return nil, fmt.Errorf("%w: read %s: no chunk within %s", ErrUnavailable, c.name, chunkTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("blob jetstream: read %s: %w", c.name, err)
	}
	return m.Data(), nil
}

// close stops the pulls and deletes the consumer rather than leaving it
// to the server's inactivity cleanup.
func (c *consumerSource) close() {
	c.it.Stop()
	info := c.cons.CachedInfo()
	if info == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.s.objStream.DeleteConsumer(ctx, info.Name)
	}()
}

// JetStream satisfies Store and Lister.
var (
	_ Store  = (*JetStream)(nil)
	_ Lister = (*JetStream)(nil)
)
