package sharding

import (
	"log/slog"
	"slices"
	"strconv"

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
	dup     bool          // an earlier entry of the job has the same key
	node    string        // Kubernetes node from the discovered labels
	// sent caches the target as the scrape pool builds it from the entry
	// sent at each rank (index 0 only when R = 1), and sentKeys their keys.
	sent     []*scrape.Target
	sentKeys []uint64
}

// sentTarget is a target this member sent to the scrape manager.
type sentTarget struct {
	ownKey uint64
	target *scrape.Target
}

// prepare relabels every discovered target with its job's scrape config.
// Groups that are the same *targetgroup.Group as in prev, under the same
// scrape config, are reused without relabeling: Prometheus' discovery
// manager passes on the group it got from a provider until the provider
// sends a new one, and providers never modify a group once sent.
func prepare(tsets map[string][]*targetgroup.Group, cfgs map[string]*config.ScrapeConfig, prev map[string]*preparedJob, logger *slog.Logger) map[string]*preparedJob {
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
					pg.entries[i] = prepareEntry(lb, job, jobHash, pj.cfg, tl, tg.Labels)
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

func prepareEntry(lb *labels.Builder, job string, jobHash uint64, cfg *config.ScrapeConfig, tl, gl model.LabelSet) preparedEntry {
	if cfg == nil {
		return preparedEntry{dropped: true}
	}
	node := nodeOf(tl, gl)
	lset, err := scrape.PopulateLabels(lb, cfg, tl, gl)
	switch {
	case err != nil:
		// The scrape pool will reject it and log why: let exactly one
		// member do so, keyed on the discovered labels.
		return preparedEntry{key: combine(jobHash, uint64(gl.Merge(tl).Fingerprint())), node: node}
	case lset.IsEmpty():
		return preparedEntry{dropped: true}
	default:
		return preparedEntry{key: TargetKey(job, lset), lset: lset, node: node}
	}
}

// nodeOf returns the Kubernetes node named by a target's discovered labels.
func nodeOf(tl, gl model.LabelSet) string {
	for _, name := range nodeLabels {
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
	ready  bool
	names  []string               // alive members, self included
	byNode map[string]*Rendezvous // StrategyNode: alive members per node
}

func (f *Filter) memberView() memberView {
	v := memberView{ready: f.opts.Members.Ready(), names: []string{f.opts.Self}}
	nodes := map[string][]string{}
	if f.opts.NodeName != "" {
		nodes[f.opts.NodeName] = []string{f.opts.Self}
	}
	for _, m := range f.opts.Members.Members() {
		if m.State != StateAlive || m.Name == f.opts.Self {
			continue
		}
		v.names = append(v.names, m.Name)
		if m.KubernetesNode != "" {
			nodes[m.KubernetesNode] = append(nodes[m.KubernetesNode], m.Name)
		}
	}
	f.sharder.SetMembers(v.names)
	if f.opts.Strategy == StrategyNode {
		v.byNode = make(map[string]*Rendezvous, len(nodes))
		for node, names := range nodes {
			v.byNode[node] = NewRendezvous(names...)
		}
	}
	return v
}

// owners appends the owners of e to dst, best rank first.
func (f *Filter) owners(v *memberView, e *preparedEntry, dst []string) []string {
	r := f.opts.ReplicationFactor
	if !v.ready {
		return dst
	}
	if e.node == "" || v.byNode[e.node] == nil {
		return f.sharder.Owners(e.key, r, dst)
	}
	start := len(dst)
	dst = v.byNode[e.node].Owners(e.key, r, dst)
	if len(dst)-start == r {
		return dst
	}
	// Fewer members on the node than replicas: fill up by hash.
	for _, o := range f.sharder.Owners(e.key, r+len(dst)-start, nil) {
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
	owners := make([]string, 0, f.opts.ReplicationFactor)
	res := make(map[string][]*targetgroup.Group, len(f.prepared))
	for job, pj := range f.prepared {
		if pj.cfg == nil {
			// No scrape pool exists for a job without configuration (it
			// was just removed, or discovery runs ahead of the apply):
			// sending it would only make the scrape manager log an error.
			continue
		}
		sent := map[uint64]sentTarget{}
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
					continue
				}
				owners = f.owners(&v, e, owners[:0])
				if !e.dup {
					stats.TotalTargets++
					for _, o := range owners {
						stats.Owned[o]++
					}
				}
				rank := slices.Index(owners, f.opts.Self)
				if rank < 0 {
					continue
				}
				entry := pg.tg.Targets[i]
				if f.opts.ReplicationFactor > 1 {
					entry = entry.Clone()
					entry[model.LabelName(f.opts.ReplicaLabel)] = model.LabelValue(strconv.Itoa(rank))
				}
				og.Targets = append(og.Targets, entry)
				if t, key := f.sentTarget(job, pj.cfg, pg.tg, e, entry, rank); t != nil {
					sent[key] = sentTarget{ownKey: e.key, target: t}
				}
			}
			groups[gi] = og
		}
		f.handoff(job, pj, sent)
		f.sent[job] = sent
		res[job] = groups
	}
	for job := range f.sent {
		if _, ok := f.prepared[job]; !ok {
			delete(f.sent, job) // job gone: its targets get normal staleness
		}
	}
	return res, stats
}

// sentTarget returns the target the scrape pool builds from entry (the
// discovered target as sent at rank) and its key, or nil when the pool will
// not scrape it (relabeling fails or drops it).
func (f *Filter) sentTarget(job string, cfg *config.ScrapeConfig, tg *targetgroup.Group, e *preparedEntry, entry model.LabelSet, rank int) (*scrape.Target, uint64) {
	if e.lset.IsEmpty() {
		return nil, 0 // relabeling failed
	}
	if f.opts.ReplicationFactor == 1 {
		rank = 0
	}
	if e.sent == nil {
		e.sent = make([]*scrape.Target, f.opts.ReplicationFactor)
		e.sentKeys = make([]uint64, f.opts.ReplicationFactor)
	}
	if e.sent[rank] != nil {
		return e.sent[rank], e.sentKeys[rank]
	}
	lset := e.lset
	if f.opts.ReplicationFactor > 1 {
		var err error
		lset, err = scrape.PopulateLabels(labels.NewBuilder(labels.EmptyLabels()), cfg, entry, tg.Labels)
		if err != nil || lset.IsEmpty() {
			return nil, 0
		}
	}
	e.sent[rank] = scrape.NewTarget(lset, cfg, entry, tg.Labels)
	e.sentKeys[rank] = TargetKey(job, lset)
	return e.sent[rank], e.sentKeys[rank]
}

// handoff disables end-of-run staleness markers for the targets this member
// sent before and no longer sends although they are still discovered: they
// moved to another member, which keeps their series going.
func (f *Filter) handoff(job string, pj *preparedJob, sent map[uint64]sentTarget) {
	var moved []*scrape.Target
	for key, st := range f.sent[job] {
		if _, still := sent[key]; still {
			continue
		}
		if _, discovered := pj.discovered[st.ownKey]; discovered {
			moved = append(moved, st.target)
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
