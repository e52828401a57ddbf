package sharding

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/stretchr/testify/require"
)

// confirmRig is a cluster of filters over one shared member list, each
// announcing its releases into it, with the delivery of each controlled by
// the test.
type confirmRig struct {
	t       *testing.T
	members *testMembers
	filters map[string]*Filter
	stale   map[string]*testStaleness
	regs    map[string]*prometheus.Registry
	input   map[string][]*targetgroup.Group

	mtx       sync.Mutex
	delivered map[string]bool
}

func newConfirmRig(t *testing.T, timeout time.Duration, names ...string) *confirmRig {
	r := &confirmRig{t: t, members: newTestMembers(), filters: map[string]*Filter{}, stale: map[string]*testStaleness{},
		regs: map[string]*prometheus.Registry{}, delivered: map[string]bool{}, input: podGroups(90, noNode)}
	for _, n := range names {
		r.add(n, timeout)
	}
	return r
}

// add makes n a participant that confirms handoffs, with its own filter.
func (r *confirmRig) add(n string, timeout time.Duration) *Filter {
	r.members.mtx.Lock()
	r.members.members = append(r.members.members, Member{Name: n, State: StateParticipant, KeyVersion: LatestKeyVersion, ConfirmsHandoffs: true})
	r.members.mtx.Unlock()
	r.stale[n] = &testStaleness{}
	r.regs[n] = prometheus.NewRegistry()
	r.delivered[n] = true
	f := newTestFilter(r.t, FilterOptions{Self: n, Members: r.members, Staleness: r.stale[n], Registerer: r.regs[n], HandoffTimeout: timeout,
		Delivered: func(time.Time) bool { r.mtx.Lock(); defer r.mtx.Unlock(); return r.delivered[n] },
		Announce:  func(view uint64) { r.setMember(n, func(m *Member) { m.Released = view }) }})
	r.filters[n] = f
	f.setInput(r.input)
	return f
}

func (r *confirmRig) setMember(n string, fn func(*Member)) {
	r.members.mtx.Lock()
	defer r.members.mtx.Unlock()
	for i := range r.members.members {
		if r.members.members[i].Name == n {
			fn(&r.members.members[i])
		}
	}
}

// pass recomputes n's ownership, makes its scrape manager run what it sent
// (the loops of the targets it gave up are gone) and steps its release as
// Run does once the stop margin passed.
func (r *confirmRig) pass(n string) map[string][]string {
	f := r.filters[n]
	out := recomputeAll(f, false)
	r.stale[n].mtx.Lock()
	r.stale[n].active = loopsFor(f, out)
	r.stale[n].mtx.Unlock()
	if f.releaseStep(time.Now()) {
		f.releaseStep(time.Now().Add(time.Second)) // after the stop margin
	}
	return finalTargets(r.t, out)
}

func (r *confirmRig) released(n string) uint64 {
	for _, m := range r.members.Members() {
		if m.Name == n {
			return m.Released
		}
	}
	return 0
}

// TestConfirmedHandoffJoin: a member joining holds every target it gains
// until each previous owner released the new view; a previous owner
// releases only once its given-up targets' loops are gone and remote write
// delivered. Ownership is exclusive at every step, and complete once all
// released.
func TestConfirmedHandoffJoin(t *testing.T) {
	r := newConfirmRig(t, time.Hour, "a", "b")
	r.pass("a")
	require.Zero(t, r.filters["a"].Stats().Owned["a"]-r.filters["a"].totals.held, "at start every member holds until the others released")
	r.pass("b")
	before := map[string]map[string][]string{"a": r.pass("a"), "b": r.pass("b")}
	require.NotZero(t, r.released("a"))
	require.Equal(t, r.released("a"), r.released("b"), "both see the same view")
	require.Len(t, union(before["a"][podJob], before["b"][podJob]), 90)

	c := r.add("c", time.Hour)
	r.mtx.Lock()
	r.delivered["a"] = false // a's queue still holds samples
	r.mtx.Unlock()
	got := r.pass("c")
	require.Empty(t, got[podJob], "c holds what it gains until a and b released")
	held := c.totals.held
	require.Greater(t, held, 15)
	require.Equal(t, float64(held), testutil.ToFloat64(c.metrics.handoffs.held))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.handoffs.started))

	// a gives its share to c up but has not delivered: no release yet.
	afterA := r.pass("a")
	require.Less(t, len(afterA[podJob]), len(before["a"][podJob]))
	require.NotEmpty(t, r.stale["a"].disabled[podJob], "the moved targets are handed off without staleness markers")
	released := r.released("a")
	require.Empty(t, r.pass("c")[podJob])

	// b delivered at once and releases; a's release is still missing.
	r.pass("b")
	require.NotEqual(t, released, r.released("b"), "b released the view with c")
	require.Empty(t, r.pass("c")[podJob])

	// a's loops are gone, but the samples are not delivered yet.
	a := r.filters["a"]
	require.True(t, a.releaseStep(time.Now()))
	require.True(t, a.releaseStep(time.Now().Add(time.Second)))
	require.Equal(t, released, r.released("a"))
	r.mtx.Lock()
	r.delivered["a"] = true
	r.mtx.Unlock()
	require.False(t, a.releaseStep(time.Now().Add(time.Second)))
	require.Equal(t, r.released("b"), r.released("a"))
	require.Equal(t, 1.0, float64(testutil.CollectAndCount(r.regs["a"], "promshard_sharding_release_duration_seconds")))

	cOut := r.pass("c")
	gained := cOut[podJob]
	require.Equal(t, held, len(gained)+len(cOut["static"]), "c scrapes all it held once every previous owner released")
	require.Zero(t, testutil.ToFloat64(c.metrics.handoffs.held))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.handoffs.confirmed))
	require.Zero(t, testutil.ToFloat64(c.metrics.handoffs.timedOut))
	all := [][]string{afterA[podJob], r.pass("b")[podJob], gained}
	require.Len(t, union(all...), 90, "every target owned")
	require.Equal(t, 90, len(all[0])+len(all[1])+len(all[2]), "by exactly one member")
}

// TestConfirmedHandoffTimeout: a participant that never releases delays the
// gained targets by HandoffTimeout at most, counted as timed out.
func TestConfirmedHandoffTimeout(t *testing.T) {
	const timeout = 150 * time.Millisecond
	r := newConfirmRig(t, timeout, "a", "b")
	r.pass("a")
	r.pass("b")
	r.pass("a")
	c := r.add("c", timeout)
	require.Empty(t, r.pass("c")[podJob])
	r.pass("a") // a releases; b never runs again
	require.Empty(t, r.pass("c")[podJob])
	require.Eventually(t, func() bool { return len(r.pass("c")[podJob]) > 0 }, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.handoffs.timedOut))
	require.Zero(t, testutil.ToFloat64(c.metrics.handoffs.confirmed))
	require.Equal(t, 1.0, float64(testutil.CollectAndCount(r.regs["c"], "promshard_sharding_handoff_duration_seconds")))
}

// TestConfirmedHandoffNotAwaited: nobody waits for a member that does not
// confirm handoffs (an older promshard), or one that died or left; targets
// every member scrapes are never held.
func TestConfirmedHandoffNotAwaited(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer func(*Member)
	}{
		{"older release", func(m *Member) { m.ConfirmsHandoffs, m.Released = false, 0 }},
		{"dead", func(m *Member) { m.State = StateDead }},
		{"left", func(m *Member) { m.State = StateLeft }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newConfirmRig(t, time.Hour, "a", "b")
			r.pass("a")
			r.pass("b")
			r.pass("a")
			r.setMember("b", tc.peer)
			c := r.add("c", time.Hour)
			r.pass("a")
			got := r.pass("c")
			require.NotEmpty(t, got[podJob])
			require.Zero(t, c.totals.held)
			require.Zero(t, testutil.ToFloat64(c.metrics.handoffs.started))
		})
	}
}

// TestHandoffViewSameForEveryMember: the handoff view depends on the
// participants, not on who computes it or in which order it learnt them.
func TestHandoffViewSameForEveryMember(t *testing.T) {
	zones := map[string][]string{"z1": {"b", "a"}, "z2": {"c"}}
	v := handoffView(KeySeries, []string{"a", "b", "c"}, zones)
	require.Equal(t, v, handoffView(KeySeries, []string{"a", "b", "c"}, map[string][]string{"z2": {"c"}, "z1": {"a", "b"}}))
	require.NotEqual(t, v, handoffView(KeyJobLabels, []string{"a", "b", "c"}, zones))
	require.NotEqual(t, v, handoffView(KeySeries, []string{"a", "b"}, zones))
	require.NotEqual(t, v, handoffView(KeySeries, []string{"a", "b", "c"}, nil))
	require.NotZero(t, handoffView(KeySeries, nil, nil))
}

func union(lists ...[]string) []string {
	var all []string
	for _, l := range lists {
		all = append(all, l...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}
