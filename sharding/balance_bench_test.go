package sharding

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// BenchmarkBalance100kTargets20Members is the rebalance compute of a
// membership change: 100,000 targets of mixed sizes (1 to 1,000 series, a
// few heavy ones), every one with its incumbent, assigned over 20 members
// of which one is new.
func BenchmarkBalance100kTargets20Members(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	items := make([]balanceItem, 100_000)
	for i := range items {
		w := uint64(1 + rng.IntN(40))
		if rng.IntN(50) == 0 {
			w = 1000
		}
		items[i] = balanceItem{key: rng.Uint64(), weight: w, inc: []int32{int32(rng.IntN(19))}}
	}
	names := balanceNames(20)
	var bal balancer
	bal.setMembers(names, [][]string{names})
	work := slices.Clone(items)
	var out []int32
	b.ReportAllocs()
	for b.Loop() {
		copy(work, items)
		out = bal.assign(work, 1, out)
	}
}

// BenchmarkFilterBalance100kTargets20Members is the filter's whole
// rebalance of 100,000 discovered targets over 20 members (collecting the
// keys, weighing them from the gossiped table, assigning, indexing), with
// every target weighed and owned in the table.
func BenchmarkFilterBalance100kTargets20Members(b *testing.B) {
	names := balanceNames(20)
	members := newTestMembers(names...)
	board := NewWeightBoard(names[0], nil)
	f := newTestFilter(b, FilterOptions{Self: names[0], Members: members, Balance: BalanceSeries, Weights: board})
	filterOnce(f, podGroups(100_000, noNode))
	rng := rand.New(rand.NewPCG(1, 1))
	entries := map[uint32]weightEntry{}
	for _, pj := range f.prepared {
		for _, pg := range pj.groups {
			for _, e := range pg.entries {
				entries[weightKey(e.key)] = weightEntry{class: uint8(1 + rng.IntN(40)), owned: true}
			}
		}
	}
	board.Publish(entries)
	v := f.memberView(time.Now())
	b.ReportAllocs()
	for b.Loop() {
		f.bal.digest = 0
		f.balance(&v)
	}
	b.ReportMetric(float64(len(f.bal.items)), "targets")
}
