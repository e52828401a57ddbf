package config

import (
	"fmt"
	"net/url"
	"reflect"
	"slices"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/relabel"
)

// This file translates ScrapeConfig (monitoring.coreos.com/v1alpha1) objects
// into one scrape job each, with prometheus-operator's semantics. The
// service-discovery sections are in scrapeconfig_sd*.go.

// nameEscapingSchemes maps the CRD's escaping schemes to Prometheus' values.
var nameEscapingSchemes = map[monitoringv1.NameEscapingSchemeOptions]string{
	monitoringv1.AllowUTF8NameEscapingScheme:   model.AllowUTF8,
	monitoringv1.UnderscoresNameEscapingScheme: model.EscapeUnderscores,
	monitoringv1.DotsNameEscapingScheme:        model.EscapeDots,
	monitoringv1.ValuesNameEscapingScheme:      model.EscapeValues,
}

// nameValidationSchemes maps the CRD's validation schemes to Prometheus'.
var nameValidationSchemes = map[monitoringv1.NameValidationSchemeOptions]model.ValidationScheme{
	monitoringv1.UTF8NameValidationScheme:   model.UTF8Validation,
	monitoringv1.LegacyNameValidationScheme: model.LegacyValidation,
}

// scrapeConfigJobs translates a ScrapeConfig into its single job,
// "scrapeConfig/<namespace>/<name>". An error rejects the object; its text
// names the offending field.
func (g *generator) scrapeConfigJobs(sc *monitoringv1alpha1.ScrapeConfig) ([]*promconfig.ScrapeConfig, error) {
	job, err := g.scrapeConfigJob(sc)
	if err != nil {
		return nil, err
	}
	return []*promconfig.ScrapeConfig{job}, nil
}

func (g *generator) scrapeConfigJob(sc *monitoringv1alpha1.ScrapeConfig) (*promconfig.ScrapeConfig, error) {
	spec := &sc.Spec
	ns := sc.Namespace
	job := newScrapeConfig(fmt.Sprintf("scrapeConfig/%s/%s", ns, sc.Name))
	cls, err := g.scrapeClass(spec.ScrapeClassName)
	if err != nil {
		return nil, err
	}
	g.scrapeConfigFlags(job, spec)
	if err := g.scrapeConfigTimings(job, spec, cls); err != nil {
		return nil, err
	}
	if err := g.scrapeConfigHTTP(job, ns, spec, cls); err != nil {
		return nil, err
	}
	err = g.applyLimits(job, limits{
		sampleLimit:           spec.SampleLimit,
		targetLimit:           spec.TargetLimit,
		labelLimit:            spec.LabelLimit,
		labelNameLengthLimit:  spec.LabelNameLengthLimit,
		labelValueLengthLimit: spec.LabelValueLengthLimit,
		keepDroppedTargets:    spec.KeepDroppedTargets,
		bodySizeLimit:         spec.BodySizeLimit,
	})
	if err != nil {
		return nil, err
	}
	applyNativeHistograms(job, spec.NativeHistogramConfig)
	if err := applyNameSchemes(job, spec.NameValidationScheme, spec.NameEscapingScheme); err != nil {
		return nil, err
	}
	if job.ServiceDiscoveryConfigs, err = g.serviceDiscoveryConfigs(ns, spec); err != nil {
		return nil, err
	}
	if job.RelabelConfigs, err = g.scrapeConfigRelabelings(sc, cls); err != nil {
		return nil, err
	}
	if job.MetricRelabelConfigs, err = g.metricRelabelings(resourceScrapeConfigs, sc.Namespace, sc.Name, cls, spec.MetricRelabelConfigs); err != nil {
		return nil, err
	}
	return job, nil
}

// scrapeConfigFlags copies the boolean and plain-value scrape settings.
func (g *generator) scrapeConfigFlags(job *promconfig.ScrapeConfig, spec *monitoringv1alpha1.ScrapeConfigSpec) {
	// Like prometheus-operator, the PrometheusAgent overrides apply only to
	// values the object sets.
	if spec.HonorTimestamps != nil {
		job.HonorTimestamps = *spec.HonorTimestamps && !g.settings.overrideHonorTimestamps
	}
	if spec.HonorLabels != nil {
		job.HonorLabels = *spec.HonorLabels && !g.settings.overrideHonorLabels
	}
	job.TrackTimestampsStaleness = optBool(spec.TrackTimestampsStaleness, job.TrackTimestampsStaleness)
	job.MetricsPath = optString(spec.MetricsPath, job.MetricsPath)
	if len(spec.Params) > 0 {
		job.Params = url.Values{}
		for k, v := range spec.Params {
			job.Params[k] = slices.Clone(v)
		}
	}
	job.EnableCompression = optBool(spec.EnableCompression, job.EnableCompression)
	if spec.Scheme != nil {
		job.Scheme = spec.Scheme.String()
	}
	if spec.ExtraScrapeMetrics != nil {
		v := *spec.ExtraScrapeMetrics
		job.ExtraScrapeMetrics = &v
	}
}

// scrapeConfigTimings sets interval, timeout and scrape protocols.
func (g *generator) scrapeConfigTimings(job *promconfig.ScrapeConfig, spec *monitoringv1alpha1.ScrapeConfigSpec, cls *monitoringv1.ScrapeClass) error {
	var err error
	if spec.ScrapeInterval != nil {
		if job.ScrapeInterval, err = parseDuration(*spec.ScrapeInterval); err != nil {
			return fmt.Errorf("scrapeInterval: %w", err)
		}
	}
	if spec.ScrapeTimeout != nil {
		if job.ScrapeTimeout, err = parseDuration(*spec.ScrapeTimeout); err != nil {
			return fmt.Errorf("scrapeTimeout: %w", err)
		}
	}
	return applyScrapeProtocols(job, spec.ScrapeProtocols, fallbackProtocol(spec.FallbackScrapeProtocol, cls))
}

// fallbackProtocol returns the object's fallback scrape protocol, or the
// scrape class's when the object has none.
func fallbackProtocol(p *monitoringv1.ScrapeProtocol, cls *monitoringv1.ScrapeClass) *monitoringv1.ScrapeProtocol {
	if p == nil && cls != nil {
		return cls.FallbackScrapeProtocol
	}
	return p
}

// scrapeConfigHTTP sets the scrape's HTTP client: proxy, credentials, TLS
// and HTTP/2, with the scrape class's TLS and authorization as defaults.
func (g *generator) scrapeConfigHTTP(job *promconfig.ScrapeConfig, ns string, spec *monitoringv1alpha1.ScrapeConfigSpec, cls *monitoringv1.ScrapeClass) error {
	hc, err := g.httpClientConfig(ns, endpointHTTP{
		auth: monitoringv1.HTTPConfigWithoutTLS{
			Authorization: spec.Authorization,
			BasicAuth:     spec.BasicAuth,
			OAuth2:        spec.OAuth2,
			EnableHTTP2:   spec.EnableHTTP2,
		},
		tls:   safeTLSAsTLS(spec.TLSConfig),
		proxy: spec.ProxyConfig,
	}, cls)
	if err != nil {
		return err
	}
	job.HTTPClientConfig = hc
	return nil
}

// safeTLSAsTLS wraps a SafeTLSConfig (no file references) for
// httpClientConfig. nil and an empty config give nil, so that the scrape
// class' TLS settings apply in full, like prometheus-operator's
// mergeSafeTLSConfigWithScrapeClass.
func safeTLSAsTLS(t *monitoringv1.SafeTLSConfig) *monitoringv1.TLSConfig {
	if t == nil || reflect.ValueOf(*t).IsZero() {
		return nil
	}
	return &monitoringv1.TLSConfig{SafeTLSConfig: *t}
}

// applyNameSchemes sets the metric name validation and escaping schemes.
func applyNameSchemes(job *promconfig.ScrapeConfig, v *monitoringv1.NameValidationSchemeOptions, e *monitoringv1.NameEscapingSchemeOptions) error {
	if v != nil {
		s, ok := nameValidationSchemes[*v]
		if !ok {
			return fmt.Errorf("nameValidationScheme: unknown value %q (want UTF8 or Legacy)", *v)
		}
		job.MetricNameValidationScheme = s
	}
	if e != nil {
		s, ok := nameEscapingSchemes[*e]
		if !ok {
			return fmt.Errorf("nameEscapingScheme: unknown value %q (want AllowUTF8, Underscores, Dots or Values)", *e)
		}
		job.MetricNameEscapingScheme = s
	}
	return nil
}

// initRelabeling keeps the original job name in __tmp_prometheus_job_name,
// the first rule of every job prometheus-operator generates.
func initRelabeling() (*relabel.Config, error) {
	return generatedRelabel("", []string{"job"}, "", "__tmp_prometheus_job_name", "")
}

// scrapeConfigRelabelings builds the target relabelings in
// prometheus-operator's order: job name kept, scrape-class relabelings,
// jobName override, the object's relabelings, enforced namespace label.
func (g *generator) scrapeConfigRelabelings(sc *monitoringv1alpha1.ScrapeConfig, cls *monitoringv1.ScrapeClass) ([]*relabel.Config, error) {
	first, err := initRelabeling()
	if err != nil {
		return nil, err
	}
	rcs := []*relabel.Config{first}
	if cls != nil {
		classRCs, err := relabelConfigs(cls.Relabelings)
		if err != nil {
			return nil, fmt.Errorf("scrapeClass %q relabelings: %w", cls.Name, err)
		}
		rcs = append(rcs, classRCs...)
	}
	if sc.Spec.JobName != nil {
		rc, err := generatedRelabel(relabel.Replace, nil, "", "job", *sc.Spec.JobName)
		if err != nil {
			return nil, fmt.Errorf("jobName: %w", err)
		}
		rcs = append(rcs, rc)
	}
	user, err := relabelConfigs(sc.Spec.RelabelConfigs)
	if err != nil {
		return nil, fmt.Errorf("relabelings: %w", err)
	}
	rcs = append(rcs, user...)
	// prometheus-operator adds the enforced namespace label
	// to a ScrapeConfig's targets only when the object has relabelings of
	// its own, so `up` and the other scrape series of a ScrapeConfig without
	// relabelings miss the label. promshard always adds it, like for every
	// other kind.
	return g.enforceNamespaceLabel(rcs, resourceScrapeConfigs, sc.Namespace, sc.Name), nil
}

// metricRelabelings builds the metric relabelings shared by Probes and
// ScrapeConfigs: scrape-class rules, the object's rules, then the enforced
// namespace label (added even when there is no other rule, as
// prometheus-operator does). It returns nil when there is no rule at all.
func (g *generator) metricRelabelings(resource, ns, name string, cls *monitoringv1.ScrapeClass, own []monitoringv1.RelabelConfig) ([]*relabel.Config, error) {
	var rcs []*relabel.Config
	if cls != nil {
		classRCs, err := relabelConfigs(cls.MetricRelabelings)
		if err != nil {
			return nil, fmt.Errorf("scrapeClass %q metricRelabelings: %w", cls.Name, err)
		}
		rcs = append(rcs, classRCs...)
	}
	user, err := relabelConfigs(own)
	if err != nil {
		return nil, fmt.Errorf("metricRelabelings: %w", err)
	}
	rcs = g.enforceNamespaceLabel(append(rcs, user...), resource, ns, name)
	if len(rcs) == 0 {
		return nil, nil
	}
	return rcs, nil
}
