package agent

import (
	"context"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	commoncfg "github.com/prometheus/common/config"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	promk8s "github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/stretchr/testify/require"
)

// recordingFilter records what the agent hands the ownership filter: the
// calls, and the jobs it holds after them.
type recordingFilter struct {
	calls []map[string]*promconfig.ScrapeConfig // per call: the jobs given (nil: removed)
	full  int                                   // calls of SetScrapeConfigs
	jobs  map[string]*promconfig.ScrapeConfig
}

func (f *recordingFilter) RunChanges(ctx context.Context, in <-chan map[string][]*targetgroup.Group, out chan<- map[string][]*targetgroup.Group) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ts := <-in:
			select {
			case out <- ts:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func (f *recordingFilter) SetScrapeConfigs(cfgs []*promconfig.ScrapeConfig) {
	f.full++
	f.jobs = indexJobs(cfgs, nil)
	f.calls = append(f.calls, maps.Clone(f.jobs))
}

func (f *recordingFilter) ChangeScrapeConfigs(changes map[string]*promconfig.ScrapeConfig) {
	f.calls = append(f.calls, maps.Clone(changes))
	for job, sc := range changes {
		if sc == nil {
			delete(f.jobs, job)
		} else {
			f.jobs[job] = sc
		}
	}
}

// badCAJob is a job whose CA file is not a certificate: Validate accepts
// it, building the scrape pool's HTTP client does not.
func badCAJob(t *testing.T, name string) *promconfig.ScrapeConfig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(path, []byte("not a certificate"), 0o600))
	sc := scrapeJob(name, "127.0.0.1:1")
	sc.HTTPClientConfig.TLSConfig.CAFile = path
	return sc
}

// stoppedAtCleanup runs and stops a at the end of the test, so that the
// managers' goroutines end.
func stoppedAtCleanup(t *testing.T, a *Agent) *Agent {
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.NoError(t, a.Run(ctx))
	})
	return a
}

func jobNamesOf(cfg *promconfig.Config) []string {
	var out []string
	for _, sc := range cfg.ScrapeConfigs {
		out = append(out, sc.JobName)
	}
	return out
}

func TestApplyRefusedJobTouchesNoManager(t *testing.T) {
	a := stoppedAtCleanup(t, newTestAgent(t))
	f := &recordingFilter{}
	a.SetFilter(f)
	require.NoError(t, a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("a", "127.0.0.1:1")}}))
	applied := a.effective

	err := a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("a", "127.0.0.1:1"), badCAJob(t, "bad"), scrapeJob("b", "127.0.0.1:2")}})
	var refused JobErrors
	require.ErrorAs(t, err, &refused)
	require.Len(t, refused, 1)
	require.ErrorContains(t, refused["bad"], "unable to use specified CA cert")
	require.Same(t, applied, a.effective, "a refused configuration must not be applied in part")
	require.Len(t, f.calls, 1)
	require.Equal(t, 1.0, testutil.ToFloat64(a.metrics.applies))
}

// A service discovery whose client cannot be built refuses its job too.
func TestApplyRefusesJobWithUnusableSDClient(t *testing.T) {
	a := stoppedAtCleanup(t, newTestAgent(t))
	sc := scrapeJob("sd", "127.0.0.1:1")
	sd := &promk8s.SDConfig{Role: promk8s.RoleEndpoint, HTTPClientConfig: commoncfg.DefaultHTTPClientConfig}
	sd.HTTPClientConfig.TLSConfig.CAFile = badCAJob(t, "x").HTTPClientConfig.TLSConfig.CAFile
	sc.ServiceDiscoveryConfigs = promdiscovery.Configs{sd}
	err := a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{sc}})
	var refused JobErrors
	require.ErrorAs(t, err, &refused)
	require.ErrorContains(t, refused["sd"], "kubernetes service discovery 0")
	require.Nil(t, a.desired)
}

func TestApplyIdenticalConfigTouchesNoManager(t *testing.T) {
	a := stoppedAtCleanup(t, newTestAgent(t))
	f := &recordingFilter{}
	a.SetFilter(f)
	rwURL := "http://user:pw@127.0.0.1:9/api/v1/write"
	build := func(jobs ...string) *promconfig.Config {
		cfg := &promconfig.Config{RemoteWriteConfigs: []*promconfig.RemoteWriteConfig{remoteWrite(t, rwURL)}}
		for _, j := range jobs {
			cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, scrapeJob(j, "127.0.0.1:1"))
		}
		return cfg
	}
	require.NoError(t, a.ApplyConfig(build("a", "b")))
	require.Len(t, f.calls, 1)
	require.Equal(t, 1, f.full, "the first apply gives the filter every job")
	first := maps.Clone(f.jobs)

	// The same content in new values: no manager is touched.
	require.NoError(t, a.ApplyConfig(build("a", "b")))
	require.Len(t, f.calls, 1, "the filter was given an identical configuration")
	require.Equal(t, 1.0, testutil.ToFloat64(a.metrics.applies))
	require.Equal(t, 1.0, testutil.ToFloat64(a.metrics.applySkips))

	// One job more: only it is handed on; the others keep their pointers.
	require.NoError(t, a.ApplyConfig(build("a", "b", "c")))
	require.Len(t, f.calls, 2)
	require.Equal(t, []string{"c"}, slices.Collect(maps.Keys(f.calls[1])))
	require.Same(t, first["a"], f.jobs["a"])
	require.Same(t, first["b"], f.jobs["b"])
	require.Equal(t, []string{"a", "b", "c"}, jobNamesOf(a.desired))
	require.Equal(t, 2.0, testutil.ToFloat64(a.metrics.applies))

	// A changed secret is a change.
	changed := build("a", "b", "c")
	changed.ScrapeConfigs[0].HTTPClientConfig.BearerToken = "new"
	require.NoError(t, a.ApplyConfig(changed))
	require.Len(t, f.calls, 3)
	require.Equal(t, []string{"a"}, slices.Collect(maps.Keys(f.calls[2])))
	require.NotSame(t, first["a"], f.jobs["a"])
	require.Same(t, first["b"], f.jobs["b"])

	// A job removed is handed on as nil.
	require.NoError(t, a.ApplyConfig(build("b", "c")))
	require.Len(t, f.calls, 4)
	require.Equal(t, map[string]*promconfig.ScrapeConfig{"a": nil}, f.calls[3])
	require.Equal(t, jobIndex{"b": a.desired.ScrapeConfigs[0], "c": a.desired.ScrapeConfigs[1]}, a.running)
	require.Equal(t, 1, f.full)
}

func TestApplyAfterStopIsNoop(t *testing.T) {
	a := newTestAgent(t)
	ctx, cancel := testContext(t)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("a", "127.0.0.1:1")}}))
	require.Nil(t, a.desired)
	require.Equal(t, 0.0, testutil.ToFloat64(a.metrics.applies))
}

func remoteWrite(t *testing.T, raw string) *promconfig.RemoteWriteConfig {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	rw := promconfig.DefaultRemoteWriteConfig
	rw.URL = &commoncfg.URL{URL: u}
	return &rw
}

func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}
