package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

// uploadState remembers, per file, what the server already has: the
// data_id of an accepted whole-file upload, or of a multipart session and
// whether all its parts were answered. A re-run after a crash or Ctrl-C
// reads it to send nothing twice.
//
// One small JSON file per upload, named by a digest of everything that
// makes it the same upload (see stateKey). One file each means parallel
// uploads, and two runs at once, never rewrite each other's entries; each
// is replaced atomically (write, fsync, rename), so a crash leaves the old
// entry or the new one, never half of one.
type uploadState struct {
	dir string // "" when state is off
}

// stateEntry is one upload's record.
type stateEntry struct {
	Path     string    `json:"path"`
	Size     int64     `json:"size"`
	ModTime  time.Time `json:"mtime"`
	Servers  []string  `json:"servers"`
	Rule     string    `json:"rule,omitempty"`
	Method   string    `json:"method"` // "whole" or "multipart"
	DataID   string    `json:"data_id"`
	Complete bool      `json:"complete"` // every byte answered 200: nothing is left to send
	Created  time.Time `json:"created"`
}

// stateMaxAge is how long an entry is trusted: scangate keeps results
// and sessions for a week by default (retention.results), so an older
// data_id may be gone, and the file is better sent again.
const stateMaxAge = 7 * 24 * time.Hour

// defaultStateDir is under the user's cache directory: state worth
// keeping across runs, not worth backing up.
func defaultStateDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "scangate-upload")
	}
	return filepath.Join(dir, "scangate", "upload")
}

func openUploadState(dir string) (*uploadState, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &uploadState{dir: dir}
	s.prune()
	return s, nil
}

// prune deletes entries older than stateMaxAge, so the directory does not
// grow for ever.
func (s *uploadState) prune() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > stateMaxAge {
			_ = os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
}

// stateKey names an upload: the same file (absolute path, size and
// modification time: a changed file is a new upload), to the same set of
// servers, under the same workflow and with the same headers that the
// session keeps.
func stateKey(abs string, size int64, mtime time.Time, servers []string, rule, callback, metadata string) string {
	sorted := slices.Clone(servers)
	slices.Sort(sorted)
	raw, _ := json.Marshal([]any{abs, size, mtime.UnixNano(), sorted, rule, callback, metadata})
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:16])
}

func (s *uploadState) path(key string) string { return filepath.Join(s.dir, key+".json") }

// load returns the entry for key, nil when there is none (or it is too
// old or unreadable: then the file is simply sent again).
func (s *uploadState) load(key string) *stateEntry {
	raw, err := os.ReadFile(s.path(key))
	if err != nil {
		return nil
	}
	var e stateEntry
	if json.Unmarshal(raw, &e) != nil || e.DataID == "" || time.Since(e.Created) > stateMaxAge {
		return nil
	}
	return &e
}

// save replaces key's entry atomically.
func (s *uploadState) save(key string, e *stateEntry) error {
	raw, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return renameio.WriteFile(s.path(key), raw, 0o600)
}

func (s *uploadState) remove(key string) { _ = os.Remove(s.path(key)) }
