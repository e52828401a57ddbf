package agent

import (
	"context"
	rtmetrics "runtime/metrics"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/promslog"
)

func TestStartEarly(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name string
		s    heapState
		want bool
	}{
		{"below the threshold", heapState{goal: 200 * mb, live: 100 * mb, heap: 189 * mb, gogc: 100}, false},
		{"at the threshold", heapState{goal: 200 * mb, live: 100 * mb, heap: 190 * mb, gogc: 100}, true},
		{"past it", heapState{goal: 200 * mb, live: 100 * mb, heap: 199 * mb, gogc: 100}, true},
		{"a cycle marks already", heapState{goal: 200 * mb, live: 100 * mb, heap: 199 * mb, gogc: 100, marking: true}, false},
		{"collector off", heapState{goal: 200 * mb, live: 100 * mb, heap: 199 * mb, gogc: -1}, false},
		{"no cycle yet", heapState{goal: 4 * mb, heap: 4 * mb, gogc: 100}, false},
		{"goal at the live heap (memory limit)", heapState{goal: 100 * mb, live: 100 * mb, heap: 120 * mb, gogc: 100}, false},
		{"small heap: left to the runtime", heapState{goal: 100 * mb, live: 40 * mb, heap: 99 * mb, gogc: 100}, false},
		{"way just large enough", heapState{goal: 104 * mb, live: 40 * mb, heap: 98 * mb, gogc: 100}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := startEarly(tc.s, 0.1, defaultMinWay); got != tc.want {
				t.Errorf("startEarly(%+v, 0.1, 64MiB) = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
}

func TestNewGCHeadroomRejectsBadSettings(t *testing.T) {
	for _, h := range []float64{0, 1, -0.1, 1.5} {
		if _, err := NewGCHeadroom(h, time.Second, promslog.NewNopLogger(), nil); err == nil {
			t.Errorf("headroom %g accepted", h)
		}
	}
	if _, err := NewGCHeadroom(0.1, 0, promslog.NewNopLogger(), nil); err == nil {
		t.Error("interval 0 accepted")
	}
}

// TestGCHeadroomStartsCollections runs the actor on this test process (its
// small-heap limit lowered): with half the way to the goal as headroom,
// steady allocation must make
// it start collections (forced cycles in the runtime's own count).
func TestGCHeadroomStartsCollections(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, err := NewGCHeadroom(0.5, time.Millisecond, promslog.NewNopLogger(), reg)
	if err != nil {
		t.Fatal(err)
	}
	g.minWay = 1 << 20 // this test's heap is a few MiB
	forced := []rtmetrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	rtmetrics.Read(forced)
	before := forced[0].Value.Uint64()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	live := make([][]*int, 0, 64) // a live heap of pointers for the marking to scan
	for range 64 {
		b := make([]*int, 1<<12)
		for i := range b {
			b[i] = new(int)
		}
		live = append(live, b)
	}
	var sink []byte
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(g.starts) < 2 && time.Now().Before(deadline) {
		sink = make([]byte, 64<<10)
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, _ = sink, live
	starts := testutil.ToFloat64(g.starts)
	if starts < 2 {
		t.Fatalf("promshard_gc_early_starts_total = %v after 20s of allocation, want >= 2", starts)
	}
	rtmetrics.Read(forced)
	// A start can find the runtime's own cycle begun meanwhile; runtime.GC
	// then waits for that one and counts none, so not every start is a
	// forced cycle.
	if got := forced[0].Value.Uint64() - before; got == 0 {
		t.Errorf("the runtime counted no forced cycle after %v early starts", starts)
	}
}
