package config

import (
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// additionalSnapshot is an agent in namespace mon with additionalScrapeConfigs
// pointing at Secret mon/extra key jobs.yaml (holding data unless nil),
// and a ServiceMonitor with one endpoint.
func additionalSnapshot(data *string, optional bool) *Snapshot {
	sel := secretRef("extra", "jobs.yaml")
	if optional {
		sel.Optional = ptrTo(true)
	}
	snap := &Snapshot{
		Agent: newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ServiceMonitorSelector = &metav1.LabelSelector{}
			s.ScrapeInterval = "20s"
			s.AdditionalScrapeConfigs = &sel
		}),
		ServiceMonitors: []*monitoringv1.ServiceMonitor{newTestSM("mon", "app", nil, monitoringv1.Endpoint{Port: "web"})},
	}
	if data != nil {
		snap.Secrets = []*corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Namespace: "mon", Name: "extra"}, Data: map[string][]byte{"jobs.yaml": []byte(*data)}}}
	}
	return snap
}

func TestAdditionalScrapeConfigs(t *testing.T) {
	const twoJobs = `
- job_name: node
  static_configs: [{targets: ["10.0.0.1:9100"]}]
- job_name: blackbox
  scrape_interval: 5s
  metrics_path: /probe
  static_configs: [{targets: ["10.0.0.2:9115"]}]
`
	for _, tc := range []struct {
		name     string
		data     *string
		optional bool
		// jobs after the ServiceMonitor's; reason "" means accepted.
		jobs   []string
		reason string
	}{
		{name: "two jobs", data: ptrTo(twoJobs), jobs: []string{"node", "blackbox"}},
		{name: "empty key", data: ptrTo("  \n")},
		{name: "missing secret", reason: `additionalScrapeConfigs (secret mon/extra key "jobs.yaml"): secret mon/extra not found`},
		{name: "missing optional secret", optional: true},
		{name: "not yaml", data: ptrTo("- job_name: [x"), reason: "not a list of Prometheus scrape configs: yaml: line 1:"},
		{name: "not a list", data: ptrTo("job_name: x"), reason: "not a list of Prometheus scrape configs"},
		{name: "unknown field", data: ptrTo("- job_name: x\n  scrape_intervall: 5s"), reason: "field scrape_intervall not found"},
		{name: "empty entry", data: ptrTo("- job_name: x\n-\n"), reason: "entry 1 is empty"},
		{name: "no job name", data: ptrTo("- scrape_interval: 5s"), reason: "job_name is empty"},
		{name: "duplicate job", data: ptrTo("- job_name: x\n- job_name: x"), reason: `found multiple scrape configs with job name "x"`},
		{name: "generated job name", data: ptrTo("- job_name: serviceMonitor/mon/app/0"), reason: `job name "serviceMonitor/mon/app/0" is already used by a generated job`},
		{name: "invalid relabeling", data: ptrTo("- job_name: x\n  relabel_configs: [{regex: '(', action: drop, source_labels: [a]}]"), reason: "error parsing regexp"},
		{name: "timeout over interval", data: ptrTo("- job_name: x\n  scrape_interval: 5s\n  scrape_timeout: 10s"), reason: "scrape timeout greater than scrape interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, cache := range []*Cache{nil, {}} {
				cfg, results, err := GenerateWithCache(additionalSnapshot(tc.data, tc.optional), Options{}, cache)
				require.NoError(t, err)
				require.Len(t, results, 2)
				extra, sm := results[0], results[1]
				require.Equal(t, KindAdditionalScrapeConfigs, extra.Kind)
				require.Equal(t, ObjectKey{Kind: KindAdditionalScrapeConfigs, Namespace: "mon", Name: "extra"}, extra.Key())
				require.True(t, sm.Accepted, "the generated jobs keep running")
				require.Equal(t, append([]string{"serviceMonitor/mon/app/0"}, tc.jobs...), testJobNames(cfg))
				if tc.reason == "" {
					require.True(t, extra.Accepted, extra.Reason)
					require.Equal(t, tc.jobs, nilIfEmpty(extra.Jobs))
					continue
				}
				require.False(t, extra.Accepted)
				require.Empty(t, extra.Jobs)
				require.Contains(t, extra.Reason, tc.reason)
				require.Contains(t, extra.Reason, `additionalScrapeConfigs (secret mon/extra key "jobs.yaml")`)
			}
		})
	}

	t.Run("global section", func(t *testing.T) {
		cfg, _, err := Generate(additionalSnapshot(ptrTo(twoJobs), false), Options{})
		require.NoError(t, err)
		node, blackbox := cfg.ScrapeConfigs[1], cfg.ScrapeConfigs[2]
		require.Equal(t, "20s", node.ScrapeInterval.String(), "unset values come from the agent's global section")
		require.Equal(t, "5s", blackbox.ScrapeInterval.String())
		require.Equal(t, "5s", blackbox.ScrapeTimeout.String(), "the timeout is capped at the job's interval, as config.Load does")
		require.Equal(t, "/probe", blackbox.MetricsPath)
		_, err = LoadYAML(mustMarshal(t, cfg))
		require.NoError(t, err)
	})
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func mustMarshal(t *testing.T, v *promconfig.Config) []byte {
	t.Helper()
	b, err := Marshal(v, true)
	require.NoError(t, err)
	return b
}

// TestAdditionalScrapeConfigsCache: an unchanged Secret key hands out the
// same jobs (the agent sees no change); an edit, a broken key and its
// repair each take effect at the next call.
func TestAdditionalScrapeConfigsCache(t *testing.T) {
	var c Cache
	gen := func(data *string) ([]string, Result, *Snapshot) {
		snap := additionalSnapshot(data, false)
		cfg, results, err := GenerateWithCache(snap, Options{}, &c)
		require.NoError(t, err)
		return testJobNames(cfg), results[0], snap
	}
	v1 := "- job_name: a\n  static_configs: [{targets: [x:1]}]"
	jobs, r, _ := gen(&v1)
	require.Equal(t, []string{"serviceMonitor/mon/app/0", "a"}, jobs)
	require.True(t, r.Accepted)

	// Same content in a new Secret object: the same pointers.
	snap := additionalSnapshot(&v1, false)
	cfg1, _, err := GenerateWithCache(snap, Options{}, &c)
	require.NoError(t, err)
	snap.Secrets[0] = snap.Secrets[0].DeepCopy()
	snap.Secrets[0].ResourceVersion = "7"
	cfg2, _, err := GenerateWithCache(snap, Options{}, &c)
	require.NoError(t, err)
	require.Same(t, cfg1.ScrapeConfigs[1], cfg2.ScrapeConfigs[1])

	v2 := "- job_name: b\n  static_configs: [{targets: [x:1]}]\n- job_name: c\n  static_configs: [{targets: [x:2]}]"
	jobs, r, _ = gen(&v2)
	require.Equal(t, []string{"serviceMonitor/mon/app/0", "b", "c"}, jobs)
	require.Equal(t, []string{"b", "c"}, r.Jobs)

	bad := "- job_name: b\n  nope: 1"
	jobs, r, _ = gen(&bad)
	require.Equal(t, []string{"serviceMonitor/mon/app/0"}, jobs)
	require.False(t, r.Accepted)

	jobs, r, _ = gen(&v2)
	require.Equal(t, []string{"serviceMonitor/mon/app/0", "b", "c"}, jobs)
	require.True(t, r.Accepted)

	// The setting removed from the agent: no Result, no jobs, nothing cached.
	snap = additionalSnapshot(&v2, false)
	snap.Agent.Spec.AdditionalScrapeConfigs = nil
	cfg, results, err := GenerateWithCache(snap, Options{}, &c)
	require.NoError(t, err)
	require.Equal(t, []string{"serviceMonitor/mon/app/0"}, testJobNames(cfg))
	require.Len(t, results, 1)
	require.Nil(t, c.extra)
}

// TestAdditionalScrapeConfigsReferenced: the Secret is among the
// references, so that its edits reach the agent.
func TestAdditionalScrapeConfigsReferenced(t *testing.T) {
	refs := ReferencedObjects(additionalSnapshot(nil, false), Options{})
	require.True(t, refs.Secret("mon", "extra"))
	require.False(t, refs.Secret("mon", "other"))
}
