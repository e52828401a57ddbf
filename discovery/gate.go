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

// DefaultUnreachableTimeout is the default Options.UnreachableTimeout.
const DefaultUnreachableTimeout = 30 * time.Second

// reachGate makes watches resume fast after an API server outage, and
// bounds how long it hides the outage.
//
// client-go's reflectors retry a failed list or watch with an exponential
// backoff that grows to 30–60 s, and shared informers offer no way to cap
// it: a monitor created just after the API server came back could wait a
// minute to be seen. The gate sits in the HTTP transport of promshard's
// API clients instead. A GET that fails without an HTTP response (refused,
// reset, timed out, a certificate not trusted: the server cannot be
// reached) marks the server down and waits, with every other GET, until
// /readyz answers; then it is retried. The reflectors do not see the
// error, so their backoff does not grow, and they resume within one probe
// interval of the server being ready. A GET's Retry-After above one second
// is lowered to one (see maxRetryAfter). Other verbs, other HTTP answers
// and cancelled requests pass through unchanged.
//
// A GET waits at most timeout: then it is tried once more and its error,
// if any, goes to the caller (client-go's reflectors log it and back off),
// so a lasting failure such as an untrusted or expired CA shows in the
// logs instead of freezing discovery silently. The next GET waits again,
// so an outage that ends while a reflector's request waits still resumes
// at once. The gate logs each transition once, not each request: the
// server going down, the outage outlasting timeout, the server answering
// again; Reachability reports the state and the last error.
type reachGate struct {
	interval time.Duration
	// timeout bounds each GET's wait; zero means DefaultUnreachableTimeout.
	timeout time.Duration
	logger  *slog.Logger
	// up is set to 1 while the server is reachable; nil until the
	// Watcher's metrics exist.
	up prometheus.Gauge
	// stop ends a running poll (the Watcher stopped).
	stop <-chan struct{}

	mu      sync.Mutex
	readyCh chan struct{} // nil while up; closed when the server is back
	since   time.Time
	lastErr string
	// exceeded is set once the outage outlasted timeout (logged once).
	exceeded bool
}

// Reachability is what promshard knows of the API server's reachability.
type Reachability struct {
	// Reachable is false from a failed request until /readyz answers (or a
	// request succeeds).
	Reachable bool
	// Since is when the server became unreachable; zero while reachable.
	Since time.Time
	// LastError is the last error of a request or /readyz probe while
	// unreachable.
	LastError string
	// Timeout is how long a request waits for an unreachable server before
	// its error reaches the caller.
	Timeout time.Duration
}

// Exceeded reports whether the server has been unreachable longer than
// Timeout at now.
func (r Reachability) Exceeded(now time.Time) bool {
	return !r.Reachable && now.Sub(r.Since) > r.Timeout
}

func (g *reachGate) holdTimeout() time.Duration {
	if g.timeout > 0 {
		return g.timeout
	}
	return DefaultUnreachableTimeout
}

// reachability returns the gate's state.
func (g *reachGate) reachability() Reachability {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Reachability{Reachable: g.readyCh == nil, Since: g.since, LastError: g.lastErr, Timeout: g.holdTimeout()}
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
	deadline := time.Now().Add(t.gate.holdTimeout())
	for {
		if err := t.gate.wait(req.Context(), deadline); err != nil {
			return nil, err
		}
		resp, err := t.next.RoundTrip(req)
		if err == nil {
			t.gate.answered()
			capRetryAfter(resp)
			return resp, nil
		}
		if req.Context().Err() != nil {
			return resp, err
		}
		t.gate.down(t.next, req.URL, err)
		if !time.Now().Before(deadline) {
			return resp, err // waited long enough: the caller sees the error
		}
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

// wait returns nil at once while the server is up, else when it is ready
// again or deadline passed, and ctx's error when ctx is done first.
func (g *reachGate) wait(ctx context.Context, deadline time.Time) error {
	g.mu.Lock()
	ch := g.readyCh
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	d := time.Until(deadline)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// down marks the server unreachable after err and, unless already down,
// starts polling its /readyz; while down it records err as the last error.
func (g *reachGate) down(rt http.RoundTripper, u *url.URL, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastErr = err.Error()
	if g.readyCh != nil {
		return
	}
	g.readyCh = make(chan struct{})
	g.since = time.Now()
	g.exceeded = false
	g.setUp(0)
	g.logger.Warn("API server unreachable, requests wait until it is ready", "max_wait", g.holdTimeout().String(), "err", err)
	probe := url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/readyz"}
	go g.poll(rt, probe.String())
}

// answered marks the server reachable after a request got an HTTP answer
// (the poll may not have seen it yet).
func (g *reachGate) answered() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.readyCh != nil {
		g.readyLocked()
	}
}

// readyLocked ends the outage: waiting requests go on. Called with mu held.
func (g *reachGate) readyLocked() {
	g.setUp(1) // before the waiting requests go on: they may read it
	close(g.readyCh)
	g.readyCh = nil
	g.logger.Info("API server ready again", "unreachable_for", time.Since(g.since).Round(time.Millisecond).String())
	g.since, g.lastErr, g.exceeded = time.Time{}, "", false
}

// poll asks /readyz every interval until the server answers it: 200, or
// 401/403 where anonymous requests are refused (the server is serving),
// or until a request got an answer. When the outage outlasts the timeout
// it logs so, once. The poll is the only goroutine the gate starts; it
// ends with the outage.
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
		if g.probe(client, readyz) {
			return
		}
	}
}

// probe asks /readyz once and reports whether the outage is over.
func (g *reachGate) probe(client *http.Client, readyz string) bool {
	resp, err := client.Get(readyz)
	var status int
	if err == nil {
		_ = resp.Body.Close()
		status = resp.StatusCode
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.readyCh == nil {
		return true // a request got an answer meanwhile
	}
	switch {
	case err != nil:
		g.lastErr = err.Error()
	case status == http.StatusOK, status == http.StatusUnauthorized, status == http.StatusForbidden:
		g.readyLocked()
		return true
	default:
		g.lastErr = "GET " + readyz + ": " + http.StatusText(status) + " (" + strconv.Itoa(status) + ")"
	}
	if !g.exceeded && time.Since(g.since) > g.holdTimeout() {
		g.exceeded = true
		g.logger.Error("API server unreachable for longer than the wait limit; requests fail with its error now after each wait",
			"unreachable_for", time.Since(g.since).Round(time.Millisecond).String(), "max_wait", g.holdTimeout().String(), "err", g.lastErr)
	}
	return false
}
