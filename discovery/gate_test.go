package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"
)

func TestReachGateWaitsForReadyServer(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/readyz" && !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	srv := &http.Server{Handler: handler}
	go func() { _ = srv.Serve(l) }()

	stop := make(chan struct{})
	defer close(stop)
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "up"})
	g := &reachGate{interval: 20 * time.Millisecond, logger: promslog.NewNopLogger(), up: up, stop: stop}
	g.setUp(1)
	base := http.DefaultTransport.(*http.Transport).Clone()
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: g.wrap(base)}
	get := func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/data", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	got, err := get(context.Background())
	require.NoError(t, err)
	require.Equal(t, "ok", got)
	busy, err := client.Get("http://" + addr + "/busy")
	require.NoError(t, err)
	busy.Body.Close()
	require.Equal(t, "1", busy.Header.Get("Retry-After"), "Retry-After capped")

	// The server goes away: a GET waits instead of failing.
	require.NoError(t, srv.Close())
	base.CloseIdleConnections()
	done := make(chan error, 1)
	go func() {
		_, err := get(context.Background())
		done <- err
	}()
	require.Eventually(t, func() bool { return testutil.ToFloat64(up) == 0 }, 5*time.Second, 5*time.Millisecond)
	// Other verbs are not held back.
	resp, err := client.Post("http://"+addr+"/data", "text/plain", strings.NewReader("x"))
	if err == nil {
		resp.Body.Close()
	}
	require.Error(t, err, "POST to a stopped server")
	// A cancelled GET returns.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = get(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// Back, not ready yet: still waiting.
	ready.Store(false)
	l2, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	srv2 := &http.Server{Handler: handler}
	go func() { _ = srv2.Serve(l2) }()
	defer srv2.Close()
	select {
	case err := <-done:
		t.Fatalf("GET returned before /readyz was ok: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// Ready: the waiting GET is retried and succeeds within a few probes.
	ready.Store(true)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("GET still waiting after the server became ready")
	}
	require.InDelta(t, 1, testutil.ToFloat64(up), 0)
}

// switchTransport sends through bad until good is set.
type switchTransport struct {
	bad, good http.RoundTripper
	fixed     atomic.Bool
}

func (s *switchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if s.fixed.Load() {
		return s.good.RoundTrip(req)
	}
	return s.bad.RoundTrip(req)
}

// syncBuffer is a log sink safe for the poll goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestReachGateBoundsTheWaitForAnUntrustedServer(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	// The client trusts another CA than the one that signed the server's
	// certificate, as after a CA rotation the kubeconfig missed.
	bad := http.DefaultTransport.(*http.Transport).Clone()
	bad.TLSClientConfig = &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	defer bad.CloseIdleConnections()
	good := srv.Client().Transport
	base := &switchTransport{bad: bad, good: good}

	var logs syncBuffer
	stop := make(chan struct{})
	defer close(stop)
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "up"})
	const timeout = 300 * time.Millisecond
	g := &reachGate{interval: 20 * time.Millisecond, timeout: timeout, logger: promslog.New(&promslog.Config{Writer: &logs}), up: up, stop: stop}
	g.setUp(1)
	client := &http.Client{Transport: g.wrap(base)}
	require.True(t, g.reachability().Reachable)

	// Each GET waits for the bound, then gets the TLS error.
	for range 3 {
		start := time.Now()
		resp, err := client.Get(srv.URL + "/data")
		if err == nil {
			resp.Body.Close()
		}
		require.Error(t, err)
		require.ErrorContains(t, err, "x509")
		require.GreaterOrEqual(t, time.Since(start), timeout, "returned before the bound")
		require.Less(t, time.Since(start), timeout+2*time.Second, "held far beyond the bound")
	}
	r := g.reachability()
	require.False(t, r.Reachable)
	require.Contains(t, r.LastError, "x509")
	require.Equal(t, timeout, r.Timeout)
	require.True(t, r.Exceeded(time.Now()))
	require.False(t, r.Exceeded(r.Since), "not exceeded at the start of the outage")
	require.InDelta(t, 0, testutil.ToFloat64(up), 0)
	// Logged once per transition, not per request.
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "longer than the wait limit") }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, strings.Count(logs.String(), "requests wait until it is ready"), logs.String())
	require.Equal(t, 1, strings.Count(logs.String(), "longer than the wait limit"), logs.String())
	require.Contains(t, logs.String(), "x509")

	// Trusted again: a waiting GET resumes within a few probes, long before
	// its bound would pass.
	done := make(chan error, 1)
	go func() {
		resp, err := client.Get(srv.URL + "/data")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	base.fixed.Store(true)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("GET still waiting after the server became trusted")
	}
	require.Eventually(t, func() bool { return g.reachability().Reachable }, 5*time.Second, 10*time.Millisecond)
	require.Empty(t, g.reachability().LastError)
	require.InDelta(t, 1, testutil.ToFloat64(up), 0)
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "API server ready again") == 1 }, 5*time.Second, 10*time.Millisecond)
}
