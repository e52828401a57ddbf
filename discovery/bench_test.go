package discovery

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/promshard/promshard/config"
)

// BenchmarkRebuild measures one snapshot rebuild from the caches of 1,000
// ServiceMonitors, 1,000 PodMonitors, 2,000 Secrets and 100 Namespaces.
func BenchmarkRebuild(b *testing.B) {
	var objs []runtime.Object
	for i := range 1000 {
		ns := fmt.Sprintf("ns-%02d", i%100)
		objs = append(objs, serviceMonitor(ns, fmt.Sprintf("sm-%d", i)), podMonitor(ns, fmt.Sprintf("pm-%d", i)),
			secret(ns, fmt.Sprintf("a-%d", i), "x"), secret(ns, fmt.Sprintf("b-%d", i), "y"))
	}
	for i := range 100 {
		objs = append(objs, namespace(fmt.Sprintf("ns-%02d", i), nil))
	}
	h := startWatcher(b, Options{}, installed(), objs...)
	h.waitFor(b, "all objects", func(s *config.Snapshot) bool { return len(s.ServiceMonitors) == 1000 })
	for b.Loop() {
		if s, ok := h.w.rebuild(); !ok || len(s.Secrets) != 2000 {
			b.Fatal("incomplete snapshot")
		}
	}
}

// BenchmarkChangeToSnapshot measures the latency from creating a
// ServiceMonitor after a quiet period (the default debounce, 100ms, since
// the last rebuild) to a published snapshot holding it.
func BenchmarkChangeToSnapshot(b *testing.B) {
	ctx := context.Background()
	h := startWatcher(b, Options{Debounce: DefaultDebounce}, installed(), namespace("default", nil))
	h.waitFor(b, "first snapshot", func(*config.Snapshot) bool { return true })
	time.Sleep(DefaultDebounce)
	var worst time.Duration
	i := 0
	for b.Loop() {
		i++
		start := time.Now()
		_, err := h.dyn.Resource(gvrServiceMonitors).Namespace("default").Create(ctx,
			serviceMonitor("default", fmt.Sprintf("sm-%d", i)), metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		h.waitFor(b, "the new monitor", func(s *config.Snapshot) bool { return len(s.ServiceMonitors) == i })
		worst = max(worst, time.Since(start))
		b.StopTimer()
		time.Sleep(DefaultDebounce)
		b.StartTimer()
	}
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}
