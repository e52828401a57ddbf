package testbed

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"
	"go.yaml.in/yaml/v2"
)

// cortexStartTimeout bounds the wait for /ready; a warm Cortex is ready in
// well under a second.
const cortexStartTimeout = 60 * time.Second

// CortexOptions configures StartCortex. The zero value is usable.
type CortexOptions struct {
	// Name tells Cortex processes apart in logs and data directories.
	// Default "cortex".
	Name string
	// ExtraArgs are appended to Cortex's command line; a flag given again
	// wins over the bed's value.
	ExtraArgs []string
}

// Cortex is a real single-process Cortex (-target=all) whose ruler API
// stores rule groups per tenant (X-Scope-OrgID) on the filesystem. It can be
// stopped and started again on the same ports with the same data directory.
type Cortex struct {
	bed      *Bed
	opts     CortexOptions
	binary   string
	httpPort int
	grpcPort int
	dir      string
	logPath  string
	client   *http.Client

	mu   sync.Mutex
	proc *proc
}

// StartCortex starts Cortex on free 127.0.0.1 ports and waits until /ready
// answers 200. Cortex is not one of Binaries: unless the bed's Bins.Cortex
// is set, the first call builds it (CortexBinary, ~3 min cold), so ctx must
// allow for that.
func (b *Bed) StartCortex(ctx context.Context, opts CortexOptions) (*Cortex, error) {
	if opts.Name == "" {
		opts.Name = "cortex"
	}
	binary := b.bins.Cortex
	if binary == "" {
		var err error
		if binary, err = CortexBinary(ctx, b.opts.Logf); err != nil {
			return nil, err
		}
	}
	httpPort, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	// Neither port is bound yet: make sure they differ.
	grpcPort := httpPort
	for grpcPort == httpPort {
		if grpcPort, err = freePort("127.0.0.1"); err != nil {
			return nil, err
		}
	}
	c := &Cortex{bed: b, opts: opts, binary: binary, httpPort: httpPort, grpcPort: grpcPort,
		dir:     filepath.Join(b.dir, opts.Name),
		logPath: filepath.Join(b.dir, opts.Name+".log"),
		client:  &http.Client{Timeout: 10 * time.Second},
	}
	// The alertmanager (part of -target=all) reads tenant configurations
	// from an empty local directory: none are needed.
	for _, d := range []string{c.dir, filepath.Join(c.dir, "rule-files"), filepath.Join(c.dir, "alertmanager-configs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create cortex directory: %w", err)
		}
	}
	if !b.addCloser(c.Stop) {
		return nil, fmt.Errorf("test bed is closed")
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// URL is Cortex's HTTP base URL, e.g. http://127.0.0.1:40123.
func (c *Cortex) URL() string { return "http://127.0.0.1:" + strconv.Itoa(c.httpPort) }

// LogPath is Cortex's log file in the bed's directory.
func (c *Cortex) LogPath() string { return c.logPath }

// args is Cortex's command line: every module in one process, in-memory
// rings, blocks and rule groups on the filesystem under c.dir, and nothing
// listening beyond the HTTP and gRPC ports on 127.0.0.1.
func (c *Cortex) args() []string {
	d := func(name string) string { return filepath.Join(c.dir, name) }
	argv := []string{c.binary,
		"-target=all",
		"-auth.enabled=true", // the tenant is the X-Scope-OrgID header
		"-log.level=warn",
		"-server.http-listen-address=127.0.0.1",
		"-server.http-listen-port=" + strconv.Itoa(c.httpPort),
		"-server.grpc-listen-address=127.0.0.1",
		"-server.grpc-listen-port=" + strconv.Itoa(c.grpcPort),
		// Rings in memory, advertising loopback (the default is eth0's
		// address), one ingester, no readiness or shutdown delays.
		"-ring.store=inmemory",
		"-distributor.ring.store=inmemory",
		"-compactor.ring.store=inmemory",
		"-store-gateway.sharding-ring.store=inmemory",
		"-ruler.ring.store=inmemory",
		"-alertmanager.sharding-ring.store=inmemory",
		"-ingester.lifecycler.addr=127.0.0.1",
		"-distributor.ring.instance-addr=127.0.0.1",
		"-compactor.ring.instance-addr=127.0.0.1",
		"-store-gateway.sharding-ring.instance-addr=127.0.0.1",
		"-ruler.ring.instance-addr=127.0.0.1",
		"-alertmanager.sharding-ring.instance-addr=127.0.0.1",
		"-frontend.instance-addr=127.0.0.1",
		"-querier.instance-addr=127.0.0.1",
		"-distributor.replication-factor=1",
		"-ingester.min-ready-duration=0s",
		"-ingester.final-sleep=0s",
		// Blocks storage on the filesystem; every default relative path
		// (resolved against the test's working directory) moved to c.dir.
		"-blocks-storage.backend=filesystem",
		"-blocks-storage.filesystem.dir=" + d("blocks"),
		"-blocks-storage.tsdb.dir=" + d("tsdb"),
		"-blocks-storage.bucket-store.sync-dir=" + d("tsdb-sync"),
		"-compactor.data-dir=" + d("compactor"),
		"-querier.active-query-tracker-dir=" + d("active-query-tracker"),
		// The ruler API needs a writable rule store: the filesystem bucket
		// backend is one, the "local" backend is read-only.
		"-ruler.enable-api=true",
		"-ruler-storage.backend=filesystem",
		"-ruler-storage.filesystem.dir=" + d("rules"),
		"-ruler.rule-path=" + d("rule-files"),
		"-ruler.poll-interval=2s",
		// The alertmanager: no tenant configurations, no cluster port.
		"-alertmanager.storage.path=" + d("alertmanager"),
		"-alertmanager-storage.backend=local",
		"-alertmanager-storage.local.path=" + d("alertmanager-configs"),
		"-alertmanager.cluster.listen-address=",
		"-alertmanager.web.external-url=" + c.URL() + "/alertmanager",
	}
	return append(argv, c.opts.ExtraArgs...)
}

// Start starts Cortex (again) with the same ports and data, and waits up to
// a minute for /ready. Starting a running Cortex is a no-op.
func (c *Cortex) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil && !c.proc.exited() {
		return nil
	}
	p, err := startProc(c.bed.runDir, c.opts.Name, c.logPath, c.args(), nil)
	if err != nil {
		return err
	}
	c.proc = p
	readyCtx, cancel := context.WithTimeout(ctx, cortexStartTimeout)
	defer cancel()
	err = poll(readyCtx, pollInterval, c.opts.Name+" /ready", func(ctx context.Context) (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("cortex exited: %v", p.waitErr)
		}
		body, code, err := httpGet(ctx, c.client, c.URL()+"/ready", "")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("HTTP %d: %s", code, lastLines(body, 3))
		}
		return err == nil, err
	})
	if err != nil {
		p.stop()
		c.proc = nil
		return fmt.Errorf("start %s (log: %s): %w; log tail:\n%s", c.opts.Name, c.logPath, err, c.logTail(30))
	}
	return nil
}

// Stop stops Cortex (SIGTERM, then SIGKILL after 5 s); the data stay.
func (c *Cortex) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.proc.stop()
	c.proc = nil
}

func (c *Cortex) logTail(n int) string {
	b, _ := os.ReadFile(c.logPath)
	return lastLines(string(b), n)
}

// RuleGroups returns the tenant's rule groups by namespace, as stored by the
// ruler API (GET /api/v1/rules). A tenant without rule groups gets an empty
// map: Cortex answers that with 404 "no rule groups found".
func (c *Cortex) RuleGroups(ctx context.Context, tenant string) (map[string][]rulefmt.RuleGroup, error) {
	code, body, err := c.do(ctx, tenant, http.MethodGet, "/api/v1/rules", nil)
	if err != nil {
		return nil, err
	}
	groups := map[string][]rulefmt.RuleGroup{}
	switch {
	case code == http.StatusNotFound && strings.TrimSpace(string(body)) == "no rule groups found":
		return groups, nil
	case code != http.StatusOK:
		return nil, fmt.Errorf("list rule groups of tenant %s: HTTP %d: %s", tenant, code, bytes.TrimSpace(body))
	}
	if err := yaml.Unmarshal(body, &groups); err != nil {
		return nil, fmt.Errorf("list rule groups of tenant %s: decode YAML: %w", tenant, err)
	}
	return groups, nil
}

// SetRuleGroup creates or replaces the tenant's group group.Name in
// namespace (POST /api/v1/rules/{namespace}). Cortex validates the group
// and answers 202; a refusal (400) is an error with Cortex's message, which
// is empty for an invalid expression.
func (c *Cortex) SetRuleGroup(ctx context.Context, tenant, namespace string, group rulefmt.RuleGroup) error {
	body, err := yaml.Marshal(group)
	if err != nil {
		return fmt.Errorf("encode rule group %s: %w", group.Name, err)
	}
	code, resp, err := c.do(ctx, tenant, http.MethodPost, "/api/v1/rules/"+url.PathEscape(namespace), body)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("set rule group %s/%s of tenant %s: HTTP %d: %s", namespace, group.Name, tenant, code, bytes.TrimSpace(resp))
	}
	return nil
}

// DeleteRuleGroup deletes the tenant's group in namespace (DELETE
// /api/v1/rules/{namespace}/{group}). Cortex answers 202 whether or not the
// group existed (the filesystem store ignores a missing object).
func (c *Cortex) DeleteRuleGroup(ctx context.Context, tenant, namespace, group string) error {
	code, resp, err := c.do(ctx, tenant, http.MethodDelete,
		"/api/v1/rules/"+url.PathEscape(namespace)+"/"+url.PathEscape(group), nil)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("delete rule group %s/%s of tenant %s: HTTP %d: %s", namespace, group, tenant, code, bytes.TrimSpace(resp))
	}
	return nil
}

// do sends one request as tenant and returns the status code and body. path
// is already escaped: namespaces may hold slashes, which Cortex expects
// as %2F.
func (c *Cortex) do(ctx context.Context, tenant, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL()+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("cortex %s %s: %w", method, path, err)
	}
	req.Header.Set("X-Scope-OrgID", tenant)
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("cortex %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("cortex %s %s: read response: %w", method, path, err)
	}
	return resp.StatusCode, b, nil
}
