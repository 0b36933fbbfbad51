package cli

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progressUI shows the uploads: bars on a terminal, log lines elsewhere
// (CI logs, files), nothing when asked.
type progressUI interface {
	// start shows a file whose upload begins; done is what the server
	// already holds (a resumed upload).
	start(name string, size, done int64, how string) fileProgress
	// skip says that n bytes of the total will not be sent (the file is
	// already on the server, or empty).
	skip(n int64)
	// logf prints a line (above the bars, when there are bars).
	logf(format string, args ...any)
	// close ends the display; no method may be called after it.
	close()
}

// fileProgress follows one file.
type fileProgress interface {
	add(delta int64) // bytes sent; negative when a failed attempt takes them back
	finish(dataID string, err error)
}

func failLine(name string, err error) string {
	if errors.Is(err, errStopped) {
		return fmt.Sprintf("stopped %s (run again to resume)", name)
	}
	return fmt.Sprintf("failed  %s: %v", name, err)
}

func size(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// --- bars ---

// barsUI draws a bar per file and one for all of them with mpb. Bars
// count the bytes this run sends: what a resumed file already has on the
// server is left out, so that rates and ETAs are true.
type barsUI struct {
	p      *mpb.Progress
	total  *mpb.Bar
	mu     sync.Mutex
	left   int64 // bytes the total bar expects
	failed bool  // a file stopped short: the total will not be reached
}

func newBarsUI(w io.Writer, totalBytes int64) *barsUI {
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(150*time.Millisecond), mpb.WithAutoRefresh())
	total := p.AddBar(totalBytes, mpb.BarPriority(math.MaxInt),
		mpb.PrependDecorators(decor.Name("total", decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace)),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "")))
	return &barsUI{p: p, total: total, left: totalBytes}
}

// expect takes n bytes off what the total bar waits for.
func (u *barsUI) expect(n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.left -= n
	u.total.SetTotal(u.left, false)
}

func (u *barsUI) start(name string, sz, done int64, how string) fileProgress {
	if done > 0 {
		u.expect(done)
		how = fmt.Sprintf("%s, resumed: %s were on the server", how, size(done))
	}
	bar := u.p.AddBar(sz-done, mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace)),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
			decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), decor.Name(" "+how)))
	return &barFile{u: u, bar: bar, name: name}
}

func (u *barsUI) skip(n int64) { u.expect(n) }

func (u *barsUI) logf(format string, args ...any) {
	fmt.Fprintf(u.p, format+"\n", args...)
}

func (u *barsUI) close() {
	u.mu.Lock()
	failed := u.failed
	u.mu.Unlock()
	if failed {
		u.total.Abort(false) // shows where it stopped
	} else {
		u.total.SetTotal(-1, true)
	}
	u.p.Wait()
}

type barFile struct {
	u    *barsUI
	bar  *mpb.Bar
	name string
}

func (f *barFile) add(delta int64) {
	f.bar.IncrInt64(delta)
	f.u.total.IncrInt64(delta)
}

func (f *barFile) finish(dataID string, err error) {
	if err != nil {
		f.u.mu.Lock()
		f.u.failed = true
		f.u.mu.Unlock()
		f.bar.Abort(false) // the bar stays, showing how far the file got
		f.u.logf("%s", failLine(f.name, err))
		return
	}
	f.bar.SetTotal(-1, true)
	f.u.logf("sent    %s  %s", f.name, dataID)
}

// --- lines ---

// linesUI logs a line per event and, while uploads run, a progress line
// per file every interval: readable in a CI log, where bars are noise.
type linesUI struct {
	w        io.Writer
	mu       sync.Mutex
	files    map[*lineFile]struct{}
	began    time.Time
	sent     int64
	total    int64
	stop     chan struct{}
	stopped  sync.WaitGroup
	interval time.Duration
}

func newLinesUI(w io.Writer, totalBytes int64, interval time.Duration) *linesUI {
	u := &linesUI{w: w, files: map[*lineFile]struct{}{}, began: time.Now(), total: totalBytes, stop: make(chan struct{}), interval: interval}
	u.stopped.Go(u.tick)
	return u
}

func (u *linesUI) tick() {
	t := time.NewTicker(u.interval)
	defer t.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-t.C:
		}
		u.mu.Lock()
		var files []*lineFile
		for f := range u.files {
			files = append(files, f)
		}
		sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
		for _, f := range files {
			el := time.Since(f.began).Seconds()
			rate := float64(f.sent) / el
			eta := "?"
			if rate > 0 {
				eta = time.Duration(float64(f.size-f.done-f.sent) / rate * float64(time.Second)).Round(time.Second).String()
			}
			fmt.Fprintf(u.w, "        %s  %s / %s  %s/s  ETA %s\n", f.name, size(f.done+f.sent), size(f.size), size(int64(rate)), eta)
		}
		if len(files) > 0 {
			fmt.Fprintf(u.w, "        total  %s sent, %s/s\n", size(u.sent), size(int64(float64(u.sent)/time.Since(u.began).Seconds())))
		}
		u.mu.Unlock()
	}
}

func (u *linesUI) start(name string, sz, done int64, how string) fileProgress {
	f := &lineFile{u: u, name: name, size: sz, done: done, began: time.Now()}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files[f] = struct{}{}
	if done > 0 {
		fmt.Fprintf(u.w, "resume  %s  %s of %s already on the server, %s\n", name, size(done), size(sz), how)
	} else {
		fmt.Fprintf(u.w, "send    %s  %s, %s\n", name, size(sz), how)
	}
	return f
}

func (u *linesUI) skip(int64) {}

func (u *linesUI) logf(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.w, format+"\n", args...)
}

func (u *linesUI) close() {
	close(u.stop)
	u.stopped.Wait()
}

type lineFile struct {
	u                *linesUI
	name             string
	size, done, sent int64 // guarded by u.mu
	began            time.Time
}

func (f *lineFile) add(delta int64) {
	f.u.mu.Lock()
	f.sent += delta
	f.u.sent += delta
	f.u.mu.Unlock()
}

func (f *lineFile) finish(dataID string, err error) {
	f.u.mu.Lock()
	defer f.u.mu.Unlock()
	delete(f.u.files, f)
	if err != nil {
		fmt.Fprintln(f.u.w, failLine(f.name, err))
		return
	}
	el := time.Since(f.began)
	fmt.Fprintf(f.u.w, "sent    %s  %s  %s in %s (%s/s)\n", f.name, dataID, size(f.sent), el.Round(time.Millisecond),
		size(int64(float64(f.sent)/max(el.Seconds(), 1e-3))))
}

// --- none ---

// quietUI shows no progress; failures and notes still reach stderr.
type quietUI struct{ w io.Writer }

func (u quietUI) start(name string, _, _ int64, _ string) fileProgress { return quietFile{u.w, name} }
func (quietUI) skip(int64)                                             {}
func (u quietUI) logf(format string, args ...any) {
	if strings.HasPrefix(format, "warning") { // progress is off, trouble is not
		fmt.Fprintf(u.w, format+"\n", args...)
	}
}
func (quietUI) close() {}

type quietFile struct {
	w    io.Writer
	name string
}

func (quietFile) add(int64) {}
func (f quietFile) finish(_ string, err error) {
	if err != nil {
		fmt.Fprintln(f.w, failLine(f.name, err))
	}
}
