package agent

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/prometheus/config"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/promshard/promshard/config"
)

// BenchmarkReconcileOneEdit5000ServiceMonitors measures a whole monitor
// edit from the snapshot on: the cached translation of 5,000
// ServiceMonitors in 500 namespaces of which one changed, the agent's apply
// (the scrape manager reloads that monitor's two pools) and the reconciler's
// bookkeeping of 5,000 results. Its B/op is what an edit allocates, which
// decides how soon the next garbage collection comes during a series of
// edits. As in BenchmarkApplyOneEdit5000ServiceMonitors, the jobs'
// Kubernetes SD is replaced by a static group per namespace.
func BenchmarkReconcileOneEdit5000ServiceMonitors(b *testing.B) {
	snap := &config.Snapshot{}
	for i := range 500 {
		snap.Namespaces = append(snap.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns-%d", i), Labels: map[string]string{"team": "t"}}})
	}
	for i := range 5000 {
		snap.ServiceMonitors = append(snap.ServiceMonitors, &monitoringv1.ServiceMonitor{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i%500), Name: fmt.Sprintf("mon-%d", i),
				UID: types.UID("u" + strconv.Itoa(i)), ResourceVersion: "1", Generation: 1},
			Spec: monitoringv1.ServiceMonitorSpec{
				Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", i)}},
				Endpoints: []monitoringv1.Endpoint{{Port: "web"}, {Port: "metrics"}},
			},
		})
	}
	cache := &config.Cache{}
	static := map[*promconfig.ScrapeConfig]bool{} // jobs whose SD was replaced
	generate := func(s *config.Snapshot) (*promconfig.Config, []config.Result, error) {
		cfg, res, err := config.GenerateWithCache(s, config.Options{}, cache)
		if err != nil {
			return nil, nil, err
		}
		for _, sc := range cfg.ScrapeConfigs {
			if static[sc] {
				continue // a cached job, already applied
			}
			staticSD(sc)
			static[sc] = true
		}
		return cfg, res, nil
	}
	a := runningBenchAgent(b)
	r, err := NewReconciler(make(chan *config.Snapshot), generate, a, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	r.reconcile(snap)
	if st := r.Status(); st.Version != 1 || st.LastError != nil {
		b.Fatalf("first configuration not applied: %+v", st)
	}
	waitForPools(a, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		k := (i * 97) % 5000
		mon := snap.ServiceMonitors[k].DeepCopy()
		y := strconv.Itoa(i)
		mon.ResourceVersion = "e" + y
		mon.Spec.Endpoints[0].RelabelConfigs = []monitoringv1.RelabelConfig{{TargetLabel: "edit", Replacement: &y}}
		next := *snap
		next.ServiceMonitors = slices.Clone(snap.ServiceMonitors)
		next.ServiceMonitors[k] = mon
		snap = &next
		r.reconcile(snap)
		i++
	}
	b.StopTimer()
	if st := r.Status(); st.Version != i+1 || st.LastError != nil {
		b.Fatalf("after %d edits: %+v", i, st)
	}
}
