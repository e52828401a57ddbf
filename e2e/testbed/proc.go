package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a process gets after SIGTERM before SIGKILL. An
// apiserver whose etcd is gone was seen ignoring SIGTERM for over a minute.
const stopGrace = 5 * time.Second

// proc is one child process the bed started. Its pid file lives in the
// owner's run directory so a later bed can kill it if this process dies.
type proc struct {
	name    string
	cmd     *exec.Cmd
	pidFile string
	done    chan struct{}
	waitErr error
}

// startProc starts argv with its output in logPath and records a pid file in
// runDir. The child gets its own process group (so a terminal's Ctrl-C
// reaches only the test, which then stops children in order) and SIGKILL if
// the test process dies.
func startProc(runDir, name, logPath string, argv []string, env []string) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	p.pidFile = filepath.Join(runDir, fmt.Sprintf("%s-%d.pid", name, cmd.Process.Pid))
	// The pid file records the pid and the command line, so cleanup never
	// kills an unrelated process that reused the pid.
	_ = os.WriteFile(p.pidFile, []byte(pidRecord(cmd.Process.Pid, argv)), 0o644)
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, escalates to SIGKILL after stopGrace and waits.
func (p *proc) stop() {
	if p == nil {
		return
	}
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	p.waitOrKill(stopGrace)
}

// waitOrKill waits up to d for the process to exit, kills it after that,
// and removes its pid file.
func (p *proc) waitOrKill(d time.Duration) {
	select {
	case <-p.done:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_ = os.Remove(p.pidFile)
}

// newRunDir creates <cache>/run/<pid>-<seq> for this process's pid files
// after removing leftovers of dead owners.
func newRunDir(cache string) (string, error) {
	runRoot := filepath.Join(cache, "run")
	if err := os.MkdirAll(runRoot, 0o755); err != nil {
		return "", fmt.Errorf("create run directory: %w", err)
	}
	cleanupLeftovers(runRoot)
	dir, err := os.MkdirTemp(runRoot, fmt.Sprintf("%d-", os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("create run directory: %w", err)
	}
	return dir, nil
}

// cleanupLeftovers kills processes recorded by owners that no longer run and
// deletes their network namespaces.
func cleanupLeftovers(runRoot string) {
	entries, _ := os.ReadDir(runRoot)
	for _, e := range entries {
		owner, ok := ownerPID(e.Name())
		if !e.IsDir() || !ok || pidAlive(owner) {
			continue
		}
		dir := filepath.Join(runRoot, e.Name())
		files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
		for _, f := range files {
			killRecorded(f)
		}
		_ = os.RemoveAll(dir)
	}
	deleteStaleNetns()
}

// ownerPID parses the "<pid>-<suffix>" run directory name.
func ownerPID(name string) (int, bool) {
	pidStr, _, _ := strings.Cut(name, "-")
	pid, err := strconv.Atoi(pidStr)
	return pid, err == nil && pid > 0
}

func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// pidRecord is a pid file's content: the pid, a newline, and the command
// line with NUL separators as in /proc/<pid>/cmdline.
func pidRecord(pid int, argv []string) string {
	return fmt.Sprintf("%d\n%s\x00", pid, strings.Join(argv, "\x00"))
}

// killRecorded SIGKILLs the pid in a pid file if it still runs the recorded
// command line. A suffix match suffices: `ip netns exec <ns> cmd...` execs
// into cmd, whose command line is the tail of the recorded one.
func killRecorded(pidFile string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pidStr, recorded, ok := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid <= 0 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(cmdline) == 0 || !strings.HasSuffix(recorded, string(cmdline)) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// Signal handling: while at least one bed is live, SIGINT/SIGTERM close every
// live bed and the process exits with 128+signal. Exiting here is the point:
// an interrupted test must not leave processes and namespaces behind. The
// handler is removed when the last bed closes.
var (
	liveMu   sync.Mutex
	liveBeds = map[*Bed]struct{}{}
	sigCh    chan os.Signal
	sigStop  chan struct{}
)

func registerBed(b *Bed) {
	liveMu.Lock()
	defer liveMu.Unlock()
	if len(liveBeds) == 0 {
		sigCh, sigStop = make(chan os.Signal, 1), make(chan struct{})
		signal.Notify(sigCh, syscall.SIGINT, syscall.SIGTERM)
		go handleSignals(sigCh, sigStop)
	}
	liveBeds[b] = struct{}{}
}

func handleSignals(ch <-chan os.Signal, stop <-chan struct{}) {
	select {
	case <-stop:
	case sig := <-ch:
		fmt.Fprintf(os.Stderr, "testbed: got %v, tearing down test beds\n", sig)
		closeAllBeds()
		code := 130
		if sig == syscall.SIGTERM {
			code = 143
		}
		os.Exit(code)
	}
}

func unregisterBed(b *Bed) {
	liveMu.Lock()
	defer liveMu.Unlock()
	if _, ok := liveBeds[b]; !ok {
		return
	}
	delete(liveBeds, b)
	if len(liveBeds) == 0 {
		signal.Stop(sigCh)
		close(sigStop)
	}
}

func closeAllBeds() {
	liveMu.Lock()
	beds := make([]*Bed, 0, len(liveBeds))
	for b := range liveBeds {
		beds = append(beds, b)
	}
	liveMu.Unlock()
	for _, b := range beds {
		_ = b.Close()
	}
}

// run executes a short command and returns its combined output in the error.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// output executes a short command and returns its standard output.
func output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = io.Discard
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// poll calls cond every interval until it returns true, an error, or ctx
// ends. The last condition error is included in a timeout error.
func poll(ctx context.Context, interval time.Duration, what string, cond func(context.Context) (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
