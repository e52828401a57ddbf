package agent

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promshard/promshard/config"
)

// recordingApplier records the configurations a Reconciler applies.
type recordingApplier struct{ cfgs []*promconfig.Config }

func (r *recordingApplier) ApplyConfig(cfg *promconfig.Config) error {
	r.cfgs = append(r.cfgs, cfg)
	return nil
}

func newTestReconciler(t *testing.T, gen GenerateFunc, app Applier) *Reconciler {
	t.Helper()
	r, err := NewReconciler(make(chan *config.Snapshot), gen, app, nil, prometheus.NewRegistry())
	require.NoError(t, err)
	return r
}

// A job the scrape manager would refuse rejects its whole object, with the
// reason; every other object is applied.
func TestReconcilerRejectsObjectOfRefusedJob(t *testing.T) {
	a := stoppedAtCleanup(t, newTestAgent(t))
	bad := badCAJob(t, "serviceMonitor/ns/a/1")
	gen := func(*config.Snapshot) (*promconfig.Config, []config.Result, error) {
		return &promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{
				scrapeJob("serviceMonitor/ns/a/0", "127.0.0.1:1"), bad, scrapeJob("serviceMonitor/ns/b/0", "127.0.0.1:2"),
			}}, []config.Result{
				{Kind: config.KindServiceMonitor, Namespace: "ns", Name: "a", Accepted: true, Jobs: []string{"serviceMonitor/ns/a/0", "serviceMonitor/ns/a/1"}},
				{Kind: config.KindServiceMonitor, Namespace: "ns", Name: "b", Accepted: true, Jobs: []string{"serviceMonitor/ns/b/0"}},
			}, nil
	}
	r := newTestReconciler(t, gen, a)
	r.reconcile(&config.Snapshot{})

	st := r.Status()
	require.NoError(t, st.LastError)
	require.Equal(t, 1, st.Version)
	require.Len(t, st.Results, 2)
	require.False(t, st.Results[0].Accepted)
	require.Contains(t, st.Results[0].Reason, "job serviceMonitor/ns/a/1: error creating HTTP client")
	require.Contains(t, st.Results[0].Reason, "CA cert")
	require.True(t, st.Results[1].Accepted)
	require.Equal(t, 1.0, testutil.ToFloat64(r.rejected.WithLabelValues(config.KindServiceMonitor)))
	require.Equal(t, []string{"serviceMonitor/ns/b/0"}, jobNamesOf(a.desired))
	require.Equal(t, []string{"serviceMonitor/ns/b/0"}, jobNamesOf(a.effective))
}

func TestReconcilerPrometheusAgentLifecycle(t *testing.T) {
	app := &recordingApplier{}
	r := newTestReconciler(t, func(s *config.Snapshot) (*promconfig.Config, []config.Result, error) {
		return config.Generate(s, config.Options{})
	}, app)
	r.RequireAgent("mon/agent")
	sm := func(name, team string) *monitoringv1.ServiceMonitor {
		return &monitoringv1.ServiceMonitor{
			ObjectMeta: metav1.ObjectMeta{Namespace: "mon", Name: name, Labels: map[string]string{"team": team}},
			Spec:       monitoringv1.ServiceMonitorSpec{Endpoints: []monitoringv1.Endpoint{{Port: "web"}}},
		}
	}
	agent := func(interval string) *monitoringv1alpha1.PrometheusAgent {
		pa := &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Namespace: "mon", Name: "agent"}}
		pa.Spec.ServiceMonitorSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
		pa.Spec.ScrapeInterval = monitoringv1.Duration(interval)
		return pa
	}
	snap := func(pa *monitoringv1alpha1.PrometheusAgent) *config.Snapshot {
		return &config.Snapshot{Agent: pa, ServiceMonitors: []*monitoringv1.ServiceMonitor{sm("selected", "a"), sm("other", "b")}}
	}
	state := func(s string) float64 { return testutil.ToFloat64(r.agentState.WithLabelValues(s)) }
	lastJobs := func() []string { return jobNamesOf(app.cfgs[len(app.cfgs)-1]) }
	extLabel := func() string { return app.cfgs[len(app.cfgs)-1].GlobalConfig.ExternalLabels.Get("prometheus") }

	// Before the agent is first seen: nothing applied, not ready, says why.
	r.reconcile(snap(nil))
	require.Empty(t, app.cfgs)
	require.True(t, r.Status().Waiting)
	require.Contains(t, r.NotReadyReason(), "PrometheusAgent mon/agent not found yet")
	require.Equal(t, 1.0, state(agentWaiting))

	r.reconcile(snap(agent("15s")))
	require.Len(t, app.cfgs, 1)
	require.Equal(t, []string{"serviceMonitor/mon/selected/0"}, lastJobs())
	require.Equal(t, "mon/agent", extLabel())
	require.Equal(t, 1.0, state(agentPresent))
	require.Empty(t, r.NotReadyReason())

	// Deleted: the last applied settings keep running, never the flags'.
	r.reconcile(snap(nil))
	require.Len(t, app.cfgs, 2)
	require.Equal(t, []string{"serviceMonitor/mon/selected/0"}, lastJobs())
	require.Equal(t, "mon/agent", extLabel())
	require.Equal(t, 1.0, state(agentMissing))
	require.Contains(t, r.Status().Agent, "was deleted: its last applied settings keep running")

	// Back with settings that cannot be translated: rejected, last settings run.
	r.reconcile(snap(agent("bogus")))
	require.Len(t, app.cfgs, 3)
	require.Equal(t, []string{"serviceMonitor/mon/selected/0"}, lastJobs())
	require.Equal(t, 1.0, state(agentInvalid))
	require.Equal(t, 1.0, testutil.ToFloat64(r.rejected.WithLabelValues(config.KindPrometheusAgent)))
	require.EqualValues(t, 15e9, app.cfgs[2].GlobalConfig.ScrapeInterval, "the last applied agent's interval")

	// Fixed: applied.
	r.reconcile(snap(agent("20s")))
	require.Len(t, app.cfgs, 4)
	require.Equal(t, 1.0, state(agentPresent))
	require.Equal(t, 0.0, testutil.ToFloat64(r.rejected.WithLabelValues(config.KindPrometheusAgent)))
	require.EqualValues(t, 20e9, app.cfgs[3].GlobalConfig.ScrapeInterval)
}

// A remote write whose client cannot be built rejects the PrometheusAgent;
// its last applied settings keep running.
func TestReconcilerRemoteWriteRefused(t *testing.T) {
	a := stoppedAtCleanup(t, newTestAgent(t))
	r := newTestReconciler(t, func(s *config.Snapshot) (*promconfig.Config, []config.Result, error) {
		return config.Generate(s, config.Options{})
	}, a)
	r.RequireAgent("mon/agent")
	pa := func(caFile string) *config.Snapshot {
		agent := &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Namespace: "mon", Name: "agent"}}
		rw := monitoringv1.RemoteWriteSpec{URL: "https://user:pw@127.0.0.1:9/api/v1/write"}
		if caFile != "" {
			rw.TLSConfig = &monitoringv1.TLSConfig{TLSFilesConfig: monitoringv1.TLSFilesConfig{CAFile: caFile}}
		}
		agent.Spec.RemoteWrite = []monitoringv1.RemoteWriteSpec{rw}
		return &config.Snapshot{Agent: agent}
	}
	r.reconcile(pa(""))
	require.Equal(t, 1, r.Status().Version)

	bad := badCAJob(t, "x").HTTPClientConfig.TLSConfig.CAFile
	r.reconcile(pa(bad))
	st := r.Status()
	require.NoError(t, st.LastError)
	require.Equal(t, 1, st.Version, "the last applied settings are what runs: no new version")
	require.Equal(t, 1.0, testutil.ToFloat64(r.agentState.WithLabelValues(agentInvalid)))
	res := st.Results[len(st.Results)-1]
	require.Equal(t, config.KindPrometheusAgent, res.Kind)
	require.False(t, res.Accepted)
	require.Contains(t, res.Reason, "remote write https://user:xxxxx@127.0.0.1:9/api/v1/write")
	require.NotContains(t, res.Reason, "pw@")
	require.Empty(t, a.desired.RemoteWriteConfigs[0].HTTPClientConfig.TLSConfig.CAFile, "the last applied remote write keeps running")
}

// record logs a rejection once per distinct reason, says when the object is
// accepted again, redacts credentials in URLs, forgets objects that are
// gone, and allocates nothing per accepted object (it runs on every edit
// over every object).
func TestReconcilerRecord(t *testing.T) {
	var logs bytes.Buffer
	r, err := NewReconciler(make(chan *config.Snapshot), func(*config.Snapshot) (*promconfig.Config, []config.Result, error) { return nil, nil, nil },
		&recordingApplier{}, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	sm := func(name string, reason string) config.Result {
		return config.Result{Kind: config.KindServiceMonitor, Namespace: "ns", Name: name, Accepted: reason == "", Reason: reason}
	}
	step := func(results ...config.Result) (rejected float64, lines []string) {
		logs.Reset()
		r.record(results)
		for l := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		return testutil.ToFloat64(r.rejected.WithLabelValues(config.KindServiceMonitor)), lines
	}

	n, lines := step(sm("a", "bad CA at https://u:secret@example.com/x"), sm("b", ""))
	require.Equal(t, 1.0, n)
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], `msg="object rejected"`)
	require.NotContains(t, lines[0], "secret")
	require.NotContains(t, r.Status().Results[0].Reason, "secret")

	n, lines = step(sm("a", "bad CA at https://u:secret@example.com/x"), sm("b", ""))
	require.Equal(t, 1.0, n)
	require.Empty(t, lines, "the same reason again")

	_, lines = step(sm("a", "another reason"), sm("b", ""))
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], "another reason")

	n, lines = step(sm("a", ""), sm("b", ""))
	require.Zero(t, n)
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], `msg="object accepted again"`)

	_, _ = step(sm("a", "bad"), sm("b", ""))
	n, lines = step(sm("b", "")) // a is gone
	require.Zero(t, n)
	require.Empty(t, lines)
	require.Empty(t, r.reasons)
	_, lines = step(sm("a", "bad"), sm("b", ""))
	require.Len(t, lines, 1, "a new object rejected for a reason logged before it was gone")

	many := make([]config.Result, 5000)
	for i := range many {
		many[i] = sm("m"+strconv.Itoa(i), "")
	}
	r.record(many)
	allocs := testing.AllocsPerRun(10, func() { r.record(many) })
	require.LessOrEqual(t, allocs, 10.0, "allocations per record of 5,000 accepted objects")
}

// Fields of the applied PrometheusAgent that promshard does not apply are
// logged once, counted and shown in the status; a rejected agent leaves
// those of the agent that runs. A broken additionalScrapeConfigs Secret is
// rejected alone: the ServiceMonitor's job is applied.
func TestReconcilerAgentIgnoredFieldsAndAdditional(t *testing.T) {
	var logs bytes.Buffer
	app := &recordingApplier{}
	r, err := NewReconciler(make(chan *config.Snapshot), func(s *config.Snapshot) (*promconfig.Config, []config.Result, error) {
		return config.Generate(s, config.Options{})
	}, app, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	r.RequireAgent("mon/agent")
	agent := func(interval string, shards int32) *monitoringv1alpha1.PrometheusAgent {
		pa := &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Namespace: "mon", Name: "agent"}}
		pa.Spec.ServiceMonitorSelector = &metav1.LabelSelector{}
		pa.Spec.ScrapeInterval = monitoringv1.Duration(interval)
		pa.Spec.Shards = &shards
		pa.Spec.WALCompression = new(bool)
		pa.Spec.AdditionalScrapeConfigs = &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "extra"}, Key: "jobs"}
		return pa
	}
	snap := func(pa *monitoringv1alpha1.PrometheusAgent, jobs string) *config.Snapshot {
		return &config.Snapshot{Agent: pa,
			ServiceMonitors: []*monitoringv1.ServiceMonitor{{ObjectMeta: metav1.ObjectMeta{Namespace: "mon", Name: "app"},
				Spec: monitoringv1.ServiceMonitorSpec{Endpoints: []monitoringv1.Endpoint{{Port: "web"}}}}},
			Secrets: []*corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Namespace: "mon", Name: "extra"}, StringData: map[string]string{"jobs": jobs}}},
		}
	}
	ignored := func(class string) float64 { return testutil.ToFloat64(r.ignored.WithLabelValues(class)) }
	const want = "PrometheusAgent fields ignored (not implemented by promshard: walCompression; pod settings, which promshard takes from its own StatefulSet or DaemonSet and flags: shards)"

	pa := agent("15s", 2)
	r.reconcile(snap(pa, "- job_name: extra\n  static_configs: [{targets: ['127.0.0.1:9']}]"))
	require.Equal(t, []string{"serviceMonitor/mon/app/0", "extra"}, jobNamesOf(app.cfgs[len(app.cfgs)-1]))
	require.Equal(t, want, r.Status().Ignored)
	require.Equal(t, 1.0, ignored("workload"))
	require.Equal(t, 1.0, ignored("unimplemented"))

	// The same agent again, the Secret broken: logged no second time, the
	// setting rejected alone.
	r.reconcile(snap(pa, "- job_name: extra\n  static_config: []"))
	require.Equal(t, 1, strings.Count(logs.String(), "PrometheusAgent fields ignored"), logs.String())
	require.Equal(t, []string{"serviceMonitor/mon/app/0"}, jobNamesOf(app.cfgs[len(app.cfgs)-1]))
	require.Equal(t, 1.0, testutil.ToFloat64(r.rejected.WithLabelValues(config.KindAdditionalScrapeConfigs)))
	require.Contains(t, logs.String(), "field static_config not found")

	// A rejected agent does not run: the status keeps the applied one's fields.
	bad := agent("bogus", 2)
	bad.Spec.WALCompression = nil
	r.reconcile(snap(bad, ""))
	require.Equal(t, want, r.Status().Ignored)
	require.Equal(t, 0.0, testutil.ToFloat64(r.rejected.WithLabelValues(config.KindAdditionalScrapeConfigs)), "an empty list is accepted")

	fixed := agent("20s", 0)
	fixed.Spec.Shards, fixed.Spec.WALCompression = nil, nil
	r.reconcile(snap(fixed, ""))
	require.Empty(t, r.Status().Ignored)
	require.Equal(t, 0.0, ignored("workload"))
}
