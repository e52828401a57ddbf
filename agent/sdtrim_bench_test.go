package agent

import (
	"fmt"
	"runtime"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promshard/promshard/config"
	"github.com/promshard/promshard/internal/benchshape"
	"github.com/promshard/promshard/sharding"
)

// Shape of BenchmarkTrimmedGroupsMemory, as sharding's
// BenchmarkFilterMemoryNotOwned: 500 namespaces of 20 Services of 2 pods.
const (
	trimBenchNamespaces = 500
	trimBenchServices   = 20
	trimBenchPods       = 2
)

// BenchmarkTrimmedGroupsMemory measures what Prometheus' discovery manager
// holds per discovered target: the EndpointSlice groups as Kubernetes SD
// sends them ("raw-B/target", 37 labels a target, 8 on the group) and as
// the trimmed discovery passes them on to it under the relabeling
// promshard's config package generates for one ServiceMonitor per Service
// (prometheus-operator's: selector, port, target kind and name, namespace,
// service, pod, container, pod phase) plus the filter's node and zone
// labels ("trimmed-B/target": 10 kept labels a target, two of them
// shared and moved onto the group; 954 B without that move). Together with the filter's share
// (sharding.BenchmarkFilterMemoryNotOwned, filter-B/target) this is what a
// discovered target costs a member that does not own it.
func BenchmarkTrimmedGroupsMemory(b *testing.B) {
	const targets = trimBenchNamespaces * trimBenchServices * trimBenchPods
	needs := newLabelNeeds(sharding.DiscoveredLabelsRead())
	snap := &config.Snapshot{}
	for svc := range trimBenchServices {
		snap.ServiceMonitors = append(snap.ServiceMonitors, &monitoringv1.ServiceMonitor{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns-0", Name: fmt.Sprintf("svc-%d", svc)},
			Spec: monitoringv1.ServiceMonitorSpec{
				Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("svc-%d", svc)}},
				Endpoints: []monitoringv1.Endpoint{{Port: "web"}},
			},
		})
	}
	cfg, _, err := config.Generate(snap, config.Options{})
	if err != nil || len(cfg.ScrapeConfigs) != trimBenchServices {
		b.Fatalf("generate: %v (%d jobs)", err, len(cfg.ScrapeConfigs))
	}
	for _, sc := range cfg.ScrapeConfigs {
		needs.add(sc.RelabelConfigs)
	}
	var rawB, trimmedB uint64
	for b.Loop() {
		b.StopTimer()
		base := benchshape.LiveHeap()
		raw := make([]*targetgroup.Group, 0, trimBenchNamespaces*trimBenchServices)
		for ns := range trimBenchNamespaces {
			for svc := range trimBenchServices {
				raw = append(raw, benchshape.EndpointSlice(ns, svc, trimBenchPods, trimBenchServices))
			}
		}
		withRaw := benchshape.LiveHeap()
		b.StartTimer()
		var tr trimmer
		s := needs.load()
		trimmed := make([]*targetgroup.Group, len(raw))
		for i, tg := range raw {
			trimmed[i] = tr.trim(s, tg)
		}
		b.StopTimer()
		raw = nil
		tr = trimmer{}
		withTrimmed := benchshape.LiveHeap()
		rawB, trimmedB = withRaw-base, withTrimmed-base
		runtime.KeepAlive(trimmed)
		b.StartTimer()
	}
	b.ReportMetric(float64(rawB)/targets, "raw-B/target")
	b.ReportMetric(float64(trimmedB)/targets, "trimmed-B/target")
}
