package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"
)

// TestFlushRemoteWrite scrapes into a queue whose batch send deadline is
// far away, so nothing is sent on its own: FlushRemoteWrite must deliver
// the buffered samples at once, and Run's shutdown must not close remote
// storage a second time. It also pins the contract flushing reads:
// Prometheus' per-queue highest-enqueued-timestamp gauge.
func TestFlushRemoteWrite(t *testing.T) {
	host, rcv, rwc := targetAndReceiver(t, "flush_demo 1", time.Hour)
	a := newTestAgent(t)
	sc := scrapeJob("flush", host)
	sc.ScrapeInterval, sc.ScrapeTimeout = model.Duration(100*time.Millisecond), model.Duration(100*time.Millisecond)
	require.NoError(t, a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{sc}, RemoteWriteConfigs: []*promconfig.RemoteWriteConfig{rwc}}))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	g := a.opts.Registerer.(prometheus.Gatherer)
	require.Eventually(t, func() bool {
		for _, v := range highestEnqueued(g) {
			return v > 0
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "%s never reported an enqueued sample (renamed in Prometheus?)", queueHighestEnqueued)
	want := fmt.Sprintf(`flush_demo{instance=%q, job="flush"}`, host)
	require.False(t, rcv.has(want), "sent before the batch send deadline: the test proves nothing")

	qs := RemoteWriteStatus(g)
	require.Len(t, qs, 1)
	require.Equal(t, rwc.URL.String(), qs[0].URL)
	require.Zero(t, qs[0].SamplesSent)

	// The status page of a member with a peer: its own queue from its
	// metrics, the peer's from the peer's /api/v1/status/remote-write.
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/targets" {
			fmt.Fprint(w, `{"status":"success","data":{"activeTargets":[],"droppedTargets":[]}}`)
			return
		}
		require.Equal(t, "/api/v1/status/remote-write", r.URL.Path)
		fmt.Fprint(w, `{"status":"success","data":[{"name":"lts","url":"http://x","samplesSent":7,"samplesFailed":3,"lagSeconds":1.5}]}`)
	}))
	defer peer.Close()
	web, err := NewWeb(WebOptions{ListenAddress: "127.0.0.1:0", Gatherer: g,
		Targets: &ClusterTargets{Self: "m0", agent: a, Peers: func() []Peer { return []Peer{{Name: "m1", URL: peer.URL}, {Name: "m2", URL: "http://127.0.0.1:1"}} }},
		Cluster: func() ClusterInfo {
			return ClusterInfo{Self: "m0", Members: []MemberInfo{{Name: "m0"}, {Name: "m1"}, {Name: "m2"}}}
		}}, a)
	require.NoError(t, err)
	page := httptest.NewRecorder()
	web.mux.ServeHTTP(page, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Contains(t, page.Body.String(), qs[0].Name+": 0 sent")
	require.Contains(t, page.Body.String(), `lts: 7 sent, <span class="down">3 failed</span>, lag 1.5s`)
	require.Contains(t, page.Body.String(), "unknown: ")

	took := a.FlushRemoteWrite(ctx, 2*time.Second)
	require.True(t, rcv.has(want), "FlushRemoteWrite returned before the buffered samples were delivered")
	t.Logf("flushed in %s", took)

	cancel()
	require.NoError(t, <-done)
}

// targetAndReceiver starts a target serving body and a remote-write
// receiver; it returns the target's host:port, the receiver and a
// remote-write configuration for it with the given batch send deadline.
func targetAndReceiver(t *testing.T, body string, deadline time.Duration) (string, *receiver, *promconfig.RemoteWriteConfig) {
	t.Helper()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, body)
	}))
	t.Cleanup(target.Close)
	rcv := &receiver{series: map[string]int{}}
	rw := httptest.NewServer(rcv)
	t.Cleanup(rw.Close)
	u, err := url.Parse(rw.URL)
	require.NoError(t, err)
	rwc := promconfig.DefaultRemoteWriteConfig
	rwc.URL = &commoncfg.URL{URL: u}
	rwc.QueueConfig.BatchSendDeadline = model.Duration(deadline)
	return target.Listener.Addr().String(), rcv, &rwc
}
