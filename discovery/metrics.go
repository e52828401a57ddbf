package discovery

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the promshard_discovery_* metrics of a Watcher.
type metrics struct {
	rebuilds        prometheus.Counter
	rebuildDuration prometheus.Histogram
	lastSnapshot    prometheus.Gauge
	objects         *prometheus.GaugeVec
	invalid         *prometheus.GaugeVec
	crdInstalled    *prometheus.GaugeVec
	events          *prometheus.CounterVec
	unreferenced    *prometheus.CounterVec
	apiserverUp     prometheus.Gauge
}

// newMetrics creates the metrics and registers them with reg unless reg is
// nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_discovery_snapshots_total",
			Help: "Snapshots rebuilt from the informer caches and published.",
		}),
		rebuildDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "promshard_discovery_snapshot_duration_seconds",
			Help:    "Time to rebuild a snapshot from the informer caches.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9), // 100µs .. ~6.5s
		}),
		lastSnapshot: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_discovery_last_snapshot_timestamp_seconds",
			Help: "Unix time of the last published snapshot.",
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promshard_discovery_objects",
			Help: "Objects of each resource in the last snapshot.",
		}, []string{"resource"}),
		invalid: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promshard_discovery_invalid_objects",
			Help: "Objects of each resource left out of the last snapshot because they could not be converted to their typed struct.",
		}, []string{"resource"}),
		crdInstalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promshard_discovery_crd_installed",
			Help: "Whether the CRD of the resource is installed (1) and watched, or not (0), as of the last check.",
		}, []string{"resource"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promshard_discovery_events_total",
			Help: "Informer add, update and delete events that asked for a rebuild.",
		}, []string{"resource"}),
		unreferenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promshard_discovery_unreferenced_events_total",
			Help: "Secret and ConfigMap add, update and delete events skipped because no selected object of the last snapshot references the object.",
		}, []string{"resource"}),
		apiserverUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_discovery_apiserver_reachable",
			Help: "Whether the API server answered the last request (1), or requests wait for its /readyz after a connection failure (0).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.rebuilds, m.rebuildDuration, m.lastSnapshot, m.objects, m.invalid, m.crdInstalled, m.events, m.unreferenced, m.apiserverUp} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
	}
	return m, nil
}
