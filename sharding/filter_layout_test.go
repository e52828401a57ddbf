package sharding

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// Tests of the prepared layout (filter_prepare.go): entries forget their
// final labels until sent and are relabeled again when needed, and the
// keys of relabel-dropped targets are derived at assignment from shared
// fingerprints.

// layoutConfig has two jobs in prometheus-operator's shape reading the same
// groups, each keeping its own Service's targets.
const layoutConfig = `
scrape_configs:
- job_name: sm/a
  relabel_configs: &rc
  - source_labels: [__meta_kubernetes_service_name]
    regex: a
    action: keep
  - source_labels: [__meta_kubernetes_pod_annotation_drop]
    regex: "true"
    action: drop
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
- job_name: sm/b
  relabel_configs:
  - source_labels: [__meta_kubernetes_service_name]
    regex: b
    action: keep
  - source_labels: [__meta_kubernetes_pod_annotation_drop]
    regex: "true"
    action: drop
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
`

// layoutGroup is Service svc's group of n pods; gen changes the pods.
// Service a has a target relabeling fails on, every Service one its
// relabeling drops.
func layoutGroup(svc string, n, gen int) *targetgroup.Group {
	tg := &targetgroup.Group{Source: "endpointslice/ns/" + svc, Labels: model.LabelSet{
		"__meta_kubernetes_namespace":    "ns",
		"__meta_kubernetes_service_name": model.LabelValue(svc),
	}}
	for i := range n {
		tl := pod(100*gen+i, 80, "")
		tl["__meta_kubernetes_pod_name"] = model.LabelValue(fmt.Sprintf("%s-%d-%d", svc, gen, i))
		switch {
		case i == 1:
			tl["__meta_kubernetes_pod_annotation_drop"] = "true"
		case i == 2 && svc == "a":
			tl["__scrape_interval__"] = "not-a-duration"
		}
		tg.Targets = append(tg.Targets, tl)
	}
	return tg
}

func layoutInput(groups ...*targetgroup.Group) map[string][]*targetgroup.Group {
	return map[string][]*targetgroup.Group{"sm/a": groups, "sm/b": slices.Clone(groups)}
}

func layoutScrapeConfigs(t *testing.T) []*config.ScrapeConfig {
	t.Helper()
	scs, err := loadScrapeConfigs(layoutConfig)
	require.NoError(t, err)
	return scs
}

// layoutStep is a change of the input or the members, for the layout tests.
type layoutStep struct {
	name string
	// in: the new input (nil: the same); members: the new members (nil:
	// the same).
	in      func(prev map[string][]*targetgroup.Group) map[string][]*targetgroup.Group
	members []Member
}

var (
	layoutA, layoutB, layoutC = layoutGroup("a", 12, 0), layoutGroup("b", 12, 0), layoutGroup("c", 12, 0)
	layoutSteps               = []layoutStep{
		{name: "first"},
		{name: "alone", members: append(participants("n0"), joining("n1", "n2")...)},
		{name: "three again", members: participants(three...)},
		{name: "one group replaced, the others reused", in: func(prev map[string][]*targetgroup.Group) map[string][]*targetgroup.Group {
			return layoutInput(layoutGroup("a", 12, 1), prev["sm/a"][1], prev["sm/a"][2])
		}},
		{name: "reordered", in: func(prev map[string][]*targetgroup.Group) map[string][]*targetgroup.Group {
			in := layoutInput(prev["sm/a"]...)
			slices.Reverse(in["sm/b"])
			return in
		}},
		{name: "n2 joining", members: append(participants("n0", "n1"), joining("n2")...)},
		{name: "legacy key", members: func() []Member {
			m := participants(three...)
			m[1].KeyVersion = 0
			return m
		}()},
		{name: "group replaced under the legacy key", in: func(prev map[string][]*targetgroup.Group) map[string][]*targetgroup.Group {
			return layoutInput(prev["sm/a"][0], layoutGroup("b", 12, 2), prev["sm/a"][2])
		}},
		{name: "latest key", members: participants(three...)},
		{name: "n0 joining", members: append(joining("n0"), participants("n1", "n2")...)},
		{name: "three", members: participants(three...)},
	}
)

func participants(names ...string) []Member { return membersIn(StateParticipant, names) }

func joining(names ...string) []Member { return membersIn(StateJoining, names) }

func membersIn(state MemberState, names []string) []Member {
	var out []Member
	for _, n := range names {
		out = append(out, Member{Name: n, State: state, KeyVersion: LatestKeyVersion})
	}
	return out
}

// runLayoutSteps applies layoutSteps to members and calls check after each
// with the current input; filters are the filters to recompute.
func runLayoutSteps(t *testing.T, members *testMembers, filters []*Filter, check func(step string, in map[string][]*targetgroup.Group)) {
	in := layoutInput(layoutA, layoutB, layoutC)
	for _, st := range layoutSteps {
		if st.members != nil {
			members.mtx.Lock()
			members.members = slices.Clone(st.members)
			members.mtx.Unlock()
		}
		if st.in != nil {
			in = st.in(in)
		}
		for _, f := range filters {
			if st.in != nil || f.last == nil {
				filterOnce(f, in)
			} else {
				recomputeAll(f, false)
			}
		}
		check(st.name, in)
	}
}

// sentContent spells out the targets f sent: per job, each target's loop
// key, ownership key, replica label value and labels.
func sentContent(f *Filter) map[string][]string {
	res := map[string][]string{}
	for job, sent := range f.sent {
		for lk, st := range sent {
			lb := labels.NewBuilder(labels.EmptyLabels())
			st.target.LabelsRange(func(l labels.Label) { lb.Set(l.Name, l.Value) })
			res[job] = append(res[job], fmt.Sprintf("%x %x %q %t %s", lk, st.ownKey, st.value, st.handoff, lb.Labels()))
		}
		slices.Sort(res[job])
	}
	return res
}

// forgotten counts f's entries that forgot their final labels.
func forgotten(f *Filter) int {
	n := 0
	for _, pj := range f.prepared {
		for _, pg := range pj.groups {
			for _, e := range pg.entries {
				if !e.failed && e.lset.IsEmpty() {
					n++
				}
			}
		}
	}
	return n
}

// An entry this member does not own forgets its final labels; when it is
// gained, re-keyed or assigned again it is relabeled, and the filter sends
// and counts what a fresh filter does.
func TestFilterForgottenLabelsMatchFresh(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts FilterOptions
	}{
		{"hash", FilterOptions{}},
		{"rank R=2", FilterOptions{ReplicationFactor: 2}},
		{"identical R=2", FilterOptions{ReplicationFactor: 2, ReplicationMode: ReplicationIdentical}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scs := layoutScrapeConfigs(t)
			members := &testMembers{ready: true, changes: make(chan struct{}, 1), members: participants(three...)}
			opts := tc.opts
			opts.Self, opts.Members = "n0", members
			f, err := NewFilter(opts)
			require.NoError(t, err)
			f.SetScrapeConfigs(scs)
			sawForgotten := false
			runLayoutSteps(t, members, []*Filter{f}, func(step string, in map[string][]*targetgroup.Group) {
				fresh, err := NewFilter(opts)
				require.NoError(t, err)
				fresh.SetScrapeConfigs(scs)
				want := filterOnce(fresh, in)
				require.Equal(t, outputContent(want), outputContent(f.out), step)
				require.Equal(t, sentContent(fresh), sentContent(f), step)
				require.Equal(t, fresh.Stats(), f.Stats(), step)
				wantDropped, wantCounts := droppedContent(fresh)
				gotDropped, gotCounts := droppedContent(f)
				require.Equal(t, wantDropped, gotDropped, step)
				require.Equal(t, wantCounts, gotCounts, step)
				sawForgotten = sawForgotten || forgotten(f) > 0
			})
			require.True(t, sawForgotten, "some entry forgot its labels")
		})
	}
}

// Every relabel-dropped target is listed by exactly one member of the
// cluster, whatever happened before: groups reused across updates or
// reordered, a member joining, re-keys.
func TestFilterDroppedTargetsListedOnce(t *testing.T) {
	scs := layoutScrapeConfigs(t)
	members := &testMembers{ready: true, changes: make(chan struct{}, 1), members: participants(three...)}
	var filters []*Filter
	for _, self := range three {
		f, err := NewFilter(FilterOptions{Self: self, Members: members})
		require.NoError(t, err)
		f.SetScrapeConfigs(scs)
		filters = append(filters, f)
	}
	runLayoutSteps(t, members, filters, func(step string, in map[string][]*targetgroup.Group) {
		// A member alone reports every dropped target.
		solo, err := NewFilter(FilterOptions{Self: "solo", Members: newTestMembers("solo")})
		require.NoError(t, err)
		solo.SetScrapeConfigs(scs)
		filterOnce(solo, in)
		want, wantCounts := droppedContent(solo)
		require.Len(t, want["sm/a"], 2*12+1, "%s: Services b and c, a's annotated pod", step)
		got, gotCounts := map[string][]string{}, map[string]int{}
		for _, f := range filters {
			ls, counts := droppedContent(f)
			for job, l := range ls {
				got[job] = append(got[job], l...)
				gotCounts[job] += counts[job]
			}
		}
		for job := range got {
			slices.Sort(got[job])
		}
		require.Equal(t, want, got, step)
		require.Equal(t, wantCounts, gotCounts, step)

		// The reporter of each is the participant owning its key, a hash
		// of the job and the target's discovered labels.
		var names []string
		for _, m := range members.Members() {
			if m.State == StateParticipant {
				names = append(names, m.Name)
			}
		}
		r := NewRendezvous(names...)
		reported := map[string]map[droppedRef]string{}
		for i, f := range filters {
			for job, d := range f.dropped {
				for _, ref := range d.refs {
					if reported[job] == nil {
						reported[job] = map[droppedRef]string{}
					}
					reported[job][ref] = three[i]
				}
			}
		}
		for job, d := range solo.dropped {
			require.Len(t, reported[job], len(d.refs), step)
			for _, ref := range d.refs {
				key := combine(xxhash.Sum64String(job), uint64(ref.tg.Labels.Merge(ref.tg.Targets[ref.i]).Fingerprint()))
				require.Equal(t, r.Owners(key, 1, nil), []string{reported[job][ref]}, "%s: %s target %d", step, job, ref.i)
			}
		}
	})
}
