package sharding

import (
	"log/slog"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
)

// preparedJob is one job's last discovery result, relabeled once and reused
// across membership changes.
type preparedJob struct {
	cfg    *config.ScrapeConfig // nil: no scrape config known, nothing owned
	groups []preparedGroup
	// discovered holds the ownership keys of the job's targets that survive
	// relabeling (or fail it): a target still in it did not vanish.
	discovered map[uint64]struct{}
}

type preparedGroup struct {
	tg      *targetgroup.Group // nil groups are kept as nil
	entries []preparedEntry    // parallel to tg.Targets
}

// preparedEntry is one discovered target.
type preparedEntry struct {
	key     uint64        // ownership key
	lset    labels.Labels // final labels; empty when dropped or failed
	dropped bool          // dropped by relabeling or no scrape config: no owner
	// relabelDropped marks a target the job's relabeling drops. One member
	// (the owner of key, a hash of the discovered labels) still sends it,
	// so that its scrape pool lists it under droppedTargets (bounded by
	// keep_dropped_targets, as in Prometheus) once for the cluster.
	relabelDropped bool
	dup            bool   // an earlier entry of the job has the same key
	all            bool   // __tmp_disable_sharding: every participant owns it
	node           string // Kubernetes node from the discovered labels
	zone           string // zone from the discovered labels
	// sent caches the target as the scrape pool builds it from the entry,
	// and sentKey the hash of its labels (its identity in the pool).
	sent    *scrape.Target
	sentKey uint64
}

// sentTarget is a target this member sent to the scrape manager.
type sentTarget struct {
	ownKey uint64
	target *scrape.Target
	// handoff: another owner continues the very same series (no replica
	// label), so stopping it here must not write staleness markers.
	handoff bool
}

// prepare relabels every discovered target with its job's scrape config.
// Groups that are the same *targetgroup.Group as in prev, under the same
// scrape config, are reused without relabeling: Prometheus' discovery
// manager passes on the group it got from a provider until the provider
// sends a new one, and providers never modify a group once sent.
func prepare(tsets map[string][]*targetgroup.Group, cfgs map[string]*config.ScrapeConfig, prev map[string]*preparedJob, keyer *Keyer, logger *slog.Logger) map[string]*preparedJob {
	lb := labels.NewBuilder(labels.EmptyLabels())
	out := make(map[string]*preparedJob, len(tsets))
	for job, groups := range tsets {
		pj := &preparedJob{cfg: cfgs[job], groups: make([]preparedGroup, len(groups)), discovered: map[uint64]struct{}{}}
		if pj.cfg == nil && len(groups) > 0 {
			logger.Debug("No scrape config for discovered job yet, owning none of its targets", "job", job)
		}
		reusable := reusableGroups(prev[job], pj.cfg)
		jobHash := xxhash.Sum64String(job)
		for gi, tg := range groups {
			if tg == nil {
				continue
			}
			pg, ok := reusable[tg]
			if !ok || len(pg.entries) != len(tg.Targets) {
				pg = preparedGroup{tg: tg, entries: make([]preparedEntry, len(tg.Targets))}
				for i, tl := range tg.Targets {
					pg.entries[i] = prepareEntry(lb, keyer, job, jobHash, pj.cfg, tl, tg.Labels)
				}
			}
			for i := range pg.entries {
				if e := &pg.entries[i]; !e.dropped {
					_, e.dup = pj.discovered[e.key]
					pj.discovered[e.key] = struct{}{}
				}
			}
			pj.groups[gi] = pg
		}
		out[job] = pj
	}
	return out
}

// reusableGroups indexes a job's prepared groups by group pointer, if they
// were relabeled with cfg.
func reusableGroups(prev *preparedJob, cfg *config.ScrapeConfig) map[*targetgroup.Group]preparedGroup {
	if prev == nil || prev.cfg != cfg || cfg == nil {
		return nil
	}
	m := make(map[*targetgroup.Group]preparedGroup, len(prev.groups))
	for _, pg := range prev.groups {
		if pg.tg != nil {
			m[pg.tg] = pg
		}
	}
	return m
}

func prepareEntry(lb *labels.Builder, keyer *Keyer, job string, jobHash uint64, cfg *config.ScrapeConfig, tl, gl model.LabelSet) preparedEntry {
	if cfg == nil {
		return preparedEntry{dropped: true}
	}
	node, zone := firstLabel(nodeLabels, tl, gl), firstLabel(zoneLabels, tl, gl)
	lset, err := scrape.PopulateLabels(lb, cfg, tl, gl)
	switch {
	case err != nil:
		// The scrape pool will reject it and log why: let exactly one
		// member do so, keyed on the discovered labels.
		return preparedEntry{key: combine(jobHash, uint64(gl.Merge(tl).Fingerprint())), node: node, zone: zone}
	case lset.IsEmpty():
		return preparedEntry{dropped: true, relabelDropped: true, key: combine(jobHash, uint64(gl.Merge(tl).Fingerprint()))}
	default:
		return preparedEntry{key: keyer.Key(job, lset), lset: lset, all: lset.Get(DisableShardingLabel) != "", node: node, zone: zone}
	}
}

// firstLabel returns the value of the first of names set in a target's
// discovered labels (target labels before group labels).
func firstLabel(names []string, tl, gl model.LabelSet) string {
	for _, name := range names {
		if v := tl[model.LabelName(name)]; v != "" {
			return string(v)
		}
		if v := gl[model.LabelName(name)]; v != "" {
			return string(v)
		}
	}
	return ""
}

// memberView is membership frozen for one recompute.
type memberView struct {
	ready  bool                   // wait-for-size reached
	self   MemberState            // this member's state
	names  []string               // participants, self included when it is one
	byNode map[string]*Rendezvous // StrategyNode: members per node
	byZone map[string]*Rendezvous // StrategyZone: participants per zone
}

func (f *Filter) memberView() memberView {
	v := memberView{ready: f.opts.Members.Ready(), self: StateParticipant}
	nodes, zones := map[string][]string{}, map[string][]string{}
	for _, m := range f.opts.Members.Members() {
		if m.Name == f.opts.Self {
			v.self = m.State
			continue
		}
		if m.State != StateParticipant {
			continue
		}
		v.names = append(v.names, m.Name)
		if m.KubernetesNode != "" {
			nodes[m.KubernetesNode] = append(nodes[m.KubernetesNode], m.Name)
		}
		if m.Zone != "" {
			zones[m.Zone] = append(zones[m.Zone], m.Name)
		}
	}
	if f.releasing.Load() {
		v.self = StateLeft // stopping: own nothing, hand everything off
	}
	if v.self == StateParticipant {
		v.names = append(v.names, f.opts.Self)
		if f.opts.Zone != "" {
			zones[f.opts.Zone] = append(zones[f.opts.Zone], f.opts.Self)
		}
	}
	// Nobody else discovers this node's pods: a joining member owns them at
	// once rather than leaving them unscraped.
	if f.opts.NodeName != "" && (v.self == StateParticipant || v.self == StateJoining) {
		nodes[f.opts.NodeName] = append(nodes[f.opts.NodeName], f.opts.Self)
	}
	f.sharder.SetMembers(v.names)
	switch f.opts.Strategy {
	case StrategyNode:
		v.byNode = groupsOf(nodes)
	case StrategyZone:
		v.byZone = groupsOf(zones)
	}
	return v
}

func groupsOf(m map[string][]string) map[string]*Rendezvous {
	out := make(map[string]*Rendezvous, len(m))
	for k, names := range m {
		out[k] = NewRendezvous(names...)
	}
	return out
}

// owners appends the owners of e to dst, best rank first.
func (f *Filter) owners(v *memberView, e *preparedEntry, dst []string) []string {
	if !v.ready {
		return dst
	}
	r := f.opts.ReplicationFactor
	switch {
	case e.all:
		return append(dst, v.names...)
	case f.opts.Strategy == StrategyNode && e.node != "":
		if g := v.byNode[e.node]; g != nil {
			return g.Owners(e.key, 1, dst)
		}
		return dst // nobody on its node discovers all of its pods
	case f.opts.Strategy == StrategyZone && e.zone != "":
		if g := v.byZone[e.zone]; g != nil {
			return f.fillUp(g.Owners(e.key, r, dst), len(dst), e.key)
		}
	}
	return f.sharder.Owners(e.key, r, dst)
}

// fillUp completes the owners dst[start:] chosen in a zone to the
// replication factor with the best-ranked participants of other zones.
func (f *Filter) fillUp(dst []string, start int, key uint64) []string {
	r := f.opts.ReplicationFactor
	if len(dst)-start >= r {
		return dst
	}
	for _, o := range f.sharder.Owners(key, r+len(dst)-start, nil) {
		if len(dst)-start < r && !slices.Contains(dst[start:], o) {
			dst = append(dst, o)
		}
	}
	return dst
}

// assign computes the owned target groups of every job and hands moved
// targets off.
func (f *Filter) assign(v memberView) (map[string][]*targetgroup.Group, Stats) {
	stats := Stats{Ready: v.ready, Owned: make(map[string]int, len(v.names))}
	for _, n := range v.names {
		stats.Owned[n] = 0
	}
	f.withheld.Store(false)
	var active map[string]map[uint64]bool // loops running in the scrape manager, read once when needed
	owners := make([]string, 0, f.opts.ReplicationFactor)
	res := make(map[string][]*targetgroup.Group, len(f.prepared))
	for job, pj := range f.prepared {
		if pj.cfg == nil {
			// No scrape pool exists for a job without configuration (it
			// was just removed, or discovery runs ahead of the apply):
			// sending it would only make the scrape manager log an error.
			continue
		}
		flagged := f.flagged[job]
		if len(flagged) > 0 && active == nil {
			active = f.activeLoops()
		}
		sent := map[uint64]sentTarget{}
		ownedNow := map[uint64]struct{}{}
		groups := make([]*targetgroup.Group, len(pj.groups))
		for gi := range pj.groups {
			pg := &pj.groups[gi]
			if pg.tg == nil {
				continue
			}
			og := &targetgroup.Group{Source: pg.tg.Source, Labels: pg.tg.Labels, Targets: []model.LabelSet{}}
			for i := range pg.entries {
				e := &pg.entries[i]
				if e.dropped {
					if e.relabelDropped && f.reportsDropped(&v, e) {
						og.Targets = append(og.Targets, pg.tg.Targets[i])
					}
					continue
				}
				owners = f.owners(&v, e, owners[:0])
				if !e.dup {
					f.count(&stats, e, owners)
				}
				if !slices.Contains(owners, f.opts.Self) {
					continue
				}
				ownedNow[e.key] = struct{}{}
				t, key := f.sentTarget(pj.cfg, pg.tg, e, pg.tg.Targets[i])
				if t != nil && flagged[key] != nil {
					if active[job][key] {
						f.withheld.Store(true) // its old loop still runs with markers off
						continue
					}
					delete(flagged, key)
				}
				og.Targets = append(og.Targets, pg.tg.Targets[i])
				if t != nil {
					sent[key] = sentTarget{ownKey: e.key, target: t, handoff: f.opts.ReplicationFactor == 1 && !e.all}
				}
			}
			groups[gi] = og
		}
		for key := range flagged {
			if !active[job][key] {
				delete(flagged, key) // its loop is gone
			}
		}
		f.handoff(job, pj, sent, ownedNow)
		f.sent[job] = sent
		res[job] = groups
	}
	for job := range f.sent {
		if _, ok := f.prepared[job]; !ok {
			delete(f.sent, job) // job gone: its targets get normal staleness
			delete(f.flagged, job)
		}
	}
	return res, stats
}

// reportsDropped tells whether this member hands a target that relabeling
// drops to its scrape pool, which only records it as dropped: the one
// participant that owns the entry's key does.
func (f *Filter) reportsDropped(v *memberView, e *preparedEntry) bool {
	if !v.ready || v.self != StateParticipant {
		return false
	}
	var one [1]string
	owners := f.sharder.Owners(e.key, 1, one[:0])
	return len(owners) == 1 && owners[0] == f.opts.Self
}

// count adds a distinct target and its owners to stats.
func (f *Filter) count(stats *Stats, e *preparedEntry, owners []string) {
	stats.TotalTargets++
	for _, o := range owners {
		stats.Owned[o]++
	}
	switch {
	case len(owners) == 0 && e.node != "" && f.opts.Strategy == StrategyNode && stats.Ready:
		if stats.Unowned == nil {
			stats.Unowned = map[string]int{}
		}
		stats.Unowned[e.node]++
	case e.zone != "" && e.zone != f.opts.Zone && slices.Contains(owners, f.opts.Self):
		stats.CrossZone++
	}
}

// sentTarget returns the target the scrape pool builds from entry and its
// identity in the pool, or nil when the pool will not scrape it (relabeling
// fails).
func (f *Filter) sentTarget(cfg *config.ScrapeConfig, tg *targetgroup.Group, e *preparedEntry, entry model.LabelSet) (*scrape.Target, uint64) {
	if e.lset.IsEmpty() {
		return nil, 0 // relabeling failed
	}
	if e.sent == nil {
		e.sent = scrape.NewTarget(e.lset, cfg, entry, tg.Labels)
		e.sentKey = loopKey(e.sent, labels.NewBuilder(labels.EmptyLabels()))
	}
	return e.sent, e.sentKey
}

// loopKey identifies a target's scrape loop: its URL and public labels.
func loopKey(t *scrape.Target, lb *labels.Builder) uint64 {
	return combine(xxhash.Sum64String(t.URL().String()), t.Labels(lb).Hash())
}

// activeLoops returns the loop keys of the scrape manager's active targets
// per job (none without a StalenessDisabler).
func (f *Filter) activeLoops() map[string]map[uint64]bool {
	out := map[string]map[uint64]bool{}
	if f.opts.Staleness == nil {
		return out
	}
	lb := labels.NewBuilder(labels.EmptyLabels())
	for job, ts := range f.opts.Staleness.TargetsActive() {
		m := make(map[uint64]bool, len(ts))
		for _, t := range ts {
			m[loopKey(t, lb)] = true
		}
		out[job] = m
	}
	return out
}

// handoff disables end-of-run staleness markers for the targets this member
// sent before and no longer owns although they are still discovered: they
// moved to another member, which continues their series. A target still
// owned under a new identity (e.g. a changed interval) is no handoff: its
// old loop gets the markers Prometheus writes, which the new loop's samples
// supersede.
func (f *Filter) handoff(job string, pj *preparedJob, sent map[uint64]sentTarget, ownedNow map[uint64]struct{}) {
	var moved []*scrape.Target
	for key, st := range f.sent[job] {
		if _, still := sent[key]; still || !st.handoff {
			continue
		}
		if _, owned := ownedNow[st.ownKey]; owned {
			continue
		}
		if _, discovered := pj.discovered[st.ownKey]; discovered {
			moved = append(moved, st.target)
			if f.flagged[job] == nil {
				f.flagged[job] = map[uint64]*scrape.Target{}
			}
			f.flagged[job][key] = st.target
		}
	}
	if len(moved) == 0 {
		return
	}
	f.metrics.moved.Add(float64(len(moved)))
	f.logger.Debug("Handing targets off to other members", "job", job, "targets", len(moved))
	if f.opts.Staleness != nil {
		f.opts.Staleness.DisableEndOfRunStalenessMarkers(job, moved)
	}
}
