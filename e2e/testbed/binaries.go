package testbed

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// modulePath is the main module's path; RepoRoot looks for its go.mod.
const modulePath = "github.com/promshard/promshard"

// Logf prints one progress line. testing.T.Logf and log.Printf fit; nil
// discards.
type Logf func(format string, args ...any)

func (l Logf) printf(format string, args ...any) {
	if l != nil {
		l(format, args...)
	}
}

// Bins holds absolute paths of the binaries the test bed runs.
type Bins struct {
	Etcd          string
	KubeAPIServer string
	Prometheus    string
	ControllerGen string
	// TargetServer is built from e2e/cmd/targetserver of this module.
	TargetServer string
	// Cortex is not built by Binaries: few tests need it, so
	// Bed.StartCortex builds it on first use (CortexBinary) unless it is set
	// here.
	Cortex string
}

// binSpec describes how one binary is built.
type binSpec struct {
	name string
	// toolDir is the tools module (relative to the repo root) holding the
	// package, or "" for a package of the main module.
	toolDir string
	pkg     string
	tags    string
	dst     *string
}

func (b *Bins) specs() []binSpec {
	return []binSpec{
		{name: "targetserver", pkg: "./e2e/cmd/targetserver", dst: &b.TargetServer},
		{name: "etcd", toolDir: "e2e/tools/etcd", pkg: "go.etcd.io/etcd/server/v3", dst: &b.Etcd},
		{name: "controller-gen", toolDir: "e2e/tools/controller-gen", pkg: "sigs.k8s.io/controller-tools/cmd/controller-gen", dst: &b.ControllerGen},
		{name: "prometheus", toolDir: "e2e/tools/prometheus", pkg: "github.com/prometheus/prometheus/cmd/prometheus",
			tags: "remove_all_sd,enable_kubernetes_sd", dst: &b.Prometheus},
		{name: "kube-apiserver", toolDir: "e2e/tools/kube", pkg: "k8s.io/kubernetes/cmd/kube-apiserver", dst: &b.KubeAPIServer},
	}
}

// PrometheusAllSD builds (or reuses) Prometheus from the same tools module
// as the test bed's, but with the default build tags: every service
// discovery compiled in, as in a released Prometheus binary and as in
// promshard, whose ScrapeConfig objects may use any of them. Only
// bench-vs-agent needs it, so Binaries does not build it.
func PrometheusAllSD(ctx context.Context, logf Logf) (string, error) {
	root, binDir, unlock, err := lockBinDir()
	if err != nil {
		return "", err
	}
	defer unlock()
	dst := filepath.Join(binDir, "prometheus-all-sd")
	spec := binSpec{name: "prometheus-all-sd", toolDir: "e2e/tools/prometheus", pkg: "github.com/prometheus/prometheus/cmd/prometheus", dst: &dst}
	return dst, buildOne(ctx, logf, root, spec, dst)
}

// CortexBinary builds (or reuses) Cortex from e2e/tools/cortex, with the
// build tags of Cortex's own Makefile: slicelabels is required (with
// Prometheus' default stringlabels the ruler API crashes Cortex when it
// stores a rule group with labels). Only the tests that start a Cortex
// ruler need it, so Binaries does not build it; a cold build takes ~3 min.
func CortexBinary(ctx context.Context, logf Logf) (string, error) {
	root, binDir, unlock, err := lockBinDir()
	if err != nil {
		return "", err
	}
	defer unlock()
	dst := filepath.Join(binDir, "cortex")
	spec := binSpec{name: "cortex", toolDir: "e2e/tools/cortex", pkg: "github.com/cortexproject/cortex/cmd/cortex",
		tags: "netgo,slicelabels", dst: &dst}
	return dst, buildOne(ctx, logf, root, spec, dst)
}

// lockBinDir returns the repository root and the binary cache directory,
// created if needed, holding the cache's file lock until unlock is called.
func lockBinDir() (root, binDir string, unlock func(), err error) {
	if root, err = RepoRoot(); err != nil {
		return "", "", nil, err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", "", nil, err
	}
	binDir = filepath.Join(cache, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", "", nil, fmt.Errorf("create binary cache: %w", err)
	}
	if unlock, err = lockFile(filepath.Join(binDir, ".lock")); err != nil {
		return "", "", nil, err
	}
	return root, binDir, unlock, nil
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// RepoRoot returns the directory of the go.mod whose module is
// github.com/promshard/promshard, searching upwards from the working
// directory.
func RepoRoot() (string, error) {
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = fmt.Errorf("get working directory: %w", err)
			return
		}
		for {
			if isMainModule(filepath.Join(dir, "go.mod")) {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = fmt.Errorf("no go.mod of module %s above the working directory", modulePath)
				return
			}
			dir = parent
		}
	})
	return rootDir, rootErr
}

func isMainModule(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == modulePath
		}
	}
	return false
}

// CacheDir returns $PROMSHARD_CACHE if set, else <repo>/.cache. It holds
// bin/ (built binaries) and run/ (pid files of live test beds).
func CacheDir() (string, error) {
	if d := os.Getenv("PROMSHARD_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache"), nil
}

// Binaries builds the test bed's binaries into <cache>/bin, or reuses them.
// A binary from a tools module is rebuilt only when its stamp file (a hash
// of the tools module's go.mod and go.sum, the build tags and the Go
// version) changed; main-module binaries are always rebuilt by `go build`,
// which is quick when Go's build cache is warm. Concurrent callers in other
// processes wait on a file lock. A cold build of kube-apiserver takes ~9
// minutes on 2 cores; logf receives a progress line every 30 s.
func Binaries(ctx context.Context, logf Logf) (*Bins, error) {
	root, binDir, unlock, err := lockBinDir()
	if err != nil {
		return nil, err
	}
	defer unlock()

	bins := &Bins{}
	for _, s := range bins.specs() {
		*s.dst = filepath.Join(binDir, s.name)
		if err := buildOne(ctx, logf, root, s, *s.dst); err != nil {
			return nil, err
		}
	}
	return bins, nil
}

func buildOne(ctx context.Context, logf Logf, root string, s binSpec, dst string) error {
	stampFile := dst + ".stamp"
	var stamp string
	if s.toolDir != "" {
		var err error
		if stamp, err = toolStamp(filepath.Join(root, s.toolDir), s); err != nil {
			return err
		}
		old, _ := os.ReadFile(stampFile)
		if _, statErr := os.Stat(dst); statErr == nil && string(old) == stamp {
			return nil
		}
		logf.printf("testbed: building %s from %s (cached afterwards)", s.name, s.toolDir)
	}
	args := []string{"build", "-o", dst + ".tmp"}
	if s.tags != "" {
		args = append(args, "-tags", s.tags)
	}
	args = append(args, s.pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if s.toolDir != "" {
		cmd.Dir = filepath.Join(root, s.toolDir)
	}
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runWithProgress(cmd, logf, s.name); err != nil {
		return fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), cmd.Dir, err, out.String())
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		return fmt.Errorf("install %s: %w", s.name, err)
	}
	if stamp != "" {
		if err := os.WriteFile(stampFile, []byte(stamp), 0o644); err != nil {
			return fmt.Errorf("write stamp of %s: %w", s.name, err)
		}
	}
	return nil
}

// runWithProgress runs cmd and logs the elapsed time every 30 s.
func runWithProgress(cmd *exec.Cmd, logf Logf, name string) error {
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if time.Since(start) > 5*time.Second {
				logf.printf("testbed: built %s in %.0fs", name, time.Since(start).Seconds())
			}
			return err
		case <-tick.C:
			logf.printf("testbed: still building %s: %.0fs", name, time.Since(start).Seconds())
		}
	}
}

func toolStamp(dir string, s binSpec) (string, error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", fmt.Errorf("read tools module file: %w", err)
		}
		h.Write(b)
	}
	fmt.Fprintf(h, "\x00%s\x00%s\x00%s", s.pkg, s.tags, runtime.Version())
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lockFile takes an exclusive flock on path, waiting for other processes.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
