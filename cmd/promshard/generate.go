package main

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/promshard/promshard/agent"
	"github.com/promshard/promshard/config"
	"github.com/promshard/promshard/sharding"
)

// replication is what newGenerate adds to every translation for
// replicated scraping: the replica relabeling rule appended to every job,
// and, in rank mode, the split of every remote write into one queue per
// rank (sharding.RankRemoteWrites; ranks 0: no split).
type replication struct {
	rule  *relabel.Config
	label string
	ranks int
}

// newReplication returns the replication of the cluster flags for member self.
func newReplication(f *clusterFlags, self string) replication {
	mode := sharding.ReplicationMode(f.replicationMode)
	r := replication{rule: sharding.ReplicaRelabelConfig(f.replicaLabel, self, f.replicationFactor, mode), label: f.replicaLabel}
	if f.replicationFactor > 1 && mode == sharding.ReplicationRank {
		r.ranks = f.replicationFactor
	}
	return r
}

// newGenerate returns the reconciler's GenerateFunc: the translation with
// one config.Cache for the process, so that an edit re-translates only the
// objects it touches, followed by the replica relabeling and the rank
// queues of rep. Unchanged jobs come back as the same pointers, which
// already carry rep.rule: sharding.AppendReplicaRelabeling adds it only to
// jobs that do not end with it, so no job gets it twice. The rank queues
// are new copies at every call, equal in content for an unchanged remote
// write (the agent compares them by content). The reconciler calls
// generate from its one goroutine; the mutex keeps a second caller from
// racing on the jobs the rule is appended to. The cache's counters are
// exported to reg.
func newGenerate(opts config.Options, rep replication, reg prometheus.Registerer) (agent.GenerateFunc, error) {
	cache := &config.Cache{}
	for _, m := range []struct {
		name, help string
		value      func(config.CacheStats) float64
	}{
		{"promshard_config_translation_cache_hits_total", "Selected objects whose translation was reused, nothing it read having changed.",
			func(s config.CacheStats) float64 { return float64(s.Hits) }},
		{"promshard_config_translation_cache_misses_total", "Selected objects translated (new, changed, or reading a changed Secret or ConfigMap).",
			func(s config.CacheStats) float64 { return float64(s.Misses) }},
		{"promshard_config_translation_cache_drops_total", "Times every translation was dropped because the PrometheusAgent spec or the flags changed.",
			func(s config.CacheStats) float64 { return float64(s.Drops) }},
	} {
		value := m.value
		c := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help}, func() float64 { return value(cache.Stats()) })
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering translation cache metrics: %w", err)
		}
	}
	var mu sync.Mutex
	return func(s *config.Snapshot) (*promconfig.Config, []config.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		cfg, res, err := config.GenerateWithCache(s, opts, cache)
		if err == nil {
			sharding.AppendReplicaRelabeling(cfg.ScrapeConfigs, rep.rule)
			cfg.RemoteWriteConfigs = sharding.RankRemoteWrites(cfg.RemoteWriteConfigs, rep.label, rep.ranks)
		}
		return cfg, res, err
	}, nil
}
