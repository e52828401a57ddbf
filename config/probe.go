package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
)

// This file translates Probe objects into one scrape job each,
// "probe/<namespace>/<name>", with prometheus-operator's semantics: the
// probed targets become the `target` URL parameter and the prober (for
// example a blackbox exporter) becomes the scrape address.

// defaultProberPath is the CRD's default for spec.prober.path.
const defaultProberPath = "/probe"

// probeJobs translates a Probe. An error rejects the object; its text names
// the offending field.
func (g *generator) probeJobs(p *monitoringv1.Probe) ([]*promconfig.ScrapeConfig, error) {
	job, err := g.probeJob(p)
	if err != nil {
		return nil, err
	}
	return []*promconfig.ScrapeConfig{job}, nil
}

func (g *generator) probeJob(p *monitoringv1.Probe) (*promconfig.ScrapeConfig, error) {
	spec := &p.Spec
	if err := spec.Targets.Validate(); err != nil {
		return nil, err
	}
	if err := validateProberURL(spec.ProberSpec.URL); err != nil {
		return nil, fmt.Errorf("prober.url: %w", err)
	}
	job := newScrapeConfig(fmt.Sprintf("probe/%s/%s", p.Namespace, p.Name))
	cls, err := g.scrapeClass(spec.ScrapeClassName)
	if err != nil {
		return nil, err
	}
	if err := g.probeScrapeSettings(job, p, cls); err != nil {
		return nil, err
	}
	auth := spec.HTTPConfigWithoutTLS
	// ProbeSpec.Authorization shadows the embedded HTTPConfig's field.
	auth.Authorization = spec.Authorization
	job.HTTPClientConfig, err = g.httpClientConfig(p.Namespace, endpointHTTP{
		auth:  auth,
		tls:   safeTLSAsTLS(spec.TLSConfig),
		proxy: spec.ProberSpec.ProxyConfig,
	}, cls)
	if err != nil {
		return nil, err
	}
	if err := g.probeTargets(job, p, cls); err != nil {
		return nil, err
	}
	if job.MetricRelabelConfigs, err = g.metricRelabelings(resourceProbes, p.Namespace, p.Name, cls, spec.MetricRelabelConfigs); err != nil {
		return nil, err
	}
	return job, nil
}

// probeScrapeSettings sets everything but the HTTP client and the targets.
func (g *generator) probeScrapeSettings(job *promconfig.ScrapeConfig, p *monitoringv1.Probe, cls *monitoringv1.ScrapeClass) error {
	spec := &p.Spec
	// prometheus-operator always renders honor_timestamps: true for probes,
	// subject to overrideHonorTimestamps.
	job.HonorTimestamps = !g.settings.overrideHonorTimestamps
	job.MetricsPath = spec.ProberSpec.Path
	if job.MetricsPath == "" {
		job.MetricsPath = defaultProberPath
	}
	if spec.ProberSpec.Scheme != nil {
		job.Scheme = spec.ProberSpec.Scheme.String()
	}
	job.Params = probeParams(spec.Module, spec.Params)
	var err error
	if job.ScrapeInterval, err = parseDuration(spec.Interval); err != nil {
		return fmt.Errorf("interval: %w", err)
	}
	if job.ScrapeTimeout, err = parseDuration(spec.ScrapeTimeout); err != nil {
		return fmt.Errorf("scrapeTimeout: %w", err)
	}
	err = g.applyLimits(job, limits{
		sampleLimit:           spec.SampleLimit,
		targetLimit:           spec.TargetLimit,
		labelLimit:            spec.LabelLimit,
		labelNameLengthLimit:  spec.LabelNameLengthLimit,
		labelValueLengthLimit: spec.LabelValueLengthLimit,
		keepDroppedTargets:    spec.KeepDroppedTargets,
	})
	if err != nil {
		return err
	}
	applyNativeHistograms(job, spec.NativeHistogramConfig)
	if err := applyScrapeProtocols(job, spec.ScrapeProtocols, fallbackProtocol(spec.FallbackScrapeProtocol, cls)); err != nil {
		return err
	}
	if spec.ExtraScrapeMetrics != nil {
		v := *spec.ExtraScrapeMetrics
		job.ExtraScrapeMetrics = &v
	}
	return nil
}

// probeParams builds the URL parameters: module first, then params; a
// "module" entry in params is ignored when module is set.
func probeParams(module string, params []monitoringv1.ProbeParam) url.Values {
	if module == "" && len(params) == 0 {
		return nil
	}
	out := url.Values{}
	if module != "" {
		out["module"] = []string{module}
	}
	for _, p := range params {
		if module != "" && p.Name == "module" {
			continue
		}
		out[p.Name] = slices.Clone(p.Values)
	}
	return out
}

// hostnameRE matches a DNS name; underscores are tolerated as Kubernetes
// service names in the wild use them.
var hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62}))*\.?$`)

// validateProberURL accepts "host" or "host:port", as prometheus-operator
// does: the prober URL becomes the scrape address, not a full URL.
func validateProberURL(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, ""
	}
	if net.ParseIP(host) == nil && !hostnameRE.MatchString(host) {
		return fmt.Errorf("%q is invalid, it should be of the format `hostname` or `hostname:port`", s)
	}
	if port != "" {
		if n, err := parsePort(port); err != nil || n == 0 {
			return fmt.Errorf("%q has an invalid port %q", s, port)
		}
	}
	return nil
}

func parsePort(s string) (int, error) {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0, fmt.Errorf("out of range: %q", s)
		}
	}
	return n, nil
}

// probeTargets sets the discovery and the target relabelings. A static
// config takes precedence over ingress targets, as documented in the CRD.
func (g *generator) probeTargets(job *promconfig.ScrapeConfig, p *monitoringv1.Probe, cls *monitoringv1.ScrapeClass) error {
	b := &relabelBuilder{}
	b.add("", []string{"job"}, "", "__tmp_prometheus_job_name", "")
	if p.Spec.JobName != "" {
		b.add("", nil, "", "job", p.Spec.JobName)
	}
	var userRCs []monitoringv1.RelabelConfig
	var field string
	if sc := p.Spec.Targets.StaticConfig; sc != nil {
		field = "targets.staticConfig.relabelingConfigs"
		userRCs = sc.RelabelConfigs
		tg, err := probeStaticGroup(p.Namespace, sc)
		if err != nil {
			return fmt.Errorf("targets.staticConfig: %w", err)
		}
		job.ServiceDiscoveryConfigs = promdiscovery.Configs{promdiscovery.StaticConfig{tg}}
		// The probed address becomes the target parameter and the instance
		// label; the prober is scraped.
		b.add("", []string{model.AddressLabel}, "", "__param_target", "")
		b.add("", []string{"__param_target"}, "", "instance", "")
		b.add("", nil, "", model.AddressLabel, p.Spec.ProberSpec.URL)
	} else {
		ing := p.Spec.Targets.Ingress
		field = "targets.ingress.relabelingConfigs"
		userRCs = ing.RelabelConfigs
		b.selector(&ing.Selector, "__meta_kubernetes_ingress_label_", "__meta_kubernetes_ingress_labelpresent_")
		if b.err != nil {
			return fmt.Errorf("targets.ingress.selector: %w", b.err)
		}
		job.ServiceDiscoveryConfigs = promdiscovery.Configs{
			g.kubernetesSD(kubernetes.RoleIngress, g.targetNamespaces(ing.NamespaceSelector, p.Namespace), false),
		}
		addProbeIngressRelabelings(b, p.Spec.ProberSpec.URL)
	}
	if b.err != nil {
		return b.err
	}
	rcs := b.out
	if cls != nil {
		classRCs, err := relabelConfigs(cls.Relabelings)
		if err != nil {
			return fmt.Errorf("scrapeClass %q relabelings: %w", cls.Name, err)
		}
		rcs = append(rcs, classRCs...)
	}
	user, err := relabelConfigs(userRCs)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	job.RelabelConfigs = g.enforceNamespaceLabel(append(rcs, user...), resourceProbes, p.Namespace, p.Name)
	return nil
}

// addProbeIngressRelabelings builds the probed URL from the ingress scheme,
// host and path, adds namespace and ingress labels, then scrapes the prober.
func addProbeIngressRelabelings(b *relabelBuilder, proberURL string) {
	b.add(relabel.Replace, []string{"__meta_kubernetes_ingress_scheme", model.AddressLabel, "__meta_kubernetes_ingress_path"},
		"(.+);(.+);(.+)", "__param_target", "${1}://${2}${3}")
	b.add("", []string{"__meta_kubernetes_namespace"}, "", "namespace", "")
	b.add("", []string{"__meta_kubernetes_ingress_name"}, "", "ingress", "")
	b.add(relabel.Replace, []string{model.AddressLabel}, "(.*)", "__tmp_ingress_address", "$1")
	b.add("", []string{"__param_target"}, "", "instance", "")
	b.add("", nil, "", model.AddressLabel, proberURL)
}

// probeStaticGroup builds the static target group; the namespace label
// defaults to the Probe's namespace.
func probeStaticGroup(ns string, sc *monitoringv1.ProbeTargetStaticConfig) (*targetgroup.Group, error) {
	tg := &targetgroup.Group{Source: "0", Labels: model.LabelSet{"namespace": model.LabelValue(ns)}}
	for k, v := range sc.Labels {
		if !model.UTF8Validation.IsValidLabelName(k) {
			return nil, fmt.Errorf("invalid label name %q", k)
		}
		tg.Labels[model.LabelName(k)] = model.LabelValue(v)
	}
	for _, t := range sc.Targets {
		if t == "" {
			return nil, errors.New("empty target")
		}
		tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(t)})
	}
	return tg, nil
}
