package sharding

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/stretchr/testify/require"
)

// twoMonitors are two jobs selecting the same Service port, as a team's
// own ServiceMonitor beside a platform one: prometheus-operator's
// relabeling gives their targets identical labels, job label included.
const twoMonitors = `
scrape_configs:
- job_name: serviceMonitor/team/app/0
  relabel_configs: &rc
  - source_labels: [__meta_kubernetes_pod_ip]
    target_label: __address__
    replacement: $1:8080
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
  - target_label: job
    replacement: app
  - target_label: endpoint
    replacement: http
- job_name: serviceMonitor/platform/app/0
  metrics_path: /metrics
  relabel_configs: *rc
`

func twoMonitorInput(n int) map[string][]*targetgroup.Group {
	tg := &targetgroup.Group{Source: "endpointslice/team/app", Labels: model.LabelSet{"__meta_kubernetes_namespace": "team"}}
	for i := range n {
		tg.Targets = append(tg.Targets, pod(i, 80, ""))
	}
	return map[string][]*targetgroup.Group{"serviceMonitor/team/app/0": {tg}, "serviceMonitor/platform/app/0": {tg}}
}

// seriesOwners runs one filter per member of members over input and
// returns, per final target label set, the members scraping it in any job,
// and the key version each filter used.
func seriesOwners(t *testing.T, members *testMembers, input map[string][]*targetgroup.Group) (map[string][]string, []KeyVersion) {
	t.Helper()
	scs, err := loadScrapeConfigs(twoMonitors)
	require.NoError(t, err)
	owners := map[string][]string{}
	var versions []KeyVersion
	for _, m := range members.Members() {
		f, err := NewFilter(FilterOptions{Self: m.Name, Members: members, KeyVersion: max(m.KeyVersion, KeyJobLabels)})
		require.NoError(t, err)
		f.SetScrapeConfigs(scs)
		out := filterOnce(f, input)
		for _, ls := range ownedSeries(t, scs, out) {
			owners[ls] = append(owners[ls], m.Name)
		}
		versions = append(versions, f.Stats().KeyVersion)
	}
	return owners, versions
}

// ownedSeries lists, once per job, the public labels of the targets in out.
func ownedSeries(t *testing.T, scs []*config.ScrapeConfig, out map[string][]*targetgroup.Group) []string {
	t.Helper()
	var res []string
	for _, sc := range scs {
		res = append(res, finalTargetsOf(t, sc, out[sc.JobName])...)
	}
	return res
}

// ownedTargets lists the owned targets of out as "job labels".
func ownedTargets(t *testing.T, scs []*config.ScrapeConfig, out map[string][]*targetgroup.Group) []string {
	t.Helper()
	var res []string
	for _, sc := range scs {
		for _, ls := range finalTargetsOf(t, sc, out[sc.JobName]) {
			res = append(res, sc.JobName+" "+ls)
		}
	}
	return res
}

// finalTargetsOf returns the public labels of the targets the scrape pool of
// sc builds from groups, sorted and without duplicates.
func finalTargetsOf(t *testing.T, sc *config.ScrapeConfig, groups []*targetgroup.Group) []string {
	t.Helper()
	lb := labels.NewBuilder(labels.EmptyLabels())
	var res []string
	for _, tg := range groups {
		targets, failures := scrape.TargetsFromGroup(tg, sc, nil, lb)
		require.Empty(t, failures)
		for _, tt := range targets {
			if ls := tt.Labels(lb); !ls.IsEmpty() {
				res = append(res, ls.String())
			}
		}
	}
	slices.Sort(res)
	return slices.Compact(res)
}

func TestFilterSameSeriesOfTwoJobsHaveOneOwner(t *testing.T) {
	input := twoMonitorInput(120)
	members := newTestMembers(three...)
	owners, versions := seriesOwners(t, members, input)
	require.Equal(t, []KeyVersion{KeySeries, KeySeries, KeySeries}, versions)
	require.Len(t, owners, 120)
	for ls, o := range owners {
		require.Len(t, o, 2, "%s: both jobs' targets are scraped", ls)
		require.Equal(t, o[0], o[1], "%s: one member writes the series of both jobs", ls)
	}

	// With one member of the current release (no key version announced),
	// everybody keeps the job-and-labels key, which splits most pairs.
	members.mtx.Lock()
	members.members[2].KeyVersion = 0
	members.mtx.Unlock()
	owners, versions = seriesOwners(t, members, input)
	require.Equal(t, []KeyVersion{KeyJobLabels, KeyJobLabels, KeyJobLabels}, versions)
	split := 0
	for _, o := range owners {
		require.Len(t, o, 2)
		if o[0] != o[1] {
			split++
		}
	}
	require.Greater(t, split, 40, "the legacy key splits most pairs over members")
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		self  KeyVersion
		peers []KeyVersion
		want  KeyVersion
	}{
		{KeySeries, nil, KeySeries},
		{KeySeries, []KeyVersion{KeySeries, KeySeries}, KeySeries},
		{KeySeries, []KeyVersion{KeySeries, 0}, KeyJobLabels},
		{KeySeries, []KeyVersion{KeyJobLabels}, KeyJobLabels},
		{KeyJobLabels, []KeyVersion{KeySeries}, KeyJobLabels},
		{KeySeries, []KeyVersion{KeySeries + 1}, KeySeries}, // a newer peer
	} {
		require.Equal(t, tc.want, negotiate(tc.self, tc.peers...), "%d %v", tc.self, tc.peers)
	}
}

func TestNodeMetaExtensions(t *testing.T) {
	web := "https://10.0.0.5:9090"
	for _, tc := range []struct {
		name       string
		node, zone string
		version    KeyVersion
		web        *string
		want       peerMeta
		raw        string
	}{
		{"legacy", "n", "z", KeyJobLabels, &web,
			peerMeta{state: StateJoining, node: "n", zone: "z", web: web}, "jn\x00z\x00" + web},
		{"legacy without web", "n", "", KeyJobLabels, nil,
			peerMeta{state: StateJoining, node: "n"}, "jn\x00"},
		{"current", "n", "z", KeySeries, &web,
			peerMeta{state: StateJoining, node: "n", zone: "z", web: web, keyVersion: KeySeries}, "jn\x00z\x00" + web + "\x00k2"},
		{"current without web", "", "", KeySeries, nil,
			peerMeta{state: StateJoining, keyVersion: KeySeries}, "j\x00\x00\x00k2"},
		{"released", "", "", KeySeries, nil,
			peerMeta{state: StateJoining, keyVersion: KeySeries, confirms: true, released: 0xfedcba9876543210}, "j\x00\x00\x00k2 rfedcba9876543210"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := &nodeMeta{node: tc.node, zone: tc.zone, keyVersion: tc.version}
			meta.state.Store(metaJoining)
			meta.released.Store(tc.want.released)
			if tc.web != nil {
				meta.web.Store(tc.web)
			}
			raw := meta.NodeMeta(512)
			require.Equal(t, tc.raw, string(raw))
			require.Equal(t, tc.want, decodeMeta(raw))
		})
	}
	// Tokens of later versions are ignored, a later key version is kept.
	require.Equal(t, peerMeta{state: StateParticipant, keyVersion: 3}, decodeMeta([]byte("p\x00\x00\x00x9 k3 zz")))
	// A release that does not parse still says the peer confirms handoffs.
	require.Equal(t, peerMeta{state: StateParticipant, keyVersion: 2, confirms: true}, decodeMeta([]byte("p\x00\x00\x00k2 rzz")))
}

// TestFilterRekeyMatchesFresh switches a running filter's key version (the
// last legacy peer is upgraded) and compares its output with a fresh
// filter's; the targets that moved away are handed off (no staleness
// markers), not dropped.
func TestFilterRekeyMatchesFresh(t *testing.T) {
	scs, err := loadScrapeConfigs(twoMonitors)
	require.NoError(t, err)
	input := twoMonitorInput(90)
	members := newTestMembers(three...)
	members.mtx.Lock()
	members.members[1].KeyVersion = 0
	members.mtx.Unlock()
	st := &testStaleness{}
	f, err := NewFilter(FilterOptions{Self: "n0", Members: members, Staleness: st})
	require.NoError(t, err)
	f.SetScrapeConfigs(scs)
	before := ownedSeries(t, scs, filterOnce(f, input))
	require.Equal(t, KeyJobLabels, f.Stats().KeyVersion)

	members.mtx.Lock()
	members.members[1].KeyVersion = KeySeries
	members.mtx.Unlock()
	after := ownedSeries(t, scs, recomputeAll(f, false))
	require.Equal(t, KeySeries, f.Stats().KeyVersion)

	fresh, err := NewFilter(FilterOptions{Self: "n0", Members: members})
	require.NoError(t, err)
	fresh.SetScrapeConfigs(scs)
	require.ElementsMatch(t, ownedSeries(t, scs, filterOnce(fresh, input)), after)
	require.Equal(t, fresh.Stats(), f.Stats())

	var moved []string
	for _, ls := range before {
		if !slices.Contains(after, ls) {
			moved = append(moved, ls)
		}
	}
	require.NotEmpty(t, moved)
	var disabled []string
	for _, ls := range st.disabled {
		disabled = append(disabled, ls...)
	}
	// Each moved (job, target) pair had its markers disabled: compare as
	// multisets of label sets.
	slices.Sort(moved)
	slices.Sort(disabled)
	require.Equal(t, moved, disabled)
}

// TestMixedClusterRollingUpgrade rolls a three-member cluster of the
// current release (KeyJobLabels, no metadata extensions) over to this one,
// member by member, on real memberlist gossip. At every steady point each
// target has exactly one owner, under the key every member then uses:
// KeyJobLabels while any older member is alive, KeySeries after.
func TestMixedClusterRollingUpgrade(t *testing.T) {
	scs, err := loadScrapeConfigs(twoMonitors)
	require.NoError(t, err)
	input := twoMonitorInput(60)
	type member struct {
		c    *Cluster
		f    *Filter
		stop func()
		mtx  sync.Mutex
		out  map[string][]*targetgroup.Group
	}
	start := func(name string, v KeyVersion, join []string) *member {
		c, stopCluster := startCluster(t, ClusterConfig{NodeName: name, Join: join, KeyVersion: v, HandoffDelay: time.Millisecond})
		f, err := NewFilter(FilterOptions{Self: name, Members: c, KeyVersion: v})
		require.NoError(t, err)
		f.SetScrapeConfigs(scs)
		m := &member{c: c, f: f}
		ctx, cancel := context.WithCancel(context.Background())
		in, out := make(chan map[string][]*targetgroup.Group, 1), make(chan map[string][]*targetgroup.Group)
		in <- input
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = f.Run(ctx, in, out) }()
		go func() {
			defer wg.Done()
			for {
				select {
				case o := <-out:
					m.mtx.Lock()
					m.out = o
					m.mtx.Unlock()
				case <-ctx.Done():
					return
				}
			}
		}()
		c.Participate()
		m.stop = func() { stopCluster(); cancel(); wg.Wait() }
		t.Cleanup(func() { cancel(); wg.Wait() })
		return m
	}
	members := map[string]*member{}
	for i, name := range three {
		var join []string
		if i > 0 {
			join = []string{members["n0"].c.Addr()}
		}
		members[name] = start(name, KeyJobLabels, join)
	}
	// steady waits until every member sees all three alive and uses want,
	// then checks that every series has exactly one owner.
	steady := func(want KeyVersion) {
		t.Helper()
		var last string
		require.Eventually(t, func() bool {
			owners, byTarget := map[string][]string{}, map[string][]string{}
			for name, m := range members {
				if len(aliveNames(m.c)) != 3 || m.f.Stats().KeyVersion != want || !m.c.Participant() {
					last = fmt.Sprintf("%s: alive %v, key version %d", name, aliveNames(m.c), m.f.Stats().KeyVersion)
					return false
				}
				m.mtx.Lock()
				out := maps.Clone(m.out)
				m.mtx.Unlock()
				for _, ls := range ownedSeries(t, scs, out) {
					owners[ls] = append(owners[ls], name)
				}
				for _, jt := range ownedTargets(t, scs, out) {
					byTarget[jt] = append(byTarget[jt], name)
				}
			}
			if len(byTarget) != 120 {
				last = fmt.Sprintf("%d of 120 targets owned", len(byTarget))
				return false
			}
			for jt, o := range byTarget {
				if len(o) != 1 {
					last = fmt.Sprintf("%s owned by %v", jt, o)
					return false
				}
			}
			if len(owners) != 60 {
				last = fmt.Sprintf("%d series owned", len(owners))
				return false
			}
			for ls, o := range owners {
				// Both jobs' targets of a series are scraped: under
				// KeySeries by the same member.
				if len(o) != 2 || (want == KeySeries && o[0] != o[1]) {
					last = fmt.Sprintf("%s owned by %v", ls, o)
					return false
				}
			}
			return true
		}, 15*time.Second, 50*time.Millisecond, "not steady: %s", &last)
	}
	steady(KeyJobLabels)
	for i, name := range three {
		members[name].stop()
		other := members[three[(i+1)%3]].c.Addr()
		members[name] = start(name, LatestKeyVersion, []string{other})
		if i < 2 {
			steady(KeyJobLabels)
		}
	}
	steady(KeySeries)
}

// TestFilterRekeyKeepsTmpHashKeys: a key-version switch re-keys the records
// of sent targets from their entries, so a target keyed by __tmp_hash (a
// label its public labels lack) keeps its key: it stays owned and sent,
// not mistaken for a gained target.
func TestFilterRekeyKeepsTmpHashKeys(t *testing.T) {
	scs, err := loadScrapeConfigs(`
scrape_configs:
- job_name: serviceMonitor/team/app/0
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_ip]
    target_label: __address__
    replacement: $1:8080
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: __tmp_hash
`)
	require.NoError(t, err)
	input := map[string][]*targetgroup.Group{"serviceMonitor/team/app/0": twoMonitorInput(60)["serviceMonitor/team/app/0"]}
	members := newTestMembers(three...)
	members.mtx.Lock()
	members.members[1].KeyVersion = 0
	members.mtx.Unlock()
	f, err := NewFilter(FilterOptions{Self: "n0", Members: members, Staleness: &testStaleness{}})
	require.NoError(t, err)
	f.SetScrapeConfigs(scs)
	filterOnce(f, input)
	keys := func(f *Filter) []uint64 {
		var out []uint64
		for _, st := range f.sent["serviceMonitor/team/app/0"] {
			out = append(out, st.ownKey)
		}
		slices.Sort(out)
		return out
	}
	before := keys(f)
	require.NotEmpty(t, before)
	members.mtx.Lock()
	members.members[1].KeyVersion = KeySeries
	members.mtx.Unlock()
	recomputeAll(f, false)
	require.Equal(t, KeySeries, f.Stats().KeyVersion)
	require.Equal(t, before, keys(f), "__tmp_hash keys do not depend on the key version")
	require.Zero(t, f.totals.held, "no target mistaken for a gained one")
}
