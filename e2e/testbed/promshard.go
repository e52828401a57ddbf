package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildPromshard builds ./cmd/promshard of this repository into the binary
// cache and returns its path. It is quick when Go's build cache is warm.
func BuildPromshard(ctx context.Context, logf Logf) (string, error) {
	root, binDir, unlock, err := lockBinDir()
	if err != nil {
		return "", err
	}
	defer unlock()
	dst := filepath.Join(binDir, "promshard")
	if err := buildOne(ctx, logf, root, binSpec{name: "promshard", pkg: "./cmd/promshard"}, dst); err != nil {
		return "", err
	}
	return dst, nil
}

// PromshardOptions configures one promshard replica process.
type PromshardOptions struct {
	// Binary is the promshard binary (BuildPromshard). Required.
	Binary string
	// Name is the member name (--cluster.node-name) and the log file name.
	Name string
	// IP is the loopback address the replica binds its web and gossip
	// ports on. Default 127.0.0.1.
	IP string
	// Gossip enables --cluster.listen-address on IP with a free port.
	Gossip bool
	// GossipPort, when set with Gossip, is the gossip port instead of a free
	// one, so that peers can list each other's addresses in --cluster.join
	// before they start (like a StatefulSet's headless Service).
	GossipPort int
	// Args are extra flags.
	Args []string
	// Env is extra environment.
	Env []string
	// NoWaitReady returns once /-/healthy answers instead of /-/ready.
	NoWaitReady bool
	// DataDir is the WAL directory; default a fresh directory in the bed.
	DataDir string
	// Kubeconfig overrides the bed's admin kubeconfig, e.g. to run with a
	// ServiceAccount token.
	Kubeconfig string
	// SecureWeb protects the replica's endpoints with TLS (a certificate
	// from the bed's CA) and basic auth (WebUser, WebPassword), and gives it
	// the same credentials for its peers. The test bed's requests use them.
	SecureWeb bool
	// Host runs the replica in that host's network namespace
	// (netns_replica.go); IP, the ports and the kubeconfig are then the
	// namespace's. Nil: the root namespace.
	Host *Host
}

// Promshard is a running promshard replica.
type Promshard struct {
	bed  *Bed
	opts PromshardOptions
	// WebURL is http(s)://IP:port of the replica's HTTP server.
	WebURL string
	// client makes the bed's requests to the replica (TLS and credentials
	// with SecureWeb).
	client *http.Client
	// GossipAddr is IP:port of memberlist, when Gossip is set.
	GossipAddr string
	// LogPath is the replica's log file.
	LogPath string

	mu   sync.Mutex
	proc *proc
}

// StartPromshard starts a replica with the bed's kubeconfig and waits until
// it is ready. The bed stops it on Close.
func (b *Bed) StartPromshard(ctx context.Context, opts PromshardOptions) (*Promshard, error) {
	if opts.Binary == "" || opts.Name == "" {
		return nil, fmt.Errorf("StartPromshard: Binary and Name are required")
	}
	var prefix []string
	var webPort, fixedGossip int
	var err error
	if opts.Host != nil && opts.Host.netns != "" {
		if prefix, webPort, fixedGossip, err = b.netnsArgs(&opts); err != nil {
			return nil, err
		}
		opts.GossipPort = fixedGossip
	}
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	if opts.Kubeconfig == "" {
		opts.Kubeconfig = b.Kubeconfig
	}
	if opts.DataDir == "" {
		opts.DataDir = filepath.Join(b.dir, "promshard-"+opts.Name)
	}
	if webPort == 0 {
		if webPort, err = freePort(opts.IP); err != nil {
			return nil, err
		}
	}
	p := &Promshard{
		bed: b, opts: opts,
		WebURL:  "http://" + net.JoinHostPort(opts.IP, strconv.Itoa(webPort)),
		LogPath: filepath.Join(b.dir, "promshard-"+opts.Name+".log"),
		client:  &http.Client{Timeout: 5 * time.Second},
	}
	if opts.SecureWeb {
		flags, err := b.writeSecureWeb(opts.Name, net.ParseIP(opts.IP))
		if err != nil {
			return nil, fmt.Errorf("secure web for %s: %w", opts.Name, err)
		}
		opts.Args = append(flags, opts.Args...)
		p.WebURL = "https://" + net.JoinHostPort(opts.IP, strconv.Itoa(webPort))
		p.client = b.TLSClient()
	}
	args := append(prefix, opts.Binary, "run",
		"--kubeconfig="+opts.Kubeconfig,
		"--web.listen-address="+net.JoinHostPort(opts.IP, strconv.Itoa(webPort)),
		"--storage.agent.path="+opts.DataDir,
		"--cluster.node-name="+opts.Name,
	)
	if !hasFlag(opts.Args, "--log.level") {
		args = append(args, "--log.level=debug")
	}
	if opts.Gossip {
		gp := opts.GossipPort
		// Neither port is bound yet: make sure they differ.
		for gp == 0 || gp == webPort {
			if gp, err = freePort(opts.IP); err != nil {
				return nil, err
			}
		}
		p.GossipAddr = net.JoinHostPort(opts.IP, strconv.Itoa(gp))
		args = append(args, "--cluster.listen-address="+p.GossipAddr)
	}
	args = append(args, opts.Args...)
	if err := p.start(ctx, args); err != nil {
		return nil, err
	}
	if !b.addCloser(func() { p.Signal(syscall.SIGTERM); p.Wait(10 * time.Second) }) {
		p.Kill()
		return nil, fmt.Errorf("test bed closed")
	}
	return p, nil
}

func (p *Promshard) start(ctx context.Context, args []string) error {
	pr, err := startProc(p.bed.runDir, "promshard-"+p.opts.Name, p.LogPath, args, p.opts.Env)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.proc = pr
	p.mu.Unlock()
	path := "/-/ready"
	if p.opts.NoWaitReady {
		path = "/-/healthy"
	}
	for {
		if pr.exited() {
			return fmt.Errorf("promshard %s exited: %v; log:\n%s", p.opts.Name, pr.waitErr, p.LogTail(30))
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		code, _, err := p.do(cctx, path)
		cancel()
		if err == nil && code == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			pr.stop()
			return fmt.Errorf("waiting for promshard %s %s: %w; log:\n%s", p.opts.Name, path, ctx.Err(), p.LogTail(30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// hasFlag reports whether args set flag (as --flag or --flag=value).
func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// Args returns the command line the replica was started with.
func (p *Promshard) Args() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.proc.cmd.Args...)
}

// Restart starts the replica again with the same command line (after Kill
// or a signal), and waits until it is ready.
func (p *Promshard) Restart(ctx context.Context) error {
	p.Wait(15 * time.Second)
	return p.start(ctx, p.Args())
}

// Signal sends sig to the replica.
func (p *Promshard) Signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil && !p.proc.exited() {
		_ = p.proc.cmd.Process.Signal(sig)
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Promshard) Kill() {
	p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}

// Wait waits up to d for the process to exit, then kills it; it returns the
// process's exit code (-1 if it was killed or unknown).
func (p *Promshard) Wait(d time.Duration) int {
	p.mu.Lock()
	pr := p.proc
	p.mu.Unlock()
	if pr == nil {
		return -1
	}
	pr.waitOrKill(d)
	if pr.cmd.ProcessState == nil {
		return -1
	}
	return pr.cmd.ProcessState.ExitCode()
}

// Exited reports whether the process has exited.
func (p *Promshard) Exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc == nil || p.proc.exited()
}

// LogTail returns the last n lines of the replica's log.
func (p *Promshard) LogTail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	return lastLines(string(b), n)
}

// Log returns the replica's whole log.
func (p *Promshard) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// ActiveTarget is the part of /api/v1/targets the tests read.
type ActiveTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	Labels           map[string]string `json:"labels"`
	ScrapePool       string            `json:"scrapePool"`
	ScrapeURL        string            `json:"scrapeUrl"`
	Health           string            `json:"health"`
	LastError        string            `json:"lastError"`
	LastScrape       time.Time         `json:"lastScrape"`
}

// Targets returns the replica's active targets.
func (p *Promshard) Targets(ctx context.Context) ([]ActiveTarget, error) {
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			ActiveTargets []ActiveTarget `json:"activeTargets"`
		} `json:"data"`
	}
	if err := p.GetJSON(ctx, "/api/v1/targets", &resp); err != nil {
		return nil, err
	}
	return resp.Data.ActiveTargets, nil
}

// GetJSON decodes the JSON answer of GET path.
func (p *Promshard) GetJSON(ctx context.Context, path string, v any) error {
	body, err := p.Get(ctx, path)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// Get returns the body of GET path on the replica's web server; an answer
// other than 200 OK is an error.
func (p *Promshard) Get(ctx context.Context, path string) ([]byte, error) {
	code, body, err := p.do(ctx, path)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s: %s", path, code, http.StatusText(code), strings.TrimSpace(string(body)))
	}
	return body, nil
}

// do sends GET path with the bed's credentials for the replica.
func (p *Promshard) do(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.WebURL+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if p.opts.SecureWeb {
		req.SetBasicAuth(WebUser, WebPassword)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Metric returns the value of the first sample of /metrics whose line
// starts with series (name plus, optionally, a label set written exactly as
// the exposition format prints it), and whether one was found.
func (p *Promshard) Metric(ctx context.Context, series string) (float64, bool, error) {
	body, err := p.Get(ctx, "/metrics")
	if err != nil {
		return 0, false, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, series+" ") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
		return v, err == nil, err
	}
	return 0, false, nil
}

// SetAuth changes the credentials a plain or TLS target requires, in place
// (same address), e.g. to rotate a password.
func (h *Host) SetAuth(ctx context.Context, t *Target, user, password, token string) error {
	opts := t.Options
	opts.BasicAuthUser, opts.BasicAuthPassword, opts.BearerToken = user, password, token
	spec, err := h.spec(t.IP, t.Port, opts)
	if err != nil {
		return err
	}
	if _, err := h.client.Put(ctx, t.Name, spec); err != nil {
		return err
	}
	t.Options = opts
	return nil
}

// PID returns the replica's process id (0 if it is not running).
func (p *Promshard) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil || p.proc.exited() {
		return 0
	}
	return p.proc.cmd.Process.Pid
}
