package sharding

import (
	"slices"
	"sort"
	"time"
)

// The filter's side of BalanceSeries (balance.go, weights.go): every
// recompute collects the distinct keys of every prepared job, weighs them
// from the gossiped weight table (a key nobody reported weighs its job's
// mean, or 1), assigns them with the balancer and, when the assignment
// changed, starts a new member view so that every job is assigned again.
// After the pass it publishes its own report.

// weightReportInterval is how often a balancing member recomputes without
// any other trigger, to publish what its scrapes measured since. A
// publication changes the handoff view, but classes change only beyond
// their hysteresis (weightClass), so a steady cluster publishes nothing.
const weightReportInterval = 5 * time.Second

// balanceState is the last balanced assignment, owned by Run.
type balanceState struct {
	b     balancer
	items []balanceItem // sorted by the balancer
	out   []int32       // owners of items[i] at out[i*r:(i+1)*r]
	pos   map[uint64]int32
	names []string
	// seen and known are scratch space.
	seen  map[uint64]int
	known []uint64
	// load is the series per participant; total their sum (counted once
	// per target, not per replica).
	load   map[string]int
	total  int
	digest uint64
	// published is this member's last report, publishedAt when it last
	// changed.
	published   map[uint32]weightEntry
	publishedAt time.Time
}

// balancing reports whether ownership balances series.
func (f *Filter) balancing() bool { return f.opts.Balance == BalanceSeries }

// balancedEntry reports whether e is placed by the balancer: sharded by
// hashing (not every participant's, not node-local).
func (f *Filter) balancedEntry(e *preparedEntry) bool {
	return !e.all && (f.opts.Strategy != StrategyNode || e.node == "")
}

// balance computes the balanced assignment under v and sets v.bal. It
// reports whether the assignment differs from the previous one.
func (f *Filter) balance(v *memberView) bool {
	bs := &f.bal
	v.bal = bs
	groups := [][]string{v.names}
	zoneIdx := map[string]int32{}
	if f.opts.Strategy == StrategyZone {
		zs := make([]string, 0, len(v.byZone))
		for z := range v.byZone {
			zs = append(zs, z)
		}
		sort.Strings(zs)
		for _, z := range zs {
			zoneIdx[z] = int32(len(groups))
			groups = append(groups, v.byZone[z].Members())
		}
	}
	bs.names = v.names
	bs.b.setMembers(v.names, groups)
	if bs.seen == nil {
		bs.seen, bs.pos = map[uint64]int{}, map[uint64]int32{}
	}
	clear(bs.seen)
	items, seen := bs.items[:0], bs.seen
	var pool []int32
	for _, pj := range f.prepared {
		// First the job's known weights (0: unknown) and their mean.
		known := bs.known[:0]
		var sum, n uint64
		for gi := range pj.groups {
			for i := range pj.groups[gi].entries {
				e := &pj.groups[gi].entries[i]
				if !f.balancedEntry(e) {
					continue
				}
				var w uint64
				if c, ok := v.weights.classes[weightKey(e.key)]; ok {
					w = weightOfClass[c]
					sum += w
					n++
				}
				known = append(known, w)
			}
		}
		bs.known = known
		mean := uint64(1)
		if n > 0 {
			mean = max(1, (sum+n/2)/n)
		}
		k := 0
		for gi := range pj.groups {
			for i := range pj.groups[gi].entries {
				e := &pj.groups[gi].entries[i]
				if !f.balancedEntry(e) {
					continue
				}
				w := known[k]
				k++
				if w == 0 {
					w = mean
				}
				var group int32
				if gi, ok := zoneIdx[e.zone]; ok && e.zone != "" {
					group = gi
				}
				if j, ok := seen[e.key]; ok {
					// The same series from two jobs: one item, weighed
					// and grouped alike whichever job comes first.
					items[j].weight, items[j].group = max(items[j].weight, w), max(items[j].group, group)
					continue
				}
				start := len(pool)
				for _, o := range v.weights.owners[weightKey(e.key)] {
					if m, ok := slices.BinarySearch(v.names, o); ok {
						pool = append(pool, int32(m))
					}
				}
				seen[e.key] = len(items)
				items = append(items, balanceItem{key: e.key, weight: w, group: group, inc: pool[start:len(pool):len(pool)]})
			}
		}
	}
	r := f.opts.ReplicationFactor
	bs.out = bs.b.assign(items, r, bs.out)
	bs.items = items
	clear(bs.pos)
	var digest uint64
	bs.total = 0
	for i, it := range items {
		bs.pos[it.key] = int32(i)
		bs.total += int(it.weight)
		for k, m := range bs.out[i*r : (i+1)*r] {
			digest += combine(it.key, uint64(m)<<8|uint64(k))
		}
	}
	bs.load = make(map[string]int, len(v.names))
	for i, n := range v.names {
		bs.load[n] = int(bs.b.load[i])
	}
	changed := digest != bs.digest
	bs.digest = digest
	return changed
}

// balancedOwners appends the balanced owners of key, best rank first, and
// reports whether the balancer placed it.
func (f *Filter) balancedOwners(v *memberView, key uint64, dst []string) ([]string, bool) {
	bs := v.bal
	i, ok := bs.pos[key]
	if !ok {
		return dst, false
	}
	r := f.opts.ReplicationFactor
	start := len(dst)
	for _, m := range bs.out[int(i)*r : (int(i)+1)*r] {
		if m >= 0 {
			dst = append(dst, bs.names[m])
		}
	}
	return f.fillUp(dst, start, key), true
}

// publishWeights publishes this member's report after a pass under v:
// every key it owns, with the class its scrape measured (or the class the
// table gives, or its current weight's), and the keys it reported before
// that are still placed and that no participant owns in the table yet.
func (f *Filter) publishWeights(v *memberView, now time.Time) {
	bs := &f.bal
	if f.opts.Weights == nil || v.bal == nil {
		return
	}
	self, isParticipant := slices.BinarySearch(bs.names, f.opts.Self)
	loops := map[uint64]uint64{} // ownership key → loop key of a sent target
	for _, sent := range f.sent {
		for lk, st := range sent {
			loops[st.ownKey] = lk
		}
	}
	r := f.opts.ReplicationFactor
	entries := make(map[uint32]weightEntry, len(bs.published))
	for i, it := range bs.items {
		wk := weightKey(it.key)
		prev, known := v.weights.classes[wk]
		if isParticipant && slices.Contains(bs.out[i*r:(i+1)*r], int32(self)) {
			c := prev
			if !known {
				c = weightClass(int(it.weight), 0)
			}
			if lk, ok := loops[it.key]; ok && f.opts.Series != nil {
				if n, ok := f.opts.Series(lk); ok {
					c = weightClass(n, c)
				}
			}
			entries[wk] = weightEntry{class: min(c, 127), owned: true}
		} else if old, had := bs.published[wk]; had && !ownedByOther(v.weights.owners[wk], f.opts.Self) {
			entries[wk] = weightEntry{class: old.class} // until its new owner reports it
		}
	}
	if f.opts.Weights.Publish(entries) {
		bs.publishedAt = now
		f.logger.Debug("Published series weights", "targets", len(entries))
	}
	bs.published = entries
}

// seriesStats fills the series figures of st from the last balance.
func (f *Filter) seriesStats(st *Stats) {
	bs := &f.bal
	st.Series = make(map[string]int, len(bs.load))
	for n, l := range bs.load {
		st.Series[n] = l
	}
	st.TotalSeries = bs.total
	if max := f.opts.MaxSeriesPerMember; max > 0 {
		st.MaxSeriesPerMember = max
		st.MembersNeeded = (bs.total*f.opts.ReplicationFactor + max - 1) / max
		for _, l := range bs.load {
			st.OverLimit = st.OverLimit || l > max
		}
	}
}

// ownedByOther reports whether owners names a member other than self.
func ownedByOther(owners []string, self string) bool {
	for _, o := range owners {
		if o != self {
			return true
		}
	}
	return false
}
