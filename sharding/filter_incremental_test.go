package sharding

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/scrape"
	"github.com/stretchr/testify/require"
)

// incConfig has jobs j0..j4: a drop annotation drops a target, j3 marks
// targets with an "all" label __tmp_disable_sharding, j4 keys them on the
// pod name (__tmp_hash).
const incConfig = `
scrape_configs:
- job_name: j0
  relabel_configs: &common
  - source_labels: [__meta_kubernetes_pod_annotation_drop]
    regex: "true"
    action: drop
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
- job_name: j1
  relabel_configs: *common
- job_name: j2
  relabel_configs: *common
- job_name: j3
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_annotation_drop]
    regex: "true"
    action: drop
  - source_labels: [__meta_kubernetes_pod_label_all]
    target_label: __tmp_disable_sharding
- job_name: j4
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_annotation_drop]
    regex: "true"
    action: drop
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: __tmp_hash
`

var incJobs = []string{"j0", "j1", "j2", "j3", "j4"}

// incScrapeConfigs loads incConfig: every call returns new pointers.
func incScrapeConfigs(t testing.TB) map[string]*config.ScrapeConfig {
	t.Helper()
	scs, err := loadScrapeConfigs(incConfig)
	require.NoError(t, err)
	m := map[string]*config.ScrapeConfig{}
	for _, sc := range scs {
		m[sc.JobName] = sc
	}
	return m
}

func cfgList(m map[string]*config.ScrapeConfig) []*config.ScrapeConfig {
	var out []*config.ScrapeConfig
	for _, job := range slices.Sorted(func(yield func(string) bool) {
		for job := range m {
			if !yield(job) {
				return
			}
		}
	}) {
		out = append(out, m[job])
	}
	return out
}

// incGroup returns a new group of n pod targets; ids make them unique, some
// are dropped by relabeling, some carry zone, node and "all" labels.
func incGroup(rng *rand.Rand, source string, n int) *targetgroup.Group {
	tg := &targetgroup.Group{Source: source, Labels: model.LabelSet{"__meta_kubernetes_namespace": "ns"}}
	for range n {
		id := rng.IntN(1_000_000)
		tl := model.LabelSet{
			"__address__":                model.LabelValue(fmt.Sprintf("10.%d.%d.%d:80", id/62500, id/250%250, id%250)),
			"__meta_kubernetes_pod_name": model.LabelValue(fmt.Sprintf("pod-%d", id%500)), // collisions: __tmp_hash duplicates
		}
		if rng.IntN(4) == 0 {
			tl["__meta_kubernetes_pod_annotation_drop"] = "true"
		}
		if rng.IntN(10) == 0 {
			tl["__meta_kubernetes_pod_label_all"] = "yes"
		}
		if z := rng.IntN(3); z > 0 {
			tl["__meta_kubernetes_endpointslice_endpoint_zone"] = model.LabelValue(fmt.Sprintf("z%d", z))
		}
		if k := rng.IntN(4); k > 0 {
			tl["__meta_kubernetes_pod_node_name"] = model.LabelValue(fmt.Sprintf("k%d", k))
		}
		tg.Targets = append(tg.Targets, tl)
	}
	return tg
}

// outputContent spells out an output independent of group order: per job,
// the sorted groups, each with its targets' discovered labels.
func outputContent(out map[string][]*targetgroup.Group) map[string][]string {
	res := map[string][]string{}
	for job, groups := range out {
		res[job] = []string{}
		for _, tg := range groups {
			if tg == nil {
				res[job] = append(res[job], "<nil>")
				continue
			}
			var targets []string
			for _, tl := range tg.Targets {
				targets = append(targets, tl.String())
			}
			res[job] = append(res[job], tg.Source+" "+tg.Labels.String()+" "+strings.Join(targets, ","))
		}
		slices.Sort(res[job])
	}
	return res
}

func incInput(rng *rand.Rand) map[string][]*targetgroup.Group {
	in := map[string][]*targetgroup.Group{}
	for i, job := range incJobs {
		for g := range 3 {
			in[job] = append(in[job], incGroup(rng, fmt.Sprintf("%s/%d", job, g), 5+i))
		}
	}
	return in
}

func TestFilterUnchangedJobsKeepOutputSlices(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cfgs := incScrapeConfigs(t)
	f, err := NewFilter(FilterOptions{Self: "n0", Members: newTestMembers(three...)})
	require.NoError(t, err)
	f.SetScrapeConfigs(cfgList(cfgs))
	in := incInput(rng)
	prev := filterOnce(f, in)
	require.Len(t, prev, len(incJobs))

	for step, tc := range []struct {
		name    string
		edit    func(in map[string][]*targetgroup.Group)
		changed []string
	}{
		{"a new group of j1", func(in map[string][]*targetgroup.Group) {
			in["j1"] = slices.Clone(in["j1"])
			in["j1"][1] = incGroup(rng, "j1/1", 4)
		}, []string{"j1"}},
		{"new slices, same groups, other order", func(in map[string][]*targetgroup.Group) {
			for job, groups := range in {
				in[job] = slices.Clone(groups)
				slices.Reverse(in[job])
			}
		}, nil},
		{"a group more in j2, one less in j4", func(in map[string][]*targetgroup.Group) {
			in["j2"] = append(slices.Clone(in["j2"]), incGroup(rng, "j2/3", 12)) // n0 owns some
			in["j4"] = slices.Clone(in["j4"][1:])
		}, []string{"j2", "j4"}},
		{"j3 and j0 swap their groups", func(in map[string][]*targetgroup.Group) {
			in["j3"], in["j0"] = in["j0"], in["j3"]
		}, []string{"j0", "j3"}},
		{"the same group twice instead of two", func(in map[string][]*targetgroup.Group) {
			in["j1"] = []*targetgroup.Group{in["j1"][0], in["j1"][0], in["j1"][2]}
		}, []string{"j1"}},
		{"nothing", func(map[string][]*targetgroup.Group) {}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := map[string][]*targetgroup.Group{}
			for job, groups := range in {
				next[job] = groups
			}
			tc.edit(next)
			out := filterOnce(f, next)
			require.Len(t, out, len(incJobs), "every job is in every output")
			for _, job := range incJobs {
				if slices.Contains(tc.changed, job) {
					require.False(t, sameSlice(prev[job], out[job]), "step %d: %s changed", step, job)
					for _, g := range out[job] {
						for _, old := range prev[job] {
							require.NotSame(t, old, g, "a changed job gets new groups")
						}
					}
				} else {
					require.True(t, sameSlice(prev[job], out[job]), "step %d: %s unchanged", step, job)
				}
			}
			fresh := newIncFilter(t, FilterOptions{Self: "n0", Members: newTestMembers(three...)}, cfgs)
			require.Equal(t, outputContent(filterOnce(fresh, next)), outputContent(out))
			require.Equal(t, fresh.Stats(), f.Stats())
			in, prev = next, out
		})
	}
}

func newIncFilter(t testing.TB, opts FilterOptions, cfgs map[string]*config.ScrapeConfig) *Filter {
	t.Helper()
	f, err := NewFilter(opts)
	require.NoError(t, err)
	f.SetScrapeConfigs(cfgList(cfgs))
	return f
}

func TestFilterMembershipChangeRecomputesAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cfgs := incScrapeConfigs(t)
	members := newTestMembers(three...)
	f := newIncFilter(t, FilterOptions{Self: "n0", Members: members}, cfgs)
	in := incInput(rng)
	prev := filterOnce(f, in)
	for _, set := range [][]string{{"n0", "n1"}, {"n0", "n1", "n2", "n3"}, {"n0"}} {
		members.set(set...)
		out := recomputeAll(f, false)
		for _, job := range incJobs {
			require.True(t, assignedUnderLastView(f, job), "%v: %s is recomputed", set, job)
		}
		fresh := newIncFilter(t, FilterOptions{Self: "n0", Members: newTestMembers(set...)}, cfgs)
		require.Equal(t, outputContent(filterOnce(fresh, in)), outputContent(out))
		require.Equal(t, fresh.Stats(), f.Stats(), "%v", set)
		prev = out
	}
	// Readiness is part of the view too.
	members.mtx.Lock()
	members.ready = false
	members.mtx.Unlock()
	recomputeAll(f, false)
	require.True(t, assignedUnderLastView(f, "j0"))
	require.Equal(t, Stats{Ready: false, TotalTargets: f.Stats().TotalTargets, KeyVersion: KeySeries, HandoffView: f.Stats().HandoffView, Owned: map[string]int{"n0": 0}}, f.Stats())
	// Members listed in another order are the same view.
	members.set("n2", "n0", "n1")
	members.mtx.Lock()
	members.ready = true
	members.mtx.Unlock()
	prev = recomputeAll(f, false)
	members.set("n1", "n2", "n0")
	out := recomputeAll(f, false)
	for _, job := range incJobs {
		require.True(t, sameSlice(prev[job], out[job]), job)
	}
}

// assignedUnderLastView reports whether job's owners were computed under
// the member view of f's last pass. (A job recomputed to the same owned
// groups keeps its output slice.)
func assignedUnderLastView(f *Filter, job string) bool {
	pj := f.prepared[job]
	return pj != nil && pj.assigned.view == f.passView
}

func TestFilterConfigPointerChangeRecomputesJob(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cfgs := incScrapeConfigs(t)
	f := newIncFilter(t, FilterOptions{Self: "n0", Members: newTestMembers(three...)}, cfgs)
	in := incInput(rng)
	prev := filterOnce(f, in)
	relabeled := f.prepared["j2"].groups[0].entries

	// An equal configuration under a new pointer: j2 is relabeled, the
	// other jobs (same pointers) are not even looked at.
	cfgs["j2"] = incScrapeConfigs(t)["j2"]
	f.SetScrapeConfigs(cfgList(cfgs))
	out := recomputeAll(f, true)
	for _, job := range incJobs {
		require.Equal(t, job != "j2", sameSlice(prev[job], out[job]), job)
	}
	require.NotSame(t, &relabeled[0], &f.prepared["j2"].groups[0].entries[0])
	require.Equal(t, outputContent(prev), outputContent(out), "same content")

	// A removed configuration, handed as a change: the job is not sent,
	// its targets not counted.
	total := f.Stats().TotalTargets
	delete(cfgs, "j3")
	f.ChangeScrapeConfigs(map[string]*config.ScrapeConfig{"j3": nil})
	prev, out = out, recomputeAll(f, true)
	require.NotContains(t, out, "j3")
	require.Less(t, f.Stats().TotalTargets, total)
	for _, job := range []string{"j0", "j1", "j2", "j4"} {
		require.True(t, sameSlice(prev[job], out[job]), job)
	}
	fresh := newIncFilter(t, FilterOptions{Self: "n0", Members: newTestMembers(three...)}, cfgs)
	require.Equal(t, outputContent(filterOnce(fresh, in)), outputContent(out))
	require.Equal(t, fresh.Stats(), f.Stats())
}

// TestFilterIncrementalMatchesFresh applies random edits (groups replaced,
// added, removed, reordered or shared between jobs, jobs added and removed,
// configuration pointers replaced or removed, members joining, leaving or
// changing state, readiness) and checks after each that the output and the
// statistics equal those of a fresh filter on the same final input, and that
// the jobs nothing changed for keep their output slices.
func TestFilterIncrementalMatchesFresh(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts FilterOptions
	}{
		{"hash", FilterOptions{}},
		{"hash R=2", FilterOptions{ReplicationFactor: 2}},
		{"zone", FilterOptions{Strategy: StrategyZone, Zone: "z1"}},
		{"zone R=2", FilterOptions{Strategy: StrategyZone, Zone: "z1", ReplicationFactor: 2}},
		{"node", FilterOptions{Strategy: StrategyNode, NodeName: "k1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(4) {
				incrementalMatchesFresh(t, tc.opts, seed)
			}
		})
	}
}

func incrementalMatchesFresh(t *testing.T, opts FilterOptions, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	all := []Member{
		{Name: "n0", State: StateParticipant, Zone: "z1", KubernetesNode: "k1"},
		{Name: "n1", State: StateParticipant, Zone: "z1", KubernetesNode: "k2"},
		{Name: "n2", State: StateParticipant, Zone: "z2", KubernetesNode: "k2"},
		{Name: "n3", State: StateJoining, Zone: "z2", KubernetesNode: "k3"},
		{Name: "n4", State: StateParticipant},
	}
	members := &testMembers{ready: true, changes: make(chan struct{}, 1), members: slices.Clone(all[:3])}
	cfgs := incScrapeConfigs(t)
	opts.Self, opts.Members = "n0", members
	f := newIncFilter(t, opts, cfgs)
	in := incInput(rng)
	in["nocfg"] = []*targetgroup.Group{incGroup(rng, "nocfg/0", 3)}
	prev := filterOnce(f, in)
	viewChanged, cfgChanged := false, false
	// fc gets the same inputs as changes (RunChanges); acc applies its
	// outputs, which must add up to the same full output.
	fc := newIncFilter(t, opts, incScrapeConfigs(t))
	fc.applyChanges(maps.Clone(in))
	acc := applyOut(nil, fc.recompute(true))

	for step := range 150 {
		next := map[string][]*targetgroup.Group{}
		for job, groups := range in {
			next[job] = groups
		}
		jobs := slices.Sorted(func(yield func(string) bool) {
			for job := range next {
				if !yield(job) {
					return
				}
			}
		})
		job := jobs[rng.IntN(len(jobs))]
		reprepare := true
		switch op := rng.IntN(11); op {
		case 0, 1: // replace a group
			if len(next[job]) > 0 {
				next[job] = slices.Clone(next[job])
				next[job][rng.IntN(len(next[job]))] = incGroup(rng, job+"/x", rng.IntN(6))
			}
		case 2: // add a group
			next[job] = append(slices.Clone(next[job]), incGroup(rng, fmt.Sprintf("%s/%d", job, step), rng.IntN(6)))
		case 3: // remove a group
			if len(next[job]) > 0 {
				i := rng.IntN(len(next[job]))
				next[job] = slices.Delete(slices.Clone(next[job]), i, i+1)
			}
		case 4: // reorder (no change)
			next[job] = slices.Clone(next[job])
			rng.Shuffle(len(next[job]), func(i, j int) { next[job][i], next[job][j] = next[job][j], next[job][i] })
		case 5: // share another job's groups
			next[job] = next[jobs[rng.IntN(len(jobs))]]
		case 6: // remove or add a job
			if len(next) > 2 && rng.IntN(2) == 0 {
				delete(next, job)
			} else {
				name := incJobs[rng.IntN(len(incJobs))]
				if _, ok := next[name]; !ok {
					next[name] = []*targetgroup.Group{incGroup(rng, name+"/new", 4)}
				}
			}
		case 7: // a configuration under a new pointer, or removed, or back
			name := incJobs[rng.IntN(len(incJobs))]
			if _, ok := cfgs[name]; ok && rng.IntN(3) == 0 {
				delete(cfgs, name)
			} else {
				cfgs[name] = incScrapeConfigs(t)[name]
			}
			// Every job, as a filter installed late gets it, or only the
			// change, as the agent hands it.
			if rng.IntN(2) == 0 {
				f.SetScrapeConfigs(cfgList(cfgs))
			} else {
				f.ChangeScrapeConfigs(map[string]*config.ScrapeConfig{name: cfgs[name]})
			}
			cfgChanged = true
		case 8, 9: // a member changes
			members.mtx.Lock()
			m := all[1+rng.IntN(len(all)-1)]
			i := slices.IndexFunc(members.members, func(x Member) bool { return x.Name == m.Name })
			switch {
			case i < 0:
				members.members = append(members.members, m)
			case rng.IntN(2) == 0:
				members.members = slices.Delete(members.members, i, i+1)
			case members.members[i].State == StateParticipant:
				members.members[i].State = StateJoining
			default:
				members.members[i].State = StateParticipant
			}
			rng.Shuffle(len(members.members), func(i, j int) {
				members.members[i], members.members[j] = members.members[j], members.members[i]
			})
			members.mtx.Unlock()
			reprepare, viewChanged = false, true
		case 10: // readiness flips (rarely)
			if rng.IntN(3) == 0 {
				members.mtx.Lock()
				members.ready = !members.ready
				members.mtx.Unlock()
				reprepare, viewChanged = false, true
			}
		}
		var out map[string][]*targetgroup.Group
		if reprepare {
			out = filterOnce(f, next)
		} else {
			out = recomputeAll(f, false)
		}

		if cfgChanged {
			fc.SetScrapeConfigs(cfgList(cfgs))
		}
		changes := inputChanges(in, next)
		fc.applyChanges(changes)
		delta := fc.recompute(reprepare)
		acc = applyOut(acc, delta)

		fresh := newIncFilter(t, opts, cfgs)
		fresh.opts.Members = members
		want := filterOnce(fresh, next)
		require.Equal(t, outputContent(want), outputContent(out), "seed %d step %d", seed, step)
		require.Equal(t, fresh.Stats(), f.Stats(), "seed %d step %d", seed, step)
		require.Equal(t, outputContent(want), outputContent(acc), "seed %d step %d: changes", seed, step)
		require.Equal(t, fresh.Stats(), fc.Stats(), "seed %d step %d: changes", seed, step)
		wantDropped, wantCounts := droppedContent(fresh)
		gotDropped, gotCounts := droppedContent(f)
		require.Equal(t, wantDropped, gotDropped, "seed %d step %d", seed, step)
		require.Equal(t, wantCounts, gotCounts, "seed %d step %d", seed, step)
		gotDropped, gotCounts = droppedContent(fc)
		require.Equal(t, wantDropped, gotDropped, "seed %d step %d: changes", seed, step)
		require.Equal(t, wantCounts, gotCounts, "seed %d step %d: changes", seed, step)
		if !viewChanged && !cfgChanged {
			for job := range delta {
				require.Contains(t, changes, job, "seed %d step %d: only changed jobs are passed on", seed, step)
			}
		}
		if !viewChanged && !cfgChanged {
			for job, groups := range out {
				if sameGroups(in[job], next[job]) && prev[job] != nil {
					require.True(t, sameSlice(prev[job], groups), "seed %d step %d: %s unchanged", seed, step, job)
				}
			}
		}
		in, prev, viewChanged, cfgChanged = next, out, false, false
	}
}

// droppedContent spells out what f reports as dropped, independent of
// order: per job, the sorted discovered label sets, and the counts.
func droppedContent(f *Filter) (map[string][]string, map[string]int) {
	ls, counts := f.DroppedTargets()
	res := map[string][]string{}
	for job, l := range ls {
		for _, x := range l {
			res[job] = append(res[job], x.String())
		}
		slices.Sort(res[job])
	}
	return res, counts
}

// inputChanges returns what RunChanges gets when the input goes from prev to
// next: the jobs whose slice is new, nil for those gone.
func inputChanges(prev, next map[string][]*targetgroup.Group) map[string][]*targetgroup.Group {
	out := map[string][]*targetgroup.Group{}
	for job, groups := range next {
		if old, ok := prev[job]; !ok || !sameSlice(old, groups) {
			out[job] = groups
		}
	}
	for job := range prev {
		if _, ok := next[job]; !ok {
			out[job] = nil
		}
	}
	return out
}

// applyOut applies a RunChanges output to acc, the full output so far.
func applyOut(acc, changes map[string][]*targetgroup.Group) map[string][]*targetgroup.Group {
	if acc == nil {
		acc = map[string][]*targetgroup.Group{}
	}
	for job, groups := range changes {
		if groups == nil {
			delete(acc, job)
		} else {
			acc[job] = groups
		}
	}
	return acc
}

// sameGroups reports whether a and b hold the same group pointers in any
// order.
func sameGroups(a, b []*targetgroup.Group) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[*targetgroup.Group]int{}
	for _, g := range a {
		count[g]++
	}
	for _, g := range b {
		count[g]--
		if count[g] < 0 {
			return false
		}
	}
	return true
}

func TestPreparedJobUnchanged(t *testing.T) {
	g := make([]*targetgroup.Group, 70)
	for i := range g {
		g[i] = &targetgroup.Group{Source: fmt.Sprint(i)}
	}
	pj := func(groups ...*targetgroup.Group) *preparedJob { return &preparedJob{in: groups} }
	rotated := append(slices.Clone(g[5:]), g[:5]...)
	reversed := slices.Clone(g)
	slices.Reverse(reversed)
	for _, tc := range []struct {
		name string
		pj   *preparedJob
		in   []*targetgroup.Group
		want bool
	}{
		{"same", pj(g[:3]...), g[:3], true},
		{"empty", pj(), nil, true},
		{"other order", pj(g[0], g[1], g[2]), []*targetgroup.Group{g[2], g[0], g[1]}, true},
		{"rotated, many", pj(g...), rotated, true},
		{"reversed, many", pj(g...), reversed, true},
		{"reversed, few", pj(g[:20]...), reversed[50:], true},
		{"one replaced", pj(g[:3]...), []*targetgroup.Group{g[0], g[1], g[3]}, false},
		{"one replaced, many", pj(g...), append(slices.Clone(reversed[:69]), &targetgroup.Group{}), false},
		{"shorter", pj(g[:3]...), g[:2], false},
		{"duplicate instead of another", pj(g[0], g[1], g[2]), []*targetgroup.Group{g[0], g[0], g[2]}, false},
		{"duplicate, many", pj(g...), append(slices.Clone(g[:69]), g[0]), false},
		{"nil instead of a group", pj(g[0], nil, nil), []*targetgroup.Group{g[0], g[1], nil}, false},
		{"nils", pj(g[0], nil, nil), []*targetgroup.Group{nil, g[0], nil}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.pj.unchanged(tc.in, nil, map[*targetgroup.Group]int{}))
		})
	}
	require.False(t, pj(g[0]).unchanged(g[:1], &config.ScrapeConfig{}, nil), "another configuration")
}

func TestFilterWithheldJobIsAssignedAgain(t *testing.T) {
	members := newTestMembers("n0")
	stale := &testStaleness{}
	f := newTestFilter(t, FilterOptions{Self: "n0", Members: members, Staleness: stale})
	tsets := podGroups(100, noNode)
	all := filterOnce(f, tsets)
	stale.active = loopsFor(f, all)
	members.set("n0", "n1")
	recomputeAll(f, false)
	members.set("n0") // back before the scrape manager reloaded
	recomputeAll(f, false)
	require.True(t, f.withheld.Load())
	recomputeAll(f, false)
	require.True(t, f.withheld.Load(), "a job holding targets back is assigned again (the flag is reset at each pass)")

	stale.active = map[string][]*scrape.Target{}
	out := recomputeAll(f, false)
	require.False(t, f.withheld.Load())
	require.Len(t, finalTargets(t, out)[podJob], 100)
	prev, out := out, recomputeAll(f, false)
	for job := range out {
		require.True(t, sameSlice(prev[job], out[job]), "%s: nothing held back any more", job)
	}
}

// receiveOutput returns the filter's next output, failing after 5 s.
func receiveOutput(t *testing.T, out <-chan map[string][]*targetgroup.Group) map[string][]*targetgroup.Group {
	t.Helper()
	select {
	case o := <-out:
		return o
	case <-time.After(5 * time.Second):
		t.Fatal("no output")
		return nil
	}
}

func TestFilterRunKeepsUnchangedSlices(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	members := newTestMembers(three...)
	f := newIncFilter(t, FilterOptions{Self: "n0", Members: members}, incScrapeConfigs(t))
	in, out := runFilter(t, f, members)
	receive := func() map[string][]*targetgroup.Group { return receiveOutput(t, out) }
	input := incInput(rng)
	in <- input
	first := receive()
	next := map[string][]*targetgroup.Group{}
	for job, groups := range input {
		next[job] = slices.Clone(groups) // new slices, as the discovery manager sends
	}
	next["j3"][0] = incGroup(rng, "j3/0", 3)
	in <- next
	second := receive()
	require.Len(t, second, len(incJobs))
	for _, job := range incJobs {
		require.Equal(t, job != "j3", sameSlice(first[job], second[job]), job)
	}
	members.set("n0", "n1")
	third := receive()
	for _, job := range incJobs {
		require.False(t, sameSlice(second[job], third[job]), job)
	}
}

// RunChanges passes on only the jobs whose output changed, with nil for a
// job gone, and sends nothing when nothing changed.
func TestFilterRunChangesSendsChangedJobsOnly(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	members := newTestMembers(three...)
	f := newIncFilter(t, FilterOptions{Self: "n0", Members: members}, incScrapeConfigs(t))
	in, out := startFilter(t, f, members, f.RunChanges)
	var acc map[string][]*targetgroup.Group // every output applied
	receive := func() map[string][]*targetgroup.Group {
		o := receiveOutput(t, out)
		acc = applyOut(acc, o)
		return o
	}
	input := incInput(rng)
	in <- maps.Clone(input)
	first := receive()
	require.Len(t, first, len(incJobs), "the first output names every job")

	in <- map[string][]*targetgroup.Group{"j3": {incGroup(rng, "j3/0", 3)}}
	second := receive()
	require.Equal(t, []string{"j3"}, slices.Collect(maps.Keys(second)))
	require.NotNil(t, second["j3"])

	in <- map[string][]*targetgroup.Group{"j2": nil}
	third := receive()
	require.Equal(t, map[string][]*targetgroup.Group{"j2": nil}, third, "a job gone is passed on as nil")

	// The same members again: the view does not change, nothing is sent;
	// the next output is the next change.
	members.set(three...)
	in <- map[string][]*targetgroup.Group{"j1": {incGroup(rng, "j1/0", 2)}}
	require.Equal(t, []string{"j1"}, slices.Collect(maps.Keys(receive())))

	before := outputContent(acc)
	members.set("n0", "n1")
	fourth := receive()
	require.NotEmpty(t, fourth, "a membership change reassigns every job")
	after := outputContent(acc)
	for job := range after {
		_, named := fourth[job]
		require.Equal(t, named, !slices.Equal(before[job], after[job]), "%s is passed on exactly if its owned targets changed", job)
	}
}

// A member's zone or node is part of the view under the strategy that uses
// it, even when the participants stay the same.
func TestFilterZoneOrNodeChangeRecomputes(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts FilterOptions
		move func(m *Member)
	}{
		{"zone", FilterOptions{Strategy: StrategyZone, Zone: "z1"}, func(m *Member) { m.Zone = "z2" }},
		{"node", FilterOptions{Strategy: StrategyNode, NodeName: "k1"}, func(m *Member) { m.KubernetesNode = "k3" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, 10))
			cfgs := incScrapeConfigs(t)
			members := &testMembers{ready: true, changes: make(chan struct{}, 1), members: []Member{
				{Name: "n0", State: StateParticipant, Zone: "z1", KubernetesNode: "k1"},
				{Name: "n1", State: StateParticipant, Zone: "z1", KubernetesNode: "k2"},
				{Name: "n2", State: StateParticipant, Zone: "z2", KubernetesNode: "k2"},
			}}
			opts := tc.opts
			opts.Self, opts.Members = "n0", members
			f := newIncFilter(t, opts, cfgs)
			in := incInput(rng)
			prev := filterOnce(f, in)
			members.mtx.Lock()
			tc.move(&members.members[1])
			members.mtx.Unlock()
			out := recomputeAll(f, false)
			for _, job := range incJobs {
				require.True(t, assignedUnderLastView(f, job), job)
				if !slices.Equal(outputContent(prev)[job], outputContent(out)[job]) {
					require.False(t, sameSlice(prev[job], out[job]), job)
				}
			}
			fresh := newIncFilter(t, opts, cfgs)
			require.Equal(t, outputContent(filterOnce(fresh, in)), outputContent(out))
			require.Equal(t, fresh.Stats(), f.Stats())
		})
	}
}
