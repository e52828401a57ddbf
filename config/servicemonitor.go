package config

import (
	"fmt"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	promconfig "github.com/prometheus/prometheus/config"
	promk8s "github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/model/relabel"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serviceMonitorJobs translates a ServiceMonitor into one job per endpoint,
// named serviceMonitor/<ns>/<name>/<i>, with prometheus-operator's relabel
// rules in its order.
func (g *generator) serviceMonitorJobs(sm *monitoringv1.ServiceMonitor) ([]*promconfig.ScrapeConfig, error) {
	cls, err := g.scrapeClass(sm.Spec.ScrapeClassName)
	if err != nil {
		return nil, err
	}
	role := g.settings.sdRole
	if sm.Spec.ServiceDiscoveryRole != nil {
		role = *sm.Spec.ServiceDiscoveryRole
		if err := validateSDRole(role); err != nil {
			return nil, err
		}
	}
	jobs := make([]*promconfig.ScrapeConfig, 0, len(sm.Spec.Endpoints))
	for i := range sm.Spec.Endpoints {
		sc, err := g.serviceMonitorEndpoint(sm, i, role, cls)
		if err != nil {
			return nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		jobs = append(jobs, sc)
	}
	return jobs, nil
}

// sdPrefix returns the meta label prefix of the endpoint role.
func sdPrefix(role monitoringv1.ServiceDiscoveryRole) (promk8s.Role, string) {
	if role == monitoringv1.EndpointSliceRole {
		return promk8s.RoleEndpointSlice, "__meta_kubernetes_endpointslice_"
	}
	return promk8s.RoleEndpoint, "__meta_kubernetes_endpoint_"
}

func (g *generator) serviceMonitorEndpoint(sm *monitoringv1.ServiceMonitor, i int, role monitoringv1.ServiceDiscoveryRole, cls *monitoringv1.ScrapeClass) (*promconfig.ScrapeConfig, error) {
	// An endpoint without port or targetPort is valid, as in
	// prometheus-operator: no port filter, every port of the selected
	// Services is scraped, and there is no endpoint label.
	ep := &sm.Spec.Endpoints[i]
	sc := newScrapeConfig(fmt.Sprintf("serviceMonitor/%s/%s/%d", sm.Namespace, sm.Name, i))
	if err := g.applyEndpointBasics(sc, endpointBasics{
		interval: ep.Interval, timeout: ep.ScrapeTimeout, path: ep.Path, scheme: ep.Scheme, params: ep.Params,
		honorLabels: ep.HonorLabels, honorTimestamps: ep.HonorTimestamps, trackStaleness: ep.TrackTimestampsStaleness,
	}); err != nil {
		return nil, err
	}
	var err error
	sc.HTTPClientConfig, err = g.httpClientConfig(sm.Namespace, endpointHTTP{
		auth: ep.HTTPConfigWithoutTLS, tls: ep.TLSConfig, bearerTokenFile: ep.BearerTokenFile, proxy: ep.ProxyConfig,
	}, cls)
	if err != nil {
		return nil, err
	}
	sdRole, prefix := sdPrefix(role)
	sd := g.kubernetesSD(sdRole, g.targetNamespaces(sm.Spec.NamespaceSelector, sm.Namespace), attachNodeMetadata(sm.Spec.AttachMetadata, cls))
	roleSelector := isRoleSelector(sm.Spec.SelectorMechanism)
	if roleSelector {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			return nil, fmt.Errorf("invalid selector: %w", err)
		}
		// Like prometheus-operator: the same label selector for the endpoint
		// role and for role service, so only endpoints of selected Services
		// are watched.
		sd.Selectors = []promk8s.SelectorConfig{
			{Role: sdRole, Label: sel.String()},
			{Role: promk8s.RoleService, Label: sel.String()},
		}
	}
	sc.ServiceDiscoveryConfigs = sdConfigs(sd)
	if sc.RelabelConfigs, err = g.serviceMonitorRelabelings(sm, ep, prefix, roleSelector, cls); err != nil {
		return nil, err
	}
	if err := g.applyMonitorOptions(sc, monitorOptions{
		limits: limits{
			sampleLimit: sm.Spec.SampleLimit, targetLimit: sm.Spec.TargetLimit, labelLimit: sm.Spec.LabelLimit,
			labelNameLengthLimit: sm.Spec.LabelNameLengthLimit, labelValueLengthLimit: sm.Spec.LabelValueLengthLimit,
			keepDroppedTargets: sm.Spec.KeepDroppedTargets, bodySizeLimit: sm.Spec.BodySizeLimit,
		},
		protocols: sm.Spec.ScrapeProtocols, fallback: sm.Spec.FallbackScrapeProtocol, nh: sm.Spec.NativeHistogramConfig,
		extraMetrics: sm.Spec.ExtraScrapeMetrics,
	}, cls); err != nil {
		return nil, err
	}
	sc.MetricRelabelConfigs, err = g.metricRelabelings(resourceServiceMonitors, sm.Namespace, sm.Name, cls, ep.MetricRelabelConfigs)
	if err != nil {
		return nil, err
	}
	return sc, nil
}

// serviceMonitorRelabelings builds the target relabelings in
// prometheus-operator's order.
func (g *generator) serviceMonitorRelabelings(sm *monitoringv1.ServiceMonitor, ep *monitoringv1.Endpoint, prefix string, roleSelector bool, cls *monitoringv1.ScrapeClass) ([]*relabel.Config, error) {
	b := &relabelBuilder{}
	b.add("", []string{"job"}, "", "__tmp_prometheus_job_name", "")
	if !roleSelector {
		b.selector(&sm.Spec.Selector, "__meta_kubernetes_service_label_", "__meta_kubernetes_service_labelpresent_")
	}
	switch {
	case ep.Port != "":
		b.add(relabel.Keep, []string{prefix + "port_name"}, ep.Port, "", "")
	case ep.TargetPort != nil && ep.TargetPort.StrVal != "":
		b.add(relabel.Keep, []string{"__meta_kubernetes_pod_container_port_name"}, ep.TargetPort.StrVal, "", "")
	case ep.TargetPort != nil && ep.TargetPort.IntVal != 0:
		b.add(relabel.Keep, []string{"__meta_kubernetes_pod_container_port_number"}, fmt.Sprint(ep.TargetPort.IntVal), "", "")
	}
	b.addSep([]string{prefix + "address_target_kind", prefix + "address_target_name"}, "Node;(.*)", "node", "${1}")
	b.addSep([]string{prefix + "address_target_kind", prefix + "address_target_name"}, "Pod;(.*)", "pod", "${1}")
	b.add("", []string{"__meta_kubernetes_namespace"}, "", "namespace", "")
	b.add("", []string{"__meta_kubernetes_service_name"}, "", "service", "")
	b.add("", []string{"__meta_kubernetes_pod_name"}, "", "pod", "")
	b.add("", []string{"__meta_kubernetes_pod_container_name"}, "", "container", "")
	if ep.FilterRunning == nil || *ep.FilterRunning {
		b.add(relabel.Drop, []string{"__meta_kubernetes_pod_phase"}, "(Failed|Succeeded)", "", "")
	}
	for _, l := range sm.Spec.TargetLabels {
		b.add("", []string{"__meta_kubernetes_service_label_" + sanitizeLabelName(l)}, "(.+)", sanitizeLabelName(l), "${1}")
	}
	b.podTargetLabels(sm.Spec.PodTargetLabels, g.settings.podTargetLabels)
	b.add("", []string{"__meta_kubernetes_service_name"}, "", "job", "${1}")
	if sm.Spec.JobLabel != "" {
		b.add("", []string{"__meta_kubernetes_service_label_" + sanitizeLabelName(sm.Spec.JobLabel)}, "(.+)", "job", "${1}")
	}
	switch {
	case ep.Port != "":
		b.add("", nil, "", "endpoint", escapeReplacement(ep.Port))
	case ep.TargetPort != nil && ep.TargetPort.String() != "":
		b.add("", nil, "", "endpoint", escapeReplacement(ep.TargetPort.String()))
	}
	if b.err != nil {
		return nil, b.err
	}
	return g.userRelabelings(b.out, ep.RelabelConfigs, cls, resourceServiceMonitors, sm.Namespace, sm.Name)
}

// userRelabelings appends the scrape class' relabelings, the monitor's own
// and the enforced namespace label.
func (g *generator) userRelabelings(out []*relabel.Config, own []monitoringv1.RelabelConfig, cls *monitoringv1.ScrapeClass, resource, ns, name string) ([]*relabel.Config, error) {
	if cls != nil {
		rcs, err := relabelConfigs(cls.Relabelings)
		if err != nil {
			return nil, fmt.Errorf("scrapeClass %s relabelings: %w", cls.Name, err)
		}
		out = append(out, rcs...)
	}
	rcs, err := relabelConfigs(own)
	if err != nil {
		return nil, fmt.Errorf("relabelings: %w", err)
	}
	out = append(out, rcs...)
	return g.enforceNamespaceLabel(out, resource, ns, name), nil
}

// isRoleSelector reports whether the monitor selects with Kubernetes SD
// selectors instead of relabel rules.
func isRoleSelector(m *monitoringv1.SelectorMechanism) bool {
	return m != nil && *m == monitoringv1.SelectorMechanismRole
}

var metaLabelCharRE = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// sanitizeLabelName turns a Kubernetes label name into the form used in SD
// meta labels.
func sanitizeLabelName(name string) string {
	return metaLabelCharRE.ReplaceAllString(name, "_")
}

// escapeReplacement protects "$" in a literal replacement value.
func escapeReplacement(s string) string {
	return strings.ReplaceAll(s, "$", "$$")
}

// relabelBuilder collects generated relabel rules and the first error.
type relabelBuilder struct {
	out []*relabel.Config
	err error
}

func (b *relabelBuilder) add(action relabel.Action, source []string, regex, target, replacement string) {
	if b.err != nil {
		return
	}
	rc, err := generatedRelabel(action, source, regex, target, replacement)
	if err != nil {
		b.err = err
		return
	}
	b.out = append(b.out, rc)
}

// addSep adds a replace rule with an explicit ";" separator.
func (b *relabelBuilder) addSep(source []string, regex, target, replacement string) {
	b.add("", source, regex, target, replacement)
}

// selector translates a label selector into keep/drop rules on the
// <labelPrefix>/<presentPrefix> meta labels.
func (b *relabelBuilder) selector(sel *metav1.LabelSelector, labelPrefix, presentPrefix string) {
	for _, k := range sortedKeys(sel.MatchLabels) {
		n := sanitizeLabelName(k)
		b.add(relabel.Keep, []string{labelPrefix + n, presentPrefix + n}, fmt.Sprintf("(%s);true", sel.MatchLabels[k]), "", "")
	}
	for _, exp := range sel.MatchExpressions {
		n := sanitizeLabelName(exp.Key)
		// Values are used as regex alternatives verbatim, like
		// prometheus-operator; label values cannot hold other metacharacters
		// than ".".
		values := strings.Join(exp.Values, "|")
		switch exp.Operator {
		case metav1.LabelSelectorOpIn:
			b.add(relabel.Keep, []string{labelPrefix + n, presentPrefix + n}, fmt.Sprintf("(%s);true", values), "", "")
		case metav1.LabelSelectorOpNotIn:
			b.add(relabel.Drop, []string{labelPrefix + n, presentPrefix + n}, fmt.Sprintf("(%s);true", values), "", "")
		case metav1.LabelSelectorOpExists:
			b.add(relabel.Keep, []string{presentPrefix + n}, "true", "", "")
		case metav1.LabelSelectorOpDoesNotExist:
			b.add(relabel.Drop, []string{presentPrefix + n}, "true", "", "")
		default:
			if b.err == nil {
				b.err = fmt.Errorf("invalid selector operator %q", exp.Operator)
			}
		}
	}
}

// podTargetLabels copies pod labels onto targets (monitor's, then agent's).
func (b *relabelBuilder) podTargetLabels(lists ...[]string) {
	for _, list := range lists {
		for _, l := range list {
			n := sanitizeLabelName(l)
			b.add("", []string{"__meta_kubernetes_pod_label_" + n}, "(.+)", n, "${1}")
		}
	}
}

// endpointBasics are the scrape fields shared by all monitor endpoints.
type endpointBasics struct {
	interval, timeout monitoringv1.Duration
	path              string
	scheme            *monitoringv1.Scheme
	params            map[string][]string
	honorLabels       bool
	honorTimestamps   *bool
	trackStaleness    *bool
}

// applyEndpointBasics sets interval, timeout, path, scheme, params and the
// honor options (with the agent's overrides).
func (g *generator) applyEndpointBasics(sc *promconfig.ScrapeConfig, e endpointBasics) error {
	var err error
	if sc.ScrapeInterval, err = parseDuration(e.interval); err != nil {
		return fmt.Errorf("interval: %w", err)
	}
	if sc.ScrapeTimeout, err = parseDuration(e.timeout); err != nil {
		return fmt.Errorf("scrapeTimeout: %w", err)
	}
	interval := sc.ScrapeInterval
	if interval == 0 {
		interval = g.settings.global.ScrapeInterval
	}
	if sc.ScrapeTimeout > interval {
		return fmt.Errorf("scrapeTimeout %s is longer than the scrape interval %s", sc.ScrapeTimeout, interval)
	}
	if e.path != "" {
		if !strings.HasPrefix(e.path, "/") {
			return fmt.Errorf("invalid path %q: must start with /", e.path)
		}
		sc.MetricsPath = e.path
	}
	if e.scheme != nil && *e.scheme != "" {
		s := strings.ToLower(string(*e.scheme))
		if s != "http" && s != "https" {
			return fmt.Errorf("invalid scheme %q", *e.scheme)
		}
		sc.Scheme = s
	}
	if len(e.params) > 0 {
		sc.Params = make(map[string][]string, len(e.params))
		for k, v := range e.params {
			sc.Params[k] = append([]string(nil), v...)
		}
	}
	sc.HonorLabels = e.honorLabels && !g.settings.overrideHonorLabels
	if e.honorTimestamps != nil {
		sc.HonorTimestamps = *e.honorTimestamps
	}
	if g.settings.overrideHonorTimestamps {
		sc.HonorTimestamps = false
	}
	if e.trackStaleness != nil {
		sc.TrackTimestampsStaleness = *e.trackStaleness
	}
	return nil
}

// monitorOptions are the per-monitor (not per-endpoint) scrape options.
type monitorOptions struct {
	limits       limits
	protocols    []monitoringv1.ScrapeProtocol
	fallback     *monitoringv1.ScrapeProtocol
	nh           monitoringv1.NativeHistogramConfig
	extraMetrics *bool
}

// applyMonitorOptions applies limits, protocols (the scrape class' fallback
// protocol as default) and native-histogram settings.
func (g *generator) applyMonitorOptions(sc *promconfig.ScrapeConfig, o monitorOptions, cls *monitoringv1.ScrapeClass) error {
	if err := g.applyLimits(sc, o.limits); err != nil {
		return err
	}
	fallback := o.fallback
	if fallback == nil && cls != nil {
		fallback = cls.FallbackScrapeProtocol
	}
	if err := applyScrapeProtocols(sc, o.protocols, fallback); err != nil {
		return err
	}
	applyNativeHistograms(sc, o.nh)
	if o.extraMetrics != nil {
		v := *o.extraMetrics
		sc.ExtraScrapeMetrics = &v
	}
	return nil
}
