package sharding

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// balanceRig is a confirmRig whose members balance series, each with its
// own weight board; sync gossips the boards (push/pull between all), and a
// member in delayed receives nothing.
type balanceRig struct {
	*confirmRig
	boards  map[string]*WeightBoard
	delayed map[string]bool
	targets map[string]bool // members balancing targets
}

var appIndex = regexp.MustCompile(`app-(\d+)`)

// podSeries is the workload over podGroups(60): 6 × 1,000,
// 12 × 200 and 42 × 20 series.
func podSeries(target string) int {
	m := appIndex.FindStringSubmatch(target)
	if m == nil {
		return 5 // the static job's target
	}
	switch i, _ := strconv.Atoi(m[1]); {
	case i < 6:
		return 1000
	case i < 18:
		return 200
	default:
		return 20
	}
}

func newBalanceRig(t *testing.T, names ...string) *balanceRig {
	r := &balanceRig{confirmRig: newConfirmRig(t, time.Hour), boards: map[string]*WeightBoard{}, delayed: map[string]bool{}, targets: map[string]bool{}}
	r.input = podGroups(60, noNode)
	for _, n := range names {
		r.add(n)
	}
	return r
}

func (r *balanceRig) add(n string) *Filter {
	r.members.mtx.Lock()
	r.members.members = append(r.members.members, Member{Name: n, State: StateParticipant, KeyVersion: LatestKeyVersion, ConfirmsHandoffs: true, BalancesSeries: !r.targets[n]})
	r.members.mtx.Unlock()
	r.stale[n] = &testStaleness{}
	r.regs[n] = nil
	r.delivered[n] = true
	return r.filter(n)
}

// filter (re)creates n's filter, balancing targets if r.targets says so.
func (r *balanceRig) filter(n string) *Filter {
	r.boards[n] = NewWeightBoard(n, nil)
	balance := BalanceSeries
	if r.targets[n] {
		balance = BalanceTargets
	}
	var f *Filter
	f = newTestFilter(r.t, FilterOptions{Self: n, Members: r.members, Staleness: r.stale[n], HandoffTimeout: time.Hour,
		Balance: balance, Weights: r.boards[n], MaxSeriesPerMember: 3000,
		Series: func(loop uint64) (int, bool) {
			for _, sent := range f.sent {
				if st, ok := sent[loop]; ok {
					return podSeries(st.target.Labels(labels.NewBuilder(labels.EmptyLabels())).String()), true
				}
			}
			return 0, false
		},
		Delivered: func(time.Time) bool { return true },
		Announce:  func(view uint64) { r.setMember(n, func(m *Member) { m.Released = view }) }})
	r.filters[n] = f
	f.setInput(r.input)
	return f
}

// sync exchanges every board's state with every other (not with delayed
// members).
func (r *balanceRig) sync() {
	for a, ba := range r.boards {
		for b, bb := range r.boards {
			if a != b && !r.delayed[a] && !r.delayed[b] {
				require.NoError(r.t, bb.mergeState(ba.encodeState()))
			}
		}
	}
}

// round passes every member once (sorted), then syncs; it checks that no
// target is scraped by two members and returns what each scrapes.
func (r *balanceRig) round() map[string][]string {
	got := map[string][]string{}
	for _, n := range slices.Sorted(maps.Keys(r.filters)) {
		got[n] = r.pass(n)[podJob]
	}
	seen := map[string]string{}
	for n, ts := range got {
		for _, tgt := range ts {
			require.NotContains(r.t, seen, tgt, "%s scraped by %s and %s", tgt, seen[tgt], n)
			seen[tgt] = n
		}
	}
	r.sync()
	return got
}

// steady runs rounds until two in a row scrape the same and nothing is
// held, and returns the owner of each target.
func (r *balanceRig) steady() map[string]string {
	var prev map[string][]string
	for range 12 {
		got := r.round()
		held := 0
		for _, f := range r.filters {
			held += f.Stats().Held
		}
		if held == 0 && maps.EqualFunc(prev, got, slices.Equal) {
			owner := map[string]string{}
			for n, ts := range got {
				for _, tgt := range ts {
					owner[tgt] = n
				}
			}
			return owner
		}
		prev = got
	}
	r.t.Fatal("no steady state within 12 rounds")
	return nil
}

func seriesRatio(owner map[string]string, members int) (float64, map[string]int) {
	load := map[string]int{}
	total, most := 0, 0
	for tgt, n := range owner {
		load[n] += podSeries(tgt)
		total += podSeries(tgt)
	}
	for _, l := range load {
		most = max(most, l)
	}
	return float64(most) / (float64(total) / float64(members)), load
}

// TestFilterBalanceSeriesJoin: 60 targets of 50× different sizes over 3
// members, then a 4th: at both steady points every target has exactly one
// owner, series per member are within 1.15 of the mean, every member
// computes the same series per member, and the join moves at most 35% of
// the series.
func TestFilterBalanceSeriesJoin(t *testing.T) {
	r := newBalanceRig(t, "a", "b", "c")
	before := r.steady()
	require.Len(t, before, 60)
	ratio, load := seriesRatio(before, 3)
	t.Logf("3 members: max/mean %.3f, series %v", ratio, load)
	require.LessOrEqual(t, ratio, 1.15)
	want := r.filters["a"].Stats().Series
	for n, f := range r.filters {
		require.Equal(t, want, f.Stats().Series, "member %s computes the same", n)
	}
	for n, l := range load {
		require.InDelta(t, l, want[n], 0.05*float64(l), "member %s: the series it is said to own are the measured ones, quantized", n)
	}

	over := r.filters["a"].Stats()
	require.True(t, over.OverLimit, "3 members cannot hold 9,240 series within 3,000 each")
	require.Equal(t, 4, over.MembersNeeded)
	require.Len(t, before, 60, "no target dropped over the limit")

	r.add("d")
	after := r.steady()
	require.Len(t, after, 60)
	ratio, load = seriesRatio(after, 4)
	t.Logf("4 members: max/mean %.3f, series %v", ratio, load)
	require.LessOrEqual(t, ratio, 1.15)
	moved, total := 0, 0
	for tgt, n := range after {
		total += podSeries(tgt)
		if before[tgt] != n {
			moved += podSeries(tgt)
		}
	}
	t.Logf("join moved %.1f%% of the series", 100*float64(moved)/float64(total))
	require.LessOrEqual(t, float64(moved)/float64(total), 0.35)
	st := r.filters["d"].Stats()
	require.Equal(t, 3000, st.MaxSeriesPerMember)
	require.False(t, st.OverLimit)
	require.Equal(t, 4, st.MembersNeeded) // 9,245 series (the static target too) over 3,000
}

// TestFilterBalanceDelayedGossip: a joining member that lacks its peers'
// reports (and they its) computes another assignment under another handoff
// view; it holds what it gains instead of scraping it, so no target is
// ever scraped twice, and it scrapes once the gossip arrives.
func TestFilterBalanceDelayedGossip(t *testing.T) {
	r := newBalanceRig(t, "a", "b", "c")
	r.steady()
	r.delayed["d"] = true
	d := r.add("d")
	for range 4 {
		got := r.round() // checks exclusivity
		require.Empty(t, got["d"], "d holds while its weights differ")
		require.Positive(t, d.Stats().Held)
		require.NotEqual(t, r.filters["a"].Stats().HandoffView, d.Stats().HandoffView)
	}
	delete(r.delayed, "d")
	owner := r.steady()
	require.Len(t, owner, 60)
	require.Contains(t, slices.Collect(maps.Values(owner)), "d")
}

// TestFilterBalanceNeedsEveryMember: while an alive member does not
// announce that it balances series (an older promshard, or one switched
// later in a rollout), every member balances targets, as that one does;
// once it announces it, the cluster balances series.
func TestFilterBalanceNeedsEveryMember(t *testing.T) {
	r := newBalanceRig(t, "a", "b")
	r.targets["c"] = true // c runs --sharding.balance=targets
	r.add("c")
	r.steady()
	for n, f := range r.filters {
		require.Nil(t, f.Stats().Series, "%s balances targets", n)
		require.Equal(t, r.filters["c"].Stats().Owned, f.Stats().Owned, "%s computes what c does", n)
	}
	// c restarts balancing series.
	delete(r.targets, "c")
	r.filter("c")
	r.setMember("c", func(m *Member) { m.BalancesSeries = true })
	owner := r.steady()
	require.Len(t, owner, 60)
	ratio, _ := seriesRatio(owner, 3)
	require.LessOrEqual(t, ratio, 1.15)
	require.NotNil(t, r.filters["a"].Stats().Series)
}
