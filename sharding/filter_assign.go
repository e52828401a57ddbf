package sharding

import (
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
)

// sentTarget is a target this member sent to the scrape manager.
type sentTarget struct {
	ownKey uint64
	target *scrape.Target
	// handoff: another owner continues the very same series (no replica
	// label, or the same rank), so stopping it here must not write
	// staleness markers.
	handoff bool
	// value is the replica label value it was sent with (rank mode).
	value string
}

// noGroups is the output of a job that owns none of its targets: empty,
// not nil, and shared (appending to it allocates).
var noGroups = []*targetgroup.Group{}

// assignment is a job's owned groups and its share of Stats, computed under
// one member view.
type assignment struct {
	// view is the memberView.version it was computed under; 0: none. Its
	// stats are part of Filter.totals exactly when view is
	// Filter.totalsView.
	view uint64
	// withheld: a target of out was held back because its old loop still
	// ran (see StalenessDisabler); the job is assigned again until none is.
	withheld bool
	// out are the groups with a target this member scrapes, in the order
	// of the job's input; noGroups when there is none. A group none of
	// whose targets are owned is left out: the scrape pool syncs to the
	// targets of the groups it is given, so it is the same as the group
	// without targets, without a slice slot and group per job.
	out   []*targetgroup.Group
	stats jobCounts
	// dropped are the targets relabeling drops that this member reports.
	dropped []droppedRef
}

// jobStats is the part of Stats jobs contribute: the sum of every job's
// (Filter.totals), or one job's while it is assigned.
type jobStats struct {
	total, crossZone int
	// held counts the owned targets held until their previous owners
	// released them (handoff.go).
	held           int
	owned, unowned map[string]int
}

// jobCounts is one job's jobStats as its assignment keeps it: the counts
// by name in one list, a fraction of two maps' size for the few names a
// job has.
type jobCounts struct {
	// counts are the owned counts by member, then, from index unowned
	// on, the unowned counts by node.
	counts                          []nameCount
	unowned, total, crossZone, held int32
}

// nameCount is the count of one name (member or node).
type nameCount struct {
	name string
	n    int
}

// add adds sign times o to s.
func (s *jobStats) add(o *jobCounts, sign int) {
	s.total += sign * int(o.total)
	s.crossZone += sign * int(o.crossZone)
	s.held += sign * int(o.held)
	s.owned = addCounts(s.owned, o.counts[:o.unowned], sign)
	s.unowned = addCounts(s.unowned, o.counts[o.unowned:], sign)
}

func addCounts(dst map[string]int, src []nameCount, sign int) map[string]int {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[string]int, len(src))
	}
	for _, c := range src {
		dst[c.name] += sign * c.n
	}
	return dst
}

// reset empties s, keeping its maps for reuse.
func (s *jobStats) reset() {
	s.total, s.crossZone, s.held = 0, 0, 0
	clear(s.owned)
	clear(s.unowned)
}

// compact returns s as jobCounts.
func (s *jobStats) compact() jobCounts {
	c := jobCounts{total: int32(s.total), crossZone: int32(s.crossZone), held: int32(s.held), unowned: int32(len(s.owned))}
	if n := len(s.owned) + len(s.unowned); n > 0 {
		c.counts = make([]nameCount, 0, n)
		for k, n := range s.owned {
			c.counts = append(c.counts, nameCount{k, n})
		}
		for k, n := range s.unowned {
			c.counts = append(c.counts, nameCount{k, n})
		}
	}
	return c
}

// uncount takes pj's assignment out of the running totals, if it is in
// them, and forgets it.
func (f *Filter) uncount(pj *preparedJob) {
	if pj.assigned.view != 0 && pj.assigned.view == f.totalsView {
		f.totals.add(&pj.assigned.stats, -1)
	}
	pj.assigned = assignment{}
}

// assignPass is one recompute's assignment of every job.
type assignPass struct {
	v   memberView
	res map[string][]*targetgroup.Group
	// stats is scratch space: the statistics of the job being assigned.
	stats jobStats
	// active are the scrape manager's active targets per job, read once
	// per pass when a job with flagged targets is assigned (nil: not read).
	active map[string][]*scrape.Target
}

// startAssign begins assigning the jobs under view v.
func (f *Filter) startAssign(v memberView, jobs int) *assignPass {
	if f.totalsView != v.version {
		// Every owner may have changed: no assignment is counted any more.
		f.totals, f.totalsView = jobStats{}, v.version
	}
	f.withheld.Store(false)
	return &assignPass{v: v, res: make(map[string][]*targetgroup.Group, jobs)}
}

// assign adds a job's owned target groups to p.res and hands its moved
// targets off. A job whose preparedJob was assigned under the same member
// view without holding a target back keeps its previous output slice: it
// owns the same targets, none of which is flagged (a flagged target it
// owned was either held back or unflagged), so assigning it again would
// only unflag targets whose old loop ended, which can wait until the job
// is assigned again. Only the other jobs are computed and their
// contribution to the running totals replaced.
func (f *Filter) assign(p *assignPass, job string, pj *preparedJob) {
	if pj.cfg == nil {
		// No scrape pool exists for a job without configuration (it was
		// just removed, or discovery runs ahead of the apply): sending it
		// would only make the scrape manager log an error.
		f.setDropped(job, nil, nil)
		return
	}
	if pj.assigned.view == p.v.version && !pj.assigned.withheld {
		p.res[job] = pj.assigned.out // nothing it depends on changed
		return
	}
	flagged := f.flagged[job]
	var active map[uint64]bool
	if len(flagged) > 0 {
		active = f.activeLoops(p, job)
	}
	f.uncount(pj)
	pj.assigned = f.assignJob(p, job, pj, flagged, active)
	if prev, ok := f.out[job]; ok && f.outCfg[job] == pj.cfg && sameOwnedGroups(prev, pj.assigned.out) {
		// Pod churn in a namespace changes the input of every job reading
		// it, while most of them keep the same targets: passed on as
		// unchanged, they cost their scrape pools no sync. Under a new
		// configuration the pool must sync (its targets' labels come from
		// the relabeling).
		pj.assigned.out = prev
	}
	f.outCfg[job] = pj.cfg
	f.totals.add(&pj.assigned.stats, 1)
	f.setDropped(job, pj.cfg, pj.assigned.dropped)
	p.res[job] = pj.assigned.out
}

// sameOwnedGroups reports whether the owned groups b hold what a holds, in
// any order: the same sources, group labels and targets (compared by
// content where they are not the very same maps).
func sameOwnedGroups(a, b []*targetgroup.Group) bool {
	if len(a) != len(b) {
		return false
	}
	inOrder := true
	for i := range a {
		if sameGroup(a[i], b[i]) {
			continue
		}
		if source(a[i]) == source(b[i]) {
			// The same group with other targets: changed. (Were a source
			// listed twice, another pairing might match; passing the job
			// on costs one sync.)
			return false
		}
		inOrder = false
		break
	}
	if inOrder {
		return true
	}
	// Discovery lists a set's groups in map order.
	bySource := make(map[string][]*targetgroup.Group, len(a))
	for _, g := range a {
		bySource[source(g)] = append(bySource[source(g)], g)
	}
	for _, g := range b {
		cands := bySource[source(g)]
		i := slices.IndexFunc(cands, func(x *targetgroup.Group) bool { return sameGroup(x, g) })
		if i < 0 {
			return false
		}
		bySource[source(g)] = slices.Delete(cands, i, i+1)
	}
	return true
}

func source(g *targetgroup.Group) string {
	if g == nil {
		return ""
	}
	return g.Source
}

func sameGroup(x, y *targetgroup.Group) bool {
	if x == y {
		return true
	}
	if x == nil || y == nil || x.Source != y.Source || len(x.Targets) != len(y.Targets) || !sameLabelSet(x.Labels, y.Labels) {
		return false
	}
	for j := range x.Targets {
		if !sameLabelSet(x.Targets[j], y.Targets[j]) {
			return false
		}
	}
	return true
}

func sameLabelSet(a, b model.LabelSet) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() || maps.Equal(a, b))
}

// assignJob computes one job's owned groups and statistics, hands its moved
// targets off and records what it sent.
func (f *Filter) assignJob(p *assignPass, job string, pj *preparedJob, flagged map[uint64]*scrape.Target, active map[uint64]bool) assignment {
	v := &p.v
	a := assignment{view: v.version}
	stats := &p.stats
	stats.reset()
	owners := make([]string, 0, f.opts.ReplicationFactor)
	var sent map[uint64]sentTarget  // made at the first target sent
	ownedNow := map[uint64]string{} // ownership key → replica label value
	// before: the ownership keys sent before, with their replica label
	// values (a rank gained is a series gained); only while unconfirmed.
	var before map[uint64]string
	if !v.confirmed {
		before = make(map[uint64]string, len(f.sent[job]))
		for _, st := range f.sent[job] {
			before[st.ownKey] = st.value
		}
	}
	// A relabel-dropped target is reported by the one participant owning
	// its key (see filter_dropped.go).
	reportDropped := v.ready && v.self == StateParticipant
	var jobHash uint64
	if reportDropped {
		jobHash = xxhash.Sum64String(job)
	}
	next := 0              // the next of pj.groups
	var lb *labels.Builder // relabels entries that forgot their labels
	for gi, tg := range pj.src {
		if tg == nil {
			continue
		}
		var entries []preparedEntry
		if next < len(pj.groups) && int(pj.groups[next].gi) == gi {
			entries = pj.groups[next].entries
			next++
		}
		if reportDropped && len(entries) < len(tg.Targets) {
			a.dropped = f.reportedDropped(jobHash, tg, f.share(tg).fingerprints(tg), entries, a.dropped)
		}
		var og *targetgroup.Group // created at the first owned target
		for i := range entries {
			e := &entries[i]
			owners = f.owners(v, e, owners[:0])
			if !e.dup {
				f.count(stats, v.ready, e, owners)
			}
			if !slices.Contains(owners, f.opts.Self) {
				e.forgetLabels()
				continue
			}
			value := f.replicaValue(e, owners)
			ownedNow[e.key] = value
			if prev, had := before[e.key]; before != nil && (!had || prev != value) && f.holds(v, e) {
				stats.held++ // gained: wait for the previous owners (handoff.go)
				continue
			}
			if e.lset.IsEmpty() && !e.failed {
				if lb == nil {
					lb = labels.NewBuilder(labels.EmptyLabels())
				}
				e.lset = e.labels(lb, pj.cfg, tg)
			}
			entry, t, key := f.valuedTarget(pj.cfg, tg, e, tg.Targets[e.i], value)
			if t != nil && flagged[key] != nil {
				if active[key] {
					// Its old loop still runs with markers off.
					a.withheld = true
					f.withheld.Store(true)
					continue
				}
				delete(flagged, key)
			}
			if og == nil {
				og = &targetgroup.Group{Source: tg.Source, Labels: tg.Labels}
			}
			og.Targets = append(og.Targets, entry)
			if t != nil {
				if sent == nil {
					sent = map[uint64]sentTarget{}
				}
				// Only a target every participant scrapes ends its series
				// here: the others' series, identical or of one rank, are
				// continued by their next owner.
				sent[key] = sentTarget{ownKey: e.key, target: t, handoff: !e.all, value: value}
			}
		}
		if og != nil {
			a.out = append(a.out, og)
		}
	}
	if a.out == nil {
		a.out = noGroups
	}
	for key := range flagged {
		if !active[key] {
			delete(flagged, key) // its loop is gone
		}
	}
	f.handoff(v, job, pj, sent, ownedNow)
	if len(f.flagged[job]) == 0 {
		delete(f.flagged, job) // only jobs with flagged targets are in it
	}
	if len(sent) == 0 {
		delete(f.sent, job) // only jobs with sent targets are in it
	} else {
		f.sent[job] = sent
	}
	a.stats = stats.compact()
	return a
}

// publishStats returns the running totals as Stats for view v.
func (f *Filter) publishStats(v *memberView) Stats {
	t := &f.totals
	st := Stats{Ready: v.ready, TotalTargets: t.total, CrossZone: t.crossZone, KeyVersion: v.key,
		HandoffView: v.handoff, Held: t.held, Owned: make(map[string]int, len(v.names))}
	for _, n := range v.names {
		st.Owned[n] = 0
	}
	for k, n := range t.owned {
		if n == 0 {
			delete(t.owned, k)
			continue
		}
		st.Owned[k] = n
	}
	for k, n := range t.unowned {
		if n == 0 {
			delete(t.unowned, k)
			continue
		}
		if st.Unowned == nil {
			st.Unowned = map[string]int{}
		}
		st.Unowned[k] = n
	}
	return st
}

// reportedDropped appends to dst the relabel-dropped targets of tg (those
// without an entry; fps are the fingerprints of its targets' discovered
// labels) that this member, a ready participant, reports: the one
// participant owning a target's key does.
func (f *Filter) reportedDropped(jobHash uint64, tg *targetgroup.Group, fps []uint64, entries []preparedEntry, dst []droppedRef) []droppedRef {
	var one [1]string
	for i, fp := range fps {
		if len(entries) > 0 && int(entries[0].i) == i {
			entries = entries[1:]
			continue
		}
		owners := f.sharder.Owners(combine(jobHash, fp), 1, one[:0])
		if len(owners) == 1 && owners[0] == f.opts.Self {
			dst = append(dst, droppedRef{tg: tg, i: i})
		}
	}
	return dst
}

// count adds a distinct target and its owners to stats.
func (f *Filter) count(stats *jobStats, ready bool, e *preparedEntry, owners []string) {
	stats.total++
	for _, o := range owners {
		if stats.owned == nil {
			stats.owned = map[string]int{}
		}
		stats.owned[o]++
	}
	switch {
	case len(owners) == 0 && e.node != "" && f.opts.Strategy == StrategyNode && ready:
		if stats.unowned == nil {
			stats.unowned = map[string]int{}
		}
		stats.unowned[e.node]++
	case e.zone != "" && e.zone != f.opts.Zone && slices.Contains(owners, f.opts.Self):
		stats.crossZone++
	}
}

// sentTarget returns the target the scrape pool builds from entry and its
// identity in the pool, or nil when the pool will not scrape it (relabeling
// fails).
func (f *Filter) sentTarget(cfg *config.ScrapeConfig, tg *targetgroup.Group, e *preparedEntry, entry model.LabelSet) (*scrape.Target, uint64) {
	if e.failed {
		return nil, 0 // relabeling failed
	}
	if e.sent == nil {
		t := scrape.NewTarget(e.lset, cfg, entry, tg.Labels)
		e.sent = &sentCache{target: t, key: loopKey(t, labels.NewBuilder(labels.EmptyLabels()))}
	}
	return e.sent.target, e.sent.key
}

// loopKey identifies a target's scrape loop: its URL and public labels.
func loopKey(t *scrape.Target, lb *labels.Builder) uint64 {
	return combine(xxhash.Sum64String(t.URL().String()), t.Labels(lb).Hash())
}

// activeLoops returns the loop keys of the scrape manager's active targets
// of job (none without a StalenessDisabler). The active targets are read
// once per pass; only the job's own are hashed, so that a job with flagged
// targets costs its own targets, not every target of the process.
func (f *Filter) activeLoops(p *assignPass, job string) map[uint64]bool {
	if f.opts.Staleness == nil {
		return nil
	}
	if p.active == nil {
		p.active = f.opts.Staleness.TargetsActive()
	}
	return loopKeys(p.active[job], labels.NewBuilder(labels.EmptyLabels()))
}

// loopKeys returns the loop keys of targets.
func loopKeys(ts []*scrape.Target, lb *labels.Builder) map[uint64]bool {
	m := make(map[uint64]bool, len(ts))
	for _, t := range ts {
		m[loopKey(t, lb)] = true
	}
	return m
}

// sweepInterval is how often the filter forgets flagged targets whose old
// loops ended, for all jobs at once.
const sweepInterval = 2 * time.Second

// sweepFlagged forgets the flagged targets whose loops are gone. A job
// assigned again does so for itself, but an unchanged job is not assigned
// again (its output is reused): after a membership change most jobs keep
// flagged targets, and each later change of one of them would read every
// active target of the scrape manager. One read per sweepInterval, while
// any target is flagged, clears them all.
func (f *Filter) sweepFlagged(now time.Time) {
	if len(f.flagged) == 0 || f.opts.Staleness == nil || now.Sub(f.swept) < sweepInterval {
		return
	}
	f.swept = now
	f.sweep()
}

// sweep forgets, for every job, the flagged targets whose loops are gone.
func (f *Filter) sweep() {
	active := f.opts.Staleness.TargetsActive()
	lb := labels.NewBuilder(labels.EmptyLabels())
	for job, flagged := range f.flagged {
		running := loopKeys(active[job], lb)
		for key := range flagged {
			if !running[key] {
				delete(flagged, key)
			}
		}
		if len(flagged) == 0 {
			delete(f.flagged, job)
		}
	}
}

// handoff disables end-of-run staleness markers for the targets this member
// sent before and no longer owns although they are still discovered: they
// moved to another member, which continues their series. A target still
// owned under a new identity (e.g. a changed interval) is no handoff: its
// old loop gets the markers Prometheus writes, which the new loop's samples
// supersede. In rank mode a target owned at another rank than before is
// one: its old rank's series moved to the member now holding that rank,
// unless no member holds that rank any more (fewer participants than
// ranks), and the series ends.
func (f *Filter) handoff(v *memberView, job string, pj *preparedJob, sent map[uint64]sentTarget, ownedNow map[uint64]string) {
	var moved []*scrape.Target
	for key, st := range f.sent[job] {
		if _, still := sent[key]; still || !st.handoff || !f.rankHeld(v, st.value) {
			continue
		}
		if value, owned := ownedNow[st.ownKey]; owned && value == st.value {
			continue // same series under a new identity
		}
		if _, discovered := slices.BinarySearch(pj.discovered, st.ownKey); discovered {
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
	f.passGaveUp = true
	f.metrics.moved.Add(float64(len(moved)))
	f.logger.Debug("Handing targets off to other members", "job", job, "targets", len(moved))
	if f.opts.Staleness != nil {
		f.opts.Staleness.DisableEndOfRunStalenessMarkers(job, moved)
	}
}
