package agent

import (
	"fmt"
	"maps"
	"testing"

	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/stretchr/testify/require"
)

func k8sJob(name string, role kubernetes.Role, namespaces ...string) *promconfig.ScrapeConfig {
	return &promconfig.ScrapeConfig{JobName: name, ServiceDiscoveryConfigs: promdiscovery.Configs{&kubernetes.SDConfig{
		Role: role, KubeConfig: "/kubeconfig", NamespaceDiscovery: kubernetes.NamespaceDiscovery{Names: namespaces},
	}}}
}

func TestSDRegistryShares(t *testing.T) {
	for _, tc := range []struct {
		name        string
		clusterWide bool
		jobs        []*promconfig.ScrapeConfig
		wantSets    int
		wantNS      map[string][]string // job -> namespaces kept (nil: all)
	}{
		{
			name:        "cluster-wide: namespaced configs of one role share one discovery",
			clusterWide: true,
			jobs: []*promconfig.ScrapeConfig{
				k8sJob("a", kubernetes.RoleEndpointSlice, "ns1"), k8sJob("b", kubernetes.RoleEndpointSlice, "ns2"),
				k8sJob("c", kubernetes.RoleEndpointSlice, "ns1", "ns3"), k8sJob("d", kubernetes.RolePod, "ns1"),
			},
			wantSets: 2,
			wantNS:   map[string][]string{"a": {"ns1"}, "b": {"ns2"}, "c": {"ns1", "ns3"}, "d": {"ns1"}},
		},
		{
			name: "per namespace: identical configs share, others do not",
			jobs: []*promconfig.ScrapeConfig{
				k8sJob("a", kubernetes.RoleEndpointSlice, "ns1"), k8sJob("b", kubernetes.RoleEndpointSlice, "ns1"),
				k8sJob("c", kubernetes.RoleEndpointSlice, "ns2"),
			},
			wantSets: 2,
			wantNS:   map[string][]string{"a": nil, "b": nil, "c": nil},
		},
		{
			name:        "cluster-wide: node role and all-namespace configs are kept as they are",
			clusterWide: true,
			jobs: []*promconfig.ScrapeConfig{
				k8sJob("a", kubernetes.RoleNode, "ns1"), k8sJob("b", kubernetes.RoleEndpointSlice),
				k8sJob("c", kubernetes.RoleEndpointSlice, "ns2"),
			},
			wantSets: 2, // node; endpointslice all namespaces (b and c share it)
			wantNS:   map[string][]string{"a": nil, "b": nil, "c": {"ns2"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSDJobs(tc.clusterWide)
			p := s.plan(tc.jobs)
			require.True(t, p.changed)
			require.Len(t, p.sets, tc.wantSets)
			for job, want := range tc.wantNS {
				srcs := p.changes[job]
				require.Len(t, srcs, 1, job)
				if want == nil {
					require.Nil(t, srcs[0].namespaces, job)
					continue
				}
				require.Len(t, srcs[0].namespaces, len(want), job)
				for _, ns := range want {
					require.Contains(t, srcs[0].namespaces, ns, job)
				}
				require.Empty(t, p.sets[srcs[0].set][0].(*kubernetes.SDConfig).NamespaceDiscovery.Names, "shared discovery is cluster-wide")
			}
			p.commit()

			// The same jobs again, and a new job in a new namespace: with
			// cluster-wide sharing the discovery is unchanged.
			var copies []*promconfig.ScrapeConfig
			for _, sc := range tc.jobs {
				c := *sc
				copies = append(copies, &c)
			}
			again := s.plan(copies)
			require.False(t, again.changed)
			require.Len(t, again.changes, len(tc.jobs))
			for job := range tc.wantNS {
				require.Equal(t, p.changes[job][0].set, again.changes[job][0].set, "set names are stable")
			}
		})
	}
}

func TestSDRegistryNewNamespace(t *testing.T) {
	jobs := []*promconfig.ScrapeConfig{k8sJob("a", kubernetes.RoleEndpointSlice, "ns1")}
	for _, clusterWide := range []bool{true, false} {
		s := newSDJobs(clusterWide)
		p := s.plan(jobs)
		p.commit()
		next := s.plan(append(jobs, k8sJob("b", kubernetes.RoleEndpointSlice, "ns-new")))
		require.Equal(t, !clusterWide, next.changed, "clusterWide=%v", clusterWide)
		next.commit()
		// Removing the job forgets its configuration.
		last := s.plan(jobs)
		require.Equal(t, !clusterWide, last.changed)
		require.Equal(t, map[string][]jobSource{"b": nil}, last.changes)
		last.commit()
		require.Equal(t, 1, s.r.sets())
		require.Len(t, s.r.entries, 1)
		require.Len(t, s.r.byKey, 1)
	}
}

func TestSDRegistryUncommittedPlan(t *testing.T) {
	s := newSDJobs(false)
	p := s.plan([]*promconfig.ScrapeConfig{k8sJob("a", kubernetes.RolePod, "ns1")})
	p.commit()
	// A plan that is not committed (its apply failed) changes nothing.
	s.plan([]*promconfig.ScrapeConfig{k8sJob("b", kubernetes.RolePod, "ns2")})
	again := s.plan([]*promconfig.ScrapeConfig{k8sJob("a", kubernetes.RolePod, "ns1")})
	require.False(t, again.changed)
	// The next commit forgets the name the uncommitted plan gave.
	again.commit()
	require.Equal(t, 1, s.r.sets())
	require.Len(t, s.r.entries, 1)
}

// sdJobs plans a registry's discovery for whole configurations, as the
// agent does: the jobs not committed as they are (by pointer), and those
// gone, are the changes.
type sdJobs struct {
	r         *sdRegistry
	committed map[string]*promconfig.ScrapeConfig
}

func newSDJobs(clusterWide bool) *sdJobs {
	return &sdJobs{r: newSDRegistry(clusterWide), committed: map[string]*promconfig.ScrapeConfig{}}
}

func (s *sdJobs) plan(jobs []*promconfig.ScrapeConfig) *sdPlan {
	changes := map[string]*promconfig.ScrapeConfig{}
	names := map[string]bool{}
	for _, sc := range jobs {
		names[sc.JobName] = true
		if s.committed[sc.JobName] != sc {
			changes[sc.JobName] = sc
		}
	}
	for job := range s.committed {
		if !names[job] {
			changes[job] = nil
		}
	}
	p := s.r.plan(changes)
	commit := p.commit
	p.commit = func() {
		commit()
		for job, sc := range changes {
			if sc == nil {
				delete(s.committed, job)
			} else {
				s.committed[job] = sc
			}
		}
	}
	return p
}

func group(source, ns string, addrs ...string) *targetgroup.Group {
	tg := &targetgroup.Group{Source: source, Labels: model.LabelSet{namespaceLabel: model.LabelValue(ns)}}
	for _, a := range addrs {
		tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	return tg
}

func TestFanoutRoutesNamespacesAndKeepsUnchangedSlices(t *testing.T) {
	f := newFanout()
	plan := map[string][]jobSource{
		"a":   {{set: "sd/0", namespaces: map[string]struct{}{"ns1": {}}}},
		"b":   {{set: "sd/0", namespaces: map[string]struct{}{"ns2": {}}}},
		"all": {{set: "sd/0"}},
		"s":   {{set: "sd/1"}},
	}
	g1, g2 := group("eps/ns1/x", "ns1", "1:80"), group("eps/ns2/y", "ns2", "2:80")
	build := func(prev map[string][]*targetgroup.Group, dirty map[string]map[string]bool) (map[string][]*targetgroup.Group, map[string][]*targetgroup.Group) {
		changes := f.build(plan, dirty)
		plan = nil // the sources are handed once, then only their changes
		return applyChanges(maps.Clone(prev), changes), changes
	}
	out, changes := build(map[string][]*targetgroup.Group{}, f.update(map[string][]*targetgroup.Group{"sd/0": {g1, g2}}))
	require.Len(t, changes, 3)
	require.Equal(t, []*targetgroup.Group{g1}, out["a"])
	require.Equal(t, []*targetgroup.Group{g2}, out["b"])
	require.Equal(t, []*targetgroup.Group{g1, g2}, out["all"])
	require.NotContains(t, out, "s", "a job whose set was not delivered yet is not sent")

	// ns2 changes: a keeps its slice, b and all get new ones.
	g2b := group("eps/ns2/y", "ns2", "2:81")
	g3 := group("static", "", "3:80")
	next, changes := build(out, f.update(map[string][]*targetgroup.Group{"sd/0": {g1, g2b}, "sd/1": {g3}}))
	require.NotContains(t, changes, "a", "an unchanged job is not sent")
	require.Same(t, &out["a"][0], &next["a"][0], "unchanged job keeps its slice")
	require.Equal(t, []*targetgroup.Group{g2b}, next["b"])
	require.Equal(t, []*targetgroup.Group{g1, g2b}, next["all"])
	require.Equal(t, []*targetgroup.Group{g3}, next["s"])

	// A group deleted in ns1 empties a.
	last, _ := build(next, f.update(map[string][]*targetgroup.Group{"sd/0": {g2b}, "sd/1": {g3}}))
	require.Empty(t, last["a"])
	require.NotNil(t, last["a"], "a job without groups gets an empty list, not none")
	require.Same(t, &next["s"][0], &last["s"][0])

	// An apply changed sources: job a now reads ns2 too, b is gone, all
	// is handed on with the same sources.
	plan = map[string][]jobSource{
		"a":   {{set: "sd/0", namespaces: map[string]struct{}{"ns1": {}, "ns2": {}}}},
		"b":   nil,
		"all": {{set: "sd/0"}},
	}
	final, changes := build(last, nil)
	require.Equal(t, []*targetgroup.Group{g2b}, final["a"])
	require.NotContains(t, final, "b")
	require.Contains(t, changes, "b")
	require.Nil(t, changes["b"], "a job gone is sent as nil")
	require.Len(t, changes, 2)

	require.Same(t, &last["all"][0], &final["all"][0], "a job whose sources did not change keeps its slice")

	// Nothing changed: nothing to send.
	require.Empty(t, f.build(nil, f.update(map[string][]*targetgroup.Group{"sd/0": {g2b}, "sd/1": {g3}})))
}

func BenchmarkFanoutOneNamespaceChange(b *testing.B) {
	// 10,000 jobs over 500 namespaces (20 per namespace) read one shared
	// cluster-wide set of 1,000 groups (2 per namespace); one namespace's
	// group changes per iteration.
	f := newFanout()
	plan := map[string][]jobSource{}
	var groups []*targetgroup.Group
	for ns := range 500 {
		name := fmt.Sprintf("ns-%d", ns)
		for j := range 20 {
			plan[fmt.Sprintf("%s/job-%d", name, j)] = []jobSource{{set: "sd/0", namespaces: map[string]struct{}{name: {}}}}
		}
		groups = append(groups, group("eps/"+name+"/a", name, "1:80", "2:80"), group("eps/"+name+"/b", name, "3:80"))
	}
	f.build(plan, f.update(map[string][]*targetgroup.Group{"sd/0": groups}))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ns := fmt.Sprintf("ns-%d", i%500)
		next := append([]*targetgroup.Group(nil), groups...)
		next[2*(i%500)] = group("eps/"+ns+"/a", ns, "1:80", fmt.Sprintf("%d:80", i))
		groups = next
		f.build(nil, f.update(map[string][]*targetgroup.Group{"sd/0": groups}))
		i++
	}
}
