package sharding

import (
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
)

// preparedJob is one job's last discovery result, relabeled once and reused
// across membership changes and across inputs in which the job is unchanged.
//
// Most targets of a job are dropped by its relabeling (prometheus-operator's
// jobs of a namespace each discover every endpoint there and keep their own
// Service's), so the job holds nothing per such target: its groups list
// only the targets relabeling keeps (or fails), and every other target of
// src is relabel-dropped. The key that picks the one member reporting a
// relabel-dropped target (Filter.DroppedTargets) is derived when the job is
// assigned, from the job name's hash and the fingerprint of the target's
// discovered labels, which the filter computes once per discovered group
// for every job reading it (groupShare).
type preparedJob struct {
	cfg *config.ScrapeConfig // nil: no scrape config known, nothing owned
	// in is the job's last input slice (discovery never modifies it); src
	// is the input it was prepared from (often the very slice in), which
	// holds the same groups, possibly in another order.
	in, src []*targetgroup.Group
	// groups are the groups of src with a target relabeling keeps or
	// fails, in the order of src; none without cfg.
	groups []preparedGroup
	// discovered holds the ownership keys of the job's targets that survive
	// relabeling (or fail it), sorted and distinct: a target still in it
	// did not vanish.
	discovered []uint64
	// assigned is the job's last assignment (see Filter.assign).
	assigned assignment
}

// preparedGroup is a group of preparedJob.src with at least one target its
// job's relabeling keeps (or fails).
type preparedGroup struct {
	gi int32 // index in src
	// n is len(Targets) of the group when it was relabeled: a group
	// whose length changed since (a provider must not modify a group it
	// sent) is relabeled rather than reused. Groups without an entry are
	// reused unchecked.
	n int32
	// entries are the group's targets relabeling keeps or fails, in the
	// order of its Targets; the group's other targets are relabel-dropped.
	entries []preparedEntry
}

// preparedEntry is one discovered target that relabeling keeps, or fails
// on (the scrape pool will reject it and log why: one member owns it).
//
// Ownership needs only its key, node, zone and flags. Its final labels are
// needed to send it and to re-key it; an entry that this member did not own
// when it was last assigned and never sent (most entries, on a cluster of
// several members) forgets them, and they are computed again from its
// group (labels) when it is sent or re-keyed. Once sent, it keeps them (its
// sentCache's target shares them).
type preparedEntry struct {
	key  uint64        // ownership key
	lset labels.Labels // final labels, see failed
	node string        // Kubernetes node from the discovered labels
	zone string        // zone from the discovered labels
	sent *sentCache    // nil until the entry is first sent
	i    int32         // index in the group's Targets
	dup  bool          // an earlier entry of the job has the same key
	all  bool          // __tmp_disable_sharding: every participant owns it
	// failed: relabeling failed, and lset is empty; otherwise lset is
	// the final labels, or empty when they were forgotten.
	failed bool
}

// labels returns e's final labels (empty: relabeling failed), relabeling
// its target, target e.i of tg, under cfg again if they were forgotten.
// Relabeling is deterministic: tg and cfg are what e was prepared from.
func (e *preparedEntry) labels(lb *labels.Builder, cfg *config.ScrapeConfig, tg *targetgroup.Group) labels.Labels {
	if e.failed || !e.lset.IsEmpty() {
		return e.lset
	}
	lset, _ := scrape.PopulateLabels(lb, cfg, tg.Targets[e.i], tg.Labels)
	return lset
}

// forgetLabels makes e forget its final labels unless it was sent.
func (e *preparedEntry) forgetLabels() {
	if e.sent == nil {
		e.lset = labels.EmptyLabels()
	}
}

// sentCache caches the target as the scrape pool builds it from an entry,
// and key the hash of its labels (its identity in the pool); in rank mode
// entry is the discovered labels sent with the replica label value value
// (see Filter.valuedTarget).
type sentCache struct {
	target *scrape.Target
	key    uint64
	entry  model.LabelSet
	value  string
}

// unchanged reports whether groups under cfg are what pj was prepared from:
// the same scrape config and the same group pointers, as a multiset. The
// order does not matter: Prometheus' discovery manager lists a provider's
// groups in map order, which changes from one update to the next. seen is
// scratch space.
func (pj *preparedJob) unchanged(groups []*targetgroup.Group, cfg *config.ScrapeConfig, seen map[*targetgroup.Group]int) bool {
	if pj.cfg != cfg || len(pj.in) != len(groups) {
		return false
	}
	i := 0
	for i < len(groups) && pj.in[i] == groups[i] {
		i++
	}
	prev, groups := pj.in[i:], groups[i:]
	if len(groups) == 0 {
		return true
	}
	if n := len(prev); n <= 64 {
		// Look for each group after the previous match first: a rotated
		// order costs O(n).
		var used uint64 // bit j: prev[j] matched
		j := 0
	next:
		for _, tg := range groups {
			for range n {
				if j == n {
					j = 0
				}
				if used&(1<<j) == 0 && prev[j] == tg {
					used |= 1 << j
					j++
					continue next
				}
				j++
			}
			return false
		}
		return true
	}
	clear(seen)
	for _, tg := range prev {
		seen[tg]++
	}
	for _, tg := range groups {
		if seen[tg] == 0 {
			return false
		}
		seen[tg]--
	}
	return true
}

// prepare brings f.prepared up to date with f.last under runCfgs and calls
// visit with every job of the input. A job whose input groups are the same
// pointers as last time (in any order), under the same
// *config.ScrapeConfig, keeps its preparedJob, and with it its cached
// assignment. Otherwise the job is prepared anew, reusing without
// relabeling the groups that are the same *targetgroup.Group as before
// under the same scrape config: Prometheus' discovery manager passes on the
// group it got from a provider until the provider sends a new one, and
// providers never modify a group once sent. Jobs gone from the input are
// forgotten, their sent targets with them (they get normal staleness).
func (f *Filter) prepare(visit func(job string, pj *preparedJob)) {
	if f.prepared == nil {
		f.prepared = make(map[string]*preparedJob, len(f.last))
	}
	var pc prepareCtx
	for job, groups := range f.last {
		visit(job, f.prepareOne(&pc, job, groups, f.runCfgs[job], f.prepared[job]))
	}
	if len(f.prepared) == len(f.last) {
		return // every prepared job is in the input
	}
	for job, pj := range f.prepared {
		if _, ok := f.last[job]; !ok {
			f.forget(job, pj)
		}
	}
}

// prepareJobs is prepare for the given jobs only: those whose input or
// configuration changed since the last prepare. It visits the jobs in the
// input.
func (f *Filter) prepareJobs(jobs map[string]struct{}, visit func(job string, pj *preparedJob)) {
	var pc prepareCtx
	for job := range jobs {
		pj := f.prepared[job]
		groups, ok := f.last[job]
		switch {
		case !ok && pj != nil:
			f.forget(job, pj)
		case ok:
			visit(job, f.prepareOne(&pc, job, groups, f.runCfgs[job], pj))
		}
	}
}

// prepareCtx is scratch space for prepareOne, shared within one prepare.
type prepareCtx struct {
	lb      *labels.Builder
	seen    map[*targetgroup.Group]int
	groups  []preparedGroup
	entries []preparedEntry
}

// prepareOne returns job's preparedJob for its input groups under cfg: pj
// (its previous one) when the groups and cfg are unchanged, else a new one,
// which replaces pj in f.prepared and in the running totals.
func (f *Filter) prepareOne(pc *prepareCtx, job string, groups []*targetgroup.Group, cfg *config.ScrapeConfig, pj *preparedJob) *preparedJob {
	if pc.seen == nil {
		pc.seen = map[*targetgroup.Group]int{}
	}
	if pj != nil && pj.unchanged(groups, cfg, pc.seen) {
		pj.in = groups // the next input likely lists them in this order
		return pj
	}
	if pc.lb == nil {
		pc.lb = labels.NewBuilder(labels.EmptyLabels())
	}
	if cfg == nil && len(groups) > 0 {
		f.logger.Debug("No scrape config for discovered job yet, owning none of its targets", "job", job)
	}
	if pj != nil {
		f.uncount(pj)
	}
	pj = prepareJob(pc, f.keyer, job, groups, cfg, pj)
	f.prepared[job] = pj
	return pj
}

// forget drops a job gone from the input, its sent targets with it (they
// get normal staleness).
func (f *Filter) forget(job string, pj *preparedJob) {
	f.uncount(pj)
	f.setDropped(job, nil, nil)
	delete(f.prepared, job)
	delete(f.sent, job)
	delete(f.flagged, job)
}

// prepareJob relabels a job's groups with cfg, reusing prev's groups that
// were relabeled with the same cfg. pc.lb is set.
func prepareJob(pc *prepareCtx, keyer *Keyer, job string, groups []*targetgroup.Group, cfg *config.ScrapeConfig, prev *preparedJob) *preparedJob {
	pj := &preparedJob{cfg: cfg, in: groups, src: groups}
	if cfg == nil {
		return pj // nothing is owned
	}
	reusable := reusableGroups(prev, cfg)
	jobHash := xxhash.Sum64String(job)
	kept := pc.groups[:0]
	for gi, tg := range groups {
		if tg == nil {
			continue
		}
		pg, ok := reusable[tg]
		delete(reusable, tg) // a group listed twice needs its own entries
		if !ok || (pg.entries != nil && int(pg.n) != len(tg.Targets)) {
			pg = preparedGroup{n: int32(len(tg.Targets)), entries: prepareEntries(pc, keyer, job, jobHash, cfg, tg)}
		}
		if len(pg.entries) == 0 {
			continue // every target is relabel-dropped
		}
		pg.gi = int32(gi)
		kept = append(kept, pg)
	}
	pj.groups = slices.Clone(kept)
	clear(kept)
	pc.groups = kept
	pj.discovered = markDuplicates(pj.groups)
	return pj
}

// markDuplicates sets the dup flags of groups' entries and returns their
// keys, sorted and distinct.
func markDuplicates(groups []preparedGroup) []uint64 {
	n := 0
	for _, pg := range groups {
		n += len(pg.entries)
	}
	if n == 0 {
		return nil
	}
	keys := make([]uint64, 0, n)
	for _, pg := range groups {
		for _, e := range pg.entries {
			keys = append(keys, e.key)
		}
	}
	slices.Sort(keys)
	distinct := slices.Compact(keys)
	if len(distinct) == n {
		for _, pg := range groups {
			for i := range pg.entries {
				pg.entries[i].dup = false
			}
		}
		return keys
	}
	// Some keys repeat (rare): mark all but each one's first entry.
	seen := make(map[uint64]struct{}, len(distinct))
	for _, pg := range groups {
		for i := range pg.entries {
			e := &pg.entries[i]
			_, e.dup = seen[e.key]
			seen[e.key] = struct{}{}
		}
	}
	return slices.Clip(distinct)
}

// reusableGroups indexes a job's groups by group pointer, if they were
// relabeled with cfg: those without an entry map to a preparedGroup
// without entries.
func reusableGroups(prev *preparedJob, cfg *config.ScrapeConfig) map[*targetgroup.Group]preparedGroup {
	if prev == nil || prev.cfg != cfg || cfg == nil {
		return nil
	}
	m := make(map[*targetgroup.Group]preparedGroup, len(prev.src))
	for _, tg := range prev.src {
		if tg != nil {
			m[tg] = preparedGroup{}
		}
	}
	for _, pg := range prev.groups {
		m[prev.src[pg.gi]] = pg
	}
	return m
}

// prepareEntries relabels tg's targets and returns the entries of those
// relabeling keeps or fails on; nil if it drops them all.
func prepareEntries(pc *prepareCtx, keyer *Keyer, job string, jobHash uint64, cfg *config.ScrapeConfig, tg *targetgroup.Group) []preparedEntry {
	entries := pc.entries[:0]
	for i, tl := range tg.Targets {
		if e, ok := prepareEntry(pc.lb, keyer, job, jobHash, cfg, tl, tg.Labels); ok {
			e.i = int32(i)
			entries = append(entries, e)
		}
	}
	out := slices.Clone(entries)
	clear(entries)
	pc.entries = entries
	return out
}

// prepareEntry relabels one target; false: relabeling drops it.
func prepareEntry(lb *labels.Builder, keyer *Keyer, job string, jobHash uint64, cfg *config.ScrapeConfig, tl, gl model.LabelSet) (preparedEntry, bool) {
	node, zone := firstLabel(nodeLabels, tl, gl), firstLabel(zoneLabels, tl, gl)
	lset, err := scrape.PopulateLabels(lb, cfg, tl, gl)
	switch {
	case err != nil:
		// The scrape pool will reject it and log why: let exactly one
		// member do so, keyed on the discovered labels.
		return preparedEntry{key: droppedKey(jobHash, tl, gl), node: node, zone: zone, failed: true}, true
	case lset.IsEmpty():
		return preparedEntry{}, false
	default:
		return preparedEntry{key: keyer.Key(job, lset), all: lset.Get(DisableShardingLabel) != "", lset: lset, node: node, zone: zone}, true
	}
}

// droppedKey is the key of a target keyed on its discovered labels (one
// relabeling drops or fails on) in the job with the given hash.
func droppedKey(jobHash uint64, tl, gl model.LabelSet) uint64 {
	return combine(jobHash, discoveredFingerprint(tl, gl))
}

// discoveredFingerprint is the fingerprint of a target's discovered labels:
// its group's labels merged with its own.
func discoveredFingerprint(tl, gl model.LabelSet) uint64 {
	return uint64(gl.Merge(tl).Fingerprint())
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

// rekey makes the filter compute ownership keys of version v, and re-keys
// every prepared target and every sent target's record, relabeling only
// the targets whose entries forgot their final labels. The caller's member view has a new version (the key version is
// part of it), so every job is assigned again.
func (f *Filter) rekey(v KeyVersion) {
	f.logger.Info("Switching ownership-key version", "from", f.keyer.Version(), "to", v)
	f.keyer.SetVersion(v)
	// remap maps, per job, each entry's key under the old version to its
	// key under v: a sent target's record is re-keyed from its entry, whose
	// labels include those a key may read (__tmp_hash), which the target's
	// public labels lack. An entry that forgot its final labels is
	// relabeled again, from the group and configuration it was prepared
	// from.
	remap := make(map[string]map[uint64]uint64, len(f.prepared))
	lb := labels.NewBuilder(labels.EmptyLabels())
	for job, pj := range f.prepared {
		m := map[uint64]uint64{}
		remap[job] = m
		for gi := range pj.groups {
			pg := &pj.groups[gi]
			for i := range pg.entries {
				e := &pg.entries[i]
				old := e.key
				if !e.failed {
					e.key = f.keyer.Key(job, e.labels(lb, pj.cfg, pj.src[pg.gi]))
				}
				m[old] = e.key
			}
		}
		pj.discovered = markDuplicates(pj.groups)
	}
	for job, sent := range f.sent {
		for k, st := range sent {
			if nk, ok := remap[job][st.ownKey]; ok {
				st.ownKey = nk
			} else {
				// Its entry is gone: the best the public labels tell.
				lb.Reset(labels.EmptyLabels())
				st.target.LabelsRange(func(l labels.Label) { lb.Set(l.Name, l.Value) })
				st.ownKey = f.keyer.Key(job, lb.Labels())
			}
			sent[k] = st
		}
	}
}
