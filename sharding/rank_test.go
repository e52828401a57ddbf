package sharding

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/scrape"
	"github.com/stretchr/testify/require"
)

// replicatedFilter is a filter for self with R=2 in mode, its scrape
// configurations ending with the replica rule as cmd appends it.
func replicatedFilter(t *testing.T, self string, members *testMembers, mode ReplicationMode, stale *testStaleness) *Filter {
	t.Helper()
	opts := FilterOptions{Self: self, Members: members, ReplicationFactor: 2, ReplicationMode: mode}
	if stale != nil {
		opts.Staleness = stale
	}
	return replicatedFilterWith(t, opts)
}

// replicatedFilterWith is replicatedFilter with the given options.
func replicatedFilterWith(t *testing.T, opts FilterOptions) *Filter {
	t.Helper()
	self, mode := opts.Self, opts.ReplicationMode
	f, err := NewFilter(opts)
	require.NoError(t, err)
	scs := testScrapeConfigs(t)
	AppendReplicaRelabeling(scs, ReplicaRelabelConfig(DefaultReplicaLabel, self, 2, mode))
	f.SetScrapeConfigs(scs)
	return f
}

// pooledTarget is a target as the scrape pool builds it.
type pooledTarget struct {
	labels labels.Labels // public labels
	key    uint64        // loop key
}

// pooled returns the targets the scrape pools build from out, by their
// public labels.
func pooled(t *testing.T, f *Filter, out map[string][]*targetgroup.Group) map[string]pooledTarget {
	t.Helper()
	lb := labels.NewBuilder(labels.EmptyLabels())
	res := map[string]pooledTarget{}
	for job, groups := range out {
		for _, tg := range groups {
			ts, failures := scrape.TargetsFromGroup(tg, f.prepared[job].cfg, nil, lb)
			require.Empty(t, failures)
			for _, tt := range ts {
				ls := tt.Labels(lb)
				res[ls.String()] = pooledTarget{labels: ls, key: loopKey(tt, lb)}
			}
		}
	}
	return res
}

func TestFilterRankLabels(t *testing.T) {
	members := newTestMembers(three...)
	tsets := podGroups(100, noNode)
	ranks := map[string][]string{} // target without replica label → ranks held
	for _, self := range three {
		f := replicatedFilter(t, self, members, ReplicationRank, nil)
		out := filterOnce(f, tsets)
		for job, groups := range out {
			requireOwnedGroups(t, tsets[job], groups)
		}
		pool := pooled(t, f, out)
		var sentKeys []uint64
		for _, sent := range f.sent {
			sentKeys = slices.AppendSeq(sentKeys, maps.Keys(sent))
		}
		var poolKeys []uint64
		for _, pt := range pool {
			poolKeys = append(poolKeys, pt.key)
		}
		require.ElementsMatch(t, poolKeys, sentKeys,
			"the filter's identity of every target is the scrape pool's (handoffs find their loops)")
		for ls, pt := range pool {
			lset := pt.labels
			rank := lset.Get(DefaultReplicaLabel)
			require.Contains(t, []string{"0", "1"}, rank, ls)
			key := labels.NewBuilder(lset).Del(DefaultReplicaLabel).Labels().String()
			ranks[key] = append(ranks[key], rank)
		}
	}
	require.Len(t, ranks, 101)
	for target, rs := range ranks {
		require.ElementsMatch(t, []string{"0", "1"}, rs, "one copy of each rank: %s", target)
	}
}

// TestFilterReplicatedHandoff: with R=2, every series a member stops
// writing while its target is still discovered is continued by another
// member and handed off (no staleness markers): in rank mode also a copy
// whose rank at this member changed, its old rank now held elsewhere.
func TestFilterReplicatedHandoff(t *testing.T) {
	for _, tc := range []struct {
		mode ReplicationMode
		// rankChanges: the first step changes ranks at n0.
		rankChanges bool
	}{
		{ReplicationRank, true},
		{ReplicationIdentical, false},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			members := newTestMembers(three...)
			stale := &testStaleness{}
			f := replicatedFilter(t, "n0", members, tc.mode, stale)
			before := pooled(t, f, filterOnce(f, podGroups(200, noNode)))
			for i, step := range [][]string{{"n0", "n2"}, {"n0", "n2", "n3", "n4"}, {"n0"}} {
				stale.disabled = nil
				members.set(step...)
				after := pooled(t, f, recomputeAll(f, false))
				var ended []string // and continued by another member
				endedAll := 0
				for ls, pt := range before {
					if _, ok := after[ls]; ok {
						continue
					}
					endedAll++
					if r, err := strconv.Atoi(pt.labels.Get(DefaultReplicaLabel)); err == nil && r >= len(step) {
						continue // nobody holds its rank any more: it ends here
					}
					ended = append(ended, ls)
				}
				var disabled []string
				for _, ls := range stale.disabled {
					disabled = append(disabled, ls...)
				}
				require.ElementsMatch(t, ended, disabled, "step %d: every ended series handed off", i)
				switch i {
				case 0:
					require.Equal(t, tc.rankChanges, len(ended) > 0, "step %d: n0 only gains targets; ended: %d", i, len(ended))
				case 1:
					require.NotEmpty(t, ended, "step %d: n0 loses targets to the newcomers", i)
				case 2:
					require.Empty(t, ended, "step %d: n0 alone holds rank 0 of every target", i)
					require.Equal(t, tc.rankChanges, endedAll > 0, "step %d: its rank-1 copies end", i)
				}
				for ls, pt := range after {
					require.Equal(t, tc.mode == ReplicationRank, pt.labels.Has(DefaultReplicaLabel), ls)
				}
				before = after
			}
		})
	}
}

func TestRankRemoteWrites(t *testing.T) {
	userRule := relabel.DefaultRelabelConfig
	userRule.Action, userRule.Regex, userRule.NameValidationScheme = relabel.LabelDrop, relabel.MustNewRegexp(DefaultReplicaLabel), model.UTF8Validation
	named := config.DefaultRemoteWriteConfig
	named.Name = "mimir"
	named.WriteRelabelConfigs = []*relabel.Config{&userRule}
	unnamed := config.DefaultRemoteWriteConfig
	rws := []*config.RemoteWriteConfig{&named, &unnamed}
	again := RankRemoteWrites([]*config.RemoteWriteConfig{&unnamed, &named, &unnamed}, DefaultReplicaLabel, 2)
	require.Equal(t, urlName(&unnamed)+"-2-rank0", again[6].Name, "an unnamed URL listed twice gets distinct queue names")
	require.Equal(t, rws, RankRemoteWrites(rws, DefaultReplicaLabel, 1), "R=1: unchanged")
	require.Equal(t, rws, RankRemoteWrites(rws, "", 2), "no replica label: unchanged")

	out := RankRemoteWrites(rws, DefaultReplicaLabel, 2)
	require.Len(t, out, 6)
	require.Len(t, named.WriteRelabelConfigs, 1, "the original is not modified")
	var names []string
	for _, rw := range out {
		names = append(names, rw.Name)
	}
	hash := urlName(&unnamed)
	require.Equal(t, []string{"mimir-rank0", "mimir-rank1", "mimir-members", hash + "-rank0", hash + "-rank1", hash + "-members"}, names)
	require.Same(t, &userRule, out[1].WriteRelabelConfigs[1], "the user's write relabelings follow the rank rule")

	for _, tc := range []struct {
		value string
		queue string // the one queue of mimir's that keeps the series
	}{
		{"0", "mimir-rank0"},
		{"1", "mimir-rank1"},
		{"n1", "mimir-members"},
		{"", "mimir-members"},
		{"10", "mimir-members"}, // no such rank with R=2: nothing is lost
	} {
		var kept []string
		for _, rw := range out[:3] {
			lset := labels.FromStrings("__name__", "up", "job", "j")
			if tc.value != "" {
				lset = labels.NewBuilder(lset).Set(DefaultReplicaLabel, tc.value).Labels()
			}
			lb := labels.NewBuilder(lset)
			if relabel.ProcessBuilder(lb, rw.WriteRelabelConfigs...) {
				kept = append(kept, rw.Name)
				require.False(t, lb.Labels().Has(DefaultReplicaLabel), "the user's labeldrop still applies")
			}
		}
		require.Equal(t, []string{tc.queue}, kept, "series with %s=%q", DefaultReplicaLabel, tc.value)
	}
}

func ExampleRankRemoteWrites() {
	rw := config.DefaultRemoteWriteConfig
	rw.Name = "mimir"
	for _, q := range RankRemoteWrites([]*config.RemoteWriteConfig{&rw}, DefaultReplicaLabel, 2) {
		first := q.WriteRelabelConfigs[0]
		fmt.Println(q.Name, first.Action, first.SourceLabels, first.Regex)
	}
	// Output:
	// mimir-rank0 keep promshard_replica 0
	// mimir-rank1 keep promshard_replica 1
	// mimir-members drop promshard_replica 0|1
}

// BenchmarkFilterReplicatedMembership is BenchmarkFilterRecompute's
// membership change with R=2 in each mode (100k targets, 20 members):
// rank mode copies a target's discovered labels when its rank changes,
// and its heap report is the labels kept for the owned targets.
func BenchmarkFilterReplicatedMembership(b *testing.B) {
	names := memberNames(20)
	tsets := podGroups(100_000, noNode)
	for _, mode := range []ReplicationMode{ReplicationIdentical, ReplicationRank} {
		b.Run(string(mode), func(b *testing.B) {
			members := newTestMembers(names...)
			f := newTestFilter(b, FilterOptions{Self: names[0], Members: members, ReplicationFactor: 2, ReplicationMode: mode})
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			filterOnce(f, tsets)
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap := float64(after.HeapAlloc-before.HeapAlloc) / 1e6
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					members.set(names[:19]...)
				} else {
					members.set(names...)
				}
				recomputeAll(f, false)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/recompute")
			b.ReportMetric(heap, "MB-heap-first")
		})
	}
}

// TestRankGainHeldUntilReleased: with confirmed handoffs, a member
// promoted to another rank of a target gains that rank's series, which the
// target's previous holder of the rank may still be delivering: it holds
// the target until the others released the new view, as a member gaining
// a target does.
func TestRankGainHeldUntilReleased(t *testing.T) {
	members := newTestMembers()
	filters := map[string]*Filter{}
	stale := map[string]*testStaleness{}
	for _, n := range three {
		members.members = append(members.members, Member{Name: n, State: StateParticipant, KeyVersion: LatestKeyVersion, ConfirmsHandoffs: true})
	}
	announce := func(n string) func(uint64) {
		return func(view uint64) {
			members.mtx.Lock()
			defer members.mtx.Unlock()
			for i := range members.members {
				if members.members[i].Name == n {
					members.members[i].Released = view
				}
			}
		}
	}
	tsets := podGroups(60, noNode)
	for _, n := range three {
		stale[n] = &testStaleness{}
		filters[n] = replicatedFilterWith(t, FilterOptions{Self: n, Members: members, ReplicationFactor: 2, ReplicationMode: ReplicationRank,
			Staleness: stale[n], HandoffTimeout: time.Hour, Delivered: func(time.Time) bool { return true }, Announce: announce(n)})
		filters[n].setInput(tsets)
	}
	pass := func(n string) map[string]pooledTarget {
		f := filters[n]
		out := recomputeAll(f, true)
		stale[n].mtx.Lock()
		stale[n].active = loopsFor(f, out)
		stale[n].mtx.Unlock()
		if f.releaseStep(time.Now()) {
			f.releaseStep(time.Now().Add(time.Second))
		}
		return pooled(t, f, out)
	}
	for range 3 { // until everyone released the first view
		for _, n := range three {
			pass(n)
		}
	}
	before := pass("n1")
	require.Zero(t, filters["n1"].Stats().Held)

	// n0 dies: n1 is promoted to rank 0 of the targets n0 led and it
	// followed; n2 has not passed under the new view yet.
	members.mtx.Lock()
	members.members[0].State = StateDead
	members.mtx.Unlock()
	held := pass("n1")
	promoted := 0
	for ls, pt := range before {
		if pt.labels.Get(DefaultReplicaLabel) != "1" {
			continue
		}
		rank0 := labels.NewBuilder(pt.labels).Set(DefaultReplicaLabel, "0").Labels().String()
		if _, ok := held[rank0]; ok {
			t.Fatalf("%s promoted to rank 0 before n2 released the view", ls)
		}
		if _, ok := held[ls]; !ok {
			promoted++
		}
	}
	require.Positive(t, promoted, "n1 gave up rank-1 copies")
	for ls := range held {
		require.Contains(t, before, ls, "until the view is released n1 writes only series it wrote before")
	}
	require.GreaterOrEqual(t, filters["n1"].Stats().Held, promoted, "each promoted copy is held (and the targets n1 gained)")
	pass("n2") // n2 releases the view
	after := pass("n1")
	require.Zero(t, filters["n1"].Stats().Held)
	ranks := map[string]int{}
	for _, pt := range after {
		ranks[pt.labels.Get(DefaultReplicaLabel)]++
	}
	require.Equal(t, 61, ranks["0"]+ranks["1"], "with two members each holds one rank of every target")
}
