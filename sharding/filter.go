package sharding

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/scrape"
)

// MemberSource is what the filter needs from membership; *Cluster implements it.
type MemberSource interface {
	// Members returns the known members; only alive ones own targets.
	Members() []Member
	// Changes signals (coalesced) membership and readiness changes.
	Changes() <-chan struct{}
	// Ready reports whether wait-for-size is over; before, nothing is owned.
	Ready() bool
}

var _ MemberSource = (*Cluster)(nil)

// StalenessDisabler turns off end-of-run staleness markers for targets about
// to leave a scrape pool; *scrape.Manager implements it.
type StalenessDisabler interface {
	DisableEndOfRunStalenessMarkers(targetSet string, targets []*scrape.Target)
}

var _ StalenessDisabler = (*scrape.Manager)(nil)

// Strategy selects how targets are assigned to members.
type Strategy string

const (
	// StrategyHash spreads targets over members by rendezvous hashing.
	StrategyHash Strategy = "hash"
	// StrategyNode gives a target whose discovered labels name a Kubernetes
	// node to the member(s) running on that node; other targets, and targets
	// on a node with no live member, are hash-sharded.
	StrategyNode Strategy = "node"
)

// DefaultReplicaLabel is the label carrying an owner's rank when the
// replication factor is above 1.
const DefaultReplicaLabel = "promshard_replica"

// nodeLabels are the discovered labels naming a target's Kubernetes node, in
// order of preference (Prometheus' kubernetes SD: pod, endpoints,
// endpointslice and node roles).
var nodeLabels = []string{
	"__meta_kubernetes_pod_node_name",
	"__meta_kubernetes_endpoint_node_name",
	"__meta_kubernetes_endpointslice_endpoint_node_name",
	"__meta_kubernetes_node_name",
}

// FilterOptions configures a Filter.
type FilterOptions struct {
	// Self is this member's name as it appears in Members. Required.
	Self string
	// Members provides membership. Required.
	Members MemberSource
	// ReplicationFactor is how many members own each target. Default 1.
	ReplicationFactor int
	// ReplicaLabel names the label set to the owner's rank (0..R-1) on every
	// owned target when ReplicationFactor > 1. Default DefaultReplicaLabel.
	ReplicaLabel string
	// Strategy is StrategyHash (default) or StrategyNode.
	Strategy Strategy
	// NodeName is the Kubernetes node this member runs on, for StrategyNode.
	// It overrides the node Members reports for Self. Empty: none.
	NodeName string
	// Staleness is told which targets moved to another member before they
	// are dropped. Nil: moved targets get staleness markers like any other.
	Staleness StalenessDisabler
	// Logger logs; nil logs nothing.
	Logger *slog.Logger
	// Registerer registers the promshard_sharding_* metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Stats is ownership as this member computes it.
type Stats struct {
	// Ready is false while waiting for the cluster size: nothing is owned.
	Ready bool `json:"ready"`
	// TotalTargets counts distinct final targets discovered (relabel
	// failures included, dropped targets excluded).
	TotalTargets int `json:"totalTargets"`
	// Owned maps each alive member to the targets it owns (counted once per
	// replica it holds).
	Owned map[string]int `json:"owned"`
}

// Filter keeps, from discovery's target groups, the final targets this member
// owns. It is the stage between discovery.Manager.SyncCh and scrape.Manager.Run.
type Filter struct {
	opts    FilterOptions
	logger  *slog.Logger
	metrics *filterMetrics

	cfgMtx     sync.Mutex
	cfgs       map[string]*config.ScrapeConfig
	cfgChanged chan struct{}

	statsMtx sync.Mutex
	stats    Stats

	// Owned by Run.
	last     map[string][]*targetgroup.Group
	prepared map[string]*preparedJob
	sent     map[string]map[uint64]sentTarget
	sharder  *Rendezvous
}

// NewFilter validates opts, applies defaults and registers metrics.
func NewFilter(opts FilterOptions) (*Filter, error) {
	if opts.Self == "" {
		return nil, errors.New("filter: Self is required")
	}
	if opts.Members == nil {
		return nil, errors.New("filter: Members is required")
	}
	if opts.ReplicationFactor < 0 {
		return nil, fmt.Errorf("filter: replication factor %d is negative", opts.ReplicationFactor)
	}
	setDefault(&opts.ReplicationFactor, 1)
	setDefault(&opts.ReplicaLabel, DefaultReplicaLabel)
	setDefault(&opts.Strategy, StrategyHash)
	if opts.Strategy != StrategyHash && opts.Strategy != StrategyNode {
		return nil, fmt.Errorf("filter: unknown strategy %q, want %q or %q", opts.Strategy, StrategyHash, StrategyNode)
	}
	if opts.Logger == nil {
		opts.Logger = promslog.NewNopLogger()
	}
	m, err := newFilterMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("filter: register metrics: %w", err)
	}
	return &Filter{
		opts:       opts,
		logger:     opts.Logger,
		metrics:    m,
		cfgs:       map[string]*config.ScrapeConfig{},
		cfgChanged: make(chan struct{}, 1),
		sent:       map[string]map[uint64]sentTarget{},
		sharder:    NewRendezvous(),
	}, nil
}

// SetScrapeConfigs gives the scrape configurations the targets are relabeled
// with. Call it after every configuration apply; it triggers a re-filter.
// Until a job's configuration is known, its targets are owned by nobody.
func (f *Filter) SetScrapeConfigs(cfgs []*config.ScrapeConfig) {
	m := make(map[string]*config.ScrapeConfig, len(cfgs))
	for _, c := range cfgs {
		m[c.JobName] = c
	}
	f.cfgMtx.Lock()
	f.cfgs = m
	f.cfgMtx.Unlock()
	select {
	case f.cfgChanged <- struct{}{}:
	default:
	}
}

// Stats returns ownership as of the last recompute.
func (f *Filter) Stats() Stats {
	f.statsMtx.Lock()
	defer f.statsMtx.Unlock()
	return f.stats
}

// Run reads target groups from in and sends the owned subset to out, for
// every job in the input (with empty groups when nothing is owned). On a
// membership or configuration change it re-filters the last input. It blocks
// until ctx is done.
func (f *Filter) Run(ctx context.Context, in <-chan map[string][]*targetgroup.Group, out chan<- map[string][]*targetgroup.Group) error {
	changes := f.opts.Members.Changes()
	for {
		reprepare := false
		select {
		case <-ctx.Done():
			return nil
		case tsets, ok := <-in:
			if !ok {
				in = nil // discovery stopped: keep serving membership changes
				continue
			}
			f.last, reprepare = tsets, true
		case <-f.cfgChanged:
			reprepare = true
		case <-changes:
		}
		if f.last == nil {
			continue // nothing discovered yet
		}
		res := f.recompute(reprepare)
		select {
		case out <- res:
		case <-ctx.Done():
			return nil
		}
	}
}

// recompute relabels the last input if needed, assigns owners, hands moved
// targets off and returns the owned target groups.
func (f *Filter) recompute(reprepare bool) map[string][]*targetgroup.Group {
	start := time.Now()
	if reprepare || f.prepared == nil {
		f.cfgMtx.Lock()
		cfgs := f.cfgs
		f.cfgMtx.Unlock()
		f.prepared = prepare(f.last, cfgs, f.prepared, f.logger)
	}
	view := f.memberView()
	res, stats := f.assign(view)
	f.metrics.recompute.Observe(time.Since(start).Seconds())
	f.metrics.discovered.Set(float64(stats.TotalTargets))
	f.metrics.owned.Set(float64(stats.Owned[f.opts.Self]))
	f.statsMtx.Lock()
	f.stats = stats
	f.statsMtx.Unlock()
	return res
}
