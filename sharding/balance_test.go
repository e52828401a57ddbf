package sharding

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// mixedSizes is the workload: 6 × 1,000, 12 × 200 and 42 × 20
// series, with keys drawn from rng.
func mixedSizes(rng *rand.Rand) []balanceItem {
	var items []balanceItem
	for _, c := range []struct{ n, w int }{{6, 1000}, {12, 200}, {42, 20}} {
		for range c.n {
			items = append(items, balanceItem{key: rng.Uint64(), weight: uint64(c.w)})
		}
	}
	return items
}

func balanceNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("promshard-%d", i)
	}
	return names
}

// balanceOwners assigns items over names with the incumbents inc (nil:
// none) and returns owner names by key and the load per member.
func balanceOwners(items []balanceItem, names []string, r int, inc map[uint64][]string) (map[uint64][]string, map[string]uint64) {
	var b balancer
	b.setMembers(names, [][]string{names})
	items = slices.Clone(items)
	for i := range items {
		items[i].inc = nil
		for _, n := range inc[items[i].key] {
			if j, ok := slices.BinarySearch(names, n); ok {
				items[i].inc = append(items[i].inc, int32(j))
			}
		}
	}
	out := b.assign(items, r, nil)
	owners := make(map[uint64][]string, len(items))
	load := map[string]uint64{}
	for i, it := range items {
		for _, m := range out[i*r : (i+1)*r] {
			if m >= 0 {
				owners[it.key] = append(owners[it.key], names[m])
				load[names[m]] += it.weight
			}
		}
	}
	return owners, load
}

func maxOverMean(load map[string]uint64, members int) float64 {
	var total, most uint64
	for _, l := range load {
		total += l
		most = max(most, l)
	}
	return float64(most) / (float64(total) / float64(members))
}

// movedShare is the share of the total weight whose owners changed.
func movedShare(items []balanceItem, before, after map[uint64][]string) float64 {
	var moved, total uint64
	for _, it := range items {
		total += it.weight
		if !slices.Equal(before[it.key], after[it.key]) {
			moved += it.weight
		}
	}
	return float64(moved) / float64(total)
}

func TestBalanceMixedSizes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		members  int
		maxRatio float64
	}{
		{"3 members", 3, 1.15},
		{"4 members", 4, 1.15},
		{"5 members", 5, 1.15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(200) {
				items := mixedSizes(rand.New(rand.NewPCG(seed, 1)))
				_, load := balanceOwners(items, balanceNames(tc.members), 1, nil)
				require.LessOrEqual(t, maxOverMean(load, tc.members), tc.maxRatio, "seed %d: loads %v", seed, load)
			}
		})
	}
}

// TestBalanceMovement checks that joins and leaves move at most 1.4 times
// the ideal share (the newcomer's or the leaver's share of the load), over
// many fixed seeds.
func TestBalanceMovement(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to int
	}{
		{"join 3 to 4", 3, 4},
		{"leave 4 to 3", 4, 3},
		{"join 4 to 5", 4, 5},
		{"join 9 to 10", 9, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ideal := 1 / float64(max(tc.from, tc.to))
			var worst, sum float64
			const seeds = 200
			for seed := range uint64(seeds) {
				items := mixedSizes(rand.New(rand.NewPCG(seed, 2)))
				before := steady(items, balanceNames(tc.from), 1)
				after, load := balanceOwners(items, balanceNames(tc.to), 1, before)
				require.LessOrEqual(t, maxOverMean(load, tc.to), 1.15, "seed %d: loads %v", seed, load)
				m := movedShare(items, before, after)
				worst = max(worst, m)
				sum += m
				require.LessOrEqual(t, m, 1.4*ideal, "seed %d", seed)
			}
			t.Logf("ideal %.3f, mean moved %.3f, worst %.3f", ideal, sum/seeds, worst)
		})
	}
}

// steady returns the assignment computed again with its own owners as
// incumbents until it no longer changes (it must at the second round).
func steady(items []balanceItem, names []string, r int) map[uint64][]string {
	owners, _ := balanceOwners(items, names, r, nil)
	again, _ := balanceOwners(items, names, r, owners)
	return again
}

// TestBalanceFixedPoint: an assignment computed with its own owners as
// incumbents is unchanged, from any start (cold, or after membership
// changes), without replication at once; with replication, where an item
// nobody has room for falls back to the least loaded member, within
// three rounds: nothing oscillates.
func TestBalanceFixedPoint(t *testing.T) {
	for seed := range uint64(400) {
		rng := rand.New(rand.NewPCG(seed, 4))
		items := mixedSizes(rng)
		var owners map[uint64][]string
		r := 1 + int(seed%2)
		rounds := 1
		if r > 1 {
			rounds = 3
		}
		for step, n := range []int{3, 4, 5, 3, 4} {
			next, _ := balanceOwners(items, balanceNames(n), r, owners)
			var again map[uint64][]string
			for range rounds {
				again, _ = balanceOwners(items, balanceNames(n), r, next)
				if maps.EqualFunc(next, again, slices.Equal) {
					break
				}
				next = again
			}
			require.Equal(t, next, again, "seed %d step %d", seed, step)
			owners = next
		}
	}
}

func TestBalanceDeterministic(t *testing.T) {
	items := mixedSizes(rand.New(rand.NewPCG(7, 7)))
	inc := steady(items, balanceNames(3), 2)
	want, _ := balanceOwners(items, balanceNames(4), 2, inc)
	for i := range 50 {
		shuffled := slices.Clone(items)
		rand.New(rand.NewPCG(uint64(i), 3)).Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		names := balanceNames(4)
		got, _ := balanceOwners(shuffled, names, 2, inc)
		require.Equal(t, want, got, "shuffle %d", i)
	}
}

func TestBalanceReplicated(t *testing.T) {
	items := mixedSizes(rand.New(rand.NewPCG(3, 3)))
	owners, load := balanceOwners(items, balanceNames(4), 2, nil)
	for key, o := range owners {
		require.Len(t, o, 2, "key %x", key)
		require.NotEqual(t, o[0], o[1], "key %x", key)
	}
	require.LessOrEqual(t, maxOverMean(load, 4), 1.15, "loads %v", load)
	// More replicas than members: every member once.
	owners, _ = balanceOwners(items, balanceNames(2), 3, nil)
	for key, o := range owners {
		require.ElementsMatch(t, balanceNames(2), o, "key %x", key)
	}
}

func TestBalanceGroups(t *testing.T) {
	names := balanceNames(4)
	var b balancer
	// Group 1: members 0 and 1 (a zone), group 2: member 3 alone.
	b.setMembers(names, [][]string{names, names[:2], names[3:]})
	rng := rand.New(rand.NewPCG(5, 5))
	items := mixedSizes(rng)
	for i := range items {
		items[i].group = int32(i % 3)
	}
	out := b.assign(items, 1, nil)
	for i, it := range items {
		switch it.group {
		case 1:
			require.Contains(t, []int32{0, 1}, out[i])
		case 2:
			require.Equal(t, int32(3), out[i])
		}
	}
}

// TestBalanceDriftMovesNothing: sizes drifting a few percent keep their
// weight class, so the owners stay.
func TestBalanceDriftMovesNothing(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 9))
		items := mixedSizes(rng)
		classes := make([]uint8, len(items))
		for i := range items {
			classes[i] = weightClass(int(items[i].weight), 0)
			items[i].weight = weightOfClass[classes[i]]
		}
		before := steady(items, balanceNames(4), 1)
		for round := range 20 {
			drifted := slices.Clone(items)
			for i := range drifted {
				exact := float64(weightOfClass[classes[i]]) * (1 + (rng.Float64()-0.5)*0.1) // ±5%
				classes[i] = weightClass(int(exact), classes[i])
				drifted[i].weight = weightOfClass[classes[i]]
			}
			after, _ := balanceOwners(drifted, balanceNames(4), 1, before)
			require.Equal(t, before, after, "seed %d round %d", seed, round)
		}
	}
}

func TestWeightClass(t *testing.T) {
	for _, tc := range []struct {
		name   string
		series int
		prev   uint8
		want   uint8
	}{
		{"nothing counts as one", 0, 0, 1},
		{"one", 1, 0, 1},
		{"thousand", 1000, 0, 60},         // 6·log2(1000) = 59.79
		{"drift up keeps", 1120, 60, 60},  // 60.78
		{"drift down keeps", 950, 60, 60}, // 59.35
		{"far up changes", 1300, 60, 62},  // 62.07
		{"far down changes", 750, 60, 57}, // 57.31
		{"huge caps", 1 << 62, 0, 127},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, weightClass(tc.series, tc.prev))
		})
	}
	require.Equal(t, uint64(1024), weightOfClass[60])
}
