package engines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/scangate/scangate/pkg/result"
)

// BodySignature is a byte pattern expected at a fixed offset of a file.
type BodySignature struct {
	Name   string
	Offset int64
	Bytes  []byte
}

// Signatures matches body signatures while the file streams past. It reads
// only as far as the furthest signature ends, so a large file costs nothing.
type Signatures struct {
	sigs []BodySignature
	need int64
	info Info
}

// builtinDefTime dates the built-in signature set; bump it with the set.
const builtinDefTime = "2026-11-21T00:00:00.000Z"

// eicar is the EICAR anti-virus test file. It is assembled at run time so
// that scangate's own source and binary are not flagged by virus scanners.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-" + `TEST-FILE!$H+H*`)
}

// EICARName is the threat name reported for the EICAR test file.
const EICARName = "EICAR-Test-File"

// NewSignatures returns the engine with its built-in signatures (EICAR)
// plus extra.
func NewSignatures(extra ...BodySignature) (*Signatures, error) {
	s := &Signatures{info: Info{ID: "signatures", Name: "Signatures", Version: "1.0.0", DefTime: builtinDefTime}}
	all := append([]BodySignature{{Name: EICARName, Offset: 0, Bytes: eicar()}}, extra...)
	for _, sig := range all {
		if sig.Name == "" || len(sig.Bytes) == 0 || sig.Offset < 0 {
			return nil, fmt.Errorf("signatures: invalid signature %q", sig.Name)
		}
		s.need = max(s.need, sig.Offset+int64(len(sig.Bytes)))
	}
	s.sigs = all
	return s, nil
}

func (s *Signatures) Info() Info { return s.info }

func (s *Signatures) ScanStream(ctx context.Context, _ *Input, r io.Reader) (Finding, error) {
	head := make([]byte, s.need)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Finding{}, err
	}
	head = head[:n]
	for _, sig := range s.sigs {
		end := sig.Offset + int64(len(sig.Bytes))
		if end <= int64(len(head)) && bytes.Equal(head[sig.Offset:end], sig.Bytes) {
			return Finding{Code: result.Infected, Threat: sig.Name}, nil
		}
	}
	return Finding{Code: result.NoThreat}, ctx.Err()
}
