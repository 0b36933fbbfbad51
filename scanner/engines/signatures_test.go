package engines

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/scangate/scangate/pkg/result"
)

// testEICAR is the EICAR test file, assembled from two halves so that this
// source file itself is not flagged by anti-virus scanners.
func testEICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-` + `ANTIVIRUS-TEST-FILE!$H+H*`)
}

func newSignatures(t *testing.T, extra ...BodySignature) *Signatures {
	t.Helper()
	s, err := NewSignatures(extra...)
	if err != nil {
		t.Fatalf("NewSignatures: %v", err)
	}
	return s
}

func TestSignaturesEICAR(t *testing.T) {
	eicar := testEICAR()
	if len(eicar) != 68 {
		t.Fatalf("test EICAR is %d bytes, want 68", len(eicar))
	}
	tests := []struct {
		name       string
		input      []byte
		wantCode   int
		wantThreat string
	}{
		{"exact file", eicar, result.Infected, EICARName},
		{"trailing newline", append(bytes.Clone(eicar), "\r\n"...), result.Infected, EICARName},
		{"trailing bytes", append(bytes.Clone(eicar), bytes.Repeat([]byte{0xff}, 1<<20)...), result.Infected, EICARName},
		{"at offset 1", append([]byte{' '}, eicar...), result.NoThreat, ""},
		{"one byte changed", append(bytes.Clone(eicar[:67]), '!'), result.NoThreat, ""},
		{"shorter than the signature", eicar[:40], result.NoThreat, ""},
		{"all but the last byte", eicar[:67], result.NoThreat, ""},
		{"empty", nil, result.NoThreat, ""},
		{"plain text", []byte(strings.Repeat("hello world\n", 100)), result.NoThreat, ""},
	}
	s := newSignatures(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := s.ScanStream(context.Background(), &Input{}, bytes.NewReader(tt.input))
			if err != nil {
				t.Fatalf("ScanStream: %v", err)
			}
			if f.Code != tt.wantCode || f.Threat != tt.wantThreat {
				t.Errorf("ScanStream = %+v, want code %d threat %q", f, tt.wantCode, tt.wantThreat)
			}
		})
	}
}

// failAfter serves data but fails any read beyond limit bytes, and counts
// what it handed out.
type failAfter struct {
	data  []byte
	limit int
	off   int
}

var errTooFar = errors.New("read past the limit")

func (r *failAfter) Read(p []byte) (int, error) {
	if r.off >= r.limit {
		return 0, errTooFar
	}
	n := copy(p, r.data[r.off:min(len(r.data), r.limit)])
	r.off += n
	return n, nil
}

func TestSignaturesStopsReadingEarly(t *testing.T) {
	s := newSignatures(t)
	for _, head := range [][]byte{testEICAR(), []byte("MZ not a test file")} {
		data := append(bytes.Clone(head), make([]byte, 10<<20)...)
		r := &failAfter{data: data, limit: 4 << 10}
		f, err := s.ScanStream(context.Background(), &Input{Size: int64(len(data))}, r)
		if err != nil {
			t.Fatalf("ScanStream read past the first 4 KiB of a %d-byte input: %v", len(data), err)
		}
		want := result.NoThreat
		if bytes.HasPrefix(head, testEICAR()) {
			want = result.Infected
		}
		if f.Code != want {
			t.Errorf("ScanStream = %+v, want code %d", f, want)
		}
	}
}

func TestSignaturesReadErrorIsReported(t *testing.T) {
	// The source fails before the engine has the bytes it needs: that is an
	// error, not a clean file.
	s := newSignatures(t)
	r := &failAfter{data: testEICAR(), limit: 10}
	if f, err := s.ScanStream(context.Background(), &Input{}, r); !errors.Is(err, errTooFar) {
		t.Fatalf("ScanStream = %+v, %v; want the read error", f, err)
	}
}

func TestSignaturesCancelledContext(t *testing.T) {
	s := newSignatures(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f, err := s.ScanStream(ctx, &Input{}, strings.NewReader("clean"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ScanStream on a cancelled context = %+v, %v; want context.Canceled", f, err)
	}
}

func TestSignaturesExtra(t *testing.T) {
	s := newSignatures(t, BodySignature{Name: "Test.Magic", Offset: 100, Bytes: []byte("MAGIC")})
	tests := []struct {
		name  string
		input []byte
		want  string
	}{
		{"at its offset", append(make([]byte, 100), "MAGIC..."...), "Test.Magic"},
		{"elsewhere", append(make([]byte, 99), "MAGIC..."...), ""},
		{"truncated", append(make([]byte, 100), "MAG"...), ""},
		// EICAR is still found in a file shorter than the furthest signature.
		{"eicar", testEICAR(), EICARName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := s.ScanStream(context.Background(), &Input{}, bytes.NewReader(tt.input))
			if err != nil {
				t.Fatalf("ScanStream: %v", err)
			}
			if f.Threat != tt.want {
				t.Errorf("threat = %q, want %q", f.Threat, tt.want)
			}
		})
	}
}

func TestNewSignaturesRejectsInvalid(t *testing.T) {
	for _, sig := range []BodySignature{
		{Name: "", Bytes: []byte("x")},
		{Name: "empty"},
		{Name: "negative", Offset: -1, Bytes: []byte("x")},
	} {
		if _, err := NewSignatures(sig); err == nil {
			t.Errorf("NewSignatures(%+v) succeeded", sig)
		}
	}
}

func TestSignaturesInfo(t *testing.T) {
	info := newSignatures(t).Info()
	if info.ID == "" || info.Name == "" || info.Version == "" || info.DefTime == "" {
		t.Errorf("Info() has empty fields: %+v", info)
	}
}

var _ StreamEngine = (*Signatures)(nil)
