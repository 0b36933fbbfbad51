package scanner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"testing/iotest"
)

func randomInput(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// chunkyReader returns data in irregular read sizes, as a network or a
// pipe would, and counts what it handed out.
type chunkyReader struct {
	data  []byte
	i     int
	reads int
	bytes int64
}

var chunks = []int{1, 1000, 256 << 10, 300 << 10, 7, 64 << 10}

func (r *chunkyReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), chunks[r.i%len(chunks)])
	r.i++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	r.reads++
	r.bytes += int64(n)
	return n, nil
}

// endlessReader serves size bytes (or forever when size < 0) without
// holding them in memory, counts them, and runs onRead after each read.
type endlessReader struct {
	size   int64
	bytes  int64
	onRead func(reads int)
	reads  int
}

func (r *endlessReader) Read(p []byte) (int, error) {
	if r.size >= 0 && r.bytes >= r.size {
		return 0, io.EOF
	}
	n := len(p)
	if r.size >= 0 {
		n = int(min(int64(n), r.size-r.bytes))
	}
	for i := range p[:n] {
		p[i] = byte(r.bytes + int64(i))
	}
	r.bytes += int64(n)
	r.reads++
	if r.onRead != nil {
		r.onRead(r.reads)
	}
	return n, nil
}

// hashAll is a consumer reading to the end into a digest, with buffer size bufSize.
func hashAll(sum *[32]byte, bufSize int) func(io.Reader) error {
	return func(r io.Reader) error {
		h := sha256.New()
		if _, err := io.CopyBuffer(h, struct{ io.Reader }{r}, make([]byte, bufSize)); err != nil {
			return err
		}
		copy(sum[:], h.Sum(nil))
		return nil
	}
}

// readN is a consumer that reads exactly n bytes into *got and returns.
func readN(n int, got *[]byte) func(io.Reader) error {
	return func(r io.Reader) error {
		*got = make([]byte, n)
		_, err := io.ReadFull(r, *got)
		return err
	}
}

func TestFanOutEveryConsumerGetsSameBytes(t *testing.T) {
	data := randomInput(5<<20 + 123)
	want := sha256.Sum256(data)
	var sums [4][32]byte
	var read atomic.Int64
	src := &chunkyReader{data: data}

	errs := fanOut(context.Background(), src, &read,
		hashAll(&sums[0], 32<<10),
		hashAll(&sums[1], 4097),
		hashAll(&sums[2], 1<<20),
		func(r io.Reader) error { // starts with one-byte reads
			h := sha256.New()
			if _, err := io.CopyN(h, iotest.OneByteReader(r), 1000); err != nil {
				return err
			}
			if _, err := io.Copy(h, r); err != nil {
				return err
			}
			copy(sums[3][:], h.Sum(nil))
			return nil
		},
	)
	for i, err := range errs {
		if err != nil {
			t.Errorf("consumer %d: %v", i, err)
		}
	}
	for i, s := range sums {
		if s != want {
			t.Errorf("consumer %d saw different bytes (sha256 %x, want %x)", i, s, want)
		}
	}
	if got := read.Load(); got != int64(len(data)) {
		t.Errorf("read counter = %d, want the input size %d", got, len(data))
	}
	if src.bytes != int64(len(data)) {
		t.Errorf("source read %d bytes, want %d (read once)", src.bytes, len(data))
	}
}

func TestFanOutEarlyConsumerDoesNotDisturbOthers(t *testing.T) {
	data := randomInput(3<<20 + 5)
	want := sha256.Sum256(data)
	var first, last [32]byte
	var head []byte
	var read atomic.Int64

	errs := fanOut(context.Background(), &chunkyReader{data: data}, &read,
		hashAll(&first, 64<<10),
		readN(10, &head),
		hashAll(&last, 8<<10),
	)
	for i, err := range errs {
		if err != nil {
			t.Errorf("consumer %d: %v", i, err)
		}
	}
	if !bytes.Equal(head, data[:10]) {
		t.Errorf("early consumer read %x, want %x", head, data[:10])
	}
	if first != want || last != want {
		t.Errorf("full readers' sha256 = %x / %x, want %x", first, last, want)
	}
	if read.Load() != int64(len(data)) {
		t.Errorf("read counter = %d, want %d", read.Load(), len(data))
	}
}

func TestFanOutStopsReadingWhenAllConsumersAreDone(t *testing.T) {
	const size = 256 << 20
	src := &endlessReader{size: size}
	var read atomic.Int64
	var a, b []byte

	errs := fanOut(context.Background(), src, &read, readN(10, &a), readN(100, &b))
	for i, err := range errs {
		if err != nil {
			t.Errorf("consumer %d: %v", i, err)
		}
	}
	// One or two reads of fanOut's buffer, not the whole file.
	if src.bytes > 4<<20 {
		t.Errorf("fanOut read %d of %d bytes after every consumer had stopped", src.bytes, size)
	}
	if read.Load() != src.bytes {
		t.Errorf("read counter = %d, source handed out %d", read.Load(), src.bytes)
	}
}

func TestFanOutNoConsumersReadsNothing(t *testing.T) {
	src := &endlessReader{size: -1}
	var read atomic.Int64
	if errs := fanOut(context.Background(), src, &read); len(errs) != 0 {
		t.Errorf("errs = %v, want none", errs)
	}
	if src.bytes != 0 {
		t.Errorf("read %d bytes with no consumer", src.bytes)
	}
}

func TestFanOutCancelledContext(t *testing.T) {
	t.Run("before start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var sums [2][32]byte
		var read atomic.Int64
		src := &endlessReader{size: 16 << 20}
		errs := fanOut(ctx, src, &read, hashAll(&sums[0], 4096), hashAll(&sums[1], 4096))
		for i, err := range errs {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("consumer %d = %v, want context.Canceled", i, err)
			}
		}
		if src.bytes != 0 {
			t.Errorf("read %d bytes on a cancelled context", src.bytes)
		}
	})

	t.Run("mid-stream", func(t *testing.T) {
		// A source far longer than the reads it takes to cancel: only the
		// cancel should end this.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		src := &endlessReader{size: 100 * 256 << 10, onRead: func(reads int) {
			if reads == 5 {
				cancel()
			}
		}}
		var head []byte
		var sums [2][32]byte
		var read atomic.Int64
		errs := fanOut(ctx, src, &read, hashAll(&sums[0], 4096), readN(10, &head), hashAll(&sums[1], 1<<20))
		// A consumer reading to the end must see an error, never a clean
		// end of file: what it got is not the whole file.
		for _, i := range []int{0, 2} {
			if !errors.Is(errs[i], context.Canceled) {
				t.Errorf("consumer %d = %v, want context.Canceled", i, errs[i])
			}
		}
		if errs[1] != nil {
			t.Errorf("consumer that had finished = %v, want nil", errs[1])
		}
		if src.reads != 5 {
			t.Errorf("source read %d times, want it to stop at the cancel after 5", src.reads)
		}
	})
}

func TestFanOutSourceErrorReachesConsumers(t *testing.T) {
	boom := errors.New("disk on fire")
	data := randomInput(1 << 20)
	src := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom))
	var sum [32]byte
	var n int64
	var read atomic.Int64
	errs := fanOut(context.Background(), src, &read,
		hashAll(&sum, 4096),
		func(r io.Reader) error {
			var err error
			n, err = io.Copy(io.Discard, r)
			return err
		},
	)
	for i, err := range errs {
		if !errors.Is(err, boom) {
			t.Errorf("consumer %d = %v, want the source's error", i, err)
		}
	}
	if n != int64(len(data)) {
		t.Errorf("consumer got %d bytes before the error, want %d", n, len(data))
	}
}

func TestFanOutDataWithEOF(t *testing.T) {
	// A source may return its last bytes together with io.EOF.
	data := randomInput(1000)
	var got []byte
	var read atomic.Int64
	errs := fanOut(context.Background(), iotest.DataErrReader(bytes.NewReader(data)), &read,
		func(r io.Reader) error {
			var err error
			got, err = io.ReadAll(r)
			return err
		})
	if errs[0] != nil || !bytes.Equal(got, data) {
		t.Errorf("consumer got %d bytes, err %v; want all %d", len(got), errs[0], len(data))
	}
}

func TestFanOutReturnsErrorsInOrder(t *testing.T) {
	e0, e2 := errors.New("zero"), errors.New("two")
	var read atomic.Int64
	errs := fanOut(context.Background(), bytes.NewReader(randomInput(1000)), &read,
		func(io.Reader) error { return e0 },
		func(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err },
		func(io.Reader) error { return e2 },
	)
	if len(errs) != 3 || errs[0] != e0 || errs[1] != nil || errs[2] != e2 {
		t.Errorf("errs = %v, want [zero <nil> two]", errs)
	}
}
