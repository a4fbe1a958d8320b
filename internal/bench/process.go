package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// binaries are the programs an operator runs.
type binaries struct {
	starter, worker, temporal string
}

// findBinaries locates the programs (absolute paths: the starter runs the
// Temporal CLI by path).
func findBinaries(dir string) (binaries, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return binaries{}, err
	}
	b := binaries{starter: filepath.Join(abs, "starter"), worker: filepath.Join(abs, "worker"),
		temporal: filepath.Join(abs, "temporal")}
	for _, p := range []string{b.starter, b.worker, b.temporal} {
		if _, err := os.Stat(p); err != nil {
			return b, fmt.Errorf("%s is missing (run `make build`, or pass -bin): %w", p, err)
		}
	}
	return b, nil
}

// process is a program under test, its output in a log file.
type process struct {
	name    string
	log     string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	waitErr error
	ended   time.Time
	ownPeak func() int64
}

// outcome is what a finished process cost.
type outcome struct {
	Wall time.Duration
	// MaxRSSKiB is the kernel's peak RSS of the process and of the
	// children it waited for, the larger (rusage ru_maxrss, KiB on Linux).
	MaxRSSKiB int64
	// OwnPeakKiB is the process's own peak RSS (VmHWM, sampled).
	OwnPeakKiB int64
}

// start runs a program with the extra environment; its stdout and stderr
// go to <scratch>/<name>.log, stdout also to tee when not nil.
func (b *bench) start(ctx context.Context, name string, env []string, tee io.Writer, prog string, args ...string) (*process, error) {
	p := &process{name: name, log: filepath.Join(b.tmp, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, fmt.Errorf("creating the log of %s: %w", name, err)
	}
	p.cmd = exec.CommandContext(ctx, prog, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if tee != nil {
		p.cmd.Stdout = io.MultiWriter(f, tee)
	}
	p.cmd.WaitDelay = 10 * time.Second
	dieWithParent(p.cmd)
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", prog, err)
	}
	p.ownPeak = watchPeak(p.cmd.Process.Pid, p.done)
	go func() {
		p.waitErr = p.cmd.Wait()
		p.ended = time.Now()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// wait waits for the process to end and fails unless it exited with 0.
func (p *process) wait() (outcome, error) {
	<-p.done
	o := outcome{Wall: p.ended.Sub(p.started), OwnPeakKiB: p.ownPeak(), MaxRSSKiB: maxRSS(p.cmd.ProcessState)}
	if p.waitErr != nil {
		return o, fmt.Errorf("%s: %w; last lines of %s:\n%s", p.name, p.waitErr, p.log, tail(p.log, 15))
	}
	return o, nil
}

// terminate asks the process to stop (SIGTERM, killed after 30 s) and
// waits for it.
func (p *process) terminate() (outcome, error) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM) // the worker stops gracefully on it
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
	}
	return p.wait()
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// watchPeak samples /proc/<pid>/status's VmHWM until done; the returned
// function gives the highest value seen (KiB). VmHWM is the process's own
// high-water mark, so the last sample misses at most the final 100 ms.
func watchPeak(pid int, done <-chan struct{}) func() int64 {
	var mu sync.Mutex
	var peak int64
	sample := func() {
		if v := vmHWM(strconv.Itoa(pid)); v > 0 {
			mu.Lock()
			peak = max(peak, v)
			mu.Unlock()
		}
	}
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return func() int64 {
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// vmHWM reads a process's peak RSS in KiB ("self" for this one); 0 when
// unknown.
func vmHWM(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// resetPeakRSS makes this process's VmHWM start again from its current
// RSS (Linux ≥ 4.0), so run b's peak is not an earlier step's.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-n):], []byte("\n")))
}

// stamp remembers when a marker first appears in a program's output.
type stamp struct {
	marker string
	mu     sync.Mutex
	at     time.Time
}

func (s *stamp) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at.IsZero() && bytes.Contains(p, []byte(s.marker)) {
		s.at = time.Now()
	}
	return len(p), nil
}

// since is how long after t0 the marker appeared (0 if it never did).
func (s *stamp) since(t0 time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at.IsZero() {
		return 0
	}
	return s.at.Sub(t0)
}
