package cli

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Directories are walked for regular files; symlinks are skipped unless
// followed, and a followed loop is walked once.
func TestCollectFiles(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a.txt", "sub/b.txt"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"sub/loop": "..", "link.txt": "a.txt"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	names := func(follow bool) ([]string, int) {
		var notes []string
		files, err := collectFiles([]string{dir, filepath.Join(dir, "a.txt")}, follow, func(n string) { notes = append(notes, n) })
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range files {
			rel, _ := filepath.Rel(dir, f.name)
			out = append(out, rel)
		}
		slices.Sort(out)
		return out, len(notes)
	}
	if got, notes := names(false); !slices.Equal(got, []string{"a.txt", "sub/b.txt"}) || notes != 2 {
		t.Errorf("without --follow-symlinks: %v, %d notes", got, notes)
	}
	if got, _ := names(true); !slices.Equal(got, []string{"a.txt", "link.txt", "sub/b.txt"}) {
		t.Errorf("with --follow-symlinks: %v", got)
	}
	if _, err := collectFiles([]string{filepath.Join(dir, "missing")}, false, func(string) {}); err == nil {
		t.Error("a missing argument is not an error")
	}
}

// The state names an upload by the file as it is and where it goes: a
// changed file, another server set or another rule is a new upload.
func TestStateKey(t *testing.T) {
	now := time.Now()
	base := stateKey("/f", 10, now, []string{"http://a", "http://b"}, "", "", "")
	if stateKey("/f", 10, now, []string{"http://b", "http://a"}, "", "", "") != base {
		t.Error("the order of --server changes the key")
	}
	for name, k := range map[string]string{
		"mtime":  stateKey("/f", 10, now.Add(time.Second), []string{"http://a", "http://b"}, "", "", ""),
		"size":   stateKey("/f", 11, now, []string{"http://a", "http://b"}, "", "", ""),
		"server": stateKey("/f", 10, now, []string{"http://a"}, "", "", ""),
		"rule":   stateKey("/f", 10, now, []string{"http://a", "http://b"}, "r", "", ""),
	} {
		if k == base {
			t.Errorf("another %s gives the same key", name)
		}
	}
	st, err := openUploadState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if st.load(base) != nil {
		t.Fatal("an entry before any was saved")
	}
	e := &stateEntry{Path: "/f", Size: 10, Method: "multipart", DataID: "0123456789abcdef0123456789abcdef", Created: now}
	if err := st.save(base, e); err != nil {
		t.Fatal(err)
	}
	if got := st.load(base); got == nil || got.DataID != e.DataID {
		t.Errorf("loaded %+v", got)
	}
	e.Created = now.Add(-stateMaxAge - time.Hour)
	if err := st.save(base, e); err != nil {
		t.Fatal(err)
	}
	if st.load(base) != nil {
		t.Error("an entry older than the server keeps results is trusted")
	}
}
