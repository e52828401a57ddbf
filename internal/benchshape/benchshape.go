// Package benchshape builds the discovered target groups that memory
// benchmarks of several packages measure, so that their figures describe
// the same targets.
package benchshape

import (
	"fmt"
	"runtime"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// EndpointSlice is the group Prometheus' EndpointSlice discovery sends
// for Service svc of namespace ns, with pods pods, with the labels it sets (endpoint,
// port, conditions, target reference, container, pod with three labels and
// two annotations; the Service's labels on the group). Values shared by a
// pod's targets are one string, as the discovery takes them from one
// cached object.
func EndpointSlice(ns, svc, pods, services int) *targetgroup.Group {
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
	for p := range pods {
		ip := fmt.Sprintf("10.%d.%d.%d", ns%250, svc, p)
		podName := model.LabelValue(fmt.Sprintf("%s-7d9f8b6c5-%05d", svcName, p))
		node := model.LabelValue(fmt.Sprintf("node-%d", (ns*services+svc+p)%100))
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

// Relabeling is the target relabeling prometheus-operator's shape gives
// the job of Service svc in these benchmarks: keep the Service and the
// port (portLabel: the role's port name label, e.g.
// __meta_kubernetes_endpointslice_port_name), set namespace, service, pod
// and endpoint.
func Relabeling(svc int, portLabel string) string {
	return fmt.Sprintf(`- source_labels: [__meta_kubernetes_service_name]
  regex: svc-%d
  action: keep
- source_labels: [%s]
  regex: web
  action: keep
- source_labels: [__meta_kubernetes_namespace]
  target_label: namespace
- source_labels: [__meta_kubernetes_service_name]
  target_label: service
- source_labels: [__meta_kubernetes_pod_name]
  target_label: pod
- target_label: endpoint
  replacement: web
`, svc, portLabel)
}

// LiveHeap is the heap in use after a full collection.
func LiveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
