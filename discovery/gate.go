package discovery

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultReadyProbeInterval is how often an unreachable API server's
// /readyz is polled.
const DefaultReadyProbeInterval = 250 * time.Millisecond

// reachGate makes watches resume fast after an API server outage.
//
// client-go's reflectors retry a failed list or watch with an exponential
// backoff that grows to 30–60 s, and shared informers offer no way to cap
// it: a monitor created just after the API server came back could wait a
// minute to be seen. The gate sits in the HTTP transport of promshard's
// API clients instead. A GET that fails without an HTTP response (refused,
// reset, timed out: the server is gone) marks the server down and waits,
// with every other GET, until /readyz answers; then it is retried. The
// reflectors never see the error, so their backoff does not grow, and they
// resume within one probe interval of the server being ready. A GET's
// Retry-After above one second is lowered to one (see maxRetryAfter). Other
// verbs, other HTTP answers and cancelled requests pass through unchanged.
type reachGate struct {
	interval time.Duration
	logger   *slog.Logger
	// up is set to 1 while the server is reachable; nil until the
	// Watcher's metrics exist.
	up prometheus.Gauge
	// stop ends a running poll (the Watcher stopped).
	stop <-chan struct{}

	mu      sync.Mutex
	readyCh chan struct{} // nil while up; closed when the server is back
	since   time.Time
}

// setUp sets the up gauge if there is one.
func (g *reachGate) setUp(v float64) {
	if g.up != nil {
		g.up.Set(v)
	}
}

// wrap returns next behind the gate; every client of the Watcher shares
// the gate's state.
func (g *reachGate) wrap(next http.RoundTripper) http.RoundTripper {
	return &gatedTransport{next: next, gate: g}
}

type gatedTransport struct {
	next http.RoundTripper
	gate *reachGate
}

// RoundTrip implements http.RoundTripper.
func (t *gatedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || req.Body != nil && req.Body != http.NoBody {
		return t.next.RoundTrip(req)
	}
	for {
		if err := t.gate.wait(req.Context()); err != nil {
			return nil, err
		}
		resp, err := t.next.RoundTrip(req)
		if err == nil {
			capRetryAfter(resp)
			return resp, nil
		}
		if req.Context().Err() != nil {
			return resp, err
		}
		t.gate.down(t.next, req.URL, err)
	}
}

// maxRetryAfter caps the Retry-After of a GET's 429/5xx answer. A
// restarted kube-apiserver is ready before it serves custom resources and
// answers their watches with Retry-After: 5, which client-go honours
// before retrying: a monitor created meanwhile would wait 5 s to be seen.
// One second is what API Priority and Fairness asks of throttled clients.
const maxRetryAfter = "1"

// capRetryAfter lowers a Retry-After above maxRetryAfter seconds.
func capRetryAfter(resp *http.Response) {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
		return
	}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 1 {
		resp.Header.Set("Retry-After", maxRetryAfter)
	}
}

// wait returns at once while the server is up, else when it is ready again
// or ctx is done.
func (g *reachGate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.readyCh
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// down marks the server unreachable after err and, unless already down,
// starts polling its /readyz.
func (g *reachGate) down(rt http.RoundTripper, u *url.URL, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.readyCh != nil {
		return
	}
	g.readyCh = make(chan struct{})
	g.since = time.Now()
	g.setUp(0)
	g.logger.Warn("API server unreachable, requests wait until it is ready", "err", err)
	probe := url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/readyz"}
	go g.poll(rt, probe.String())
}

// poll asks /readyz every interval until the server answers it: 200, or
// 401/403 where anonymous requests are refused (the server is serving).
// The poll is the only goroutine the gate starts; it ends with the outage.
func (g *reachGate) poll(rt http.RoundTripper, readyz string) {
	client := &http.Client{Transport: rt, Timeout: max(g.interval, time.Second)}
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		resp, err := client.Get(readyz)
		if err != nil {
			continue
		}
		_ = resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK, http.StatusUnauthorized, http.StatusForbidden:
		default:
			continue
		}
		g.mu.Lock()
		g.setUp(1) // before the waiting requests go on: they may read it
		close(g.readyCh)
		g.readyCh = nil
		g.logger.Info("API server ready again", "unreachable_for", time.Since(g.since).Round(time.Millisecond).String())
		g.mu.Unlock()
		return
	}
}
