package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/term"

	"github.com/scangate/scangate/client"
)

const uploadUsage = `usage: scangate upload [flags] FILE|DIR...

Uploads files to scangate: small files whole (POST /file), large ones in
parallel parts (multipart) spread over every --server. Directories are walked
recursively (regular files; symlinks inside them are skipped unless
--follow-symlinks). An interrupted run (crash, Ctrl-C) resumes when run again:
the server is asked what it misses and only that is sent.

flags:
  --server URL         scangate node; repeat for several (any node takes any
                       part) (default http://127.0.0.1:8008)
  --apikey KEY         apikey header (default $SCANGATE_APIKEY)
  --rule NAME          workflow (rule header)
  --callbackurl URL    webhook for each final result
  --metadata JSON      JSON object echoed in each result
  --threshold SIZE     files this large or larger go multipart (default 16MiB)
  --part-size SIZE     multipart part size (default 8MiB)
  --parallel N         parts in flight per file (default 4)
  --jobs N             files in flight (default 2)
  --retries N          attempts per request, the first included, for those
                       safe to repeat (default 10; 1 fails fast)
  --follow-symlinks    follow symlinks found in directories
  --state-dir DIR      where resume state is kept (default: the user cache
                       directory, scangate/upload)
  --fresh              ignore recorded state: send every file again
  --wait               wait for the verdicts and print them
  --json               print the report as JSON instead of a table
  --progress MODE      auto (bars on a terminal, lines otherwise), bars,
                       lines or none (default auto)

exit codes:
  0    every file uploaded (with --wait: and none blocked)
  1    --wait: at least one file is blocked (process_info.result "Blocked")
  2    usage: bad flags, a FILE|DIR that cannot be read
  3    an upload, or with --wait a verdict, failed; nothing is blocked
  130  interrupted (SIGINT, SIGTERM): state is kept, run again to resume
`

// Exit codes of scangate upload (see uploadUsage).
const (
	exitBlocked     = 1
	exitUsage       = 2
	exitFailed      = 3
	exitInterrupted = 130
)

// progressInterval paces the progress lines of --progress lines.
var progressInterval = 5 * time.Second

type uploadOptions struct {
	servers     serverList
	apikey      string
	rule        string
	callbackURL string
	metadata    string
	threshold   byteSize
	partSize    byteSize
	parallel    int
	jobs        int
	retries     int
	follow      bool
	stateDir    string
	fresh       bool
	wait        bool
	json        bool
	progress    string
}

// serverList is a repeatable --server (commas also separate).
type serverList []string

func (s *serverList) String() string { return strings.Join(*s, ",") }
func (s *serverList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// byteSize is a size flag: 16MiB, 500KB, 1048576.
type byteSize int64

func (b *byteSize) String() string { return humanize.IBytes(uint64(*b)) }
func (b *byteSize) Set(v string) error {
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// upload is `scangate upload`.
func upload(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := uploadOptions{threshold: 16 << 20, partSize: 8 << 20}
	fs := flag.NewFlagSet("scangate upload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, uploadUsage) }
	fs.Var(&o.servers, "server", "")
	fs.StringVar(&o.apikey, "apikey", os.Getenv("SCANGATE_APIKEY"), "")
	fs.StringVar(&o.rule, "rule", "", "")
	fs.StringVar(&o.callbackURL, "callbackurl", "", "")
	fs.StringVar(&o.metadata, "metadata", "", "")
	fs.Var(&o.threshold, "threshold", "")
	fs.Var(&o.partSize, "part-size", "")
	fs.IntVar(&o.parallel, "parallel", 4, "")
	fs.IntVar(&o.jobs, "jobs", 2, "")
	fs.IntVar(&o.retries, "retries", client.DefaultRetry.MaxAttempts, "")
	fs.BoolVar(&o.follow, "follow-symlinks", false, "")
	fs.StringVar(&o.stateDir, "state-dir", "", "")
	fs.BoolVar(&o.fresh, "fresh", false, "")
	fs.BoolVar(&o.wait, "wait", false, "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.StringVar(&o.progress, "progress", "auto", "")
	// Flags may follow the paths (scangate upload dir --wait).
	var paths []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "scangate upload: "+format+"\n", a...)
		return exitUsage
	}
	switch {
	case len(paths) == 0:
		fmt.Fprint(stderr, uploadUsage)
		return exitUsage
	case o.parallel < 1 || o.jobs < 1 || o.retries < 1:
		return usageErr("--parallel, --jobs and --retries must be at least 1")
	case o.partSize < 1:
		return usageErr("--part-size must be at least 1 byte")
	case !slices.Contains([]string{"auto", "bars", "lines", "none"}, o.progress):
		return usageErr("--progress: want auto, bars, lines or none, got %q", o.progress)
	}
	if o.metadata != "" {
		var obj map[string]any
		if err := json.Unmarshal([]byte(o.metadata), &obj); err != nil {
			return usageErr("--metadata: want a JSON object: %v", err)
		}
	}
	if len(o.servers) == 0 {
		o.servers = serverList{client.DefaultServer}
	}
	retry := client.DefaultRetry
	retry.MaxAttempts = o.retries
	c, err := client.New(o.servers, client.WithAPIKey(o.apikey), client.WithRetry(retry),
		client.WithUserAgent("scangate-upload/"+BuildVersion()))
	if err != nil {
		return usageErr("%v", err)
	}
	if o.stateDir == "" {
		o.stateDir = defaultStateDir()
	}
	st, err := openUploadState(o.stateDir)
	if err != nil {
		return usageErr("--state-dir: %v", err)
	}

	var notes []string
	files, err := collectFiles(paths, o.follow, func(n string) { notes = append(notes, n) })
	if err != nil {
		return usageErr("%v", err)
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	ui := newUI(o.progress, stderr, total)
	for _, n := range notes {
		ui.logf("skip    %s", n)
	}

	began := time.Now()
	u := &uploader{c: c, st: st, ui: ui, o: &o}
	outs := make([]*outcome, len(files))
	forEach(len(files), o.jobs, func(i int) { outs[i] = u.file(ctx, files[i]) })
	ui.close()

	var sent int64
	uploaded := 0
	for _, out := range outs {
		sent += out.Sent
		if out.DataID != "" && out.Error == "" {
			uploaded++
		}
	}
	if o.progress != "none" {
		fmt.Fprintf(stderr, "uploaded %d of %d files, %s sent in %s\n", uploaded, len(files), size(sent), time.Since(began).Round(time.Millisecond))
	}
	if o.wait && ctx.Err() == nil {
		waitVerdicts(ctx, c, outs, o, stderr)
	}
	if err := report(stdout, outs, o); err != nil {
		fmt.Fprintf(stderr, "scangate upload: %v\n", err)
	}
	return exitCode(ctx, outs, stderr)
}

func newUI(mode string, stderr io.Writer, total int64) progressUI {
	if mode == "auto" {
		mode = "lines"
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bars"
		}
	}
	switch mode {
	case "bars":
		return newBarsUI(stderr, total)
	case "lines":
		return newLinesUI(stderr, total, progressInterval)
	}
	return quietUI{stderr}
}

// forEach runs fn(0..n-1), at most par at a time.
func forEach(n, par int, fn func(i int)) {
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(par, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// fileJob is a file to upload, as found on the command line or by the walk.
type fileJob struct {
	name  string // as given or walked, for the report
	abs   string
	size  int64
	mtime time.Time
}

// collectFiles expands the arguments: a file is taken as it is (a symlink
// named on the command line is followed: it was asked for), a directory is
// walked. Inside directories only regular files are taken; symlinks are
// skipped unless follow, and then a directory reached twice (a loop) is
// walked once. A missing argument is an error; what is skipped is noted.
func collectFiles(args []string, follow bool, note func(string)) ([]fileJob, error) {
	var out []fileJob
	seen := map[string]bool{}
	add := func(name string, info os.FileInfo) {
		abs, err := filepath.Abs(name)
		if err != nil || seen[abs] {
			return
		}
		seen[abs] = true
		out = append(out, fileJob{name: name, abs: abs, size: info.Size(), mtime: info.ModTime()})
	}
	var visited []os.FileInfo
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if e.Type()&os.ModeSymlink != 0 && !follow {
				note(p + ": symlink (--follow-symlinks follows them)")
				continue
			}
			info, err := os.Stat(p)
			if err != nil {
				note(fmt.Sprintf("%s: %v", p, err))
				continue
			}
			switch {
			case info.IsDir():
				if slices.ContainsFunc(visited, func(v os.FileInfo) bool { return os.SameFile(v, info) }) {
					note(p + ": directory already walked (symlink loop)")
					continue
				}
				visited = append(visited, info)
				if err := walk(p); err != nil {
					note(fmt.Sprintf("%s: %v", p, err))
				}
			case info.Mode().IsRegular():
				add(p, info)
			default:
				note(p + ": not a regular file")
			}
		}
		return nil
	}
	for _, a := range args {
		info, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		switch {
		case info.IsDir():
			visited = append(visited, info)
			if err := walk(a); err != nil {
				return nil, err
			}
		case info.Mode().IsRegular():
			add(a, info)
		default:
			note(a + ": not a regular file")
		}
	}
	return out, nil
}

// outcome is one file's line in the report.
type outcome struct {
	File           string   `json:"file"`
	Size           int64    `json:"size"`
	DataID         string   `json:"data_id"`
	Upload         string   `json:"upload"`     // whole, multipart, or "" when nothing was sent
	Sent           int64    `json:"sent_bytes"` // bytes sent by this run
	Note           string   `json:"note,omitempty"`
	Error          string   `json:"error,omitempty"`
	Result         string   `json:"result,omitempty"` // process_info.result, with --wait
	Verdict        string   `json:"verdict,omitempty"`
	VerdictCode    *int     `json:"scan_all_result_i,omitempty"`
	Threats        []string `json:"threats,omitempty"`
	BlockedReasons []string `json:"blocked_reasons,omitempty"`
	interrupted    bool
}

// uploader uploads files and keeps their state.
type uploader struct {
	c  *client.Client
	st *uploadState
	ui progressUI
	o  *uploadOptions
}

func (u *uploader) file(ctx context.Context, f fileJob) *outcome {
	out := &outcome{File: f.name, Size: f.size}
	if ctx.Err() != nil {
		out.interrupted = true
		return out
	}
	if f.size == 0 {
		out.Note = "empty file: not sent (scangate refuses empty files)"
		u.ui.logf("skip    %s: empty", f.name)
		return out
	}
	key := stateKey(f.abs, f.size, f.mtime, u.o.servers, u.o.rule, u.o.callbackURL, u.o.metadata)
	var prev *stateEntry
	if !u.o.fresh {
		prev = u.st.load(key)
	}
	if prev != nil && prev.Complete {
		out.DataID, out.Upload, out.Note = prev.DataID, prev.Method, "already uploaded"
		u.ui.skip(f.size)
		u.ui.logf("done    %s  %s  already uploaded", f.name, prev.DataID)
		return out
	}
	err := u.send(ctx, f, key, prev, out)
	if err != nil && prev != nil && errors.Is(err, client.ErrSessionEnded) && ctx.Err() == nil {
		u.ui.logf("restart %s: the earlier session is gone (%v)", f.name, err)
		u.st.remove(key)
		out.Sent, out.DataID = 0, ""
		err = u.send(ctx, f, key, nil, out)
	}
	if err != nil {
		if ctx.Err() != nil {
			out.interrupted = true
			out.Error = "interrupted"
		} else {
			out.Error = err.Error()
		}
	}
	return out
}

// send uploads f whole or in parts, resuming prev when it is a multipart
// session, and records what the server accepted as soon as it is known.
func (u *uploader) send(ctx context.Context, f fileJob, key string, prev *stateEntry, out *outcome) error {
	fh, err := os.Open(f.abs)
	if err != nil {
		return err
	}
	defer fh.Close()
	entry := &stateEntry{Path: f.abs, Size: f.size, ModTime: f.mtime, Servers: u.o.servers, Rule: u.o.rule, Created: time.Now()}
	var fp fileProgress
	fo := &client.FileOptions{Filename: filepath.Base(f.abs), Rule: u.o.rule, CallbackURL: u.o.callbackURL, Metadata: u.o.metadata,
		Progress: func(d int64) {
			atomic.AddInt64(&out.Sent, d)
			fp.add(d)
		}}
	whole := func() error {
		out.Upload = "whole"
		fp = u.ui.start(f.name, f.size, 0, "whole")
		id, err := u.c.Upload(ctx, fh, f.size, fo)
		if err != nil {
			fp.finish("", stopped(ctx, err))
			return err
		}
		// Recorded once answered: a re-run does not send it again.
		out.DataID = id
		entry.Method, entry.DataID, entry.Complete = "whole", id, true
		if err := u.st.save(key, entry); err != nil {
			u.ui.logf("warning: %s: state not saved: %v", f.name, err)
		}
		fp.finish(id, nil)
		return nil
	}
	if prev == nil && f.size < int64(u.o.threshold) {
		return whole()
	}

	out.Upload = "multipart"
	mo := &client.MultipartOptions{PartSize: int64(u.o.partSize), Parallel: u.o.parallel,
		OnSession: func(id string, received int64) error {
			out.DataID = id
			how := fmt.Sprintf("multipart, %s parts x%d", size(int64(u.o.partSize)), u.o.parallel)
			if prev == nil {
				entry.Method, entry.DataID = "multipart", id
				// Recorded before the first part: a crash from here on
				// resumes this session instead of opening another.
				if err := u.st.save(key, entry); err != nil {
					return fmt.Errorf("recording the session for a resume: %w", err)
				}
			} else {
				out.Note = "resumed"
			}
			fp = u.ui.start(f.name, f.size, received, how)
			return nil
		}}
	if prev != nil {
		mo.DataID = prev.DataID
		entry = prev
	}
	id, err := u.c.UploadMultipart(ctx, fh, f.size, fo, mo)
	var apiErr *client.Error
	if fp == nil && prev == nil && errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusForbidden && apiErr.RetryAfter == 0 {
		// The workflow takes no multipart uploads: send the file whole.
		u.ui.logf("whole   %s: %s", f.name, apiErr.Message)
		return whole()
	}
	if fp == nil {
		return err // the session was never opened or found
	}
	if err != nil {
		fp.finish("", stopped(ctx, err))
		return err
	}
	entry.Complete = true
	if err := u.st.save(key, entry); err != nil {
		u.ui.logf("warning: %s: state not saved: %v", f.name, err)
	}
	fp.finish(id, nil)
	return nil
}

// errStopped marks a file whose upload the interruption cut short.
var errStopped = errors.New("interrupted")

func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errStopped
	}
	return err
}

// waitVerdicts polls every uploaded file's result until it is final.
func waitVerdicts(ctx context.Context, c *client.Client, outs []*outcome, o uploadOptions, stderr io.Writer) {
	var todo []*outcome
	for _, out := range outs {
		if out.DataID != "" {
			todo = append(todo, out)
		}
	}
	if o.progress != "none" && len(todo) > 0 {
		fmt.Fprintf(stderr, "waiting for %d verdicts\n", len(todo))
	}
	forEach(len(todo), 16, func(i int) {
		out := todo[i]
		r, err := c.Wait(ctx, out.DataID, &client.WaitOptions{MaxInterval: 2 * time.Second})
		if err != nil {
			if ctx.Err() != nil {
				out.interrupted = true
			}
			out.Error = "verdict: " + err.Error()
			return
		}
		code := r.ScanResults.ScanAllResultI
		out.Result, out.Verdict, out.VerdictCode = r.ProcessInfo.Result, r.ScanResults.ScanAllResultA, &code
		out.Threats, out.BlockedReasons = r.Threats(), r.ProcessInfo.BlockedReasons
	})
}

// report prints the outcomes: a table, or JSON.
func report(w io.Writer, outs []*outcome, o uploadOptions) error {
	if o.json {
		if outs == nil {
			outs = []*outcome{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(outs)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if o.wait {
		fmt.Fprintln(tw, "FILE\tSIZE\tDATA_ID\tRESULT\tVERDICT\tTHREAT")
	} else {
		fmt.Fprintln(tw, "FILE\tSIZE\tDATA_ID\tUPLOAD\tSENT\tNOTE")
	}
	for _, out := range outs {
		id := or(out.DataID, "-")
		switch {
		case o.wait && out.Result != "":
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", out.File, size(out.Size), id, out.Result, out.Verdict, or(strings.Join(out.Threats, ", "), "-"))
		case o.wait:
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t%s\t-\n", out.File, size(out.Size), id, or(out.Error, out.Note))
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", out.File, size(out.Size), id, or(out.Upload, "-"), size(out.Sent), or(out.Error, out.Note))
		}
	}
	return tw.Flush()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// exitCode: interrupted beats blocked beats failed (see uploadUsage).
func exitCode(ctx context.Context, outs []*outcome, stderr io.Writer) int {
	interrupted, blocked, failed := ctx.Err() != nil, 0, 0
	for _, out := range outs {
		switch {
		case out.interrupted:
			interrupted = true
		case out.Result == "Blocked":
			blocked++
		case out.Error != "":
			failed++
		}
	}
	switch {
	case interrupted:
		fmt.Fprintln(stderr, "scangate upload: interrupted; run the same command again to send only what is missing")
		return exitInterrupted
	case blocked > 0:
		return exitBlocked
	case failed > 0:
		return exitFailed
	}
	return 0
}
