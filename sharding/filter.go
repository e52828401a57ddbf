package sharding

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/scrape"
)

// MemberSource is what the filter needs from membership; *Cluster implements it.
type MemberSource interface {
	// Members returns the known members, this one included; only
	// participants own targets. A member that does not list itself counts
	// itself as a participant.
	Members() []Member
	// Changes signals (coalesced) membership and readiness changes.
	Changes() <-chan struct{}
	// Ready reports whether wait-for-size is over; before, nothing is owned.
	Ready() bool
}

var _ MemberSource = (*Cluster)(nil)

// StalenessDisabler turns off end-of-run staleness markers for targets about
// to leave a scrape pool; *scrape.Manager implements it.
//
// The flag it sets on a scrape loop cannot be cleared. If a handed-off target
// comes back before the scrape manager's next reload stopped its loop, the
// loop would keep running with the flag set and later, when the target
// really disappears, leave its series without staleness markers. The filter
// therefore withholds such a target (TargetsActive tells whether its old loop
// still runs) until the loop is gone, so it comes back in a fresh loop.
type StalenessDisabler interface {
	DisableEndOfRunStalenessMarkers(targetSet string, targets []*scrape.Target)
	TargetsActive() map[string][]*scrape.Target
}

var _ StalenessDisabler = (*scrape.Manager)(nil)

// Strategy selects how targets are assigned to members.
type Strategy string

const (
	// StrategyHash spreads targets over members by rendezvous hashing.
	StrategyHash Strategy = "hash"
	// StrategyNode gives a target whose discovered labels name a Kubernetes
	// node only to the member(s) running on that node, the only ones that
	// discover all of its pods (PodMonitor discovery is node-local). A target
	// on a node without a participant is owned by nobody and counted in
	// Stats.Unowned (promshard_sharding_targets_unowned{node}); node-less
	// targets are hash-sharded. Replication factors above 1 are refused:
	// other members do not discover a node's pods.
	StrategyNode Strategy = "node"
	// StrategyZone hashes a target whose discovered labels name a zone
	// (zoneLabels) over the participants of that zone; a target without a
	// zone, or whose zone has no participant, is hashed over all
	// participants (spill-over) and returns to its zone as soon as a member
	// of the zone participates again.
	StrategyZone Strategy = "zone"
)

// DefaultDiscoveryWait is the default FilterOptions.DiscoveryWait.
const DefaultDiscoveryWait = 5 * time.Second

// DefaultReplicaLabel is the label carrying an owner's rank when the
// replication factor is above 1.
const DefaultReplicaLabel = "promshard_replica"

// zoneLabels are the discovered labels naming a target's zone, in order of
// preference: the EndpointSlice endpoint's zone, the node's
// topology.kubernetes.io/zone label (Prometheus' kubernetes SD with node
// metadata attached, and the node role), the pod's own label.
var zoneLabels = []string{
	"__meta_kubernetes_endpointslice_endpoint_zone",
	"__meta_kubernetes_node_label_topology_kubernetes_io_zone",
	"__meta_kubernetes_pod_label_topology_kubernetes_io_zone",
}

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
	// ReplicaLabel names the label telling replicated copies apart: the
	// owner's rank (ReplicationRank with ReplicationFactor > 1) or the
	// member's name (targets with __tmp_disable_sharding). The filter leaves
	// it out of the ownership key and, in rank mode, gives the target
	// groups it sends the rank; ReplicaRelabelConfig adds it to the scrape
	// configurations. Default DefaultReplicaLabel.
	ReplicaLabel string
	// ReplicationMode is how copies differ when ReplicationFactor > 1:
	// ReplicationRank (default; each copy labelled with its owner's rank)
	// or ReplicationIdentical (identical copies, for storage that
	// deduplicates them). Unused with ReplicationFactor 1.
	ReplicationMode ReplicationMode
	// KeyVersion is the newest ownership-key version this member supports,
	// the one its Cluster announces (ClusterConfig.KeyVersion). The filter
	// uses the newest version every alive member supports, and re-keys its
	// targets when that changes (it then assigns every job again, as on a
	// membership change). Default LatestKeyVersion.
	KeyVersion KeyVersion
	// Strategy is StrategyHash (default), StrategyNode or StrategyZone.
	Strategy Strategy
	// Balance is BalanceTargets (default: rendezvous hashing spreads target
	// counts) or BalanceSeries (balance.go: bounded-load rendezvous over
	// the series each target delivered, gossiped through Weights). Under
	// StrategyZone it balances within each zone; under StrategyNode only
	// the node-less targets.
	Balance Balance
	// Weights is the cluster's gossiped weight board (Cluster.Weights).
	// Required with BalanceSeries.
	Weights *WeightBoard
	// Series returns the series the scrape loop with the given identity
	// (URL and public labels) delivered at its last scrape
	// (SeriesCounter.Series). Nil: this member measures nothing and
	// reports the weights it assumes.
	Series func(loopKey uint64) (int, bool)
	// MaxSeriesPerMember is how many series one member should hold, with
	// BalanceSeries; 0: no limit. A cluster that cannot fit its series
	// within it reports so (Stats.OverLimit, Stats.MembersNeeded,
	// promshard_sharding_series_over_limit) and still owns every target.
	MaxSeriesPerMember int
	// Zone is this member's zone for StrategyZone. It overrides the zone
	// Members reports for Self. Empty: the member is in no zone and only
	// takes spill-over targets.
	Zone string
	// NodeName is the Kubernetes node this member runs on, for StrategyNode.
	// It overrides the node Members reports for Self. Empty: none.
	NodeName string
	// DiscoveryWait bounds how long Primed waits for jobs whose discovery
	// yields no target group after the first configuration. Longer keeps a
	// restarted member out of ownership longer on a cluster whose discovery
	// is slow; shorter risks owning targets before they are discovered.
	// Default DefaultDiscoveryWait.
	DiscoveryWait time.Duration
	// Staleness is told which targets moved to another member before they
	// are dropped. Nil: moved targets get staleness markers like any other.
	Staleness StalenessDisabler
	// HandoffTimeout bounds how long a gained target is held while a
	// previous owner has not released it (handoff.go). Longer waits out
	// slower deliveries; shorter leaves a moved target unscraped for less
	// time when a peer never confirms. Default DefaultHandoffTimeout.
	HandoffTimeout time.Duration
	// Delivered reports whether remote write sent, or gave up on, every
	// sample written before the given moment; a member announces a release
	// only then. Nil: at once (no remote write to wait for).
	Delivered func(time.Time) bool
	// Announce gossips that this member released a handoff view;
	// *Cluster.AnnounceReleased does. Nil: this member confirms no handoff
	// (its Members source must then not say it does).
	Announce func(view uint64)
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
	// Owned maps each participant to the targets it owns (counted once per
	// replica it holds).
	Owned map[string]int `json:"owned"`
	// CrossZone counts the targets this member owns although their zone is
	// another one (StrategyZone spill-over).
	CrossZone int `json:"crossZone"`
	// Unowned counts, per Kubernetes node, the discovered targets on a node
	// without a participant (StrategyNode): nobody scrapes them.
	Unowned map[string]int `json:"unowned,omitempty"`
	// KeyVersion is the ownership-key version in use.
	KeyVersion KeyVersion `json:"keyVersion,omitempty"`
	// HandoffView is the handoff view of the member view in use (members
	// that released it list it as released); Held counts the targets this
	// member owns but holds until every previous owner released them.
	HandoffView uint64 `json:"handoffView,omitempty"`
	Held        int    `json:"held"`
	// Series maps each participant to the series it owns, TotalSeries
	// sums them over the targets (BalanceSeries only; a target nobody
	// measured yet weighs its job's mean).
	Series      map[string]int `json:"series,omitempty"`
	TotalSeries int            `json:"totalSeries,omitempty"`
	// MaxSeriesPerMember is FilterOptions.MaxSeriesPerMember; MembersNeeded
	// the participants it takes to hold every series within it; OverLimit:
	// some participant holds more.
	MaxSeriesPerMember int  `json:"maxSeriesPerMember,omitempty"`
	MembersNeeded      int  `json:"membersNeeded,omitempty"`
	OverLimit          bool `json:"overLimit,omitempty"`
}

// Filter keeps, from discovery's target groups, the final targets this member
// owns. It is the stage between discovery.Manager.SyncCh and scrape.Manager.Run.
type Filter struct {
	opts    FilterOptions
	logger  *slog.Logger
	metrics *filterMetrics

	// cfgs are the configured jobs, cfgDelta the names of those changed
	// (or removed) since Run last took them; cfgGen counts the changes.
	cfgMtx     sync.Mutex
	cfgs       map[string]*config.ScrapeConfig
	cfgDelta   map[string]struct{}
	cfgGen     uint64
	cfgAt      time.Time // first configuration
	cfgChanged chan struct{}

	statsMtx sync.Mutex
	stats    Stats

	droppedMtx sync.Mutex
	dropped    map[string]droppedJob // by job (filter_dropped.go)

	// Owned by Run. last is every job's input groups. While lastTracked,
	// lastChanged holds the jobs of last that changed since the last
	// prepare; untracked, the next prepare walks every job. out is every
	// job's output as last passed on, and passView the member view version
	// of the last pass.
	last        map[string][]*targetgroup.Group
	lastChanged map[string]struct{}
	lastTracked bool
	out         map[string][]*targetgroup.Group
	outCfg      map[string]*config.ScrapeConfig // the configuration each job of out was assigned under
	passView    uint64
	prepared    map[string]*preparedJob
	shares      groupShares // filter_share.go
	// runCfgs is Run's copy of cfgs as of cfgGen runGen.
	runCfgs map[string]*config.ScrapeConfig
	runGen  uint64
	// sent holds, per job with any, the targets sent for it, by loop key.
	sent    map[string]map[uint64]sentTarget
	sharder *Rendezvous
	keyer   *Keyer
	// viewKey spells out the last member view, viewVersion counts its
	// changes; totals sums the statistics of the jobs assigned under
	// totalsView (see assign).
	viewKey     string
	viewVersion uint64
	totals      jobStats
	totalsView  uint64
	// flagged holds, per job, the targets whose loops got end-of-run
	// staleness markers disabled and may still run (checked when the job
	// is assigned again); withheld reports
	// whether the last recompute held one of them back.
	flagged  map[string]map[uint64]*scrape.Target
	swept    time.Time // last sweepFlagged
	withheld atomic.Bool
	primed   atomic.Bool
	jobsSeen atomic.Bool
	// releasing is set by Release; released once Run handed all off.
	releasing atomic.Bool
	released  bool
	release   chan struct{}
	// ho is the confirmed handoff's state (handoff.go); passGaveUp
	// tells whether the current pass handed a target off.
	ho         handoffState
	passGaveUp bool
	// bal is the last balanced assignment (filter_balance.go).
	bal balanceState
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
	setDefault(&opts.ReplicationMode, ReplicationRank)
	if !opts.ReplicationMode.Valid() {
		return nil, fmt.Errorf("filter: unknown replication mode %q, want %q or %q", opts.ReplicationMode, ReplicationRank, ReplicationIdentical)
	}
	setDefault(&opts.Strategy, StrategyHash)
	setDefault(&opts.DiscoveryWait, DefaultDiscoveryWait)
	setDefault(&opts.KeyVersion, LatestKeyVersion)
	setDefault(&opts.HandoffTimeout, DefaultHandoffTimeout)
	if opts.HandoffTimeout < 0 {
		return nil, fmt.Errorf("filter: handoff timeout %s is negative", opts.HandoffTimeout)
	}
	if !opts.KeyVersion.Valid() {
		return nil, fmt.Errorf("filter: key version %d unknown, want %d to %d", opts.KeyVersion, KeyJobLabels, LatestKeyVersion)
	}
	switch opts.Strategy {
	case StrategyHash, StrategyZone:
	case StrategyNode:
		if opts.ReplicationFactor > 1 {
			return nil, errors.New("filter: a replication factor above 1 cannot be combined with the node strategy (only the member on a target's node discovers it)")
		}
	default:
		return nil, fmt.Errorf("filter: unknown strategy %q, want %q, %q or %q", opts.Strategy, StrategyHash, StrategyNode, StrategyZone)
	}
	setDefault(&opts.Balance, BalanceTargets)
	switch {
	case opts.Balance != BalanceTargets && opts.Balance != BalanceSeries:
		return nil, fmt.Errorf("filter: unknown balance %q, want %q or %q", opts.Balance, BalanceTargets, BalanceSeries)
	case opts.Balance == BalanceSeries && opts.Weights == nil:
		return nil, errors.New("filter: balancing series needs Weights")
	case opts.MaxSeriesPerMember < 0:
		return nil, fmt.Errorf("filter: max series per member %d is negative", opts.MaxSeriesPerMember)
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
		cfgChanged: make(chan struct{}, 1),
		release:    make(chan struct{}, 1),
		sent:       map[string]map[uint64]sentTarget{},
		outCfg:     map[string]*config.ScrapeConfig{},
		sharder:    NewRendezvous(),
		keyer:      NewKeyer(opts.ReplicaLabel),
		flagged:    map[string]map[uint64]*scrape.Target{},
	}, nil
}

// Stats returns ownership as of the last recompute.
func (f *Filter) Stats() Stats {
	f.statsMtx.Lock()
	defer f.statsMtx.Unlock()
	return f.stats
}

// Primed reports whether discovery delivered a first result for the applied
// configuration: an input arrived after SetScrapeConfigs in which every
// configured job has at least one target group. A job whose discovery
// yields no group at all (nothing selected, or not synced yet: Prometheus'
// discovery cannot tell) is waited for DiscoveryWait after the first
// configuration. A member should participate (own targets) only once it is
// primed; it never turns false again.
func (f *Filter) Primed() bool {
	if f.primed.Load() {
		return true
	}
	f.cfgMtx.Lock()
	at := f.cfgAt
	f.cfgMtx.Unlock()
	if f.jobsSeen.Load() && !at.IsZero() && time.Since(at) >= f.opts.DiscoveryWait {
		f.primed.Store(true)
	}
	return f.primed.Load()
}

// checkPrimed records, on Run's goroutine, whether the last input covers
// every configured job.
func (f *Filter) checkPrimed() {
	if f.primed.Load() {
		return
	}
	f.cfgMtx.Lock()
	defer f.cfgMtx.Unlock()
	if f.cfgs == nil {
		return // no configuration applied yet
	}
	seen, full := true, true
	for job := range f.cfgs {
		groups, ok := f.last[job]
		seen = seen && ok
		full = full && ok && len(groups) > 0
	}
	f.jobsSeen.Store(seen)
	if full {
		f.primed.Store(true)
	}
}

// retryWithheld is how long the filter waits before it looks again whether
// the old loop of a withheld target is gone (see StalenessDisabler).
const retryWithheld = 100 * time.Millisecond

// Run reads target groups from in and sends the owned subset to out, for
// every job in the input that has a scrape configuration (with the groups
// holding an owned target; an empty list when nothing is owned): every input and every output is a full map. Targets
// the job's relabeling drops are not sent; DroppedTargets reports them. On a
// membership or configuration change it re-filters the last input. Once this
// member left the cluster it sends nothing more: it keeps scraping what it
// had until it stops, while its peers take over. It blocks until ctx is done.
//
// A job unchanged since the previous output (the same input group pointers,
// in any order; the same *config.ScrapeConfig; the same member view; no
// target held back because its old loop still runs) is sent as the
// identical slice, with the identical groups, as in the previous output; so
// is a job recomputed to the same owned groups (by content). Any other job
// gets a new slice of new groups. A later stage can thus tell changed jobs
// by slice identity or by comparing the groups element-wise by pointer.
// The output slices and groups are shared between outputs: nobody may
// modify them. The input groups must not be modified either once sent, as
// Prometheus' discovery manager guarantees.
func (f *Filter) Run(ctx context.Context, in <-chan map[string][]*targetgroup.Group, out chan<- map[string][]*targetgroup.Group) error {
	return f.run(ctx, in, out, false)
}

// RunChanges is Run with maps of changes, so that its work per input is
// proportional to what changed rather than to every job: an input names
// only the jobs whose groups changed since the previous input, each with
// its complete new groups, and a job mapped to a nil slice is gone; the
// first input names every job. An output names in the same way only the
// jobs whose owned groups changed since the previous output (a new slice),
// with nil for a job no longer passed on, and nothing is sent when nothing
// changed. A job changes by pointer, as in Run: an unchanged job must keep
// its slice, and the maps themselves belong to their receiver.
//
// The scrape manager takes such maps as they are (scrape.Manager.Run syncs
// only the pools a map names), except for the nil slices.
func (f *Filter) RunChanges(ctx context.Context, in <-chan map[string][]*targetgroup.Group, out chan<- map[string][]*targetgroup.Group) error {
	return f.run(ctx, in, out, true)
}

func (f *Filter) run(ctx context.Context, in <-chan map[string][]*targetgroup.Group, out chan<- map[string][]*targetgroup.Group, changes bool) error {
	members := f.opts.Members.Changes()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	// hold fires when the current handoff hold times out; poll while a
	// release waits for stops and deliveries (handoff.go).
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	defer hold.Stop()
	var poll <-chan time.Time
	// report makes a balancing member publish new measurements.
	var report <-chan time.Time
	if f.balancing() {
		t := time.NewTicker(weightReportInterval)
		defer t.Stop()
		report = t.C
	}
	reprepare := false // an input arrived since the last recompute
	for {
		select {
		case <-ctx.Done():
			return nil
		case tsets, ok := <-in:
			if !ok {
				in = nil // discovery stopped: keep serving membership changes
				continue
			}
			if changes {
				f.applyChanges(tsets)
			} else {
				f.setInput(tsets)
			}
			reprepare = true
		case <-f.cfgChanged:
			reprepare = true
		case <-members:
		case <-retry.C:
		case <-report:
		case <-hold.C:
		case <-poll:
			poll = nil
			if f.releaseStep(time.Now()) {
				poll = time.After(releasePoll)
			}
			continue
		case <-f.release:
		}
		f.checkPrimed()
		if f.last == nil || f.released || (f.departed() && !f.releasing.Load()) {
			continue // nothing discovered yet, or stopped owning
		}
		f.released = f.releasing.Load()
		res := f.recompute(reprepare)
		reprepare = false
		if f.withheld.Load() {
			retry.Reset(retryWithheld)
		}
		if d := f.holdDeadline(); !d.IsZero() {
			hold.Reset(time.Until(d))
		}
		if poll == nil && f.releaseStep(time.Now()) {
			poll = time.After(releasePoll)
		}
		if !changes {
			res = maps.Clone(f.out)
		} else if len(res) == 0 {
			continue
		}
		select {
		case out <- res:
		case <-ctx.Done():
			return nil
		}
	}
}

// setInput makes m, a full map, the input: the next prepare walks every
// job.
func (f *Filter) setInput(m map[string][]*targetgroup.Group) {
	f.last, f.lastTracked, f.lastChanged = m, false, nil
}

// applyChanges applies a map of changes (see RunChanges) to the input.
func (f *Filter) applyChanges(changes map[string][]*targetgroup.Group) {
	if f.last == nil {
		f.last = make(map[string][]*targetgroup.Group, len(changes))
	}
	for job, groups := range changes {
		if groups == nil {
			delete(f.last, job)
		} else {
			f.last[job] = groups
		}
		if f.lastTracked {
			f.lastChanged[job] = struct{}{}
		}
	}
}

// Release makes this member own nothing any more, before it leaves the
// cluster: Run sends every job without groups once, handing every target off
// (end-of-run staleness markers disabled for those others continue), and
// nothing after. It does not wait.
func (f *Filter) Release() {
	f.releasing.Store(true)
	select {
	case f.release <- struct{}{}:
	default:
	}
}

// departed reports whether this member left (or was declared dead).
func (f *Filter) departed() bool {
	for _, m := range f.opts.Members.Members() {
		if m.Name == f.opts.Self {
			return m.State == StateLeft || m.State == StateDead
		}
	}
	return false
}
