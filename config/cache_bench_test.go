package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// benchSnapshot is the session's scale target: 5,000 ServiceMonitors with
// two endpoints each in 500 namespaces, selected by a PrometheusAgent; the
// monitors of every other namespace read a bearer token from a Secret of
// their namespace.
func benchSnapshot() *Snapshot {
	const monitors, namespaces = 5000, 500
	all := &metav1.LabelSelector{}
	agent := &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Namespace: "mon", Name: "agent", ResourceVersion: "1"}}
	agent.Spec.ServiceMonitorSelector, agent.Spec.ServiceMonitorNamespaceSelector = all, all
	snap := &Snapshot{Agent: agent}
	for i := range namespaces {
		ns := fmt.Sprintf("ns-%03d", i)
		snap.Namespaces = append(snap.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": "t"}}})
		snap.Secrets = append(snap.Secrets, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "token", ResourceVersion: "1"},
			Data:       map[string][]byte{"token": []byte("s3cret-" + ns)},
		})
	}
	for i := range monitors {
		ns := fmt.Sprintf("ns-%03d", i%namespaces)
		mon := &monitoringv1.ServiceMonitor{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("mon-%d", i), Labels: map[string]string{"team": "a"},
				UID: types.UID(fmt.Sprintf("uid-%d", i)), ResourceVersion: "1", Generation: 1},
			Spec: monitoringv1.ServiceMonitorSpec{
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", i)}},
				Endpoints: []monitoringv1.Endpoint{
					{Port: "web", Interval: "30s", RelabelConfigs: []monitoringv1.RelabelConfig{{TargetLabel: "x", Replacement: ptrStr("y")}}},
					{Port: "metrics", Path: "/m", MetricRelabelConfigs: []monitoringv1.RelabelConfig{{Action: "drop", SourceLabels: []monitoringv1.LabelName{"__name__"}, Regex: "go_.*"}}},
				},
			},
		}
		if (i/namespaces)%2 == 0 {
			mon.Spec.Endpoints[0].BearerTokenSecret = ptrTo(secretRef("token", "token"))
		}
		snap.ServiceMonitors = append(snap.ServiceMonitors, mon)
	}
	// Sorted by namespace and name, as discovery hands them over.
	slices.SortFunc(snap.ServiceMonitors, func(a, b *monitoringv1.ServiceMonitor) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return snap
}

// BenchmarkGenerateWithCache5000ServiceMonitors measures one call after a
// change, the cache warm from the call before: "edit-monitor" replaces one
// monitor per iteration by a new value with a new resourceVersion (as an
// informer does), "edit-secret" one referenced Secret (read by 5 monitors),
// "unchanged" changes nothing, "cold" starts every call with an empty
// cache (the first apply at startup; compare BenchmarkGenerate5000ServiceMonitors).
func BenchmarkGenerateWithCache5000ServiceMonitors(b *testing.B) {
	base := benchSnapshot()
	opts := Options{}
	run := func(b *testing.B, fresh bool, edit func(s *Snapshot, i int)) {
		snap := *base
		snap.ServiceMonitors = slices.Clone(base.ServiceMonitors)
		snap.Secrets = slices.Clone(base.Secrets)
		c := &Cache{}
		if _, _, err := GenerateWithCache(&snap, opts, c); err != nil {
			b.Fatal(err)
		}
		warm := c.Stats()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if fresh {
				c = &Cache{}
			}
			// A new Snapshot value each time, as discovery publishes.
			next := snap
			next.ServiceMonitors = slices.Clone(snap.ServiceMonitors)
			next.Secrets = slices.Clone(snap.Secrets)
			edit(&next, i)
			cfg, res, err := GenerateWithCache(&next, opts, c)
			if err != nil || len(cfg.ScrapeConfigs) != 10000 || !res[0].Accepted {
				b.Fatalf("err=%v jobs=%d", err, len(cfg.ScrapeConfigs))
			}
			snap = next
		}
		if !fresh {
			st := c.Stats()
			hits, misses := st.Hits-warm.Hits, st.Misses-warm.Misses
			b.ReportMetric(float64(misses)/float64(b.N), "translated/op")
			b.ReportMetric(float64(hits)/float64(b.N), "reused/op")
		}
	}
	b.Run("edit-monitor", func(b *testing.B) {
		run(b, false, func(s *Snapshot, i int) {
			k := i % len(s.ServiceMonitors)
			sm := s.ServiceMonitors[k].DeepCopy()
			sm.ResourceVersion = strconv.Itoa(i + 2)
			sm.Generation++
			sm.Spec.Endpoints[0].Interval = monitoringv1.Duration(fmt.Sprintf("%ds", 10+i%50))
			s.ServiceMonitors[k] = sm
		})
	})
	b.Run("edit-secret", func(b *testing.B) {
		run(b, false, func(s *Snapshot, i int) {
			k := i % len(s.Secrets)
			sec := s.Secrets[k].DeepCopy()
			sec.ResourceVersion = strconv.Itoa(i + 2)
			sec.Data["token"] = []byte("rotated-" + strconv.Itoa(i))
			s.Secrets[k] = sec
		})
	})
	b.Run("unchanged", func(b *testing.B) {
		run(b, false, func(*Snapshot, int) {})
	})
	b.Run("cold", func(b *testing.B) {
		run(b, true, func(*Snapshot, int) {})
	})
}

// BenchmarkReferencedObjects5000ServiceMonitors measures the references
// discovery computes after every rebuild: "uncached" walks every spec,
// "edit-monitor" walks the one monitor edited per iteration.
func BenchmarkReferencedObjects5000ServiceMonitors(b *testing.B) {
	base := benchSnapshot()
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			if r := ReferencedObjects(base, Options{}); len(r.Secrets) != 500 {
				b.Fatalf("%d secrets", len(r.Secrets))
			}
		}
	})
	b.Run("edit-monitor", func(b *testing.B) {
		snap := *base
		snap.ServiceMonitors = slices.Clone(base.ServiceMonitors)
		c := &ReferenceCache{}
		ReferencedObjectsWithCache(&snap, Options{}, c)
		for i := 0; b.Loop(); i++ {
			next := snap
			next.ServiceMonitors = slices.Clone(snap.ServiceMonitors)
			k := i % len(next.ServiceMonitors)
			sm := next.ServiceMonitors[k].DeepCopy()
			sm.ResourceVersion = strconv.Itoa(i + 2)
			next.ServiceMonitors[k] = sm
			if r := ReferencedObjectsWithCache(&next, Options{}, c); len(r.Secrets) != 500 {
				b.Fatalf("%d secrets", len(r.Secrets))
			}
			snap = next
		}
	})
}
