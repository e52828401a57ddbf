package agent

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"

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

// BenchmarkApplyOneEdit5000ServiceMonitors measures the agent's share of a
// monitor edit at 5,000 ServiceMonitors in 500 namespaces: every iteration
// applies a configuration in which one job is new (as the translation cache
// hands it: the other 9,999 are the running pointers). Discovery is not
// applied (the shared discovery is unchanged); the scrape manager reloads
// one pool. The jobs' Kubernetes SD is replaced by one static group per
// namespace (500 shared discoveries), so that no API server is needed.
func BenchmarkApplyOneEdit5000ServiceMonitors(b *testing.B) {
	snap := &config.Snapshot{}
	for i := range 5000 {
		snap.ServiceMonitors = append(snap.ServiceMonitors, &monitoringv1.ServiceMonitor{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i%500), Name: fmt.Sprintf("mon-%d", i)},
			Spec: monitoringv1.ServiceMonitorSpec{
				Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", i)}},
				Endpoints: []monitoringv1.Endpoint{{Port: "web"}, {Port: "metrics"}},
			},
		})
	}
	opts := config.Options{}
	static := func(cfg *promconfig.Config) {
		for _, sc := range cfg.ScrapeConfigs {
			staticSD(sc)
		}
	}
	cfg, _, err := config.Generate(snap, opts)
	if err != nil {
		b.Fatal(err)
	}
	static(cfg)
	a := runningBenchAgent(b)
	if err := a.ApplyConfig(cfg); err != nil {
		b.Fatal(err)
	}
	waitForPools(a, len(cfg.ScrapeConfigs))
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		mon := snap.ServiceMonitors[i%5000].DeepCopy()
		y := strconv.Itoa(i)
		mon.Spec.Endpoints[0].RelabelConfigs = []monitoringv1.RelabelConfig{{TargetLabel: "edit", Replacement: &y}}
		one, _, err := config.Generate(&config.Snapshot{ServiceMonitors: []*monitoringv1.ServiceMonitor{mon}}, opts)
		if err != nil {
			b.Fatal(err)
		}
		static(one)
		next := *a.desired
		next.ScrapeConfigs = slices.Clone(a.desired.ScrapeConfigs)
		for j, sc := range next.ScrapeConfigs {
			if sc.JobName == one.ScrapeConfigs[0].JobName {
				next.ScrapeConfigs[j] = one.ScrapeConfigs[0]
			}
		}
		if err := a.ApplyConfig(&next); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	if got := testutil.ToFloat64(a.metrics.sdApplies); got != 1 {
		b.Fatalf("discovery applied %v times, want once (the first configuration)", got)
	}
}

// staticSD replaces the Kubernetes SD of a generated job (its namespace is
// the second segment of its name) with one static group of that
// namespace, so that benchmarks need no API server.
func staticSD(sc *promconfig.ScrapeConfig) {
	ns := strings.Split(sc.JobName, "/")[1]
	sc.ServiceDiscoveryConfigs = promdiscovery.Configs{promdiscovery.StaticConfig{{Source: ns,
		Targets: []model.LabelSet{{model.AddressLabel: "127.0.0.1:1"}}, Labels: model.LabelSet{namespaceLabel: model.LabelValue(ns)}}}}
}

// runningBenchAgent returns an agent with shared discovery whose Run
// goroutine stops when the benchmark ends.
func runningBenchAgent(b *testing.B) *Agent {
	b.Helper()
	a, err := New(Options{StoragePath: b.TempDir(), Registerer: prometheus.NewRegistry(), RemoteFlushDeadline: time.Second, KubernetesSDClusterWide: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	return a
}

// waitForPools waits until the scrape manager runs jobs pools and the
// syncer's marker pool: its first target sync created them.
func waitForPools(a *Agent, jobs int) {
	for len(a.scrape.ScrapePools()) < jobs+1 {
		time.Sleep(10 * time.Millisecond)
	}
}
