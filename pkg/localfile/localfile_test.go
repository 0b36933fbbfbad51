package localfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// layout builds
//
//	root/allowed/a.txt, sub/b.txt, fifo, link-in -> a.txt,
//	             link-out -> ../outside/secret.txt, linkdir -> sub,
//	             abs-out -> /…/outside/secret.txt
//	root/allowed2/c.txt        (a sibling whose name extends allowed's)
//	root/outside/secret.txt
func layout(t *testing.T) (root string) {
	t.Helper()
	root = t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"allowed/sub", "allowed2", "outside"} {
		must(os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	for name, body := range map[string]string{
		"allowed/a.txt": "A", "allowed/sub/b.txt": "BB", "allowed2/c.txt": "C", "outside/secret.txt": "secret",
	} {
		must(os.WriteFile(filepath.Join(root, name), []byte(body), 0o644))
	}
	must(unix.Mkfifo(filepath.Join(root, "allowed/fifo"), 0o644))
	must(os.Symlink("a.txt", filepath.Join(root, "allowed/link-in")))
	must(os.Symlink("../outside/secret.txt", filepath.Join(root, "allowed/link-out")))
	must(os.Symlink(filepath.Join(root, "outside/secret.txt"), filepath.Join(root, "allowed/abs-out")))
	must(os.Symlink("sub", filepath.Join(root, "allowed/linkdir")))
	return root
}

func TestOpen(t *testing.T) {
	run := func(t *testing.T) {
		root := layout(t)
		allowed := filepath.Join(root, "allowed")
		d, err := OpenDirs([]string{allowed + "/"})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for _, tc := range []struct {
			name, path string
			want       error  // nil: opens
			body       string // when it opens
		}{
			{"file", allowed + "/a.txt", nil, "A"},
			{"nested", allowed + "/sub/b.txt", nil, "BB"},
			{"dot and double slash", allowed + "/./sub//b.txt", nil, "BB"},
			{"dotdot out", allowed + "/../outside/secret.txt", ErrNotAllowed, ""},
			{"dotdot staying inside", allowed + "/sub/../a.txt", ErrNotAllowed, ""},
			{"symlink pointing out", allowed + "/link-out", ErrNotAllowed, ""},
			{"absolute symlink pointing out", allowed + "/abs-out", ErrNotAllowed, ""},
			{"symlink pointing in", allowed + "/link-in", ErrNotAllowed, ""},
			{"symlinked directory", allowed + "/linkdir/b.txt", ErrNotAllowed, ""},
			{"outside", filepath.Join(root, "outside/secret.txt"), ErrNotAllowed, ""},
			{"sibling with a longer name", filepath.Join(root, "allowed2/c.txt"), ErrNotAllowed, ""},
			{"relative", "allowed/a.txt", ErrNotAllowed, ""},
			{"NUL", allowed + "/a.txt\x00x", ErrNotAllowed, ""},
			{"missing", allowed + "/nope.txt", ErrNotFound, ""},
			{"under a file", allowed + "/a.txt/x", ErrNotFound, ""},
			{"directory", allowed + "/sub", ErrNotRegular, ""},
			{"the allowed directory", allowed, ErrNotRegular, ""},
			{"fifo", allowed + "/fifo", ErrNotRegular, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f, size, err := d.Open(tc.path)
				if tc.want != nil {
					if f != nil {
						f.Close()
					}
					if !errors.Is(err, tc.want) {
						t.Fatalf("Open(%q) = %v, want %v", tc.path, err, tc.want)
					}
					return
				}
				if err != nil {
					t.Fatalf("Open(%q): %v", tc.path, err)
				}
				defer f.Close()
				b, err := io.ReadAll(f)
				if err != nil || string(b) != tc.body || size != int64(len(tc.body)) {
					t.Errorf("read %q (size %d), %v; want %q", b, size, err, tc.body)
				}
			})
		}
	}
	if runtime.GOOS == "linux" {
		t.Run("openat2", run)
		t.Run("walk", func(t *testing.T) { withoutOpenat2(func() { run(t) }) })
	} else {
		run(t)
	}
}

// The innermost allowed directory matches, whichever order they are given in.
func TestNestedDirs(t *testing.T) {
	root := layout(t)
	d, err := OpenDirs([]string{filepath.Join(root, "allowed"), filepath.Join(root, "allowed/sub")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	f, _, err := d.Open(filepath.Join(root, "allowed/sub/b.txt"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, _, err := d.Open(filepath.Join(root, "allowed/sub")); !errors.Is(err, ErrNotRegular) {
		t.Errorf("the inner directory itself: %v, want ErrNotRegular", err)
	}
}

func TestUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their mode")
	}
	root := layout(t)
	p := filepath.Join(root, "allowed/a.txt")
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDirs([]string{filepath.Join(root, "allowed")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, _, err := d.Open(p); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("unreadable file: %v, want ErrNotAllowed", err)
	}
}

func TestNothingAllowed(t *testing.T) {
	d, err := OpenDirs(nil)
	if err != nil || d.Enabled() {
		t.Fatalf("OpenDirs(nil) = %v, %v; want a disabled set", d, err)
	}
	if _, _, err := d.Open("/etc/hostname"); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Open with nothing allowed: %v", err)
	}
	if _, err := OpenDirs([]string{"relative/dir"}); err == nil {
		t.Error("a relative directory was accepted")
	}
	if _, err := OpenDirs([]string{filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("a missing directory was accepted")
	}
}

// What the textual ".." check in Open stands in front of: the open itself
// refuses to leave the directory, by either method.
func TestKernelRefusesEscape(t *testing.T) {
	root := layout(t)
	run := func(t *testing.T) {
		dir, err := os.Open(filepath.Join(root, "allowed"))
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		for _, rel := range []string{"../outside/secret.txt", "sub/../../outside/secret.txt", "link-out", "linkdir/b.txt"} {
			f, _, err := openIn(int(dir.Fd()), rel, rel)
			if f != nil {
				f.Close()
			}
			if !errors.Is(err, ErrNotAllowed) {
				t.Errorf("openIn(%q) = %v, want ErrNotAllowed", rel, err)
			}
		}
	}
	if runtime.GOOS == "linux" {
		t.Run("openat2", run)
		t.Run("walk", func(t *testing.T) { withoutOpenat2(func() { run(t) }) })
	} else {
		run(t)
	}
}
