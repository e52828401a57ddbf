package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Prometheus' remote-write and WAL packages start package-level
		// goroutines (e.g. the OpenCensus/OTel exporters) that outlive tests.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/prometheus/prometheus/tsdb/wlog.(*WL).run"),
	)
}

// receiver is a remote-write endpoint that records the series it got.
type receiver struct {
	mtx    sync.Mutex
	series map[string]int  // rendered label set -> samples
	stale  map[string]bool // rendered label set -> got a staleness marker
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	wr, err := remote.DecodeWriteRequest(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mtx.Lock()
	defer r.mtx.Unlock()
	for _, ts := range wr.Timeseries {
		m := model.Metric{}
		for _, l := range ts.Labels {
			m[model.LabelName(l.Name)] = model.LabelValue(l.Value)
		}
		r.series[m.String()] += len(ts.Samples)
		for _, smp := range ts.Samples {
			if value.IsStaleNaN(smp.Value) {
				if r.stale == nil {
					r.stale = map[string]bool{}
				}
				r.stale[m.String()] = true
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) isStale(metric string) bool {
	r.mtx.Lock()
	defer r.mtx.Unlock()
	return r.stale[metric]
}

// count returns how many samples of metric arrived.
func (r *receiver) count(metric string) int {
	r.mtx.Lock()
	defer r.mtx.Unlock()
	return r.series[metric]
}

func (r *receiver) has(metric string) bool {
	r.mtx.Lock()
	defer r.mtx.Unlock()
	_, ok := r.series[metric]
	return ok
}

func scrapeJob(name string, addrs ...string) *promconfig.ScrapeConfig {
	sc := promconfig.DefaultScrapeConfig
	sc.JobName = name
	sc.ScrapeInterval = model.Duration(100 * time.Millisecond)
	sc.ScrapeTimeout = model.Duration(100 * time.Millisecond)
	sc.MetricsPath = "/metrics"
	sc.Scheme = "http"
	sc.HTTPClientConfig = commoncfg.DefaultHTTPClientConfig
	tg := &targetgroup.Group{Source: name}
	for _, a := range addrs {
		tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	sc.ServiceDiscoveryConfigs = promdiscovery.Configs{promdiscovery.StaticConfig{tg}}
	return &sc
}

func newTestAgent(t *testing.T) *Agent {
	t.Helper()
	a, err := New(Options{StoragePath: t.TempDir(), Registerer: prometheus.NewRegistry(), RemoteFlushDeadline: time.Second})
	require.NoError(t, err)
	return a
}

// newBenchAgent is newTestAgent for benchmarks; it stops the agent at the end.
func newBenchAgent(b *testing.B) *Agent {
	b.Helper()
	a, err := New(Options{StoragePath: b.TempDir(), Registerer: prometheus.NewRegistry(), RemoteFlushDeadline: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = a.Run(ctx)
	})
	return a
}

// TestAgentScrapesAndRemoteWrites drives the real managers: a static target
// is scraped into the agent WAL and its samples reach a remote-write receiver.
func TestAgentScrapesAndRemoteWrites(t *testing.T) {
	host, rcv, rwc := targetAndReceiver(t, "# TYPE demo_value gauge\ndemo_value{kind=\"test\"} 42", 50*time.Millisecond)
	a := newTestAgent(t)
	cfg := &promconfig.Config{
		GlobalConfig:       promconfig.GlobalConfig{ExternalLabels: labelsFromStrings("cluster", "unit")},
		ScrapeConfigs:      []*promconfig.ScrapeConfig{scrapeJob("static", host)},
		RemoteWriteConfigs: []*promconfig.RemoteWriteConfig{rwc},
	}
	require.NoError(t, a.ApplyConfig(cfg))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	want := fmt.Sprintf(`demo_value{cluster="unit", instance=%q, job="static", kind="test"}`, host)
	require.Eventually(t, func() bool { return rcv.has(want) }, 20*time.Second, 50*time.Millisecond, "receiver never got %s", want)

	td := a.targets()
	require.Len(t, td.ActiveTargets, 1)
	require.Equal(t, "static", td.ActiveTargets[0].ScrapePool)
	require.Equal(t, "http://"+host+"/metrics", td.ActiveTargets[0].ScrapeURL)

	cancel()
	require.NoError(t, <-done)
}

// TestApplyKeepsUnchangedPools checks that re-applying a configuration with
// one job changed leaves the other job's running target untouched.
func TestApplyKeepsUnchangedPools(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "up_demo 1")
	}))
	defer target.Close()
	host := target.Listener.Addr().String()

	a := newTestAgent(t)
	require.NoError(t, a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("a", host)}}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	require.Eventually(t, func() bool { return len(a.ScrapeManager().TargetsActive()["a"]) == 1 }, 10*time.Second, 20*time.Millisecond)
	before := a.ScrapeManager().TargetsActive()["a"][0]

	require.NoError(t, a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("a", host), scrapeJob("b", host)}}))
	require.Eventually(t, func() bool { return len(a.ScrapeManager().TargetsActive()["b"]) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Same(t, before, a.ScrapeManager().TargetsActive()["a"][0], "unchanged pool's target was restarted")

	cancel()
	require.NoError(t, <-done)
}

func TestPrepareDefaultsAndRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     *promconfig.Config
		wantErr string
		check   func(t *testing.T, c *promconfig.Config)
	}{
		{
			name: "defaults from the global section",
			cfg: &promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{func() *promconfig.ScrapeConfig {
				s := scrapeJob("j", "x:1")
				s.ScrapeInterval, s.ScrapeTimeout = 0, 0
				return s
			}()}},
			check: func(t *testing.T, c *promconfig.Config) {
				require.Equal(t, promconfig.DefaultGlobalConfig.ScrapeInterval, c.ScrapeConfigs[0].ScrapeInterval)
				require.Equal(t, promconfig.DefaultGlobalConfig.ScrapeTimeout, c.ScrapeConfigs[0].ScrapeTimeout)
				sc, err := c.GetScrapeConfigs()
				require.NoError(t, err, "scrape.Manager needs a loaded configuration")
				require.Len(t, sc, 1)
			},
		},
		{
			name:    "duplicate job",
			cfg:     &promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("j", "x:1"), scrapeJob("j", "x:2")}},
			wantErr: `duplicate job name "j"`,
		},
		{
			name: "invalid job refused",
			cfg: &promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("ok", "x:1"), func() *promconfig.ScrapeConfig {
				s := scrapeJob("bad", "x:1")
				s.ScrapeTimeout = model.Duration(time.Second)
				return s
			}()}},
			wantErr: "job bad: scrape timeout greater than scrape interval",
		},
		{
			name:    "global timeout above interval",
			cfg:     &promconfig.Config{GlobalConfig: promconfig.GlobalConfig{ScrapeInterval: model.Duration(time.Second), ScrapeTimeout: model.Duration(2 * time.Second)}},
			wantErr: "global scrape timeout greater than scrape interval",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := prepare(tc.cfg, nil, nil)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func labelsFromStrings(ss ...string) labels.Labels { return labels.FromStrings(ss...) }

// TestRemovedJobGetsStalenessMarkers: Prometheus' scrape manager drops a
// removed job without staleness markers; the agent drains it first so the
// receiver learns at once that its series ended.
func TestRemovedJobGetsStalenessMarkers(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "demo_value 1")
	}))
	defer target.Close()
	rcv := &receiver{series: map[string]int{}}
	rw := httptest.NewServer(rcv)
	defer rw.Close()
	u, err := url.Parse(rw.URL)
	require.NoError(t, err)
	rwc := promconfig.DefaultRemoteWriteConfig
	rwc.URL = &commoncfg.URL{URL: u}
	rwc.QueueConfig.BatchSendDeadline = model.Duration(50 * time.Millisecond)
	host := target.Listener.Addr().String()

	a := newTestAgent(t)
	both := &promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("gone", host), scrapeJob("kept", host)}, RemoteWriteConfigs: []*promconfig.RemoteWriteConfig{&rwc}}
	require.NoError(t, a.ApplyConfig(both))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	gone := fmt.Sprintf(`demo_value{instance=%q, job="gone"}`, host)
	kept := fmt.Sprintf(`demo_value{instance=%q, job="kept"}`, host)
	require.Eventually(t, func() bool { return rcv.has(gone) && rcv.has(kept) }, 20*time.Second, 50*time.Millisecond)

	rwc2 := rwc
	require.NoError(t, a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("kept", host)}, RemoteWriteConfigs: []*promconfig.RemoteWriteConfig{&rwc2}}))
	require.Eventually(t, func() bool { return rcv.isStale(gone) }, 20*time.Second, 50*time.Millisecond, "no staleness marker for the removed job")
	require.False(t, rcv.isStale(kept))
	// After the drain period the job is gone from the scrape manager.
	require.Eventually(t, func() bool {
		_, ok := a.ScrapeManager().TargetsAll()["gone"]
		return !ok
	}, 20*time.Second, 50*time.Millisecond)

	cancel()
	require.NoError(t, <-done)
}
