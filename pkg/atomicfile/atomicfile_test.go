package atomicfile

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Of several writers racing to create one file, exactly one wins, the file
// holds its bytes whole, and no temporary file is left behind.
func TestWriteNewOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	var wg sync.WaitGroup
	wins := make(chan string, 8)
	for i := range 8 {
		wg.Go(func() {
			data := string(rune('a'+i)) + "-key"
			ok, err := WriteNew(path, []byte(data), 0o600)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins <- data
			}
		})
	}
	wg.Wait()
	close(wins)
	var won []string
	for w := range wins {
		won = append(won, w)
	}
	if len(won) != 1 {
		t.Fatalf("%d writers won, want 1", len(won))
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != won[0] {
		t.Fatalf("file holds %q (%v), want the winner's %q", got, err, won[0])
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries in the directory, want only the file", len(entries))
	}
}
