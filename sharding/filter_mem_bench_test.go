package sharding

import (
	"github.com/promshard/promshard/internal/benchshape"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// BenchmarkFilterMemoryNotOwned measures the heap a discovered target costs
// a member that does not own it, in the shape of the service-monitor
// benchmark (500 namespaces of 20 Services of 2 pods, one job per Service
// keeping its own Service's targets: every job of a namespace reads its 20
// groups, so each discovered target is kept by one job and dropped by 19).
// The member owns nothing (three other members do; it is joining). The
// filter holds one entry per target, for the job keeping it, without its
// final labels (never sent, they are forgotten); for the 19 jobs dropping
// it, nothing per job: its discovered labels' fingerprint, from which their
// keys for DroppedTargets derive, is computed once per group when a
// participant needs it. Reported per discovered target (40 per namespace):
// "B/target" is everything, "groups-B/target" the discovery's target
// groups alone (held by Prometheus' discovery manager), "filter-B/target"
// what the filter keeps on top (its prepared jobs and entries, per-job
// assignments, output slices, shared empty output groups and its per-job
// maps), and "filter-B/entry" that per job and target.
func BenchmarkFilterMemoryNotOwned(b *testing.B) {
	yaml, _ := benchServiceMonitors()
	// The EndpointSlice role's name of the port label.
	yaml = strings.ReplaceAll(yaml, "__meta_kubernetes_endpoint_port_name", "__meta_kubernetes_endpointslice_port_name")
	scs, err := loadScrapeConfigs(yaml)
	if err != nil {
		b.Fatal(err)
	}
	others := memberNames(3)
	const targets = benchNamespaces * benchServices * benchPods
	const entries = targets * benchServices
	var groupsB, filterB uint64
	for b.Loop() {
		b.StopTimer()
		base := benchshape.LiveHeap()
		tsets := make(map[string][]*targetgroup.Group, benchNamespaces*benchServices)
		for ns := range benchNamespaces {
			groups := make([]*targetgroup.Group, benchServices)
			for svc := range benchServices {
				groups[svc] = benchshape.EndpointSlice(ns, svc, benchPods, benchServices)
			}
			for svc := range benchServices {
				tsets[benchJob(ns, svc)] = groups
			}
		}
		withGroups := benchshape.LiveHeap()
		members := newTestMembers(others...)
		members.members = append(members.members, Member{Name: "joining", State: StateJoining, KeyVersion: LatestKeyVersion})
		f, err := NewFilter(FilterOptions{Self: "joining", Members: members})
		if err != nil {
			b.Fatal(err)
		}
		f.SetScrapeConfigs(scs)
		b.StartTimer()
		out := filterOnce(f, tsets)
		b.StopTimer()
		for job, groups := range out {
			for _, tg := range groups {
				if len(tg.Targets) > 0 {
					b.Fatalf("job %s: the member owns %d targets, want none", job, len(tg.Targets))
				}
			}
		}
		if st := f.Stats(); st.TotalTargets != targets {
			b.Fatalf("%d targets counted, want %d", st.TotalTargets, targets)
		}
		withFilter := benchshape.LiveHeap()
		groupsB, filterB = withGroups-base, withFilter-withGroups
		runtime.KeepAlive(tsets)
		runtime.KeepAlive(f)
		b.StartTimer()
	}
	b.ReportMetric(float64(groupsB+filterB)/targets, "B/target")
	b.ReportMetric(float64(groupsB)/targets, "groups-B/target")
	b.ReportMetric(float64(filterB)/targets, "filter-B/target")
	b.ReportMetric(float64(filterB)/entries, "filter-B/entry")
}
