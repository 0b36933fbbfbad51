package scanner

import (
	"io"

	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/hashing"
)

// hashingJob hashes the bytes of a file the upload could not hash on the
// way in (parts that arrived out of order), as one consumer of the scan's
// single read.
type hashingJob struct{ m *hashing.Multi }

// newHashingJob starts from state (the hashing of an upload's first bytes,
// done by the assembler as they arrived), or from nothing.
func newHashingJob(state []byte) (*hashingJob, error) {
	if len(state) == 0 {
		return &hashingJob{m: hashing.New()}, nil
	}
	m, err := hashing.Restore(state)
	if err != nil {
		return nil, err
	}
	return &hashingJob{m: m}, nil
}

func (h *hashingJob) consume(r io.Reader) error {
	defer h.m.Close()
	_, err := io.CopyBuffer(h.m, r, make([]byte, 256<<10))
	return err
}

func (h *hashingJob) sums() events.Hashes { return h.m.Sums() }
