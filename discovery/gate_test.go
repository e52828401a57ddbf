package discovery

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
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
