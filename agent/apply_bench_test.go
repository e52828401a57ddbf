package agent

import (
	"fmt"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promshard/promshard/config"
)

// BenchmarkApplyUnchanged5000ServiceMonitors measures what a snapshot that
// renders to the running configuration costs the agent (prepare, the
// content comparison of 10,000 jobs, no manager touched), next to the
// translation that produced it (BenchmarkGenerate5000ServiceMonitors in
// config).
func BenchmarkApplyUnchanged5000ServiceMonitors(b *testing.B) {
	snap := &config.Snapshot{}
	for i := range 5000 {
		y := "y"
		snap.ServiceMonitors = append(snap.ServiceMonitors, &monitoringv1.ServiceMonitor{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("mon-%d", i)},
			Spec: monitoringv1.ServiceMonitorSpec{
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", i)}},
				Endpoints: []monitoringv1.Endpoint{
					{Port: "web", Interval: "30s", RelabelConfigs: []monitoringv1.RelabelConfig{{TargetLabel: "x", Replacement: &y}}},
					{Port: "metrics", Path: "/m", MetricRelabelConfigs: []monitoringv1.RelabelConfig{{Action: "drop", SourceLabels: []monitoringv1.LabelName{"__name__"}, Regex: "go_.*"}}},
				},
			},
		})
	}
	first, _, err := config.Generate(snap, config.Options{})
	if err != nil {
		b.Fatal(err)
	}
	same, _, err := config.Generate(snap, config.Options{})
	if err != nil {
		b.Fatal(err)
	}
	a := newBenchAgent(b)
	if err := a.ApplyConfig(first); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := a.ApplyConfig(same); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if a.desired.ScrapeConfigs[0] != first.ScrapeConfigs[0] {
		b.Fatal("unchanged job got a new pointer")
	}
}
