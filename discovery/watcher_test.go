package discovery

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/promshard/promshard/config"
)

var allCRDs = []*metav1.APIResourceList{monitoringV1, monitoringV1alpha1}

func installed() *lockedDiscovery { return newLockedDiscovery(allCRDs...) }

func TestNewValidatesOptions(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:6443"}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "minimal", opts: Options{RESTConfig: cfg}},
		{name: "full", opts: Options{RESTConfig: cfg, Agent: "monitoring/agent", Namespaces: []string{"a", "b"},
			Debounce: time.Second, ResyncPeriod: time.Minute, CRDCheckInterval: time.Second}},
		{name: "no rest config", opts: Options{}, wantErr: "RESTConfig is required"},
		{name: "agent without namespace", opts: Options{RESTConfig: cfg, Agent: "agent"}, wantErr: "want <namespace>/<name>"},
		{name: "agent empty name", opts: Options{RESTConfig: cfg, Agent: "ns/"}, wantErr: "want <namespace>/<name>"},
		{name: "agent two slashes", opts: Options{RESTConfig: cfg, Agent: "ns/a/b"}, wantErr: "want <namespace>/<name>"},
		{name: "agent bad namespace", opts: Options{RESTConfig: cfg, Agent: "Bad_NS/a"}, wantErr: "Agent namespace"},
		{name: "bad namespace", opts: Options{RESTConfig: cfg, Namespaces: []string{"ok", ""}}, wantErr: `namespace ""`},
		{name: "negative debounce", opts: Options{RESTConfig: cfg, Debounce: -1}, wantErr: "Debounce"},
		{name: "negative resync", opts: Options{RESTConfig: cfg, ResyncPeriod: -1}, wantErr: "ResyncPeriod"},
		{name: "negative crd check", opts: Options{RESTConfig: cfg, CRDCheckInterval: -1}, wantErr: "CRDCheckInterval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(tc.opts)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, w)
			require.Positive(t, w.opts.Debounce)
			require.Positive(t, w.opts.CRDCheckInterval)
		})
	}
}

func TestDefaults(t *testing.T) {
	w, err := New(Options{RESTConfig: &rest.Config{Host: "https://127.0.0.1:6443"}})
	require.NoError(t, err)
	require.Equal(t, DefaultDebounce, w.opts.Debounce)
	require.Equal(t, DefaultCRDCheckInterval, w.opts.CRDCheckInterval)
	require.Equal(t, []string{""}, w.monitorNS)
	require.False(t, w.Synced())
}

func TestMetricsRegisteredOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := newWatcher(Options{Registerer: reg}, clients{})
	require.NoError(t, err)
	_, err = newWatcher(Options{Registerer: reg}, clients{})
	require.ErrorContains(t, err, "discovery: metrics: register")
	count, err := testutil.GatherAndCount(reg, "promshard_discovery_crd_installed")
	require.NoError(t, err)
	require.Equal(t, 4, count, "one series per CRD resource of flags-only mode")
}

func TestWatchedNamespaces(t *testing.T) {
	tests := []struct {
		name                    string
		namespaces              []string
		agentNS                 string
		wantMonitors, wantOther []string
	}{
		{name: "all", wantMonitors: []string{""}, wantOther: []string{""}},
		{name: "all with agent", agentNS: "mon", wantMonitors: []string{""}, wantOther: []string{""}},
		{name: "limited", namespaces: []string{"a", "b", "a"}, wantMonitors: []string{"a", "b"}, wantOther: []string{"a", "b"}},
		{name: "agent namespace added for secrets", namespaces: []string{"a"}, agentNS: "mon",
			wantMonitors: []string{"a"}, wantOther: []string{"a", "mon"}},
		{name: "agent namespace already listed", namespaces: []string{"mon", "a"}, agentNS: "mon",
			wantMonitors: []string{"mon", "a"}, wantOther: []string{"mon", "a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			monitors, other := watchedNamespaces(tc.namespaces, tc.agentNS)
			require.Equal(t, tc.wantMonitors, monitors)
			require.Equal(t, tc.wantOther, other)
		})
	}
}

func TestPublishLatestWins(t *testing.T) {
	w := &Watcher{out: make(chan *config.Snapshot, 1)}
	first, second, third := &config.Snapshot{}, &config.Snapshot{}, &config.Snapshot{}
	w.publish(first)
	w.publish(second)
	w.publish(third)
	require.Same(t, third, <-w.Snapshots())
	select {
	case s := <-w.Snapshots():
		t.Fatalf("unexpected second snapshot %p", s)
	default:
	}
	w.publish(first)
	require.Same(t, first, <-w.Snapshots())
}

func TestRunTwice(t *testing.T) {
	h := startWatcher(t, Options{}, installed())
	h.waitFor(t, "first snapshot", func(*config.Snapshot) bool { return true })
	require.ErrorContains(t, h.w.Run(context.Background()), "Run called twice")
}

func TestSnapshotFollowsChanges(t *testing.T) {
	ctx := context.Background()
	h := startWatcher(t, Options{}, installed(),
		namespace("default", map[string]string{"team": "a"}),
		secret("default", "auth", "v1"),
		helmRelease("default", "sh.helm.release.v1.app.v1"),
		configMap("default", "ca"),
		serviceMonitor("default", "web"),
		serviceMonitor("apps", "api"),
		probe("default", "blackbox"),
		scrapeConfig("default", "static"),
	)

	s := h.waitFor(t, "initial objects", func(*config.Snapshot) bool { return true })
	require.True(t, h.w.Synced())
	require.Equal(t, []string{"apps/api", "default/web"}, names(s.ServiceMonitors))
	require.Equal(t, "web", s.ServiceMonitors[1].Spec.Endpoints[0].Port)
	require.Equal(t, []string{"default/blackbox"}, names(s.Probes))
	require.Equal(t, []string{"default/static"}, names(s.ScrapeConfigs))
	require.Equal(t, []string{"/default"}, names(s.Namespaces))
	require.Equal(t, []string{"default/auth"}, names(s.Secrets))
	require.Equal(t, []string{"default/ca"}, names(s.ConfigMaps))
	require.Nil(t, s.Agent, "flags-only mode")
	require.Empty(t, s.PodMonitors)
	require.InDelta(t, 2, testutil.ToFloat64(h.w.metrics.objects.WithLabelValues(resServiceMonitors)), 0)

	// Create.
	_, err := h.dyn.Resource(gvrPodMonitors).Namespace("default").Create(ctx, podMonitor("default", "pods"), metav1.CreateOptions{})
	require.NoError(t, err)
	s = h.waitFor(t, "the new PodMonitor", func(s *config.Snapshot) bool { return len(s.PodMonitors) == 1 })
	require.Equal(t, "metrics", *s.PodMonitors[0].Spec.PodMetricsEndpoints[0].Port)
	require.Len(t, s.ServiceMonitors, 2)

	// Update a monitor and a Secret.
	sm := serviceMonitor("default", "web")
	sm.SetLabels(map[string]string{"release": "v2"})
	_, err = h.dyn.Resource(gvrServiceMonitors).Namespace("default").Update(ctx, sm, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = h.kube.CoreV1().Secrets("default").Update(ctx, secret("default", "auth", "v2"), metav1.UpdateOptions{})
	require.NoError(t, err)
	s = h.waitFor(t, "the updated monitor and Secret", func(s *config.Snapshot) bool {
		return len(s.ServiceMonitors) == 2 && s.ServiceMonitors[1].Labels["release"] == "v2" &&
			len(s.Secrets) == 1 && string(s.Secrets[0].Data["password"]) == "v2"
	})

	// Delete.
	require.NoError(t, h.dyn.Resource(gvrServiceMonitors).Namespace("apps").Delete(ctx, "api", metav1.DeleteOptions{}))
	require.NoError(t, h.kube.CoreV1().ConfigMaps("default").Delete(ctx, "ca", metav1.DeleteOptions{}))
	_, err = h.kube.CoreV1().Namespaces().Create(ctx, namespace("apps", nil), metav1.CreateOptions{})
	require.NoError(t, err)
	s2 := h.waitFor(t, "the deletions", func(s *config.Snapshot) bool {
		return len(s.ServiceMonitors) == 1 && len(s.ConfigMaps) == 0 && len(s.Namespaces) == 2
	})
	require.Equal(t, []string{"default/web"}, names(s2.ServiceMonitors))
	require.Equal(t, []string{"/apps", "/default"}, names(s2.Namespaces))

	// An earlier snapshot is not changed by later events.
	require.Len(t, s.ServiceMonitors, 2)
	require.Len(t, s.ConfigMaps, 1)
}

func TestDebounceCoalescesBurst(t *testing.T) {
	ctx := context.Background()
	const debounce = 200 * time.Millisecond
	h := startWatcher(t, Options{Debounce: debounce}, installed(), namespace("default", nil))
	h.waitFor(t, "first snapshot", func(*config.Snapshot) bool { return true })
	before := testutil.ToFloat64(h.w.metrics.rebuilds)

	// Spread the burst over a few debounce windows, as a rollout would.
	start := time.Now()
	for i := range 100 {
		_, err := h.dyn.Resource(gvrServiceMonitors).Namespace("default").Create(ctx,
			serviceMonitor("default", fmt.Sprintf("sm-%03d", i)), metav1.CreateOptions{})
		require.NoError(t, err)
		time.Sleep(5 * time.Millisecond)
	}
	burst := time.Since(start)
	s := h.waitFor(t, "all 100 monitors", func(s *config.Snapshot) bool { return len(s.ServiceMonitors) == 100 })
	require.Equal(t, "default/sm-000", names(s.ServiceMonitors)[0])
	require.Equal(t, "default/sm-099", names(s.ServiceMonitors)[99])

	// No rebuild after the complete one: wait two windows and check.
	time.Sleep(2 * debounce)
	rebuilds := testutil.ToFloat64(h.w.metrics.rebuilds) - before
	// One rebuild per debounce window the burst spanned, plus the trailing one.
	maxRebuilds := float64(burst/debounce) + 2
	t.Logf("burst of 100 creates took %s and caused %.0f rebuilds (max %.0f)", burst, rebuilds, maxRebuilds)
	require.LessOrEqual(t, rebuilds, maxRebuilds)
	require.GreaterOrEqual(t, rebuilds, 1.0)
	select {
	case s := <-h.w.Snapshots():
		require.Len(t, s.ServiceMonitors, 100, "a later snapshot must still be complete")
	default:
	}
}

// TestDebounceLeadingEdge: a change after a quiet period is rebuilt at
// once, not after Debounce; one right after a rebuild waits for the rest
// of that rebuild's window.
func TestDebounceLeadingEdge(t *testing.T) {
	ctx := context.Background()
	const debounce = time.Second
	h := startWatcher(t, Options{Debounce: debounce}, installed(), namespace("default", nil))
	h.waitFor(t, "first snapshot", func(*config.Snapshot) bool { return true })
	// Quiet: no rebuild for longer than a window (the first snapshot can be
	// followed by one more, e.g. when it changed the referenced objects).
	for quiet := false; !quiet; {
		before := testutil.ToFloat64(h.w.metrics.rebuilds)
		time.Sleep(debounce + debounce/5)
		quiet = testutil.ToFloat64(h.w.metrics.rebuilds) == before
	}

	create := func(name string) time.Time {
		start := time.Now()
		_, err := h.dyn.Resource(gvrServiceMonitors).Namespace("default").Create(ctx, serviceMonitor("default", name), metav1.CreateOptions{})
		require.NoError(t, err)
		return start
	}
	first := create("first")
	h.waitFor(t, "the first monitor", func(s *config.Snapshot) bool { return len(s.ServiceMonitors) == 1 })
	lone := time.Since(first)
	second := create("second")
	h.waitFor(t, "the second monitor", func(s *config.Snapshot) bool { return len(s.ServiceMonitors) == 2 })
	next := time.Since(first)
	t.Logf("lone change: snapshot after %s; a change %s later: %s after the first", lone, second.Sub(first), next)
	require.Less(t, lone, debounce/2, "a change after a quiet period waited for the debounce")
	require.GreaterOrEqual(t, next, debounce-50*time.Millisecond, "a change right after a rebuild was not coalesced")
}

func TestCRDInstalledLater(t *testing.T) {
	ctx := context.Background()
	h := startWatcher(t, Options{}, newLockedDiscovery(), namespace("default", nil), secret("default", "auth", "x"),
		serviceMonitor("default", "web"))
	smInstalled := func() float64 {
		return testutil.ToFloat64(h.w.metrics.crdInstalled.WithLabelValues(resServiceMonitors))
	}

	// No CRD: snapshots still come, with the core objects only.
	s := h.waitFor(t, "a snapshot without CRDs", func(*config.Snapshot) bool { return true })
	require.True(t, h.w.Synced())
	require.Len(t, s.Secrets, 1)
	require.Empty(t, s.ServiceMonitors)
	require.Zero(t, smInstalled())

	// The CRDs appear: the monitor is picked up without a restart.
	h.disc.set(allCRDs...)
	s = h.waitFor(t, "the monitor after the CRD appeared", func(s *config.Snapshot) bool { return len(s.ServiceMonitors) == 1 })
	require.Len(t, s.Secrets, 1)
	require.InDelta(t, 1, smInstalled(), 0)

	// Changes are followed.
	_, err := h.dyn.Resource(gvrServiceMonitors).Namespace("default").Create(ctx, serviceMonitor("default", "api"), metav1.CreateOptions{})
	require.NoError(t, err)
	h.waitFor(t, "two monitors", func(s *config.Snapshot) bool { return len(s.ServiceMonitors) == 2 })

	// The CRDs go away again: their objects leave the snapshot.
	h.disc.set()
	h.waitFor(t, "no monitor after the CRD was removed", func(s *config.Snapshot) bool { return len(s.ServiceMonitors) == 0 })
	require.Zero(t, smInstalled())
}

func TestDiscoveryErrorDelaysFirstSnapshot(t *testing.T) {
	disc := installed()
	// Not a "not found": which CRDs are installed is unknown, so a
	// snapshot without monitors would be wrong.
	disc.setErr(errors.New("connection refused"))
	h := startWatcher(t, Options{}, disc, namespace("default", nil), serviceMonitor("default", "web"))

	select {
	case s := <-h.w.Snapshots():
		t.Fatalf("snapshot published before the CRDs were known: %+v", s)
	case <-time.After(500 * time.Millisecond):
	}
	require.False(t, h.w.Synced())

	disc.setErr(nil)
	s := h.waitFor(t, "the first snapshot", func(*config.Snapshot) bool { return true })
	require.Len(t, s.ServiceMonitors, 1)
	require.True(t, h.w.Synced())
}

func TestInvalidObjectSkipped(t *testing.T) {
	bad := serviceMonitor("default", "bad")
	bad.Object["spec"].(map[string]any)["endpoints"] = "not-a-list"
	badProbe := probe("default", "bad-probe")
	badProbe.Object["spec"].(map[string]any)["interval"] = int64(30)
	h := startWatcher(t, Options{}, installed(),
		serviceMonitor("default", "good"), bad, podMonitor("default", "pods"),
		badProbe, probe("default", "good-probe"))

	s := h.waitFor(t, "the valid objects", func(*config.Snapshot) bool { return true })
	require.Equal(t, []string{"default/good"}, names(s.ServiceMonitors))
	require.Equal(t, []string{"default/pods"}, names(s.PodMonitors))
	require.Equal(t, []string{"default/good-probe"}, names(s.Probes))
	require.InDelta(t, 1, testutil.ToFloat64(h.w.metrics.invalid.WithLabelValues(resServiceMonitors)), 0)
	require.InDelta(t, 1, testutil.ToFloat64(h.w.metrics.invalid.WithLabelValues(resProbes)), 0)
	require.Zero(t, testutil.ToFloat64(h.w.metrics.invalid.WithLabelValues(resPodMonitors)))

	// Fixing the object brings it in and clears the count.
	_, err := h.dyn.Resource(gvrServiceMonitors).Namespace("default").Update(context.Background(),
		serviceMonitor("default", "bad"), metav1.UpdateOptions{})
	require.NoError(t, err)
	h.waitFor(t, "the fixed monitor", func(s *config.Snapshot) bool { return len(s.ServiceMonitors) == 2 })
	require.Zero(t, testutil.ToFloat64(h.w.metrics.invalid.WithLabelValues(resServiceMonitors)))
}

func TestAgentAndNamespaces(t *testing.T) {
	ctx := context.Background()
	h := startWatcher(t, Options{Agent: "mon/agent", Namespaces: []string{"apps"}}, installed(),
		namespace("apps", nil), namespace("other", nil), namespace("mon", nil),
		prometheusAgent("mon", "agent", map[string]any{"cluster": "a"}),
		prometheusAgent("mon", "another", nil),
		serviceMonitor("apps", "web"), serviceMonitor("other", "web"), serviceMonitor("mon", "web"),
		secret("apps", "s", "x"), secret("other", "s", "x"), secret("mon", "remote-write", "x"),
		configMap("other", "ca"),
	)

	s := h.waitFor(t, "the agent", func(*config.Snapshot) bool { return true })
	require.NotNil(t, s.Agent)
	require.Equal(t, "mon/agent", s.Agent.Namespace+"/"+s.Agent.Name)
	require.Equal(t, "a", s.Agent.Spec.ExternalLabels["cluster"])
	require.Equal(t, []string{"apps/web"}, names(s.ServiceMonitors))
	require.Equal(t, []string{"/apps"}, names(s.Namespaces))
	require.Equal(t, []string{"apps/s", "mon/remote-write"}, names(s.Secrets), "the agent's namespace is watched for Secrets")
	require.Empty(t, s.ConfigMaps)

	agent := prometheusAgent("mon", "agent", map[string]any{"cluster": "b"})
	_, err := h.dyn.Resource(gvrPrometheusAgents).Namespace("mon").Update(ctx, agent, metav1.UpdateOptions{})
	require.NoError(t, err)
	h.waitFor(t, "the updated agent", func(s *config.Snapshot) bool {
		return s.Agent != nil && s.Agent.Spec.ExternalLabels["cluster"] == "b"
	})

	require.NoError(t, h.dyn.Resource(gvrPrometheusAgents).Namespace("mon").Delete(ctx, "agent", metav1.DeleteOptions{}))
	h.waitFor(t, "no agent", func(s *config.Snapshot) bool { return s.Agent == nil })
}
