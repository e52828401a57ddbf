package sharding

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
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
			requireOwnedGroups(t, tsets[job], groups)
		}
		for job, targets := range finalTargets(t, out) {
			for _, ls := range targets {
				owners[job+" "+ls] = append(owners[job+" "+ls], self)
			}
		}
	}
	return owners
}

// requireOwnedGroups checks a job's output groups against its input: the
// groups with an owned target, in input order, each with its source and
// labels, and no other group.
func requireOwnedGroups(t *testing.T, in, out []*targetgroup.Group) {
	t.Helper()
	require.NotNil(t, out, "a job owning nothing gets an empty list, not nil")
	i := 0
	for _, g := range out {
		require.NotEmpty(t, g.Targets, "group %s without owned targets is left out", g.Source)
		for i < len(in) && in[i].Source != g.Source {
			i++
		}
		require.Less(t, i, len(in), "group %s is an input group, in input order", g.Source)
		require.Equal(t, in[i].Labels, g.Labels)
		i++
	}
}

// groupTargets are the targets of a job's output groups.
func groupTargets(groups []*targetgroup.Group) []model.LabelSet {
	var ts []model.LabelSet
	for _, g := range groups {
		ts = append(ts, g.Targets...)
	}
	return ts
}

// ownedCount is the number of targets in a job's output groups.
func ownedCount(groups []*targetgroup.Group) int {
	n := 0
	for _, g := range groups {
		n += len(g.Targets)
	}
	return n
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
		switch ownedCount(out[podJob]) {
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
	require.Len(t, owners, 101)
	for target, o := range owners {
		require.Len(t, o, 2, target)
		require.NotEqual(t, o[0], o[1], "two distinct owners")
	}
}

func TestReplicaRelabelingAfterUserRelabelings(t *testing.T) {
	user := `
scrape_configs:
- job_name: j
  relabel_configs:
  - regex: promshard_replica
    action: labeldrop
  - source_labels: [__meta_kubernetes_pod_label_all]
    target_label: __tmp_disable_sharding
  - regex: (instance|job|__.*|promshard_replica)
    action: labelkeep
  - regex: __meta_kubernetes_pod_label_(.+)
    action: labelmap
`
	discovered := model.LabelSet{"__address__": "10.0.0.1:80", "promshard_replica": "spoofed", "__meta_kubernetes_pod_label_all": "yes"}
	ranked := model.LabelSet{"__address__": "10.0.0.1:80", "promshard_replica": "spoofed", replicaMetaLabel: "1"}
	for _, tc := range []struct {
		name string
		r    int
		mode ReplicationMode
		tl   model.LabelSet
		want string
	}{
		{"R=2 rank: the filter's rank", 2, ReplicationRank, ranked, "1"},
		{"R=2 rank, disabled sharding: the filter's member name", 2, ReplicationRank, model.LabelSet{"__address__": "10.0.0.1:80", replicaMetaLabel: "n1"}, "n1"},
		{"R=2 identical, sharded: no label", 2, ReplicationIdentical, ranked, ""},
		{"R=2 identical, disabled sharding", 2, ReplicationIdentical, discovered, "n1"},
		{"R=1, disabled sharding", 1, ReplicationRank, discovered, "n1"},
		{"R=1, sharded", 1, ReplicationRank, model.LabelSet{"__address__": "10.0.0.1:80"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scs, err := loadScrapeConfigs(user)
			require.NoError(t, err)
			rule := ReplicaRelabelConfig(DefaultReplicaLabel, "n1", tc.r, tc.mode)
			AppendReplicaRelabeling(scs, rule)
			AppendReplicaRelabeling(scs, rule) // idempotent
			require.Len(t, scs[0].RelabelConfigs, 5)
			lset, err := scrape.PopulateLabels(labels.NewBuilder(labels.EmptyLabels()), scs[0], tc.tl, nil)
			require.NoError(t, err)
			require.Equal(t, tc.want, lset.Get(DefaultReplicaLabel), lset.String())
		})
	}
	require.Nil(t, ReplicaRelabelConfig("", "n1", 2, ReplicationRank))
}

func TestFilterDisableShardingAndTmpHash(t *testing.T) {
	scs, err := loadScrapeConfigs(`
scrape_configs:
- job_name: a
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_label_everywhere]
    target_label: __tmp_disable_sharding
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: __tmp_hash
- job_name: b
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: __tmp_hash
`)
	require.NoError(t, err)
	tsets := map[string][]*targetgroup.Group{}
	for _, job := range []string{"a", "b"} {
		tg := &targetgroup.Group{Source: job}
		for i := range 60 {
			for port := range 2 {
				tl := model.LabelSet{
					"__address__":                model.LabelValue(fmt.Sprintf("10.0.0.%d:%d", i, 8080+port)),
					"__meta_kubernetes_pod_name": model.LabelValue(fmt.Sprintf("pod-%d", i)),
				}
				if job == "a" && i < 5 {
					tl["__meta_kubernetes_pod_label_everywhere"] = "true"
				}
				tg.Targets = append(tg.Targets, tl)
			}
		}
		tsets[job] = []*targetgroup.Group{tg}
	}
	podOwner := map[string][]string{} // pod → owners over both jobs and ports
	for _, self := range three {
		f, err := NewFilter(FilterOptions{Self: self, Members: newTestMembers(three...)})
		require.NoError(t, err)
		f.SetScrapeConfigs(scs)
		for _, groups := range filterOnce(f, tsets) {
			for _, tl := range groups[0].Targets {
				pod := string(tl["__meta_kubernetes_pod_name"])
				if !slices.Contains(podOwner[pod], self) {
					podOwner[pod] = append(podOwner[pod], self)
				}
			}
		}
	}
	require.Len(t, podOwner, 60)
	perMember := map[string]int{}
	for i := range 60 {
		o := podOwner[fmt.Sprintf("pod-%d", i)]
		if i < 5 {
			require.ElementsMatch(t, three, o, "pod-%d: __tmp_disable_sharding in job a", i)
			continue
		}
		require.Len(t, o, 1, "pod-%d: all endpoints of both jobs on one member", i)
		perMember[o[0]]++
	}
	require.Len(t, perMember, 3, "pods are still spread: %v", perMember)
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
	st := f.Stats()
	require.NotZero(t, st.HandoffView)
	st.HandoffView = 0
	require.Equal(t, Stats{Ready: false, TotalTargets: 51, KeyVersion: KeySeries, Owned: map[string]int{"n0": 0, "n1": 0, "n2": 0}}, st)
}

func TestFilterHandoff(t *testing.T) {
	members := newTestMembers("n0", "n1")
	stale := &testStaleness{}
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: members, Staleness: stale})
	tsets := podGroups(200, noNode)
	before := finalTargets(t, filterOnce(f, tsets))[podJob]

	members.set(three...)
	after := finalTargets(t, recomputeAll(f, false))[podJob]
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

	// A changed interval gives every target a new identity in the scrape
	// pool but moves none: no handoff, Prometheus' own markers apply.
	scs, err := loadScrapeConfigs(strings.Replace(testConfig, "scrape_interval: 15s", "scrape_interval: 20s", 1))
	require.NoError(t, err)
	f.SetScrapeConfigs(scs)
	require.Len(t, finalTargets(t, recomputeAll(f, true))[podJob], len(after)-1)
	require.Empty(t, stale.disabled)
}

func TestFilterHandoffBackBeforeReload(t *testing.T) {
	members := newTestMembers("n0")
	stale := &testStaleness{}
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: members, Staleness: stale})
	tsets := podGroups(100, noNode)
	all := filterOnce(f, tsets)
	// The scrape manager runs a loop for every target n0 sent.
	stale.active = loopsFor(f, all)

	members.set("n0", "n1") // about half move away: their loops get the flag
	recomputeAll(f, false)
	movedAway := len(stale.disabled[podJob])
	require.NotZero(t, movedAway)
	members.set("n0") // back before the scrape manager reloaded
	back := finalTargets(t, recomputeAll(f, false))
	require.Len(t, back[podJob], 100-movedAway, "targets whose flagged loop still runs are held back")
	require.True(t, f.withheld.Load())

	// The scrape manager reloads: the flagged loops are gone.
	stale.active = map[string][]*scrape.Target{}
	back = finalTargets(t, recomputeAll(f, false))
	require.Len(t, back[podJob], 100, "they come back in fresh loops")
	require.False(t, f.withheld.Load())
	require.Empty(t, f.flagged[podJob])
}

func TestFilterNodeStrategy(t *testing.T) {
	members := &testMembers{ready: true, changes: make(chan struct{}, 1), members: []Member{
		{Name: "n0", State: StateParticipant, KubernetesNode: "node-a"},
		{Name: "n1", State: StateParticipant, KubernetesNode: "node-b"},
		{Name: "n2", State: StateJoining, KubernetesNode: "node-c"},
	}}
	nodes := []string{"node-a", "node-b", "node-c", "", "node-without-member"}
	tsets := podGroups(300, func(i int) string { return nodes[i%len(nodes)] })
	owners := map[string][]string{}
	for i, self := range three {
		f := newTestFilter(t, FilterOptions{Self: self, Members: members, Strategy: StrategyNode, NodeName: nodes[i]})
		for _, ls := range finalTargets(t, filterOnce(f, tsets))[podJob] {
			owners[ls] = append(owners[ls], self)
		}
		st := f.Stats()
		if self == "n0" {
			// n0 sees n2 joining: node-c's targets are n2's own, but
			// from n0 no participant is there yet.
			require.Equal(t, map[string]int{"node-without-member": 60, "node-c": 60}, st.Unowned)
		}
		if self == "n2" {
			require.Equal(t, 60, st.Owned["n2"], "a joining member owns its node's pods: nobody else discovers them")
		}
	}
	require.Len(t, owners, 240, "targets on a node without a member are owned by nobody")
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
		case strings.Contains(ls, `node="node-without-member"`):
			t.Fatalf("owned: %s", ls)
		default:
			nodeless[o[0]]++
		}
	}
	require.Len(t, nodeless, 2, "node-less targets are split over the participants: %v", nodeless)
}

// runFilter runs f until the test ends, after dropping the change signals
// of the set-up, and returns its input and output channels.
func runFilter(t *testing.T, f *Filter, members *testMembers) (chan<- map[string][]*targetgroup.Group, <-chan map[string][]*targetgroup.Group) {
	return startFilter(t, f, members, f.Run)
}

func startFilter(t *testing.T, f *Filter, members *testMembers, run func(context.Context, <-chan map[string][]*targetgroup.Group, chan<- map[string][]*targetgroup.Group) error) (chan<- map[string][]*targetgroup.Group, <-chan map[string][]*targetgroup.Group) {
	drain(members.changes)
	drain(f.cfgChanged)
	in := make(chan map[string][]*targetgroup.Group)
	out := make(chan map[string][]*targetgroup.Group)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, in, out) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return in, out
}

func TestFilterRun(t *testing.T) {
	members := newTestMembers("n0")
	stale := &testStaleness{}
	reg := prometheus.NewRegistry()
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: members, Staleness: stale, Registerer: reg})
	in, out := runFilter(t, f, members)
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
		{"strategy", FilterOptions{Self: "a", Members: m, Strategy: "ring"}, "unknown strategy"},
		{"node strategy with R=2", FilterOptions{Self: "a", Members: m, Strategy: StrategyNode, ReplicationFactor: 2}, "cannot be combined with the node strategy"},
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
	recomputeAll(f, true)
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
		for _, tl := range groupTargets(filterOnce(f, tsets)[podJob]) {
			if tl["__scrape_interval__"] == "not-a-duration" {
				holders++ // its scrape pool logs why the target is invalid
			}
		}
		require.Equal(t, 5, f.Stats().TotalTargets)
	}
	require.Equal(t, 1, holders)
}

func TestFilterPrimed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfgs   bool
		input  map[string][]*targetgroup.Group
		wait   time.Duration
		primed bool
	}{
		{"no configuration yet", false, podGroups(3, noNode), time.Hour, false},
		{"no input yet", true, nil, time.Hour, false},
		{"every job has groups", true, podGroups(3, noNode), time.Hour, true},
		{"a job is missing", true, map[string][]*targetgroup.Group{podJob: podGroups(3, noNode)[podJob]}, time.Nanosecond, false},
		{"a job has no group: wait", true, map[string][]*targetgroup.Group{podJob: podGroups(3, noNode)[podJob], "static": {}}, time.Hour, false},
		{"a job has no group: waited", true, map[string][]*targetgroup.Group{podJob: podGroups(3, noNode)[podJob], "static": {}}, time.Nanosecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFilter(FilterOptions{Self: "n0", Members: newTestMembers("n0"), DiscoveryWait: tc.wait})
			require.NoError(t, err)
			if tc.cfgs {
				f.SetScrapeConfigs(testScrapeConfigs(t))
			}
			f.setInput(tc.input)
			f.checkPrimed()
			time.Sleep(time.Millisecond)
			require.Equal(t, tc.primed, f.Primed())
		})
	}
	t.Run("empty configuration", func(t *testing.T) {
		f, err := NewFilter(FilterOptions{Self: "n0", Members: newTestMembers("n0")})
		require.NoError(t, err)
		f.SetScrapeConfigs(nil)
		f.checkPrimed()
		require.True(t, f.Primed())
	})
}

func TestFilterRelease(t *testing.T) {
	members := newTestMembers("n0", "n1")
	stale := &testStaleness{}
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: members, Staleness: stale})
	in, out := runFilter(t, f, members)
	in <- podGroups(40, noNode)
	owned := len(finalTargets(t, <-out)[podJob])
	require.NotZero(t, owned)

	f.Release()
	require.Empty(t, finalTargets(t, <-out)[podJob], "a releasing member owns nothing")
	require.Len(t, stale.disabled[podJob], owned, "its targets are handed off without staleness markers")
	members.set("n0") // n1 gone: nothing is sent any more
	select {
	case o := <-out:
		t.Fatalf("sent after release: %v", o)
	case <-time.After(200 * time.Millisecond):
	}
}

// A target relabeling drops is scraped by nobody and never sent to a scrape
// pool; exactly one member reports it (DroppedTargets), with the discovered
// labels its pool would have listed.
func TestFilterDroppedTargetReportedByOneMember(t *testing.T) {
	tsets := podGroups(20, noNode)
	tsets[podJob][0].Targets[3]["__meta_kubernetes_pod_annotation_drop"] = "true"
	reporters := 0
	for _, self := range three {
		f := newTestFilter(t, FilterOptions{Self: self, Members: newTestMembers(three...)})
		out := filterOnce(f, tsets)
		for _, tg := range out[podJob] {
			for _, tl := range tg.Targets {
				require.NotEqual(t, model.LabelValue("true"), tl["__meta_kubernetes_pod_annotation_drop"], "sent to a scrape pool")
			}
		}
		ls, counts := f.DroppedTargets()
		if counts[podJob] == 0 {
			require.Empty(t, ls[podJob])
			continue
		}
		reporters++
		require.Equal(t, map[string]int{podJob: 1}, counts)
		require.Len(t, ls[podJob], 1)
		d := ls[podJob][0]
		require.Equal(t, "true", d.Get("__meta_kubernetes_pod_annotation_drop"))
		require.Equal(t, "app-3", d.Get("__meta_kubernetes_pod_name"))
		require.Equal(t, "default", d.Get("__meta_kubernetes_namespace"), "group labels too")
		require.Equal(t, podJob, d.Get("job"), "and the job's defaults, as Prometheus lists them")
	}
	require.Equal(t, 1, reporters)

	notReady := newTestMembers(three...)
	notReady.ready = false
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: notReady})
	filterOnce(f, tsets)
	_, counts := f.DroppedTargets()
	require.Empty(t, counts, "a member that owns nothing reports nothing")
}

// keep_dropped_targets bounds the dropped targets listed per job, not their
// count; a job gone reports none.
func TestFilterDroppedTargetsKeepLimit(t *testing.T) {
	tsets := podGroups(40, noNode)
	for _, tl := range tsets[podJob][0].Targets {
		tl["__meta_kubernetes_pod_annotation_drop"] = "true"
	}
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: newTestMembers("n0")})
	cfgs := testScrapeConfigs(t)
	for _, c := range cfgs {
		if c.JobName == podJob {
			c.KeepDroppedTargets = 5
		}
	}
	f.SetScrapeConfigs(cfgs)
	filterOnce(f, tsets)
	ls, counts := f.DroppedTargets()
	require.Equal(t, 40, counts[podJob])
	require.Len(t, ls[podJob], 5)

	delete(tsets, podJob)
	filterOnce(f, tsets)
	ls, counts = f.DroppedTargets()
	require.Empty(t, ls)
	require.Empty(t, counts)
}

// A changed input group whose owned targets are the same (only targets
// relabeling drops changed, as pod churn in a namespace does to every job
// reading it) keeps the job's output slice: its scrape pool is not synced.
func TestFilterDroppedOnlyChangeKeepsOutput(t *testing.T) {
	tsets := podGroups(20, noNode)
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: newTestMembers("n0")})
	prev := filterOnce(f, tsets)

	tg := *tsets[podJob][0]
	tg.Labels = maps.Clone(tg.Labels)
	tg.Targets = slices.Clone(tg.Targets)
	for i := range tg.Targets {
		tg.Targets[i] = maps.Clone(tg.Targets[i])
	}
	dropped := pod(99, 80, "")
	dropped["__meta_kubernetes_pod_annotation_drop"] = "true"
	tg.Targets = append(tg.Targets, dropped)
	next := maps.Clone(tsets)
	next[podJob] = []*targetgroup.Group{&tg}
	out := filterOnce(f, next)
	require.True(t, sameSlice(prev[podJob], out[podJob]), "same owned targets, same slice")
	_, counts := f.DroppedTargets()
	require.Equal(t, 1, counts[podJob], "the new dropped target is reported")

	next2 := maps.Clone(next)
	tg2 := tg
	tg2.Targets = slices.Clone(tg.Targets)
	tg2.Targets[0] = pod(98, 80, "")
	next2[podJob] = []*targetgroup.Group{&tg2}
	out = filterOnce(f, next2)
	require.False(t, sameSlice(prev[podJob], out[podJob]), "an owned target changed")
}

// loopsFor returns the targets the scrape manager runs for the groups f
// sent: one loop per target, as its pools build them.
func loopsFor(f *Filter, sent map[string][]*targetgroup.Group) map[string][]*scrape.Target {
	active := map[string][]*scrape.Target{}
	for job, groups := range sent {
		for _, tg := range groups {
			ts, _ := scrape.TargetsFromGroup(tg, f.prepared[job].cfg, nil, labels.NewBuilder(labels.EmptyLabels()))
			active[job] = append(active[job], ts...)
		}
	}
	return active
}
