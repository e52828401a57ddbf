package agent

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	rtmetrics "runtime/metrics"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// GC headroom.
//
// Go's pacer starts a collection as late as it predicts it can: from the
// allocation rate it saw during the last cycles' marking it sets the trigger
// so that marking ends just as the heap reaches the goal. For a process
// that allocates steadily (promshard between changes: scrapes) that is a
// few MiB before the goal, the least the runtime allows. A burst of
// allocation during such a mark (a configuration apply: the translation,
// Prometheus' scrape manager rebuilding its maps of every pool) leaves the
// heap at its goal with most of the marking still to do, and the goroutines
// that allocate then do that marking themselves as assists: with about
// 500 MB live, the apply, and every scrape that allocates meanwhile, stalls
// for the better part of a second.
//
// GCHeadroom starts a collection itself (runtime.GC) once the heap has
// grown past 1-Headroom of the way from the last cycle's live heap to the
// goal, so that marking runs with that much room left: allocation during
// it pays small assists, and the background workers do the marking. The
// price is cycles that start earlier, 1/(1-Headroom) as many, and a lower
// peak heap. Small heaps (a way under defaultMinWay) are left to the runtime.

// GCHeadroom is a run actor that starts garbage collections early; see
// above. Create it with NewGCHeadroom.
type GCHeadroom struct {
	headroom float64
	minWay   uint64 // defaultMinWay; tests lower it
	interval time.Duration
	logger   *slog.Logger
	starts   prometheus.Counter
	samples  []rtmetrics.Sample
	// cycles is the number of finished cycles at the last check, base the
	// bytes allocated (ever) when that count was first seen: the heap is
	// the live heap that cycle marked plus what was allocated since.
	cycles, base uint64
}

// The runtime metrics GCHeadroom reads, in samples' order.
const (
	gcGoal = iota
	gcLive
	gcAllocs
	gcCycles
	gcPauses
	gcPercent
)

// NewGCHeadroom returns a GCHeadroom that keeps headroom (a fraction of
// the way from the live heap to the goal, 0 < headroom < 1) free when a
// collection starts, checking the heap every interval. It registers
// promshard_gc_early_starts_total on reg.
func NewGCHeadroom(headroom float64, interval time.Duration, logger *slog.Logger, reg prometheus.Registerer) (*GCHeadroom, error) {
	if headroom <= 0 || headroom >= 1 {
		return nil, fmt.Errorf("GC headroom %g: want a fraction between 0 and 1", headroom)
	}
	if interval <= 0 {
		return nil, fmt.Errorf("GC headroom check interval %s: want a positive duration", interval)
	}
	g := &GCHeadroom{
		headroom: headroom, minWay: defaultMinWay, interval: interval, logger: logger,
		starts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_gc_early_starts_total",
			Help: "Garbage collections promshard started before the Go runtime would have, to keep heap headroom for bursts of allocation during marking (--runtime.gc-headroom).",
		}),
		samples: []rtmetrics.Sample{
			gcGoal:    {Name: "/gc/heap/goal:bytes"},
			gcLive:    {Name: "/gc/heap/live:bytes"},
			gcAllocs:  {Name: "/gc/heap/allocs:bytes"},
			gcCycles:  {Name: "/gc/cycles/total:gc-cycles"},
			gcPauses:  {Name: "/sched/pauses/total/gc:seconds"},
			gcPercent: {Name: "/gc/gogc:percent"},
		},
	}
	if reg != nil {
		if err := reg.Register(g.starts); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Run checks the heap every interval until ctx is done.
func (g *GCHeadroom) Run(ctx context.Context) error {
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if g.due() {
			start := time.Now()
			runtime.GC()
			g.starts.Inc()
			g.logger.Debug("started a garbage collection early", "took", time.Since(start).String())
		}
	}
}

// due reads the runtime's heap figures and reports whether a collection
// should start now.
func (g *GCHeadroom) due() bool {
	rtmetrics.Read(g.samples)
	var pauses uint64
	if h := g.samples[gcPauses].Value; h.Kind() == rtmetrics.KindFloat64Histogram {
		for _, n := range h.Float64Histogram().Counts {
			pauses += n
		}
	}
	// Not the runtime's heap object bytes: those still count the garbage
	// of the last cycle until it is swept, which takes a while after the
	// cycle ended and would start a useless cycle right after it.
	cycles, allocs := g.samples[gcCycles].Value.Uint64(), g.samples[gcAllocs].Value.Uint64()
	if cycles != g.cycles || g.base == 0 {
		g.cycles, g.base = cycles, allocs
	}
	live := g.samples[gcLive].Value.Uint64()
	return startEarly(heapState{
		goal:    g.samples[gcGoal].Value.Uint64(),
		live:    live,
		heap:    live + (allocs - g.base),
		marking: pauses != 2*cycles,
		gogc:    int64(g.samples[gcPercent].Value.Uint64()),
	}, g.headroom, g.minWay)
}

// heapState is what startEarly decides on.
type heapState struct {
	// Bytes: the heap goal, the live heap the last cycle marked, and the
	// heap now (that plus what was allocated since the cycle ended).
	goal, live, heap uint64
	// marking is true while a cycle runs: every cycle has two
	// stop-the-world pauses, one when marking starts and one when it ends,
	// so an odd pause count (more than twice the finished cycles) means a
	// mark is under way. runtime.GC would wait for it and then run a whole
	// cycle more.
	marking bool
	gogc    int64 // GOGC; negative: collector off
}

// defaultMinWay is the smallest way from the live heap to the goal at
// which GCHeadroom starts collections. Below it (a live heap under ~85 MB at
// GOGC 75) marking takes tens of milliseconds, so a burst during it pays
// little even with the runtime's own few MiB of runway, while the early
// starts would still cost a third more collections: 3-9% more CPU per
// sample, round by round, in bench-vs-agent (200 targets x 200 series,
// ~60 MB live).
const defaultMinWay = 64 << 20

// startEarly reports whether the heap grew past 1-headroom of the way from
// the live heap to the goal while no cycle runs, if that way is at least
// minWay bytes.
func startEarly(s heapState, headroom float64, minWay uint64) bool {
	if s.marking || s.gogc < 0 || s.live == 0 || s.goal < s.live+minWay {
		return false
	}
	threshold := s.live + uint64(float64(s.goal-s.live)*(1-headroom))
	return s.heap >= threshold
}
