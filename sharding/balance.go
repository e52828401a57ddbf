package sharding

import (
	"cmp"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Series balancing (--sharding.balance=series).
//
// Rendezvous hashing balances target counts; a replica is sized by series,
// and targets differ in series by two orders of magnitude. Under
// BalanceSeries every target weighs the series it last delivered (measured
// by its owner's scrape loop, SeriesCounter, quantized to a weight class and
// gossiped, weights.go), and owners are chosen by rendezvous hashing with
// bounded loads:
//
//   - the items (one per distinct ownership key) are taken heaviest first,
//     ties by key;
//   - first pass: an item stays with its incumbent (the participant whose
//     gossiped report says it owns the key) while the incumbent's load
//     stays within the incumbent capacity = (1+BalanceSlack+
//     BalanceStickiness) × r × total / members, r the replication factor;
//     a member over it thus sheds its lightest items;
//   - second pass, for the items not kept: the best-ranked member
//     (rendezvous score of key and member) whose load stays within
//     capacity = (1+BalanceSlack) × r × total / members; none: the least
//     loaded (an incumbent within one item of it, else the best ranked
//     among equals);
//   - the r owners of a replicated item are chosen one after the other.
//
// The result is a pure function of the items, their weights and
// incumbents (all gossiped) and the member names, so every member with the
// same gossiped state computes the same owners, and an assignment is its
// own fixed point: computed again with its owners as incumbents it is
// unchanged, so nothing oscillates. Targets with the same key are one item:
// one writer per series stays. A leave moves only the leaver's items; a
// join moves what the other members hold above the lower capacity (at most
// the ideal share: 1 - (1+BalanceSlack)·N/(N+1) of the load). Weights move
// only when a target's size leaves its class with hysteresis
// (weightClass), so a few percent of drift moves nothing.

// Balance selects what ownership balances.
type Balance string

const (
	// BalanceTargets spreads target counts (plain rendezvous hashing).
	BalanceTargets Balance = "targets"
	// BalanceSeries spreads series: rendezvous hashing with bounded loads
	// over the gossiped series per target.
	BalanceSeries Balance = "series"
)

// BalanceSlack is how far above the mean load a member may be filled before
// items go to their next-ranked member: 0.08 keeps max/mean below 1.08 when
// the lightest items can fill the gaps, leaving room below 1.15 for the
// stickiness and for the weight classes' rounding (±6%). More slack moves less on a join
// and balances worse.
const BalanceSlack = 0.08

// BalanceStickiness is how much further an incumbent may keep its items:
// weights changing by a class near the capacity then move nothing.
// max/mean stays below 1 + BalanceSlack + BalanceStickiness.
const BalanceStickiness = 0.03

// balanceItem is one distinct ownership key to place.
type balanceItem struct {
	key    uint64
	weight uint64 // series, > 0
	// group indexes balancer.groups: the members it may go to.
	group int32
	// inc are the indices (into balancer.names) of its incumbents.
	inc []int32
}

// balancer computes bounded-load rendezvous assignments. It keeps scratch
// space between calls and is not safe for concurrent use.
type balancer struct {
	names  []string // every participant, sorted
	hashes []uint64
	// groups lists member indices (into names) per group; group 0 is all.
	groups [][]int32
	load   []uint64
	scores []scored
}

// setMembers sets the participants (sorted) and the groups (each a list of
// names of the participants; group 0 must be all of them).
func (b *balancer) setMembers(names []string, groups [][]string) {
	b.names = names
	b.hashes = make([]uint64, len(names))
	for i, n := range names {
		b.hashes[i] = xxhash.Sum64String(n)
	}
	b.groups = b.groups[:0]
	for _, g := range groups {
		idx := make([]int32, 0, len(g))
		for _, n := range g {
			if i, ok := slices.BinarySearch(names, n); ok {
				idx = append(idx, int32(i))
			}
		}
		b.groups = append(b.groups, idx)
	}
	b.load = make([]uint64, len(names))
}

// assign sorts items heaviest first and returns, for item i of the sorted
// slice, its owners as indices into names at out[i*r:(i+1)*r] (fewer than r
// members: the rest is -1). It reports per member load in b.load.
func (b *balancer) assign(items []balanceItem, r int, out []int32) []int32 {
	slices.SortFunc(items, func(x, y balanceItem) int {
		if c := cmp.Compare(y.weight, x.weight); c != 0 {
			return c
		}
		return cmp.Compare(x.key, y.key)
	})
	clear(b.load)
	// Capacity per group: its share of the total over its members.
	totals := make([]uint64, len(b.groups))
	for _, it := range items {
		totals[it.group] += it.weight
	}
	caps := make([][2]uint64, len(b.groups)) // new owners, incumbents
	for g, t := range totals {
		if n := len(b.groups[g]); n > 0 {
			share := float64(t) * float64(min(r, n)) / float64(n)
			caps[g] = [2]uint64{uint64(math.Ceil((1 + BalanceSlack) * share)), uint64(math.Ceil((1 + BalanceSlack + BalanceStickiness) * share))}
		}
	}
	out = slices.Grow(out[:0], len(items)*r)[:len(items)*r]
	for i := range out {
		out[i] = -1
	}
	// First the incumbents keep what fits, heaviest first, so that the
	// items a member sheds are its lightest; then the rest is placed.
	for i, it := range items {
		b.keep(it, caps[it.group][1], r, out[i*r:(i+1)*r])
	}
	for i, it := range items {
		b.place(it, caps[it.group][0], r, out[i*r:(i+1)*r])
		if r > 1 {
			b.byRank(it.key, out[i*r:(i+1)*r])
		}
	}
	return out
}

// byRank orders owners (-1 last) by rank for key, so that the order does
// not depend on which pass chose them.
func (b *balancer) byRank(key uint64, owners []int32) {
	slices.SortFunc(owners, func(x, y int32) int {
		switch {
		case x < 0 || y < 0:
			return cmp.Compare(y, x)
		}
		if c := cmp.Compare(score(key, b.hashes[y]), score(key, b.hashes[x])); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
}

// keep makes it's incumbents (those of its group, at most r) owners while
// their load stays within capacity, the best ranked first.
func (b *balancer) keep(it balanceItem, capacity uint64, r int, dst []int32) {
	if len(it.inc) == 0 {
		return
	}
	sc := b.scores[:0]
	for _, m := range it.inc {
		if slices.Contains(b.groups[it.group], m) {
			sc = append(sc, scored{score: score(it.key, b.hashes[m]), idx: int(m)})
		}
	}
	sortScores(sc)
	b.scores = sc
	k := 0
	for _, s := range sc {
		if k < r && b.load[s.idx]+it.weight <= capacity {
			b.load[s.idx] += it.weight
			dst[k] = int32(s.idx)
			k++
		}
	}
}

// sortScores orders by descending score; ties (a 64-bit collision) by
// index.
func sortScores(sc []scored) {
	slices.SortFunc(sc, func(x, y scored) int {
		if c := cmp.Compare(y.score, x.score); c != 0 {
			return c
		}
		return cmp.Compare(x.idx, y.idx)
	})
}

// place completes it's owners dst (those kept come first, -1 after them)
// among its group: the best ranked member with room within capacity, else
// the least loaded.
func (b *balancer) place(it balanceItem, capacity uint64, r int, dst []int32) {
	k := 0
	for k < len(dst) && dst[k] >= 0 {
		k++
	}
	members := b.groups[it.group]
	if k == len(dst) || k == len(members) {
		return
	}
	sc := b.scores[:0]
	for _, m := range members {
		if !slices.Contains(dst[:k], m) {
			sc = append(sc, scored{score: score(it.key, b.hashes[m]), idx: int(m)})
		}
	}
	b.scores = sc
	for ; k < r && k < len(members); k++ {
		// The best ranked with room: the highest score (ties: the lower
		// index) among those whose load stays within capacity.
		pick := -1
		for j, s := range sc {
			if s.idx < 0 || b.load[s.idx]+it.weight > capacity {
				continue
			}
			if pick < 0 || s.score > sc[pick].score || (s.score == sc[pick].score && s.idx < sc[pick].idx) {
				pick = j
			}
		}
		if pick < 0 {
			pick = b.leastLoaded(sc, it) // nobody has room
		}
		m := sc[pick].idx
		b.load[m] += it.weight
		dst[k] = int32(m)
		sc[pick].idx = -1 // an owner already
	}
}

// leastLoaded returns the position in sc of the least loaded member not
// yet chosen, the best ranked among equals; an incumbent of it loaded at
// most it.weight more than that is preferred (so that an assignment that
// needed this fallback is its own fixed point too).
func (b *balancer) leastLoaded(sc []scored, it balanceItem) int {
	sortScores(sc) // by rank: ties go to the best ranked
	pick := -1
	for j, s := range sc {
		if s.idx >= 0 && (pick < 0 || b.load[s.idx] < b.load[sc[pick].idx]) {
			pick = j
		}
	}
	for j, s := range sc {
		if s.idx >= 0 && slices.Contains(it.inc, int32(s.idx)) && b.load[s.idx] <= b.load[sc[pick].idx]+it.weight {
			return j
		}
	}
	return pick
}

// Weight classes quantize series counts on a logarithmic scale, four
// six classes per doubling (a class is ~12% wide, up to 2^(127/6), about
// two million series), so that a weight and the owned flag fit a byte
// and small drift does not change what is gossiped.
const classesPerDoubling = 6

// weightOfClass is the series count a class stands for.
var weightOfClass = func() (w [256]uint64) {
	for q := range w {
		w[q] = uint64(math.Round(math.Exp2(float64(q) / classesPerDoubling)))
	}
	return w
}()

// weightClass returns the class of a target that delivered series series,
// given the class prev it has now (0: none). Hysteresis: the class changes
// only once the size is more than one class (~12%) away from prev's
// center, so a size drifting a few percent, or sitting on a class boundary,
// changes nothing.
func weightClass(series int, prev uint8) uint8 {
	if series < 1 {
		series = 1
	}
	exact := classesPerDoubling * math.Log2(float64(series))
	if prev != 0 && math.Abs(exact-float64(prev)) <= 1 {
		return prev
	}
	q := math.Round(exact)
	return uint8(min(max(q, 1), 127)) // class 0 means "none"
}
