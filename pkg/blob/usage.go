package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// UsageReporter is implemented by stores that can tell how many bytes
// they hold (exported as a metric). It may be slow: callers read it in the
// background, not on a request's path.
type UsageReporter interface {
	UsedBytes(ctx context.Context) (int64, error)
}

// UsedBytes walks the store's directory and adds up the disk space its
// files take: allocated blocks, as du counts them, so a sparse file
// counts only the parts written so far. Files removed during the walk
// are skipped.
func (s *FS) UsedBytes(ctx context.Context) (int64, error) {
	var total int64
	err := filepath.WalkDir(s.root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512 // st_blocks is in 512-byte units whatever the block size
		} else {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("blob fs: usage: %w", err)
	}
	return total, nil
}

// UsedBytes is the size of the object store's stream, as JetStream
// reports it (one stream-info request).
func (s *JetStream) UsedBytes(ctx context.Context) (int64, error) {
	info, err := s.objStream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("blob jetstream: usage: %w", err)
	}
	return int64(info.State.Bytes), nil
}
