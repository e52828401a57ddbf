package testbed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// VictoriaMetricsVersion is the VictoriaMetrics release the test bed runs.
const VictoriaMetricsVersion = "v1.151.0"

// victoriaMetricsPkg is the single-node VictoriaMetrics main package.
const victoriaMetricsPkg = "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics"

// VictoriaMetricsBinary builds (or reuses) single-node VictoriaMetrics
// VictoriaMetricsVersion with `go install pkg@version` (its go.mod pins its
// dependencies, so no tools module is needed); ~30 s cold. Only the
// replication tests need it, so Binaries does not build it.
func VictoriaMetricsBinary(ctx context.Context, logf Logf) (string, error) {
	_, binDir, unlock, err := lockBinDir()
	if err != nil {
		return "", err
	}
	defer unlock()
	dst := filepath.Join(binDir, "victoria-metrics")
	stamp := victoriaMetricsPkg + "@" + VictoriaMetricsVersion + "\x00" + runtime.Version()
	if old, _ := os.ReadFile(dst + ".stamp"); string(old) == stamp {
		if _, err := os.Stat(dst); err == nil {
			return dst, nil
		}
	}
	logf.printf("testbed: installing victoria-metrics %s (cached afterwards)", VictoriaMetricsVersion)
	gobin, err := os.MkdirTemp(binDir, ".victoria-metrics-")
	if err != nil {
		return "", fmt.Errorf("create install directory: %w", err)
	}
	defer os.RemoveAll(gobin)
	cmd := exec.CommandContext(ctx, "go", "install", victoriaMetricsPkg+"@"+VictoriaMetricsVersion)
	cmd.Dir = gobin // outside any module: pkg@version resolves on its own
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOWORK=off", "GOFLAGS=-buildvcs=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runWithProgress(cmd, logf, "victoria-metrics"); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", victoriaMetricsPkg, VictoriaMetricsVersion, err, out.String())
	}
	if err := os.Rename(filepath.Join(gobin, "victoria-metrics"), dst); err != nil {
		return "", fmt.Errorf("install victoria-metrics: %w", err)
	}
	if err := os.WriteFile(dst+".stamp", []byte(stamp), 0o644); err != nil {
		return "", fmt.Errorf("write stamp of victoria-metrics: %w", err)
	}
	return dst, nil
}

// VictoriaMetricsOptions configures StartVictoriaMetrics. The zero value is
// usable.
type VictoriaMetricsOptions struct {
	// Name tells instances apart in logs and data directories. Default
	// "victoria-metrics".
	Name string
	// Dedup is -dedup.minScrapeInterval: VictoriaMetrics keeps one sample
	// per series and interval, the last. Zero: no deduplication.
	Dedup time.Duration
	// ExtraArgs are appended to the command line; a flag given again wins.
	ExtraArgs []string
}

// VictoriaMetrics is a real single-node VictoriaMetrics accepting remote
// writes on /api/v1/write.
type VictoriaMetrics struct {
	bed     *Bed
	opts    VictoriaMetricsOptions
	binary  string
	port    int
	dir     string
	logPath string
	client  *http.Client

	mu   sync.Mutex
	proc *proc
}

// StartVictoriaMetrics starts VictoriaMetrics on a free 127.0.0.1 port with
// its data under the bed's directory and waits until /health answers. The
// first call builds it (VictoriaMetricsBinary), so ctx must allow for that.
func (b *Bed) StartVictoriaMetrics(ctx context.Context, opts VictoriaMetricsOptions) (*VictoriaMetrics, error) {
	if opts.Name == "" {
		opts.Name = "victoria-metrics"
	}
	binary, err := VictoriaMetricsBinary(ctx, b.opts.Logf)
	if err != nil {
		return nil, err
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	vm := &VictoriaMetrics{bed: b, opts: opts, binary: binary, port: port,
		dir:     filepath.Join(b.dir, opts.Name),
		logPath: filepath.Join(b.dir, opts.Name+".log"),
		client:  &http.Client{Timeout: 10 * time.Second},
	}
	if err := os.MkdirAll(vm.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create victoria-metrics directory: %w", err)
	}
	if !b.addCloser(vm.Stop) {
		return nil, fmt.Errorf("test bed is closed")
	}
	argv := []string{binary,
		"-httpListenAddr=127.0.0.1:" + strconv.Itoa(port),
		"-storageDataPath=" + vm.dir,
		"-retentionPeriod=1d",
		"-loggerLevel=WARN",
		// Fresh samples are queryable at once, and no response is cached.
		"-search.latencyOffset=0s",
		"-search.disableCache",
	}
	if opts.Dedup > 0 {
		argv = append(argv, "-dedup.minScrapeInterval="+opts.Dedup.String())
	}
	p, err := startProc(b.runDir, opts.Name, vm.logPath, append(argv, opts.ExtraArgs...), nil)
	if err != nil {
		return nil, err
	}
	vm.mu.Lock()
	vm.proc = p
	vm.mu.Unlock()
	err = poll(ctx, pollInterval, opts.Name+" /health", func(ctx context.Context) (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("victoria-metrics exited: %v", p.waitErr)
		}
		_, code, err := httpGet(ctx, vm.client, vm.URL()+"/health", "")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("HTTP %d", code)
		}
		return err == nil, err
	})
	if err != nil {
		b, _ := os.ReadFile(vm.logPath)
		return nil, fmt.Errorf("start %s (log: %s): %w; log tail:\n%s", opts.Name, vm.logPath, err, lastLines(string(b), 30))
	}
	return vm, nil
}

// URL is the base URL, e.g. http://127.0.0.1:40123.
func (vm *VictoriaMetrics) URL() string { return "http://127.0.0.1:" + strconv.Itoa(vm.port) }

// WriteURL is the Prometheus remote-write endpoint.
func (vm *VictoriaMetrics) WriteURL() string { return vm.URL() + "/api/v1/write" }

// LogPath is the log file in the bed's directory.
func (vm *VictoriaMetrics) LogPath() string { return vm.logPath }

// Stop stops VictoriaMetrics (SIGTERM, then SIGKILL after 5 s).
func (vm *VictoriaMetrics) Stop() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.proc.stop()
	vm.proc = nil
}

// ExportedSeries is one series of /api/v1/export: its labels and raw
// samples, oldest first.
type ExportedSeries struct {
	Metric     map[string]string `json:"metric"`
	Values     []float64         `json:"values"`
	Timestamps []int64           `json:"timestamps"` // Unix milliseconds
}

// Export returns the stored samples of the series matching selector
// between start and end (GET /api/v1/export), after making recently
// ingested samples searchable (/internal/force_flush). With Dedup set
// they are deduplicated as queries see them.
func (vm *VictoriaMetrics) Export(ctx context.Context, selector string, start, end time.Time) ([]ExportedSeries, error) {
	if _, code, err := httpGet(ctx, vm.client, vm.URL()+"/internal/force_flush", ""); err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("victoria-metrics force flush: HTTP %d, %v", code, err)
	}
	// Unix seconds with milliseconds: VictoriaMetrics reads a plain number
	// with a unit suffix as something else.
	secs := func(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64) }
	q := url.Values{"match[]": {selector}, "start": {secs(start)}, "end": {secs(end)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, vm.URL()+"/api/v1/export?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := vm.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("victoria-metrics export %s: %w", selector, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return nil, fmt.Errorf("victoria-metrics export %s: HTTP %d: %s", selector, resp.StatusCode, strings.TrimSpace(b.String()))
	}
	var out []ExportedSeries
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var s ExportedSeries
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("victoria-metrics export %s: decode line: %w", selector, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("victoria-metrics export %s: read: %w", selector, err)
	}
	return out, nil
}
