package archive

import (
	"archive/zip"
	"compress/gzip"
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
	"github.com/nwaples/rardecode/v2"
)

// classify wraps an error from a decoder with the matching sentinel of this
// package (keeping the original in the chain and in the message).
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrChecksum), errors.Is(err, ErrCorrupt),
		errors.Is(err, ErrEncrypted), errors.Is(err, ErrUnsupported), errors.Is(err, ErrMemoryBudget):
		return err
	case errors.Is(err, zip.ErrChecksum), errors.Is(err, gzip.ErrChecksum),
		errors.Is(err, rardecode.ErrBadFileChecksum), errors.Is(err, zstd.ErrCRCMismatch):
		return fmt.Errorf("%w: %w", ErrChecksum, err)
	case errors.Is(err, rardecode.ErrBadPassword), errors.Is(err, rardecode.ErrArchivedFileEncrypted),
		errors.Is(err, rardecode.ErrArchiveEncrypted):
		return fmt.Errorf("%w: %w", ErrEncrypted, err)
	case errors.Is(err, rardecode.ErrDictionaryTooLarge),
		errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return fmt.Errorf("%w: %w", ErrMemoryBudget, err)
	case errors.Is(err, zip.ErrAlgorithm), errors.Is(err, rardecode.ErrMultiVolume),
		errors.Is(err, rardecode.ErrUnknownVersion), errors.Is(err, rardecode.ErrUnknownEncryptMethod),
		errors.Is(err, rardecode.ErrPlatformIntSize):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}
