package sharding

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/benchshape"
)

// BenchmarkFilterRecompute measures the filter on 100k discovered pod
// targets and 20 members: "membership" is the re-filter on a membership
// change (hashing only, relabeling cached), "discovery" includes relabeling
// every target as on new discovery input.
func BenchmarkFilterRecompute(b *testing.B) {
	names := memberNames(20)
	tsets := podGroups(100_000, noNode)
	for _, tc := range []struct {
		name      string
		reprepare bool
	}{{"membership", false}, {"discovery", true}} {
		b.Run(fmt.Sprintf("%s/targets=100k/members=20", tc.name), func(b *testing.B) {
			members := newTestMembers(names...)
			f := newTestFilter(b, FilterOptions{Self: names[0], Members: members})
			filterOnce(f, tsets)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				// Alternate the member set so ownership really changes.
				if i%2 == 0 {
					members.set(names[:19]...)
				} else {
					members.set(names...)
				}
				if tc.reprepare {
					// New group values, as after a discovery update: all
					// targets are relabeled again.
					in := map[string][]*targetgroup.Group{}
					for job, groups := range tsets {
						for _, g := range groups {
							cp := *g
							in[job] = append(in[job], &cp)
						}
					}
					f.setInput(in)
				}
				recomputeAll(f, tc.reprepare)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/recompute")
		})
	}
}

// Shape of the service-monitor benchmark: 500 namespaces with 20 services of
// 2 pods each; one job per service (prometheus-operator's
// serviceMonitor/<ns>/<name>/0) whose discovery yields the namespace's 20
// Endpoints groups (40 targets) and whose relabeling keeps only its service.
const (
	benchNamespaces = 500
	benchServices   = 20
	benchPods       = 2
)

func benchJob(ns, svc int) string { return fmt.Sprintf("serviceMonitor/ns-%d/svc-%d/0", ns, svc) }

// benchNamespaceOf maps each benchmark job to its namespace.
var benchNamespaceOf = func() map[string]int {
	m := map[string]int{}
	for ns := range benchNamespaces {
		for svc := range benchServices {
			m[benchJob(ns, svc)] = ns
		}
	}
	return m
}()

// benchServiceMonitors returns the scrape configurations and the discovered
// groups of the service-monitor benchmark. The jobs of a namespace share its
// group pointers, as Prometheus' discovery manager passes on one provider's
// groups to every job with the same discovery configuration.
func benchServiceMonitors() (string, map[string][]*targetgroup.Group) {
	var cfg strings.Builder
	cfg.WriteString("scrape_configs:\n")
	tsets := make(map[string][]*targetgroup.Group, benchNamespaces*benchServices)
	for ns := range benchNamespaces {
		groups := make([]*targetgroup.Group, benchServices)
		for svc := range benchServices {
			groups[svc] = benchEndpoints(ns, svc, 0)
		}
		for svc := range benchServices {
			rules := benchshape.Relabeling(svc, "__meta_kubernetes_endpoint_port_name")
			fmt.Fprintf(&cfg, "- job_name: %s\n  relabel_configs:\n  %s\n", benchJob(ns, svc),
				strings.ReplaceAll(strings.TrimSuffix(rules, "\n"), "\n", "\n  "))
			tsets[benchJob(ns, svc)] = groups
		}
	}
	return cfg.String(), tsets
}

// benchEndpoints is the discovered Endpoints group of one service; gen
// changes its pods' IPs, as a pod restart does.
func benchEndpoints(ns, svc, gen int) *targetgroup.Group {
	tg := &targetgroup.Group{
		Source: fmt.Sprintf("endpoints/ns-%d/svc-%d", ns, svc),
		Labels: model.LabelSet{
			"__meta_kubernetes_namespace":    model.LabelValue(fmt.Sprintf("ns-%d", ns)),
			"__meta_kubernetes_service_name": model.LabelValue(fmt.Sprintf("svc-%d", svc)),
		},
	}
	for p := range benchPods {
		ip := fmt.Sprintf("10.%d.%d.%d", ns%250, svc, (p+gen*benchPods)%250)
		tg.Targets = append(tg.Targets, model.LabelSet{
			"__address__":                          model.LabelValue(ip + ":8080"),
			"__meta_kubernetes_pod_name":           model.LabelValue(fmt.Sprintf("svc-%d-%d-%d", svc, gen, p)),
			"__meta_kubernetes_endpoint_port_name": "web",
			"__meta_kubernetes_endpoint_ready":     "true",
		})
	}
	return tg
}

// BenchmarkFilterServiceMonitors measures the filter on 10,000 jobs (20,000
// kept targets, 380,000 relabel-dropped entries) and 3 members:
// "one-namespace" is a discovery update in which one namespace's Endpoints
// group changed (a pod restarted), as under pod churn, delivered as the
// discovery manager does (a new map, new slices, groups in map order);
// "one-job-config" is the re-filter after an apply that changed one job's
// configuration (a monitor edit); "membership" is the full re-filter on a
// membership change.
func BenchmarkFilterServiceMonitors(b *testing.B) {
	yaml, tsets := benchServiceMonitors()
	scs, err := loadScrapeConfigs(yaml)
	if err != nil {
		b.Fatal(err)
	}
	names := memberNames(3)
	// started returns a filter of member names[0] that filtered tsets.
	started := func(b *testing.B, members *testMembers) *Filter {
		f, err := NewFilter(FilterOptions{Self: names[0], Members: members})
		if err != nil {
			b.Fatal(err)
		}
		f.SetScrapeConfigs(scs)
		filterOnce(f, tsets)
		return f
	}
	b.Run("one-namespace/jobs=10k/members=3", func(b *testing.B) {
		f := started(b, newTestMembers(names...))
		// Like Prometheus' discovery manager, keep each provider's groups
		// by source and hand over a new map with new slices every time,
		// listing the groups in map order.
		bySource := make([]map[string]*targetgroup.Group, benchNamespaces)
		for ns := range benchNamespaces {
			bySource[ns] = map[string]*targetgroup.Group{}
			for _, tg := range tsets[benchJob(ns, 0)] {
				bySource[ns][tg.Source] = tg
			}
		}
		for i := 0; b.Loop(); i++ {
			b.StopTimer() // building the input is discovery's cost
			ns, svc := i%benchNamespaces, (i/benchNamespaces)%benchServices
			changed := benchEndpoints(ns, svc, i+1)
			bySource[ns][changed.Source] = changed
			in := make(map[string][]*targetgroup.Group, len(tsets))
			for job := range tsets {
				var groups []*targetgroup.Group
				for _, tg := range bySource[benchNamespaceOf[job]] {
					groups = append(groups, tg)
				}
				in[job] = groups
			}
			b.StartTimer()
			filterOnce(f, in)
		}
	})
	b.Run("one-job-config/jobs=10k/members=3", func(b *testing.B) {
		f := started(b, newTestMembers(names...))
		for i := 0; b.Loop(); i++ {
			// A monitor edit: one job gets a new configuration (same
			// content, new pointer), as the agent hands it.
			edited := *scs[i%len(scs)]
			f.ChangeScrapeConfigs(map[string]*config.ScrapeConfig{edited.JobName: &edited})
			if changed := f.recompute(true); len(changed) != 1 {
				b.Fatalf("%d jobs changed, want the edited one", len(changed))
			}
		}
	})
	b.Run("membership/jobs=10k/members=3", func(b *testing.B) {
		members := newTestMembers(names...)
		f := started(b, members)
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 {
				members.set(names[:2]...)
			} else {
				members.set(names...)
			}
			recomputeAll(f, false)
		}
	})
}

// ExampleFilter wires a standalone member's filter between a discovery
// channel and a scrape channel, as the agent does with
// discovery.Manager.SyncCh() and scrape.Manager.Run().
func ExampleFilter() {
	cluster, err := NewCluster(ClusterConfig{NodeName: "promshard-0"}, promslog.NewNopLogger(), prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	f, err := NewFilter(FilterOptions{Self: cluster.Self(), Members: cluster})
	if err != nil {
		panic(err)
	}
	// A member owns targets once it participates: in promshard after its
	// informers synced, its configuration was applied and f.Primed().
	cluster.Participate()
	cfgs, err := loadScrapeConfigs(testConfig)
	if err != nil {
		panic(err)
	}
	f.SetScrapeConfigs(cfgs)

	in := make(chan map[string][]*targetgroup.Group)
	out := make(chan map[string][]*targetgroup.Group)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx, in, out) }()

	in <- podGroups(10, noNode)
	owned := <-out
	fmt.Println(len(owned), ownedCount(owned[podJob]), f.Stats().TotalTargets)
	cancel()
	fmt.Println(<-done)
	// Output:
	// 2 10 11
	// <nil>
}
