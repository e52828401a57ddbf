package sharding

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/stretchr/testify/require"
)

var three = []string{"n0", "n1", "n2"}

// ownersByTarget runs one filter per member over the same input and returns,
// for each final target, the members that scrape it.
func ownersByTarget(t *testing.T, opts FilterOptions, members *testMembers, names []string, tsets map[string][]*targetgroup.Group) map[string][]string {
	t.Helper()
	owners := map[string][]string{}
	for _, self := range names {
		o := opts
		o.Self, o.Members = self, members
		out := filterOnce(newTestFilter(t, o), tsets)
		require.Subset(t, slices.Collect(maps.Keys(tsets)), slices.Collect(maps.Keys(out)), "only discovered jobs are sent")
		for job, groups := range out {
			require.Len(t, groups, len(tsets[job]))
			for i, g := range groups {
				require.Equal(t, tsets[job][i].Source, g.Source)
				require.Equal(t, tsets[job][i].Labels, g.Labels)
			}
		}
		for job, targets := range finalTargets(t, out) {
			for _, ls := range targets {
				owners[job+" "+ls] = append(owners[job+" "+ls], self)
			}
		}
	}
	return owners
}

func TestFilterPartitionsFinalTargets(t *testing.T) {
	tsets := podGroups(300, noNode)
	owners := ownersByTarget(t, FilterOptions{}, newTestMembers(three...), three, tsets)
	require.Len(t, owners, 301, "union over members is every final target")
	perMember := map[string]int{}
	for target, o := range owners {
		require.Len(t, o, 1, "intersection is empty: %s", target)
		perMember[o[0]]++
	}
	for _, n := range three {
		require.Greater(t, perMember[n], 60, "%s owns a fair share: %v", n, perMember)
	}
}

func TestFilterRelabeledDuplicatesHaveOneOwner(t *testing.T) {
	tsets := podGroups(0, noNode)
	// Two discovered endpoints of the same pod: different discovered
	// addresses, identical labels after relabeling.
	tsets[podJob][0].Targets = []model.LabelSet{pod(7, 80, ""), pod(7, 81, "")}
	var owning []string
	for _, self := range three {
		f := newTestFilter(t, FilterOptions{Self: self, Members: newTestMembers(three...)})
		out := filterOnce(f, tsets)
		switch len(out[podJob][0].Targets) {
		case 2:
			owning = append(owning, self)
		case 0:
		default:
			t.Fatalf("%s owns one of two endpoints with the same final labels", self)
		}
		require.Equal(t, 2, f.Stats().TotalTargets, "one pod target and one static target")
	}
	require.Len(t, owning, 1)
}

func TestFilterDroppedAndUnconfiguredTargetsOwnedByNobody(t *testing.T) {
	tsets := podGroups(20, noNode)
	tsets[podJob][0].Targets[3]["__meta_kubernetes_pod_annotation_drop"] = "true"
	tsets["unknown-job"] = []*targetgroup.Group{{Source: "x", Targets: []model.LabelSet{{"__address__": "198.18.0.2:80"}}}}
	owners := ownersByTarget(t, FilterOptions{}, newTestMembers(three...), three, tsets)
	require.Len(t, owners, 20, "19 pods + 1 static; dropped and unconfigured targets have no owner")
	for target := range owners {
		require.NotContains(t, target, `pod="app-3"`)
		require.False(t, strings.HasPrefix(target, "unknown-job"))
	}
}

func TestFilterReplication(t *testing.T) {
	tsets := podGroups(100, noNode)
	owners := ownersByTarget(t, FilterOptions{ReplicationFactor: 2}, newTestMembers(three...), three, tsets)
	// Each logical target appears twice, once per replica label value, each
	// time with a single owner.
	byTarget := map[string][]string{}
	for target, o := range owners {
		require.Len(t, o, 1)
		base, replica, ok := cutReplica(target)
		require.True(t, ok, "replica label missing: %s", target)
		byTarget[base] = append(byTarget[base], replica+"@"+o[0])
	}
	require.Len(t, byTarget, 101)
	for target, rs := range byTarget {
		slices.Sort(rs)
		require.Len(t, rs, 2, target)
		require.True(t, strings.HasPrefix(rs[0], "0@") && strings.HasPrefix(rs[1], "1@"), "%s: %v", target, rs)
		require.NotEqual(t, rs[0][2:], rs[1][2:], "two distinct owners")
	}
	// R=1 adds no replica label.
	for target := range ownersByTarget(t, FilterOptions{}, newTestMembers(three...), three, tsets) {
		require.NotContains(t, target, DefaultReplicaLabel)
	}
}

// cutReplica removes `promshard_replica="N", ` from a label set string.
func cutReplica(ls string) (base, replica string, ok bool) {
	i := strings.Index(ls, DefaultReplicaLabel+`="`)
	if i < 0 {
		return ls, "", false
	}
	rest := ls[i+len(DefaultReplicaLabel)+2:]
	end := strings.IndexByte(rest, '"')
	return ls[:i] + strings.TrimPrefix(rest[end+1:], ", "), rest[:end], true
}

func TestFilterNotReadyOwnsNothing(t *testing.T) {
	members := newTestMembers(three...)
	members.ready = false
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: members})
	out := filterOnce(f, podGroups(50, noNode))
	require.Len(t, out, 2)
	for _, groups := range out {
		for _, g := range groups {
			require.Empty(t, g.Targets)
		}
	}
	require.Equal(t, Stats{Ready: false, TotalTargets: 51, Owned: map[string]int{"n0": 0, "n1": 0, "n2": 0}}, f.Stats())
}

func TestFilterHandoff(t *testing.T) {
	for _, r := range []int{1, 2} {
		t.Run("R="+string(rune('0'+r)), func(t *testing.T) {
			members := newTestMembers("n0", "n1")
			stale := &testStaleness{}
			f := newTestFilter(t, FilterOptions{Self: "n0", Members: members, Staleness: stale, ReplicationFactor: r})
			tsets := podGroups(200, noNode)
			before := finalTargets(t, filterOnce(f, tsets))[podJob]

			members.set(three...)
			after := finalTargets(t, f.recompute(false))[podJob]
			var moved []string
			for _, ls := range before {
				if !slices.Contains(after, ls) {
					moved = append(moved, ls)
				}
			}
			require.NotEmpty(t, moved)
			require.ElementsMatch(t, moved, stale.disabled[podJob], "moved targets, labelled as the pool has them")

			// A vanished target keeps its staleness markers.
			stale.disabled = nil
			gone := after[0]
			var kept []model.LabelSet
			for _, tl := range tsets[podJob][0].Targets {
				if !strings.Contains(gone, `pod="`+string(tl["__meta_kubernetes_pod_name"])+`"`) {
					kept = append(kept, tl)
				}
			}
			require.Len(t, kept, 199)
			tsets = podGroups(0, noNode)
			tsets[podJob][0].Targets = kept
			require.NotContains(t, finalTargets(t, filterOnce(f, tsets))[podJob], gone)
			require.Empty(t, stale.disabled)
		})
	}
}

func TestFilterNodeStrategy(t *testing.T) {
	members := &testMembers{ready: true, changes: make(chan struct{}, 1), members: []Member{
		{Name: "n0", State: StateAlive, KubernetesNode: "node-a"},
		{Name: "n1", State: StateAlive, KubernetesNode: "node-b"},
		{Name: "n2", State: StateAlive, KubernetesNode: "node-c"},
	}}
	nodes := []string{"node-a", "node-b", "node-c", "", "node-without-member"}
	tsets := podGroups(300, func(i int) string { return nodes[i%len(nodes)] })
	owners := map[string][]string{}
	for i, self := range three {
		f := newTestFilter(t, FilterOptions{Self: self, Members: members, Strategy: StrategyNode, NodeName: nodes[i]})
		for _, ls := range finalTargets(t, filterOnce(f, tsets))[podJob] {
			owners[ls] = append(owners[ls], self)
		}
	}
	require.Len(t, owners, 300)
	nodeless := map[string]int{}
	for ls, o := range owners {
		require.Len(t, o, 1, "scraped twice: %s", ls)
		switch {
		case strings.Contains(ls, `node="node-a"`):
			require.Equal(t, "n0", o[0])
		case strings.Contains(ls, `node="node-b"`):
			require.Equal(t, "n1", o[0])
		case strings.Contains(ls, `node="node-c"`):
			require.Equal(t, "n2", o[0])
		default:
			nodeless[o[0]]++
		}
	}
	require.Len(t, nodeless, 3, "node-less targets are split over all members: %v", nodeless)
}

func TestFilterRun(t *testing.T) {
	members := newTestMembers("n0")
	stale := &testStaleness{}
	reg := prometheus.NewRegistry()
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: members, Staleness: stale, Registerer: reg})
	drain(members.changes) // signals from set-up: not what this test checks
	drain(f.cfgChanged)
	in := make(chan map[string][]*targetgroup.Group)
	out := make(chan map[string][]*targetgroup.Group)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, in, out) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	receive := func() map[string][]string {
		select {
		case o := <-out:
			return finalTargets(t, o)
		case <-time.After(5 * time.Second):
			t.Fatal("no output")
			return nil
		}
	}
	in <- podGroups(30, noNode)
	require.Len(t, receive()[podJob], 30, "alone, n0 owns everything")
	require.Equal(t, 31.0, testutil.ToFloat64(f.metrics.owned))

	members.set("n0", "n1") // membership change: re-filter the last input
	got := receive()
	require.Less(t, len(got[podJob]), 30)
	require.Contains(t, got, "static")
	moved := 31 - len(got[podJob]) - len(got["static"])
	require.Equal(t, float64(moved), testutil.ToFloat64(f.metrics.moved))
	require.Len(t, stale.disabled[podJob], 30-len(got[podJob]))

	f.SetScrapeConfigs(testScrapeConfigs(t)[1:]) // pod job removed: owned by nobody
	require.Empty(t, receive()[podJob])
	require.Equal(t, 1, testutil.CollectAndCount(reg, "promshard_sharding_recompute_duration_seconds"))
	require.Equal(t, 31.0-30, testutil.ToFloat64(f.metrics.discovered))
}

func TestNewFilterValidates(t *testing.T) {
	m := newTestMembers("a")
	for _, tc := range []struct {
		name string
		opts FilterOptions
		err  string
	}{
		{"no self", FilterOptions{Members: m}, "Self"},
		{"no members", FilterOptions{Self: "a"}, "Members"},
		{"negative R", FilterOptions{Self: "a", Members: m, ReplicationFactor: -1}, "negative"},
		{"strategy", FilterOptions{Self: "a", Members: m, Strategy: "zone"}, "unknown strategy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFilter(tc.opts)
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestFilterReusesUnchangedGroups(t *testing.T) {
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: newTestMembers("n0")})
	tsets := podGroups(5, noNode)
	first := finalTargets(t, filterOnce(f, tsets))
	entries := f.prepared[podJob].groups[0].entries
	require.Equal(t, first, finalTargets(t, filterOnce(f, tsets)))
	require.Same(t, &entries[0], &f.prepared[podJob].groups[0].entries[0], "same group, same config: no relabeling")

	// A new scrape config relabels the same groups again.
	scs, err := loadScrapeConfigs(strings.Replace(testConfig, "target_label: pod", "target_label: pod_name", 1))
	require.NoError(t, err)
	f.SetScrapeConfigs(scs)
	f.recompute(true)
	for _, e := range f.prepared[podJob].groups[0].entries {
		require.NotEmpty(t, e.lset.Get("pod_name"))
	}
}

func TestFilterRelabelFailureHasOneOwner(t *testing.T) {
	tsets := podGroups(3, noNode)
	bad := pod(99, 80, "")
	bad["__scrape_interval__"] = "not-a-duration"
	tsets[podJob][0].Targets = append(tsets[podJob][0].Targets, bad)
	holders := 0
	for _, self := range three {
		f := newTestFilter(t, FilterOptions{Self: self, Members: newTestMembers(three...)})
		for _, tl := range filterOnce(f, tsets)[podJob][0].Targets {
			if tl["__scrape_interval__"] == "not-a-duration" {
				holders++ // its scrape pool logs why the target is invalid
			}
		}
		require.Equal(t, 5, f.Stats().TotalTargets)
	}
	require.Equal(t, 1, holders)
}
