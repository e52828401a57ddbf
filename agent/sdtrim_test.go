package agent

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"
)

func relabelRules(t testing.TB, y string) []*relabel.Config {
	t.Helper()
	var rules []*relabel.Config
	require.NoError(t, yaml.UnmarshalStrict([]byte(y), &rules))
	return rules
}

func TestLabelNeeds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keep  []string
		rules string
		kept  []model.LabelName
		gone  []model.LabelName
	}{
		{
			name: "source labels of every action; labels outside __meta_ always",
			rules: `
- {source_labels: [__meta_kubernetes_service_name], regex: svc, action: keep}
- {source_labels: [__meta_kubernetes_pod_name, __meta_kubernetes_namespace], separator: /, target_label: pod}
- {source_labels: [__meta_kubernetes_pod_uid], target_label: __tmp_hash, modulus: 4, action: hashmod}
- {source_labels: [__meta_kubernetes_pod_phase], action: lowercase, target_label: phase}
`,
			kept: []model.LabelName{"__meta_kubernetes_service_name", "__meta_kubernetes_pod_name", "__meta_kubernetes_namespace",
				"__meta_kubernetes_pod_uid", "__meta_kubernetes_pod_phase", "__address__", "__scheme__", "custom", "__tmp_x"},
			gone: []model.LabelName{"__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_label_app"},
		},
		{
			name: "keepequal and dropequal read their target label",
			rules: `
- {source_labels: [__meta_kubernetes_pod_container_port_number], target_label: __meta_kubernetes_endpointslice_port, action: keepequal}
- {source_labels: [__meta_kubernetes_pod_ip], target_label: __meta_kubernetes_pod_host_ip, action: dropequal}
`,
			kept: []model.LabelName{"__meta_kubernetes_pod_container_port_number", "__meta_kubernetes_endpointslice_port",
				"__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_host_ip"},
			gone: []model.LabelName{"__meta_kubernetes_pod_name"},
		},
		{
			name: "labelmap reads every name its regex matches; labeldrop and labelkeep read none",
			rules: `
- {regex: __meta_kubernetes_pod_label_(.+), action: labelmap}
- {regex: __meta_kubernetes_service_annotation_(.+), action: labeldrop}
- {regex: __meta_kubernetes_node_(.+), action: labelkeep}
`,
			kept: []model.LabelName{"__meta_kubernetes_pod_label_app", "__meta_kubernetes_pod_label_team"},
			gone: []model.LabelName{"__meta_kubernetes_pod_labelpresent_app", "__meta_kubernetes_service_annotation_x",
				"__meta_kubernetes_node_name"},
		},
		{
			name: "kept names without rules",
			keep: []string{"__meta_kubernetes_pod_node_name"},
			kept: []model.LabelName{"__meta_kubernetes_pod_node_name"},
			gone: []model.LabelName{"__meta_kubernetes_pod_name"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newLabelNeeds(tc.keep)
			rules := relabelRules(t, tc.rules)
			require.Equal(t, len(rules) > 0, n.add(rules), "first add grows")
			require.False(t, n.add(rules), "the same rules again do not grow")
			s := n.load()
			for _, l := range tc.kept {
				require.True(t, s.keeps(l), "%s is kept", l)
			}
			for _, l := range tc.gone {
				require.False(t, s.keeps(l), "%s is trimmed", l)
			}
		})
	}
}

// fakeSD is a discovery of mutable objects: every discoverer sends each
// object on start, then every change (like Kubernetes SD after its
// initial list).
type fakeSD struct {
	mtx  sync.Mutex
	objs map[string]*targetgroup.Group
	subs map[chan *targetgroup.Group]struct{}
	runs int
}

func (s *fakeSD) Name() string { return "fake" }
func (s *fakeSD) NewDiscovererMetrics(prometheus.Registerer, promdiscovery.RefreshMetricsInstantiator) promdiscovery.DiscovererMetrics {
	return nil
}
func (s *fakeSD) NewDiscoverer(promdiscovery.DiscovererOptions) (promdiscovery.Discoverer, error) {
	return s, nil
}

func (s *fakeSD) Run(ctx context.Context, ch chan<- []*targetgroup.Group) {
	in := make(chan *targetgroup.Group, 100)
	s.mtx.Lock()
	s.runs++
	initial := slices.Collect(maps.Values(s.objs))
	s.subs[in] = struct{}{}
	s.mtx.Unlock()
	defer func() {
		s.mtx.Lock()
		delete(s.subs, in)
		s.mtx.Unlock()
	}()
	for _, tg := range initial {
		select {
		case ch <- []*targetgroup.Group{tg}:
		case <-ctx.Done():
			return
		}
	}
	for {
		select {
		case tg := <-in:
			select {
			case ch <- []*targetgroup.Group{tg}:
			case <-ctx.Done():
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// set changes (nil targets: deletes) an object; tell false changes it
// without any running discoverer noticing.
func (s *fakeSD) set(tg *targetgroup.Group, tell bool) {
	s.mtx.Lock()
	defer s.mtx.Unlock()
	if tg.Targets == nil {
		delete(s.objs, tg.Source)
	} else {
		s.objs[tg.Source] = tg
	}
	if tell {
		for in := range s.subs {
			in <- tg
		}
	}
}

func fakeGroup(src string, ls ...model.LabelSet) *targetgroup.Group {
	return &targetgroup.Group{Source: src, Labels: model.LabelSet{"__meta_kubernetes_namespace": "ns"}, Targets: ls}
}

func fakeTarget(addr, team string) model.LabelSet {
	return model.LabelSet{"__address__": model.LabelValue(addr), "__meta_kubernetes_pod_name": model.LabelValue("pod-" + addr),
		"__meta_kubernetes_pod_label_team": model.LabelValue(team), "__meta_kubernetes_pod_ip": "10.0.0.1"}
}

// TestTrimDiscovererRelist drives a trimmed discovery through a growth of
// its needs: every group is delivered again with the new label, a change
// during the relist arrives, the groups nobody changed are never missing
// downstream, and an object the running discoverer still held but the
// relist did not find is deleted at the switch.
func TestTrimDiscovererRelist(t *testing.T) {
	sd := &fakeSD{objs: map[string]*targetgroup.Group{}, subs: map[chan *targetgroup.Group]struct{}{}}
	for _, src := range []string{"a", "b", "c"} {
		sd.set(fakeGroup(src, fakeTarget(src+":80", "team-"+src)), false)
	}
	needs := newLabelNeeds(nil)
	needs.add(relabelRules(t, `[{source_labels: [__meta_kubernetes_pod_name], target_label: pod}]`))
	relists := prometheus.NewCounter(prometheus.CounterOpts{Name: "relists"})
	cfg := &trimConfig{inner: sd, needs: needs, quiet: 50 * time.Millisecond, relist: relists}
	d, err := cfg.NewDiscoverer(promdiscovery.DiscovererOptions{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	up := make(chan []*targetgroup.Group)
	go d.Run(ctx, up)

	// state is what the discovery manager holds: the last group per source.
	state := map[string]*targetgroup.Group{}
	recv := func(until func() bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for !until() {
			select {
			case tgs := <-up:
				for _, tg := range tgs {
					state[tg.Source] = tg
				}
				for _, src := range []string{"a", "b"} { // never deleted, never empty
					if tg := state[src]; tg != nil {
						require.Len(t, tg.Targets, 1, "group %s", src)
					}
				}
			case <-deadline:
				t.Fatalf("timed out; state %v", state)
			}
		}
	}
	labelOf := func(src string, name model.LabelName) (model.LabelValue, bool) {
		tg := state[src]
		if tg == nil || len(tg.Targets) == 0 {
			return "", false
		}
		v, ok := tg.Targets[0][name]
		return v, ok
	}
	recv(func() bool { return len(state) == 3 })
	for src, tg := range state {
		require.Equal(t, model.LabelSet{"__address__": model.LabelValue(src + ":80"), "__meta_kubernetes_pod_name": model.LabelValue("pod-" + src + ":80")},
			tg.Targets[0], "only the read label and __address__")
		require.Equal(t, model.LabelSet{}, tg.Labels, "the group's namespace label is read by no rule")
	}

	// c vanishes without the running discoverer noticing; a job starts
	// reading the team label.
	sd.set(&targetgroup.Group{Source: "c"}, false)
	require.True(t, needs.add(relabelRules(t, `[{source_labels: [__meta_kubernetes_pod_label_team], target_label: team}]`)))
	// A change the running discoverer delivers carries the new label at once.
	sd.set(fakeGroup("a", fakeTarget("a:80", "team-a2")), true)
	recv(func() bool { v, _ := labelOf("a", "__meta_kubernetes_pod_label_team"); return v == "team-a2" })
	_, ok := labelOf("b", "__meta_kubernetes_pod_label_team")
	require.False(t, ok, "b was not sent again yet")

	recv(func() bool {
		v, _ := labelOf("b", "__meta_kubernetes_pod_label_team")
		tg := state["c"]
		return v == "team-b" && tg != nil && len(tg.Targets) == 0
	})
	v, _ := labelOf("a", "__meta_kubernetes_pod_label_team")
	require.Equal(t, model.LabelValue("team-a2"), v, "the relist sent a's latest version")
	require.Equal(t, 2, sd.runs, "one relist")
	require.Equal(t, 1.0, testutil.ToFloat64(relists))

	// After the switch the relisting discoverer is the running one.
	sd.set(fakeGroup("b", fakeTarget("b:80", "team-b2")), true)
	recv(func() bool { v, _ := labelOf("b", "__meta_kubernetes_pod_label_team"); return v == "team-b2" })
	require.Eventually(t, func() bool {
		sd.mtx.Lock()
		defer sd.mtx.Unlock()
		return len(sd.subs) == 1
	}, 5*time.Second, 10*time.Millisecond, "the first discoverer was stopped")
}

// TestSDRegistryTrimsKubernetes checks the wiring of trimmed labels: a
// Kubernetes set runs as one *trimConfig for as long as jobs read it, its
// needs cover every job's relabeling before the job runs, and a job that
// reads a new label grows them without a discovery apply.
func TestSDRegistryTrimsKubernetes(t *testing.T) {
	s := newSDJobs(true)
	s.r.trim = &trimSettings{keep: []string{"__meta_kubernetes_pod_node_name"}}
	a := k8sJob("a", kubernetes.RoleEndpointSlice, "ns1")
	a.RelabelConfigs = relabelRules(t, `[{source_labels: [__meta_kubernetes_service_name], regex: a, action: keep}]`)
	static := &promconfig.ScrapeConfig{JobName: "static", ServiceDiscoveryConfigs: promdiscovery.Configs{promdiscovery.StaticConfig{}}}
	p := s.plan([]*promconfig.ScrapeConfig{a, static})
	require.True(t, p.changed)
	p.commit()
	var tc *trimConfig
	for _, cfgs := range p.sets {
		switch c := cfgs[0].(type) {
		case *trimConfig:
			tc = c
		case promdiscovery.StaticConfig:
		default:
			t.Fatalf("unexpected discovery configuration %T", c)
		}
	}
	require.NotNil(t, tc, "the Kubernetes set is trimmed, the static one is not wrapped")
	needs := tc.needs.load()
	require.True(t, needs.keeps("__meta_kubernetes_service_name"))
	require.True(t, needs.keeps("__meta_kubernetes_pod_node_name"))
	require.False(t, needs.keeps("__meta_kubernetes_pod_name"))
	select {
	case <-tc.needs.grown: // the first job's needs
	default:
	}

	b := k8sJob("b", kubernetes.RoleEndpointSlice, "ns2")
	b.RelabelConfigs = relabelRules(t, `[{source_labels: [__meta_kubernetes_pod_name], target_label: pod}]`)
	next := s.plan([]*promconfig.ScrapeConfig{a, b, static})
	require.False(t, next.changed, "the new job reads the running set: no discovery apply")
	next.commit()
	require.True(t, tc.needs.load().keeps("__meta_kubernetes_pod_name"))
	select {
	case <-tc.needs.grown:
	default:
		t.Fatal("growth not signalled")
	}
	require.Same(t, tc, s.r.entries[next.changes["b"][0].set].run)
}

// TestTrimmerHoistsCommonLabels checks that moving labels all targets
// share onto the group changes no target's merged labels (what relabeling
// sees), and that only as many move as bring the largest target's map to
// mapGroupSlots entries.
func TestTrimmerHoistsCommonLabels(t *testing.T) {
	needs := newLabelNeeds([]string{"__meta_kubernetes_pod_node_name"})
	needs.add(relabelRules(t, `[{source_labels: [__meta_a, __meta_b, __meta_c, __meta_d, __meta_e, __meta_f, __meta_pod, __meta_ns], target_label: x}]`))
	// target has 9 kept labels (__address__, __meta_a..f, __meta_pod, the
	// node) and one dropped.
	target := func(addr, pod, node string) model.LabelSet {
		ls := model.LabelSet{"__address__": model.LabelValue(addr), "__meta_pod": model.LabelValue(pod),
			"__meta_kubernetes_pod_node_name": model.LabelValue(node), "__meta_kubernetes_pod_ip": "10.0.0.1"}
		for _, n := range "abcdef" {
			ls[model.LabelName("__meta_"+string(n))] = "v"
		}
		return ls
	}
	without := func(ls model.LabelSet, names ...model.LabelName) model.LabelSet {
		out := maps.Clone(ls)
		for _, n := range names {
			delete(out, n)
		}
		delete(out, "__meta_kubernetes_pod_ip")
		return out
	}
	with := func(ls model.LabelSet, name model.LabelName, v model.LabelValue) model.LabelSet {
		ls[name] = v
		return ls
	}
	for _, tc := range []struct {
		name        string
		in          *targetgroup.Group
		wantGroup   model.LabelSet
		wantTarget0 model.LabelSet
	}{{
		name: "one shared label moves (the first by name), overriding the group's own value",
		in: &targetgroup.Group{Source: "s", Labels: model.LabelSet{"__meta_ns": "ns", "__meta_a": "group-value"},
			Targets: []model.LabelSet{target("a:80", "pa", "n1"), target("b:80", "pb", "n1")}},
		wantGroup:   model.LabelSet{"__meta_ns": "ns", "__meta_a": "v"},
		wantTarget0: without(target("a:80", "pa", "n1"), "__meta_a"),
	}, {
		name: "one more label on one target: two move; labels not shared by all never do",
		in: &targetgroup.Group{Source: "s", Targets: []model.LabelSet{
			target("a:80", "pa", "n1"),
			with(target("b:80", "pb", "n2"), "__meta_ns", "x"),
		}},
		wantGroup:   model.LabelSet{"__meta_a": "v", "__meta_b": "v"},
		wantTarget0: without(target("a:80", "pa", "n1"), "__meta_a", "__meta_b"),
	}, {
		name:        "small targets: nothing moves",
		in:          &targetgroup.Group{Source: "s", Targets: []model.LabelSet{without(target("a:80", "pa", "n1"), "__meta_f"), without(target("b:80", "pb", "n1"), "__meta_f")}},
		wantGroup:   nil,
		wantTarget0: without(target("a:80", "pa", "n1"), "__meta_f"),
	}, {
		name:        "one target: nothing moves",
		in:          &targetgroup.Group{Source: "s", Targets: []model.LabelSet{target("a:80", "pa", "n1")}},
		wantGroup:   nil,
		wantTarget0: without(target("a:80", "pa", "n1")),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := needs.load()
			kept := func(ls model.LabelSet) model.LabelSet {
				out := model.LabelSet{}
				for n, v := range ls {
					if s.keeps(n) {
						out[n] = v
					}
				}
				return out
			}
			var tr trimmer
			out := tr.trim(s, tc.in)
			require.Equal(t, tc.wantGroup, out.Labels)
			require.Equal(t, tc.wantTarget0, out.Targets[0])
			require.Len(t, out.Targets, len(tc.in.Targets))
			for i := range tc.in.Targets {
				require.Equal(t, kept(tc.in.Labels).Merge(kept(tc.in.Targets[i])), out.Labels.Merge(out.Targets[i]), "target %d: merged labels", i)
				if len(tc.in.Targets) > 1 {
					require.LessOrEqual(t, len(out.Targets[i]), mapGroupSlots, "target %d", i)
				}
			}
		})
	}
}
