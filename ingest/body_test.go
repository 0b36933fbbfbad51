package ingest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/events"
)

// Store failures are the server's: 503 with Retry-After, never the 400
// that tells a client its own upload was short.
func TestStoreErrorsAreServerErrors(t *testing.T) {
	diskFull := "Not enough disk space"
	notStored := "Failed to upload - could not store the file."
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"disk full", fmt.Errorf("blob fs: write: %w", &fs.PathError{Op: "write", Path: "/data/blobs/x", Err: syscall.ENOSPC}), diskFull},
		{"quota", fmt.Errorf("blob fs: write: %w", &fs.PathError{Op: "write", Path: "/data/blobs/x", Err: syscall.EDQUOT}), diskFull},
		{"i/o error", fmt.Errorf("blob fs: sync: %w", &fs.PathError{Op: "sync", Path: "/data/blobs/x", Err: syscall.EIO}), notStored},
		{"out of file descriptors", fmt.Errorf("blob fs: %w", &fs.PathError{Op: "open", Path: "/data/blobs/x", Err: syscall.EMFILE}), notStored},
		{"store timeout", fmt.Errorf("blob jetstream: write: %w", context.DeadlineExceeded), notStored},
	}
	body := bytes.Repeat([]byte("x"), events.InlineMax+1) // too large to travel inline: written to the store
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, Options{}, func(s blob.Store) blob.Store { return &faultStore{Store: s, err: tc.err} })
			id := openSession(t, ts, len(body))
			for _, head := range []string{fileHead(len(body)), partHead(id, len(body))} {
				got := exchange(t, ts.addr, append([]byte(head), body...))
				if len(got) != 1 || got[0].status != http.StatusServiceUnavailable || got[0].header.Get("Retry-After") == "" ||
					errOf(t, got[0].body) != tc.want {
					t.Errorf("%.30q: answers %+v, want one 503 %q with Retry-After", head, got, tc.want)
				}
			}
			if !bytes.Contains([]byte(ts.logs.String()), []byte(`"level":"error"`)) {
				t.Errorf("store failure not logged as an error:\n%s", ts.logs)
			}
		})
	}
}

// A client that ends its body early is told so, and nothing is kept.
func TestShortBodyIsClientError(t *testing.T) {
	ts := startServer(t, Options{}, nil)
	raw := append([]byte(fileHead(100_000)), bytes.Repeat([]byte("x"), 20_000)...)
	got := exchange(t, ts.addr, raw)
	if len(got) != 1 || got[0].status != http.StatusBadRequest || errOf(t, got[0].body) != "Request body is shorter than Content-Length." {
		t.Fatalf("answers %+v, want one 400", got)
	}
	if files := ts.storedFiles(t); len(files) != 0 {
		t.Errorf("kept %v", files)
	}
}

// trickle sends head, then lead all at once, then n bytes one at a time
// every interval, and returns the answer.
func trickle(t *testing.T, addr, head string, lead []byte, n int, interval time.Duration) response {
	t.Helper()
	c := dial(t, addr)
	go func() {
		if _, err := c.Write(append([]byte(head), lead...)); err != nil {
			return
		}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for range n {
			<-tick.C
			if _, err := c.Write([]byte{'x'}); err != nil {
				return
			}
		}
	}()
	r, ok := readResponse(bufio.NewReader(c))
	if !ok {
		t.Fatal("connection closed without an answer")
	}
	return r
}

// An upload that keeps sending keeps going, however slow; the idle timeout
// bounds the wait for each byte, not for the whole body.
func TestSlowSteadyUploadSucceeds(t *testing.T) {
	const idle = 300 * time.Millisecond
	ts := startServer(t, Options{IdleTimeout: idle}, nil)
	for _, lead := range []int{0, 16 << 10} {
		t.Run(fmt.Sprintf("after %d bytes", lead), func(t *testing.T) {
			const slow = 30 // at one byte per idle/3: 3 s, ten times the idle timeout
			r := trickle(t, ts.addr, fileHead(lead+slow), bytes.Repeat([]byte("x"), lead), slow, idle/3)
			if r.status != http.StatusOK {
				t.Fatalf("answer %d %s, want 200", r.status, r.body)
			}
		})
	}
}

// An upload that stops sending for the idle timeout is cut off, and
// nothing of it is kept.
func TestStalledUploadIsCutOff(t *testing.T) {
	ts := startServer(t, Options{IdleTimeout: 300 * time.Millisecond}, nil)
	cases := []struct {
		lead   int
		status int
		err    string
	}{
		{16 << 10, http.StatusBadRequest, "Request body is shorter than Content-Length."},
		// Still within the first bytes fasthttp reads before any handler runs.
		{10, http.StatusRequestTimeout, "Request timeout."},
	}
	for _, tc := range cases {
		r := trickle(t, ts.addr, fileHead(1<<20), bytes.Repeat([]byte("x"), tc.lead), 0, time.Millisecond)
		if r.status != tc.status || errOf(t, r.body) != tc.err || r.header.Get("Connection") != "close" {
			t.Errorf("stall after %d bytes: answer %d %v %s, want %d %q and close", tc.lead, r.status, r.header, r.body, tc.status, tc.err)
		}
	}
	if files := ts.storedFiles(t); len(files) != 0 {
		t.Errorf("kept %v", files)
	}
}
