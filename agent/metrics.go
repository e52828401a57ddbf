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
	}
	for _, c := range []prometheus.Collector{m.applyDuration, m.applyFailures, m.applies, m.applySkips, m.lastApply, m.scrapePools} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering agent metrics: %w", err)
		}
	}
	return m, nil
}

func modelDuration(d time.Duration) model.Duration { return model.Duration(d) }
