package ruler

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	syncing     prometheus.Gauge
	objects     *prometheus.GaugeVec
	groups      prometheus.Gauge
	requests    *prometheus.CounterVec
	failures    prometheus.Counter
	duration    prometheus.Histogram
	lastSuccess prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_rules_syncing",
			Help: "1 on the member that syncs PrometheusRules to the ruler, 0 on the others.",
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promshard_rules_objects",
			Help: "Selected PrometheusRule objects by state after the last sync: synced, pending (not written yet), rejected (does not render), refused (the ruler refused it).",
		}, []string{"state"}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_rules_synced_groups",
			Help: "Rule groups in the ruler that equal the rendered PrometheusRules after the last sync.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promshard_rules_requests_total",
			Help: "Requests to the ruler's rule API by operation and HTTP status code (2xx: success, 0: no response).",
		}, []string{"op", "code"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_rules_sync_failures_total",
			Help: "Sync passes that ended without the ruler in sync (unreachable, 5xx, 429); each is retried with backoff.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "promshard_rules_sync_duration_seconds",
			Help:    "Duration of one sync pass: render, read the ruler if needed, write the changes.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_rules_last_successful_sync_timestamp_seconds",
			Help: "When a sync pass last left the ruler as wanted.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.syncing, m.objects, m.groups, m.requests, m.failures, m.duration, m.lastSuccess} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// request counts one request by its outcome.
func (m *metrics) request(op string, err error) {
	code := "2xx"
	var e *Error
	switch {
	case errors.As(err, &e):
		code = strconv.Itoa(e.Code)
	case err != nil:
		code = "0"
	}
	m.requests.WithLabelValues(op, code).Inc()
}
