package sharding

import (
	"github.com/prometheus/client_golang/prometheus"
)

// clusterCollector exports membership gauges computed at scrape time.
type clusterCollector struct {
	c        *Cluster
	members  *prometheus.Desc
	ready    *prometheus.Desc
	keys     *prometheus.Desc
	reloads  *prometheus.Desc
	failures *prometheus.Desc
	stalls   *prometheus.Desc
}

func newClusterCollector(c *Cluster) *clusterCollector {
	return &clusterCollector{
		c: c,
		members: prometheus.NewDesc("promshard_cluster_members",
			"Cluster members known to this member, by state: joining (alive, not owning targets yet), participant, left, dead.", []string{"state"}, nil),
		ready: prometheus.NewDesc("promshard_cluster_ready",
			"1 once the cluster reached its wait-for-size or its wait timeout passed.", nil, nil),
		keys: prometheus.NewDesc("promshard_cluster_gossip_keys",
			"Gossip encryption keys installed (the first encrypts, all decrypt); 0 means gossip is not encrypted.", nil, nil),
		reloads: prometheus.NewDesc("promshard_cluster_keyring_reloads_total",
			"Times a changed gossip keyring file was installed.", nil, nil),
		failures: prometheus.NewDesc("promshard_cluster_keyring_reload_failures_total",
			"Times the gossip keyring file could not be read or installed (the previous keys stay).", nil, nil),
		stalls: prometheus.NewDesc("promshard_cluster_stalls_total",
			"Times the process did not run for longer than the stall threshold (peers may have declared it dead); a participant then hands its targets off and participates again.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (cc *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cc.members
	ch <- cc.ready
	ch <- cc.keys
	ch <- cc.reloads
	ch <- cc.failures
	ch <- cc.stalls
}

// Collect implements prometheus.Collector.
func (cc *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[MemberState]int{StateJoining: 0, StateParticipant: 0, StateDead: 0, StateLeft: 0}
	for _, m := range cc.c.Members() {
		counts[m.State]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(cc.members, prometheus.GaugeValue, float64(n), string(state))
	}
	ready := 0.0
	if cc.c.Ready() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(cc.ready, prometheus.GaugeValue, ready)
	ks := cc.c.keys
	ch <- prometheus.MustNewConstMetric(cc.keys, prometheus.GaugeValue, float64(ks.size()))
	var reloads, failures int64
	if ks != nil {
		reloads, failures = ks.reloads.Load(), ks.failures.Load()
	}
	ch <- prometheus.MustNewConstMetric(cc.reloads, prometheus.CounterValue, float64(reloads))
	ch <- prometheus.MustNewConstMetric(cc.failures, prometheus.CounterValue, float64(failures))
	ch <- prometheus.MustNewConstMetric(cc.stalls, prometheus.CounterValue, float64(cc.c.stalls.Load()))
}

// filterMetrics are the ownership filter's metrics.
type filterMetrics struct {
	discovered prometheus.Gauge
	owned      prometheus.Gauge
	recompute  prometheus.Histogram
	moved      prometheus.Counter
	crossZone  prometheus.Gauge
	unowned    *prometheus.GaugeVec
	keyVersion prometheus.Gauge
	handoffs   handoffMetrics
	// series: BalanceSeries figures (filter_balance.go).
	memberSeries *prometheus.GaugeVec
	overLimit    prometheus.Gauge
	needed       prometheus.Gauge
}

// setSeries replaces the per-member series and the limit figures.
func (m *filterMetrics) setSeries(st *Stats) {
	m.memberSeries.Reset()
	for member, n := range st.Series {
		m.memberSeries.WithLabelValues(member).Set(float64(n))
	}
	over := 0.0
	if st.OverLimit {
		over = 1
	}
	m.overLimit.Set(over)
	m.needed.Set(float64(st.MembersNeeded))
}

// handoffMetrics are the confirmed handoff's metrics (handoff.go).
type handoffMetrics struct {
	started, confirmed, timedOut prometheus.Counter
	duration, release            prometheus.Histogram
	held                         prometheus.Gauge
}

// setUnowned replaces the per-node counts of unowned targets.
func (m *filterMetrics) setUnowned(byNode map[string]int) {
	m.unowned.Reset()
	for node, n := range byNode {
		m.unowned.WithLabelValues(node).Set(float64(n))
	}
}

func newFilterMetrics(reg prometheus.Registerer) (*filterMetrics, error) {
	m := &filterMetrics{
		discovered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_sharding_targets_discovered",
			Help: "Distinct final targets (after relabeling) discovered by this member.",
		}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_sharding_targets_owned",
			Help: "Distinct final targets this member owns and scrapes.",
		}),
		recompute: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "promshard_sharding_recompute_duration_seconds",
			Help:    "Time to recompute target ownership, relabeling included when the input changed.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		moved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_sharding_targets_moved_total",
			Help: "Targets this member stopped scraping because another live member took them over.",
		}),
		crossZone: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_sharding_targets_cross_zone",
			Help: "Targets this member owns although they are in another zone (zone strategy spill-over: their zone has no participant).",
		}),
		unowned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promshard_sharding_targets_unowned",
			Help: "Discovered targets on a Kubernetes node without a participant (node strategy): nobody scrapes them.",
		}, []string{"node"}),
		keyVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_sharding_key_version",
			Help: "Ownership-key version in use: the newest every alive member supports (1: job and target labels, 2: the labels the target's series carry).",
		}),
		memberSeries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promshard_cluster_member_series",
			Help: "Series each participant owns as this member computes it (--sharding.balance=series): the series its targets delivered at their last scrape, a target not measured yet weighing its job's mean.",
		}, []string{"member"}),
		overLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_sharding_series_over_limit",
			Help: "1 when some participant owns more series than --sharding.max-series-per-member: the cluster needs more members (no target is dropped).",
		}),
		needed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_sharding_members_needed",
			Help: "Participants needed to hold every series (replicas included) within --sharding.max-series-per-member; 0 without a limit.",
		}),
		handoffs: handoffMetrics{
			started: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "promshard_sharding_handoffs_started_total",
				Help: "Membership changes under which this member gained targets and held them until the previous owners released them.",
			}),
			confirmed: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "promshard_sharding_handoffs_confirmed_total",
				Help: "Handoffs that ended because every other participant released the view (delivered what it scraped from the targets it gave up).",
			}),
			timedOut: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "promshard_sharding_handoffs_timed_out_total",
				Help: "Handoffs that ended because a participant did not release the view within --sharding.handoff-timeout: the held targets were scraped anyway.",
			}),
			duration: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "promshard_sharding_handoff_duration_seconds",
				Help:    "How long gained targets were held, from the first pass that held one to the confirmation or the timeout.",
				Buckets: prometheus.ExponentialBuckets(0.05, 2, 10),
			}),
			release: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "promshard_sharding_release_duration_seconds",
				Help:    "From a pass that gave targets up to the announcement that this member released the view: their loops stopped and remote write delivered what they scraped.",
				Buckets: prometheus.ExponentialBuckets(0.05, 2, 10),
			}),
			held: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "promshard_sharding_targets_held",
				Help: "Targets this member owns but does not scrape yet: gained under a membership change that not every previous owner released yet.",
			}),
		},
	}
	if reg == nil {
		return m, nil
	}
	h := &m.handoffs
	for _, c := range []prometheus.Collector{m.discovered, m.owned, m.recompute, m.moved, m.crossZone, m.unowned, m.keyVersion, m.memberSeries, m.overLimit, m.needed,
		h.started, h.confirmed, h.timedOut, h.duration, h.release, h.held} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
