package agent

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

type metrics struct {
	applyDuration prometheus.Histogram
	applyFailures prometheus.Counter
	applies       prometheus.Counter
	applySkips    prometheus.Counter
	lastApply     prometheus.Gauge
	scrapePools   prometheus.Gauge
	syncUpdates   prometheus.Counter
	syncedJobs    prometheus.Counter
	sdSets        prometheus.Gauge
	sdApplies     prometheus.Counter
	sdRelists     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "promshard_config_apply_duration_seconds",
			Help:    "Time taken to apply a configuration to the in-process Prometheus managers.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		applyFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_config_apply_failures_total",
			Help: "Configurations that could not be applied.",
		}),
		applies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_config_applies_total",
			Help: "Configurations applied to the in-process Prometheus managers (each rebuilds what changed and re-syncs targets).",
		}),
		applySkips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_config_apply_skips_total",
			Help: "Configurations not applied because they equal the running one; no manager was touched.",
		}),
		lastApply: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_config_last_apply_success_timestamp_seconds",
			Help: "Unix time of the last successfully applied configuration.",
		}),
		scrapePools: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_config_scrape_pools",
			Help: "Scrape pools (jobs) in the applied configuration.",
		}),
		syncUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_scrape_target_updates_total",
			Help: "Target updates handed to the scrape manager; each syncs only the pools whose target groups changed.",
		}),
		syncedJobs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_scrape_target_update_jobs_total",
			Help: "Scrape pools synced by target updates (a pool counts once per update that includes it).",
		}),
		sdSets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_discovery_shared_configs",
			Help: "Distinct service discovery configurations run for all jobs (jobs with the same configuration share one).",
		}),
		sdApplies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_discovery_applies_total",
			Help: "Configuration applies that changed the service discovery configurations (the others leave discovery untouched).",
		}),
		sdRelists: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_discovery_relists_total",
			Help: "Relists of a shared Kubernetes discovery because a job started reading discovered labels that were trimmed so far (Options.TrimDiscoveredLabels).",
		}),
	}
	for _, c := range []prometheus.Collector{m.applyDuration, m.applyFailures, m.applies, m.applySkips, m.lastApply, m.scrapePools,
		m.syncUpdates, m.syncedJobs, m.sdSets, m.sdApplies, m.sdRelists} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering agent metrics: %w", err)
		}
	}
	return m, nil
}

func modelDuration(d time.Duration) model.Duration { return model.Duration(d) }
