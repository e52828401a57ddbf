package sharding

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func randomReport(rng *rand.Rand, n int) map[uint32]weightEntry {
	m := make(map[uint32]weightEntry, n)
	for range n {
		m[rng.Uint32()] = weightEntry{class: uint8(1 + rng.IntN(100)), owned: rng.IntN(2) == 0}
	}
	return m
}

func TestWeightBoardSteps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	a, b := NewWeightBoard("a", nil), NewWeightBoard("b", nil)
	for _, tc := range []struct {
		name    string
		entries int
	}{
		{"first report, several steps", 1000},
		{"smaller", 10},
		{"empty", 0},
		{"again", 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := randomReport(rng, tc.entries)
			a.Publish(rep)
			for _, step := range a.takeSteps() {
				require.NoError(t, b.applyStep(step))
			}
			require.Equal(t, a.table([]string{"a"}), b.table([]string{"a"}))
			require.Len(t, b.reports["a"].entries, tc.entries)
		})
	}
	require.False(t, a.Publish(randomReportCopy(a.reports["a"].entries)), "an equal report changes nothing")
}

func randomReportCopy(m map[uint32]weightEntry) map[uint32]weightEntry {
	c := make(map[uint32]weightEntry, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestWeightBoardLostStepAndPushPull: a receiver that missed a step ignores
// the later ones (it cannot apply them) until a push/pull brings it the
// full report; older states never replace newer ones.
func TestWeightBoardLostStepAndPushPull(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	a, b, c := NewWeightBoard("a", nil), NewWeightBoard("b", nil), NewWeightBoard("c", nil)
	a.Publish(randomReport(rng, 10))
	first := a.takeSteps()
	require.NoError(t, b.applyStep(first[0]))
	old := a.encodeState()
	a.Publish(randomReport(rng, 10))
	lost := a.takeSteps()
	a.Publish(randomReport(rng, 10))
	for _, s := range a.takeSteps() {
		require.NoError(t, b.applyStep(s))
	}
	require.Equal(t, uint64(1), b.reports["a"].version, "steps after a lost one are not applied")
	_ = lost
	require.NoError(t, b.mergeState(a.encodeState()))
	require.Equal(t, a.table([]string{"a"}), b.table([]string{"a"}))
	require.NoError(t, b.mergeState(old))
	require.Equal(t, a.table([]string{"a"}), b.table([]string{"a"}), "an older state does not win")
	// Relayed: c learns a's report from b.
	require.NoError(t, c.mergeState(b.encodeState()))
	require.Equal(t, a.table([]string{"a"}).digest, c.table([]string{"a"}).digest)
	require.Error(t, c.mergeState([]byte{5, 1}))
	require.Error(t, c.applyStep([]byte{'x'}))
}

func TestWeightTable(t *testing.T) {
	a, b := NewWeightBoard("a", nil), NewWeightBoard("b", nil)
	a.Publish(map[uint32]weightEntry{1: {class: 10, owned: true}, 2: {class: 4}})
	b.Publish(map[uint32]weightEntry{2: {class: 6, owned: true}, 3: {class: 7, owned: true}})
	require.NoError(t, b.mergeState(a.encodeState()))
	tab := b.table([]string{"a", "b"})
	require.Equal(t, map[uint32]uint8{1: 10, 2: 6, 3: 7}, tab.classes)
	require.Equal(t, map[uint32][]string{1: {"a"}, 2: {"b"}, 3: {"b"}}, tab.owners)
	// A non-participant's report weighs, but owns nothing.
	tab = b.table([]string{"b"})
	require.Equal(t, uint8(10), tab.classes[1])
	require.NotContains(t, tab.owners, uint32(1))
	before := tab.digest
	b.Publish(map[uint32]weightEntry{3: {class: 8, owned: true}})
	require.NotEqual(t, before, b.table([]string{"b"}).digest)
}

// BenchmarkWeightGossip20kTargets states the gossip cost of the weights at
// 20,000 targets: the push/pull state (every report, exchanged with one
// random peer every memberlist PushPullInterval, 30 s on a LAN) and the
// broadcast steps one member sends when 5% of its targets change class.
func BenchmarkWeightGossip20kTargets(b *testing.B) {
	for _, members := range []int{4, 20} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 3))
			boards := make([]*WeightBoard, members)
			per := 20_000 / members
			reports := make([]map[uint32]weightEntry, members)
			for i := range boards {
				boards[i] = NewWeightBoard(balanceNames(members)[i], nil)
				reports[i] = randomReport(rng, per)
				boards[i].Publish(reports[i])
				boards[i].takeSteps()
			}
			for i := 1; i < members; i++ {
				_ = boards[0].mergeState(boards[i].encodeState())
			}
			var state, steps int
			g := newWeightGossip(boards[0], func() int { return members })
			for b.Loop() {
				state = len(boards[0].encodeState())
				changed := randomReportCopy(reports[0])
				n := 0
				for k, e := range changed {
					if n == per/20 {
						break
					}
					e.class++
					changed[k] = e
					n++
				}
				boards[0].Publish(changed)
				reports[0] = changed
				steps = 0
				for _, s := range boards[0].takeSteps() {
					steps += len(s)
				}
				g.queue.Reset()
			}
			// Push/pull: state sent and received every 30 s; a change's
			// steps are retransmitted RetransmitMult × log10(N+1) times.
			pushPull := 2 * float64(state) / 30
			b.ReportMetric(float64(state), "state_bytes")
			b.ReportMetric(pushPull, "pushpull_bytes/s")
			b.ReportMetric(float64(steps)*float64(retransmits(members)), "bytes_per_5%_change")
		})
	}
}

// retransmits is how often memberlist's TransmitLimitedQueue sends a
// broadcast: RetransmitMult × ceil(log10(N+1)).
func retransmits(n int) int {
	return 3 * int(math.Ceil(math.Log10(float64(n+1))))
}
