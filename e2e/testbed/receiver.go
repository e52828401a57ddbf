package testbed

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
)

// ReceiverOptions configures StartReceiver. The zero value is usable.
type ReceiverOptions struct {
	// Name tells receivers apart in logs and data directories. Default
	// "receiver".
	Name string
	// ExtraArgs are appended to Prometheus' command line.
	ExtraArgs []string
}

// Receiver is a real Prometheus accepting remote writes on
// /api/v1/write. It can be stopped and started again on the same port with
// the same data directory.
type Receiver struct {
	bed  *Bed
	opts ReceiverOptions
	port int
	dir  string
	api  promv1.API

	mu   sync.Mutex
	proc *proc
}

// StartReceiver starts a Prometheus receiver on a free 127.0.0.1 port and
// waits until /-/ready answers.
func (b *Bed) StartReceiver(ctx context.Context, opts ReceiverOptions) (*Receiver, error) {
	if opts.Name == "" {
		opts.Name = "receiver"
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	r := &Receiver{bed: b, opts: opts, port: port, dir: filepath.Join(b.dir, opts.Name)}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create receiver directory: %w", err)
	}
	// An empty config: no scrape jobs, the receiver only stores what is written.
	if err := os.WriteFile(filepath.Join(r.dir, "prometheus.yml"), []byte("global: {}\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write receiver config: %w", err)
	}
	client, err := promapi.NewClient(promapi.Config{Address: r.URL()})
	if err != nil {
		return nil, fmt.Errorf("create query client: %w", err)
	}
	r.api = promv1.NewAPI(client)
	if !b.addCloser(r.Stop) {
		return nil, fmt.Errorf("test bed is closed")
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// URL is the receiver's base URL, e.g. http://127.0.0.1:40123.
func (r *Receiver) URL() string { return "http://127.0.0.1:" + strconv.Itoa(r.port) }

// WriteURL is the remote-write endpoint.
func (r *Receiver) WriteURL() string { return r.URL() + "/api/v1/write" }

// API is a client_golang query API for the receiver.
func (r *Receiver) API() promv1.API { return r.api }

// Start starts the receiver (again) and waits for /-/ready. Starting a
// running receiver is a no-op.
func (r *Receiver) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil && !r.proc.exited() {
		return nil
	}
	argv := append([]string{r.bed.bins.Prometheus,
		"--config.file=" + filepath.Join(r.dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(r.dir, "data"),
		"--web.listen-address=127.0.0.1:" + strconv.Itoa(r.port),
		"--web.enable-remote-write-receiver",
		"--log.level=warn",
	}, r.opts.ExtraArgs...)
	p, err := startProc(r.bed.runDir, r.opts.Name, filepath.Join(r.bed.dir, r.opts.Name+".log"), argv, nil)
	if err != nil {
		return err
	}
	r.proc = p
	err = poll(ctx, pollInterval, r.opts.Name+" /-/ready", func(ctx context.Context) (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("prometheus exited: %v", p.waitErr)
		}
		_, code, err := httpGet(ctx, http.DefaultClient, r.URL()+"/-/ready", "")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("HTTP %d", code)
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("start %s (log: %s): %w", r.opts.Name, filepath.Join(r.bed.dir, r.opts.Name+".log"), err)
	}
	return nil
}

// Stop stops the receiver (SIGTERM, then SIGKILL after 5 s); the data stay.
func (r *Receiver) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proc.stop()
	r.proc = nil
}

// Query runs an instant query at time ts (zero: now) and returns the
// vector; other result types are an error.
func (r *Receiver) Query(ctx context.Context, query string, ts time.Time) (model.Vector, error) {
	if ts.IsZero() {
		ts = time.Now()
	}
	v, _, _, err := r.api.Query(ctx, query, ts)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", query, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("query %q: got %s, want vector", query, v.Type())
	}
	return vec, nil
}

// QueryRange runs a range query and returns the matrix.
func (r *Receiver) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (model.Matrix, error) {
	v, _, _, err := r.api.QueryRange(ctx, query, promv1.Range{Start: start, End: end, Step: step})
	if err != nil {
		return nil, fmt.Errorf("range query %q: %w", query, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("range query %q: got %s, want matrix", query, v.Type())
	}
	return m, nil
}

// WriteRequests sums the receiver's own
// prometheus_http_requests_total{handler="/api/v1/write"} by status class:
// accepted (2xx) and refused (4xx, e.g. out-of-order samples). A test that
// asserts no refusal also checks accepted > 0, so a renamed metric fails
// loudly instead of reading as zero refusals.
func (r *Receiver) WriteRequests(ctx context.Context) (accepted, refused float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("receiver metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("receiver metrics: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "prometheus_http_requests_total{") || !strings.Contains(line, `handler="/api/v1/write"`) {
			continue
		}
		v, perr := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("receiver metrics line %q: %w", line, perr)
		}
		switch {
		case strings.Contains(line, `code="2`):
			accepted += v
		case strings.Contains(line, `code="4`):
			refused += v
		}
	}
	return accepted, refused, nil
}

// SeriesCount returns how many series match selector (e.g.
// `{job="x"}`) between now-lookback and now.
func (r *Receiver) SeriesCount(ctx context.Context, selector string, lookback time.Duration) (int, error) {
	now := time.Now()
	sets, _, _, err := r.api.Series(ctx, []string{selector}, now.Add(-lookback), now)
	if err != nil {
		return 0, fmt.Errorf("series %s: %w", selector, err)
	}
	return len(sets), nil
}

// Push writes samples to a remote-write URL with Prometheus' own
// remote-write client (protocol 1.0, snappy).
func Push(ctx context.Context, writeURL string, series []prompb.TimeSeries) error {
	u, err := url.Parse(writeURL)
	if err != nil {
		return fmt.Errorf("parse write URL: %w", err)
	}
	c, err := remote.NewWriteClient("testbed", &remote.ClientConfig{
		URL:              &config_util.URL{URL: u},
		Timeout:          model.Duration(10 * time.Second),
		HTTPClientConfig: config_util.DefaultHTTPClientConfig,
	})
	if err != nil {
		return fmt.Errorf("create remote-write client: %w", err)
	}
	raw, err := proto.Marshal(&prompb.WriteRequest{Timeseries: series})
	if err != nil {
		return fmt.Errorf("marshal write request: %w", err)
	}
	if _, err := c.Store(ctx, snappy.Encode(nil, raw), 0); err != nil {
		return fmt.Errorf("remote write to %s: %w", writeURL, err)
	}
	return nil
}

// Sample builds one series with one sample for Push.
func Sample(labels map[string]string, value float64, ts time.Time) prompb.TimeSeries {
	s := prompb.TimeSeries{Samples: []prompb.Sample{{Value: value, Timestamp: ts.UnixMilli()}}}
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names) // remote write wants labels sorted by name
	for _, n := range names {
		s.Labels = append(s.Labels, prompb.Label{Name: n, Value: labels[n]})
	}
	return s
}
