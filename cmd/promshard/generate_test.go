package main

import (
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/promshard/promshard/config"
	"github.com/promshard/promshard/sharding"
)

// TestGenerateCachedReplicaRule: with cached jobs handed out again, every
// job still ends with the replica rule exactly once, unchanged jobs are
// the same pointers, and the output equals the uncached translation with
// the rule appended.
func TestGenerateCachedReplicaRule(t *testing.T) {
	rep := newReplication(&clusterFlags{replicaLabel: "replica", replicationFactor: 2, replicationMode: "rank"}, "member-0")
	rule := rep.rule
	require.NotNil(t, rule)
	require.Equal(t, 2, rep.ranks)
	reg := prometheus.NewRegistry()
	opts := config.Options{Flags: config.FlagSettings{RemoteWriteURLs: []string{"http://rw.example:9009/api/v1/push"}}}
	generate, err := newGenerate(opts, rep, reg)
	require.NoError(t, err)

	sm := func(name, rv, port string) *monitoringv1.ServiceMonitor {
		return &monitoringv1.ServiceMonitor{
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name, UID: types.UID("uid-" + name), ResourceVersion: rv},
			Spec:       monitoringv1.ServiceMonitorSpec{Endpoints: []monitoringv1.Endpoint{{Port: port}, {Port: "metrics"}}},
		}
	}
	a, b := sm("a", "1", "web"), sm("b", "1", "web")
	snaps := []*config.Snapshot{
		{ServiceMonitors: []*monitoringv1.ServiceMonitor{a, b}},
		{ServiceMonitors: []*monitoringv1.ServiceMonitor{a, b}},
		{ServiceMonitors: []*monitoringv1.ServiceMonitor{a, sm("b", "2", "other")}},
	}
	var prev map[string]*promconfig.ScrapeConfig
	for i, snap := range snaps {
		cfg, _, err := generate(snap)
		require.NoError(t, err)
		want, _, err := config.Generate(snap, opts)
		require.NoError(t, err)
		sharding.AppendReplicaRelabeling(want.ScrapeConfigs, rule)
		want.RemoteWriteConfigs = sharding.RankRemoteWrites(want.RemoteWriteConfigs, "replica", 2)
		var queues []string
		for _, rw := range cfg.RemoteWriteConfigs {
			queues = append(queues, rw.Name)
		}
		require.Len(t, queues, 3, "one queue per rank and one for member-named copies")
		require.Regexp(t, `^[0-9a-f]{6}-rank0$`, queues[0])
		wantYAML, err := config.Marshal(want, true)
		require.NoError(t, err)
		gotYAML, err := config.Marshal(cfg, true)
		require.NoError(t, err)
		require.Equal(t, string(wantYAML), string(gotYAML), "call %d", i)

		jobs := map[string]*promconfig.ScrapeConfig{}
		for _, sc := range cfg.ScrapeConfigs {
			jobs[sc.JobName] = sc
			require.Equal(t, 1, countRule(sc.RelabelConfigs, rule), "call %d: job %s", i, sc.JobName)
			require.Same(t, rule, sc.RelabelConfigs[len(sc.RelabelConfigs)-1], "call %d: job %s", i, sc.JobName)
		}
		require.Len(t, jobs, 4)
		switch i {
		case 1:
			for name, sc := range jobs {
				require.Same(t, prev[name], sc, "job %s reused", name)
			}
		case 2:
			require.Same(t, prev["serviceMonitor/app/a/0"], jobs["serviceMonitor/app/a/0"])
			require.NotSame(t, prev["serviceMonitor/app/b/0"], jobs["serviceMonitor/app/b/0"])
		}
		prev = jobs
	}
	// 2 objects translated first, 2 reused, then 1 reused and 1 translated.
	require.Equal(t, 3.0, counterValue(t, reg, "promshard_config_translation_cache_hits_total"))
	require.Equal(t, 3.0, counterValue(t, reg, "promshard_config_translation_cache_misses_total"))
	require.Equal(t, 0.0, counterValue(t, reg, "promshard_config_translation_cache_drops_total"))
}

func countRule(rcs []*relabel.Config, rule *relabel.Config) int {
	n := 0
	for _, rc := range rcs {
		if rc == rule {
			n++
		}
	}
	return n
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1)
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
