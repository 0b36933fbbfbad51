package blob_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/ids"
)

// The fs store reports the disk space its files take: a file written at
// a large offset counts for the bytes written, not for its length, and a
// deleted file no longer counts.
func TestFSUsedBytes(t *testing.T) {
	ctx := context.Background()
	s, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.UsedBytes(ctx); err != nil || n != 0 {
		t.Fatalf("empty store: %d, %v", n, err)
	}
	part := make([]byte, 256<<10)
	rand.Read(part)
	key := ids.New()
	if err := s.WriteAt(ctx, key, 1<<30, bytes.NewReader(part), int64(len(part))); err != nil {
		t.Fatal(err)
	}
	n, err := s.UsedBytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Whole blocks of the part, plus at most a few for metadata.
	if n < int64(len(part)) || n > int64(len(part))+64<<10 {
		t.Errorf("a 256 KiB part at 1 GiB uses %d bytes, want about 256 KiB", n)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if n, err := s.UsedBytes(ctx); err != nil || n != 0 {
		t.Errorf("after delete: %d, %v", n, err)
	}
}

// The JetStream store reports its object stream's size, which grows with
// what is written.
func TestJetStreamUsedBytes(t *testing.T) {
	ctx := context.Background()
	s, err := blob.NewJetStream(ctx, startJetStream(t)(), blob.JetStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.UsedBytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 100<<10)
	rand.Read(part)
	if err := s.WriteAt(ctx, ids.New(), 0, bytes.NewReader(part), int64(len(part))); err != nil {
		t.Fatal(err)
	}
	after, err := s.UsedBytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after-before < int64(len(part)) {
		t.Errorf("used %d bytes before and %d after writing %d", before, after, len(part))
	}
}
