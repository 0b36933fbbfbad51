package engines

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/scangate/scangate/pkg/hashing"
	"github.com/scangate/scangate/pkg/result"
)

// HashList reports files whose md5, sha1 or sha256 is on an operator's list
// of known-bad hashes.
type HashList struct {
	threats map[string]string // lowercase hex → threat name
	info    Info
}

// LoadHashList reads a list of "<md5|sha1|sha256> <threat name>" lines;
// blank lines and lines starting with # are skipped. A malformed line stops
// loading with its line number, so a broken list is never half-used.
func LoadHashList(path string) (*HashList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hashlist: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("hashlist: %w", err)
	}
	h := &HashList{threats: map[string]string{}, info: Info{
		ID: "hashlist", Name: "HashList", Version: "1.0.0", DefTime: result.FormatTime(st.ModTime()),
		Loaded: time.Now(),
	}}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		digest := strings.Fields(text)[0]
		name := strings.TrimSpace(text[len(digest):])
		algo, ok := hashing.Algorithm(digest)
		if !ok || algo == "sha512" || name == "" {
			return nil, fmt.Errorf("hashlist %s:%d: want \"<md5|sha1|sha256> <threat name>\"", path, line)
		}
		h.threats[strings.ToLower(digest)] = name
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hashlist %s: %w", path, err)
	}
	return h, nil
}

func (h *HashList) Info() Info { return h.info }

// Len is the number of hashes on the list.
func (h *HashList) Len() int { return len(h.threats) }

func (h *HashList) ScanHashes(_ context.Context, in *Input) (Finding, error) {
	for _, d := range []string{in.Hashes.SHA256, in.Hashes.SHA1, in.Hashes.MD5} {
		if name, ok := h.threats[d]; ok && d != "" {
			return Finding{Code: result.Infected, Threat: name}, nil
		}
	}
	return Finding{Code: result.NoThreat}, nil
}
