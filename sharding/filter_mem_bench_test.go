package sharding

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// sdEndpointSlice is the group Prometheus' EndpointSlice discovery sends
// for one Service of benchPods pods, with the labels it sets (endpoint,
// port, conditions, target reference, container, pod with three labels and
// two annotations; the Service's labels on the group). Values shared by a
// pod's targets are one string, as the discovery takes them from one
// cached object.
func sdEndpointSlice(ns, svc int) *targetgroup.Group {
	nsName, svcName := fmt.Sprintf("ns-%d", ns), fmt.Sprintf("svc-%d", svc)
	tg := &targetgroup.Group{
		Source: "endpointslice/" + nsName + "/" + svcName + "-abcde",
		Labels: model.LabelSet{
			"__meta_kubernetes_namespace":                       model.LabelValue(nsName),
			"__meta_kubernetes_endpointslice_name":              model.LabelValue(svcName + "-abcde"),
			"__meta_kubernetes_endpointslice_address_type":      "IPv4",
			"__meta_kubernetes_service_name":                    model.LabelValue(svcName),
			"__meta_kubernetes_service_label_app":               model.LabelValue(svcName),
			"__meta_kubernetes_service_labelpresent_app":        "true",
			"__meta_kubernetes_endpointslice_label_managed_by":  "endpointslice-controller.k8s.io",
			"__meta_kubernetes_endpointslice_labelpresent_name": "true",
		},
	}
	for p := range benchPods {
		ip := fmt.Sprintf("10.%d.%d.%d", ns%250, svc, p)
		podName := model.LabelValue(fmt.Sprintf("%s-7d9f8b6c5-%05d", svcName, p))
		node := model.LabelValue(fmt.Sprintf("node-%d", (ns*benchServices+svc+p)%100))
		tg.Targets = append(tg.Targets, model.LabelSet{
			"__address__": model.LabelValue(ip + ":8080"),
			"__meta_kubernetes_endpointslice_port_name":                                 "web",
			"__meta_kubernetes_endpointslice_port_protocol":                             "TCP",
			"__meta_kubernetes_endpointslice_port":                                      "8080",
			"__meta_kubernetes_endpointslice_endpoint_conditions_ready":                 "true",
			"__meta_kubernetes_endpointslice_endpoint_conditions_serving":               "true",
			"__meta_kubernetes_endpointslice_endpoint_conditions_terminating":           "false",
			"__meta_kubernetes_endpointslice_address_target_kind":                       "Pod",
			"__meta_kubernetes_endpointslice_address_target_name":                       podName,
			"__meta_kubernetes_endpointslice_endpoint_node_name":                        node,
			"__meta_kubernetes_endpointslice_endpoint_zone":                             "zone-a",
			"__meta_kubernetes_pod_name":                                                podName,
			"__meta_kubernetes_pod_ip":                                                  model.LabelValue(ip),
			"__meta_kubernetes_pod_ready":                                               "true",
			"__meta_kubernetes_pod_phase":                                               "Running",
			"__meta_kubernetes_pod_node_name":                                           node,
			"__meta_kubernetes_pod_host_ip":                                             "192.168.0.10",
			"__meta_kubernetes_pod_uid":                                                 model.LabelValue(fmt.Sprintf("0c8f4e2a-1b3d-4f5a-9e7c-%012d", ns*1000+svc*10+p)),
			"__meta_kubernetes_pod_controller_kind":                                     "ReplicaSet",
			"__meta_kubernetes_pod_controller_name":                                     podName[:len(podName)-6],
			"__meta_kubernetes_pod_label_app":                                           model.LabelValue(svcName),
			"__meta_kubernetes_pod_labelpresent_app":                                    "true",
			"__meta_kubernetes_pod_label_pod_template_hash":                             "7d9f8b6c5",
			"__meta_kubernetes_pod_labelpresent_pod_template_hash":                      "true",
			"__meta_kubernetes_pod_label_team":                                          "team-a",
			"__meta_kubernetes_pod_labelpresent_team":                                   "true",
			"__meta_kubernetes_pod_annotation_kubectl_kubernetes_io_restartedAt":        "2026-12-01T10:00:00Z",
			"__meta_kubernetes_pod_annotationpresent_kubectl_kubernetes_io_restartedAt": "true",
			"__meta_kubernetes_pod_container_name":                                      "app",
			"__meta_kubernetes_pod_container_image":                                     "registry.example/app:1.2.3",
			"__meta_kubernetes_pod_container_port_name":                                 "web",
			"__meta_kubernetes_pod_container_port_number":                               "8080",
			"__meta_kubernetes_pod_container_port_protocol":                             "TCP",
			"__meta_kubernetes_pod_container_init":                                      "false",
		})
	}
	return tg
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

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
		base := liveHeap()
		tsets := make(map[string][]*targetgroup.Group, benchNamespaces*benchServices)
		for ns := range benchNamespaces {
			groups := make([]*targetgroup.Group, benchServices)
			for svc := range benchServices {
				groups[svc] = sdEndpointSlice(ns, svc)
			}
			for svc := range benchServices {
				tsets[benchJob(ns, svc)] = groups
			}
		}
		withGroups := liveHeap()
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
		withFilter := liveHeap()
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
