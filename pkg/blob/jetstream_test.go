package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/blob/storetest"
	"github.com/scangate/scangate/pkg/bus"
)

// startJetStream starts an embedded server in a temporary directory and
// returns a function that connects a new client ("a host") to it.
func startJetStream(t testing.TB) func() jetstream.JetStream {
	t.Helper()
	srv, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), SyncAlways: true})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return func() jetstream.JetStream {
		t.Helper()
		nc, err := srv.Connect(t.Name())
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatalf("jetstream.New: %v", err)
		}
		return js
	}
}

func newJetStream(t testing.TB) (*blob.JetStream, jetstream.JetStream) {
	t.Helper()
	js := startJetStream(t)()
	s, err := blob.NewJetStream(context.Background(), js, blob.JetStreamOptions{})
	if err != nil {
		t.Fatalf("NewJetStream: %v", err)
	}
	return s, js
}

func TestJetStreamConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) blob.Store {
		s, _ := newJetStream(t)
		return s
	}, storetest.Options{ReportsGaps: true})
}

// Of overlapping parts, the one with the earlier offset (at equal offsets
// the longer) supplies the bytes; a later part only what lies past them,
// read after skipping its head.
func TestJetStreamEarlierOffsetWins(t *testing.T) {
	s, _ := newJetStream(t)
	ctx := context.Background()
	for _, p := range []struct {
		off  int64
		data string
	}{
		{5, "BBBBBCCCCC"}, // bytes 5-9 overlap the first part: skipped
		{0, "xyz"},        // same offset as a longer part: left out
		{0, "aaaaaaaaaa"},
		{2, "ZZ"},          // inside: left out
		{12, "DDDEEEEEEE"}, // bytes 12-14 come from the second part
	} {
		if err := s.WriteAt(ctx, key, p.off, strings.NewReader(p.data), int64(len(p.data))); err != nil {
			t.Fatal(err)
		}
	}
	const want = "aaaaaaaaaaCCCCCEEEEEEE"
	if got := readAll(t, s, key); string(got) != want {
		t.Errorf("content = %q, want %q", got, want)
	}
	obj, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	for off := range int64(len(want)) {
		for n := 1; int(off)+n <= len(want); n += 3 {
			buf := make([]byte, n)
			if _, err := obj.ReadAt(buf, off); err != nil && err != io.EOF {
				t.Fatalf("ReadAt(%d at %d): %v", n, off, err)
			}
			if string(buf) != want[off:int(off)+n] {
				t.Errorf("ReadAt(%d at %d) = %q, want %q", n, off, buf, want[off:int(off)+n])
			}
		}
	}
}

// streamMsgs counts the messages left in the object store and index streams.
func streamMsgs(t *testing.T, js jetstream.JetStream) (obj, idx uint64) {
	t.Helper()
	ctx := context.Background()
	for name, n := range map[string]*uint64{"OBJ_blobs": &obj, "KV_blobs-parts": &idx} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		*n = info.State.Msgs
	}
	return obj, idx
}

// A write that fails leaves no chunk, object or index entry behind.
func TestJetStreamFailedWriteLeavesNothing(t *testing.T) {
	s, js := newJetStream(t)
	ctx := context.Background()
	big := &repeatReader{}
	if err := s.WriteAt(ctx, key, 0, io.LimitReader(big, 5<<20), 6<<20); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short WriteAt = %v, want io.ErrUnexpectedEOF", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src := &repeatReader{}
	ready := src.readOnce(3 << 20)
	go func() {
		<-ready
		cancel()
	}()
	if err := s.WriteAt(cctx, key, 0, src, 64<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled WriteAt = %v, want context.Canceled", err)
	}
	if obj, idx := streamMsgs(t, js); obj != 0 || idx != 0 {
		t.Errorf("after failed writes: %d object store messages, %d index entries; want none", obj, idx)
	}
	if _, err := s.Open(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open = %v, want ErrNotFound", err)
	}
}

// Delete leaves nothing behind either: no chunks, no tombstones, no
// delete markers.
func TestJetStreamDeleteLeavesNothing(t *testing.T) {
	s, js := newJetStream(t)
	ctx := context.Background()
	for _, k := range []string{key, key + ".sanitized"} {
		for off := int64(0); off < 3<<20; off += 1 << 20 {
			if err := s.WriteAt(ctx, k, off, io.LimitReader(&repeatReader{}, 1<<20), 1<<20); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, key+".sanitized"); err != nil {
		t.Fatalf("Delete of %s took its .sanitized blob too: %v", key, err)
	}
	if err := s.Delete(ctx, key+".sanitized"); err != nil {
		t.Fatal(err)
	}
	if obj, idx := streamMsgs(t, js); obj != 0 || idx != 0 {
		t.Errorf("after Delete: %d object store messages, %d index entries; want none", obj, idx)
	}
}

// Many large parts at once stay within what the server queues (with
// ObjectStore.Put, which publishes without waiting, the server answers 429
// past its 128 MiB ingest queue).
func TestJetStreamManyLargePartsAtOnce(t *testing.T) {
	if testing.Short() || raceEnabled() {
		t.Skip("writes 1 GiB: skipped with -short and -race (this is about flow, not races)")
	}
	s, _ := newJetStream(t)
	ctx := context.Background()
	const parts, size = 16, 64 << 20
	var wg sync.WaitGroup
	for i := range parts {
		wg.Go(func() {
			if err := s.WriteAt(ctx, key, int64(i)*size, io.LimitReader(&repeatReader{}, size), size); err != nil {
				t.Errorf("part %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	obj, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if obj.Size() != parts*size {
		t.Errorf("Size() = %d, want %d", obj.Size(), parts*size)
	}
}

func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// Long reads stream through consumers; they are gone once the reads end.
func TestJetStreamReadsLeaveNoConsumers(t *testing.T) {
	s, js := newJetStream(t)
	ctx := context.Background()
	const size = 12 << 20
	for off := int64(0); off < size; off += size / 2 {
		if err := s.WriteAt(ctx, key, off, io.LimitReader(&repeatReader{}, size/2), size/2); err != nil {
			t.Fatal(err)
		}
	}
	obj, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, obj); err != nil || n != size {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	if _, err := obj.ReadAt(make([]byte, 100), size-50); err != io.EOF { // a long discard, then the end
		t.Fatalf("ReadAt over the end = %v, want io.EOF", err)
	}
	// A sequential read abandoned half way, then closed.
	half, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, half, size/4); err != nil {
		t.Fatal(err)
	}
	half.Close()
	obj.Close()
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	// Listing the index (Open, Delete) watches it through a consumer too.
	for _, name := range []string{"OBJ_blobs", "KV_blobs-parts"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Consumers == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d consumers left on %s after reads ended", info.State.Consumers, name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Parts are ordinary objects: the object store API (and so the nats CLI)
// reads, lists and checks them.
func TestJetStreamPartsAreOrdinaryObjects(t *testing.T) {
	s, js := newJetStream(t)
	ctx := context.Background()
	big := strings.Repeat("0123456789abcdef", 200_000) // 3.2 MB, several chunks
	if err := s.WriteAt(ctx, key, 0, strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(ctx, key, 5, strings.NewReader(big), int64(len(big))); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(ctx, key, 5, strings.NewReader(big), int64(len(big))); err != nil { // rewritten
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, "blobs")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{key + ".0.5": "hello", key + ".5.3200000": big} {
		got, err := obs.GetString(ctx, name) // checks the digest
		if err != nil {
			t.Fatalf("ObjectStore.Get(%s): %v", name, err)
		}
		if got != want {
			t.Errorf("ObjectStore.Get(%s) returned %d bytes that differ", name, len(got))
		}
	}
	list, err := obs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Errorf("object store lists %d objects, want 2", len(list))
	}
	st, err := obs.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The rewrite purged the first version's chunks: what is stored is
	// the bytes once, plus per-message overhead.
	if size := st.Size(); size > uint64(len(big))+64<<10 {
		t.Errorf("object store holds %d bytes for %d bytes of parts: old chunks left behind?", size, len(big)+5)
	}
}

// Ingest nodes on several hosts write parts of one upload; any node reads it.
func TestJetStreamSharedBetweenHosts(t *testing.T) {
	connect := startJetStream(t)
	ctx := context.Background()
	stores := make([]*blob.JetStream, 3)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			s, err := blob.NewJetStream(ctx, connect(), blob.JetStreamOptions{Bucket: "shared"})
			if err != nil {
				t.Errorf("NewJetStream on host %d: %v", i, err)
			}
			stores[i] = s
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	data := strings.Repeat("0123456789", 100_000)
	for i, off := range []int{0, 250_000, 500_000, 750_000} {
		wg.Go(func() {
			s := stores[i%2]
			if err := s.WriteAt(ctx, key, int64(off), strings.NewReader(data[off:off+250_000]), 250_000); err != nil {
				t.Errorf("host %d WriteAt at %d: %v", i%2, off, err)
			}
		})
	}
	wg.Wait()
	if got := readAll(t, stores[2], key); string(got) != data {
		t.Errorf("read on the third host differs (%d bytes, want %d)", len(got), len(data))
	}
}

// repeatReader yields a fixed pattern for ever; readOnce(n) signals once
// n bytes were read.
type repeatReader struct {
	mu    sync.Mutex
	read  int64
	at    int64
	ready chan struct{}
}

func (r *repeatReader) readOnce(n int64) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at, r.ready = n, make(chan struct{})
	return r.ready
}

var pattern = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}()

func (r *repeatReader) Read(p []byte) (int, error) {
	for n := 0; n < len(p); {
		n += copy(p[n:], pattern)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.read += int64(len(p))
	if r.ready != nil && r.read >= r.at {
		close(r.ready)
		r.ready = nil
	}
	return len(p), nil
}

// JetStream satisfies Store.
var _ blob.Store = (*blob.JetStream)(nil)

// A blob whose parts leave a gap cannot be opened whole, but its prefix can:
// an upload's prefix is hashed while later parts are still missing.
func TestJetStreamPrefixOfIncompleteBlob(t *testing.T) {
	s, _ := newJetStream(t)
	ctx := context.Background()
	for _, p := range []struct {
		off  int64
		data string
	}{{0, "aaaa"}, {4, "bbbb"}, {12, "dddd"}} {
		if err := s.WriteAt(ctx, key, p.off, strings.NewReader(p.data), int64(len(p.data))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Open(ctx, key); !errors.Is(err, blob.ErrIncomplete) {
		t.Fatalf("Open with a gap: %v, want ErrIncomplete", err)
	}
	obj, err := blob.OpenPrefix(ctx, s, key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || string(got) != "aaaabbbb" || obj.Size() != 8 {
		t.Errorf("prefix %q (size %d, %v), want %q", got, obj.Size(), err, "aaaabbbb")
	}
}

// A section reads the same bytes as ReadAt, in order, across parts.
func TestJetStreamSection(t *testing.T) {
	s, _ := newJetStream(t)
	ctx := context.Background()
	want := make([]byte, 0, 3000)
	for i, n := range []int{1000, 700, 1300} {
		part := bytes.Repeat([]byte{byte('a' + i)}, n)
		if err := s.WriteAt(ctx, key, int64(len(want)), bytes.NewReader(part), int64(n)); err != nil {
			t.Fatal(err)
		}
		want = append(want, part...)
	}
	obj, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	for _, c := range []struct{ off, n int64 }{{0, 3000}, {0, 10}, {990, 20}, {1000, 700}, {1500, 1500}, {2999, 1}, {2500, 9999}} {
		got, err := io.ReadAll(blob.Section(obj, c.off, c.n))
		end := min(c.off+c.n, int64(len(want)))
		if err != nil || !bytes.Equal(got, want[c.off:end]) {
			t.Errorf("Section(%d, %d): %d bytes, %v; want %d bytes", c.off, c.n, len(got), err, end-c.off)
		}
	}
}
