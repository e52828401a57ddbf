package config

import (
	"fmt"
	"strconv"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	promconfig "github.com/prometheus/prometheus/config"
	promk8s "github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/model/relabel"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podMonitorJobs translates a PodMonitor into one job per endpoint, named
// podMonitor/<ns>/<name>/<i>, with prometheus-operator's relabel rules in
// its order.
func (g *generator) podMonitorJobs(pm *monitoringv1.PodMonitor) ([]*promconfig.ScrapeConfig, error) {
	cls, err := g.scrapeClass(pm.Spec.ScrapeClassName)
	if err != nil {
		return nil, err
	}
	jobs := make([]*promconfig.ScrapeConfig, 0, len(pm.Spec.PodMetricsEndpoints))
	for i := range pm.Spec.PodMetricsEndpoints {
		sc, err := g.podMonitorEndpoint(pm, i, cls)
		if err != nil {
			return nil, fmt.Errorf("podMetricsEndpoint %d: %w", i, err)
		}
		jobs = append(jobs, sc)
	}
	return jobs, nil
}

func (g *generator) podMonitorEndpoint(pm *monitoringv1.PodMonitor, i int, cls *monitoringv1.ScrapeClass) (*promconfig.ScrapeConfig, error) {
	// Without port, portNumber or targetPort every container port of the
	// selected pods is scraped, as in prometheus-operator.
	ep := &pm.Spec.PodMetricsEndpoints[i]
	sc := newScrapeConfig(fmt.Sprintf("podMonitor/%s/%s/%d", pm.Namespace, pm.Name, i))
	if err := g.applyEndpointBasics(sc, endpointBasics{
		interval: ep.Interval, timeout: ep.ScrapeTimeout, path: ep.Path, scheme: ep.Scheme, params: ep.Params,
		honorLabels: ep.HonorLabels, honorTimestamps: ep.HonorTimestamps, trackStaleness: ep.TrackTimestampsStaleness,
	}); err != nil {
		return nil, err
	}
	var err error
	sc.HTTPClientConfig, err = g.httpClientConfig(pm.Namespace, endpointHTTP{
		auth: ep.HTTPConfigWithoutTLS, tls: safeTLSAsTLS(ep.TLSConfig), proxy: ep.ProxyConfig,
	}, cls)
	if err != nil {
		return nil, err
	}
	sd := g.kubernetesSD(promk8s.RolePod, g.targetNamespaces(pm.Spec.NamespaceSelector, pm.Namespace), attachNodeMetadata(pm.Spec.AttachMetadata, cls))
	roleSelector := isRoleSelector(pm.Spec.SelectorMechanism)
	var podSel promk8s.SelectorConfig
	if roleSelector {
		sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
		if err != nil {
			return nil, fmt.Errorf("invalid selector: %w", err)
		}
		podSel.Label = sel.String()
	}
	// prometheus-operator's DaemonSet mode appends the node field selector
	// and the role selector as two role-pod entries, which Prometheus
	// rejects ("duplicated selector role"); one entry holds both here.
	if g.opts.NodeName != "" {
		podSel.Field = "spec.nodeName=" + g.opts.NodeName
	}
	if podSel.Label != "" || podSel.Field != "" {
		podSel.Role = promk8s.RolePod
		sd.Selectors = []promk8s.SelectorConfig{podSel}
	}
	sc.ServiceDiscoveryConfigs = sdConfigs(sd)
	if sc.RelabelConfigs, err = g.podMonitorRelabelings(pm, ep, roleSelector, cls); err != nil {
		return nil, err
	}
	if err := g.applyMonitorOptions(sc, monitorOptions{
		limits: limits{
			sampleLimit: pm.Spec.SampleLimit, targetLimit: pm.Spec.TargetLimit, labelLimit: pm.Spec.LabelLimit,
			labelNameLengthLimit: pm.Spec.LabelNameLengthLimit, labelValueLengthLimit: pm.Spec.LabelValueLengthLimit,
			keepDroppedTargets: pm.Spec.KeepDroppedTargets, bodySizeLimit: pm.Spec.BodySizeLimit,
		},
		protocols: pm.Spec.ScrapeProtocols, fallback: pm.Spec.FallbackScrapeProtocol, nh: pm.Spec.NativeHistogramConfig,
		extraMetrics: pm.Spec.ExtraScrapeMetrics,
	}, cls); err != nil {
		return nil, err
	}
	sc.MetricRelabelConfigs, err = g.metricRelabelings(resourcePodMonitors, pm.Namespace, pm.Name, cls, ep.MetricRelabelConfigs)
	if err != nil {
		return nil, err
	}
	return sc, nil
}

// podMonitorRelabelings builds the target relabelings in
// prometheus-operator's order.
func (g *generator) podMonitorRelabelings(pm *monitoringv1.PodMonitor, ep *monitoringv1.PodMetricsEndpoint, roleSelector bool, cls *monitoringv1.ScrapeClass) ([]*relabel.Config, error) {
	b := &relabelBuilder{}
	b.add("", []string{"job"}, "", "__tmp_prometheus_job_name", "")
	// Unlike ServiceMonitors, the running-pods filter comes right after the
	// job-name rule, before the selector rules.
	if ep.FilterRunning == nil || *ep.FilterRunning {
		b.add(relabel.Drop, []string{"__meta_kubernetes_pod_phase"}, "(Failed|Succeeded)", "", "")
	}
	if !roleSelector {
		b.selector(&pm.Spec.Selector, "__meta_kubernetes_pod_label_", "__meta_kubernetes_pod_labelpresent_")
	}
	switch {
	case ep.Port != nil && *ep.Port != "":
		b.add(relabel.Keep, []string{"__meta_kubernetes_pod_container_port_name"}, *ep.Port, "", "")
	case ep.PortNumber != nil && *ep.PortNumber != 0:
		b.add(relabel.Keep, []string{"__meta_kubernetes_pod_container_port_number"}, strconv.Itoa(int(*ep.PortNumber)), "", "")
	case ep.TargetPort != nil && ep.TargetPort.StrVal != "":
		b.add(relabel.Keep, []string{"__meta_kubernetes_pod_container_port_name"}, ep.TargetPort.StrVal, "", "")
	case ep.TargetPort != nil && ep.TargetPort.IntVal != 0:
		b.add(relabel.Keep, []string{"__meta_kubernetes_pod_container_port_number"}, strconv.Itoa(int(ep.TargetPort.IntVal)), "", "")
	}
	b.add("", []string{"__meta_kubernetes_namespace"}, "", "namespace", "")
	b.add("", []string{"__meta_kubernetes_pod_container_name"}, "", "container", "")
	b.add("", []string{"__meta_kubernetes_pod_name"}, "", "pod", "")
	b.podTargetLabels(pm.Spec.PodTargetLabels, g.settings.podTargetLabels)
	b.add("", nil, "", "job", escapeReplacement(pm.Namespace+"/"+pm.Name))
	if pm.Spec.JobLabel != "" {
		b.add("", []string{"__meta_kubernetes_pod_label_" + sanitizeLabelName(pm.Spec.JobLabel)}, "(.+)", "job", "${1}")
	}
	// The endpoint label names the port (or the deprecated targetPort), never
	// portNumber: a portNumber-only endpoint has no endpoint label.
	switch {
	case ep.Port != nil && *ep.Port != "":
		b.add("", nil, "", "endpoint", escapeReplacement(*ep.Port))
	case ep.TargetPort != nil && ep.TargetPort.String() != "":
		b.add("", nil, "", "endpoint", escapeReplacement(ep.TargetPort.String()))
	}
	if b.err != nil {
		return nil, b.err
	}
	return g.userRelabelings(b.out, ep.RelabelConfigs, cls, resourcePodMonitors, pm.Namespace, pm.Name)
}
