package config

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/alecthomas/units"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
)

// Defaults of the global section, as in prometheus-operator.
const (
	// defaultScrapeInterval is used when neither the PrometheusAgent nor
	// the flags set one.
	defaultScrapeInterval = model.Duration(30 * time.Second)
	// defaultScrapeTimeout is Prometheus' default, capped at the interval.
	defaultScrapeTimeout = model.Duration(10 * time.Second)
	// defaultPrometheusExternalLabel names the `<ns>/<name>` external label.
	defaultPrometheusExternalLabel = "prometheus"
)

// newGenerator computes the effective settings from the PrometheusAgent, or
// from opts.Flags in flags-only mode.
func newGenerator(snap *Snapshot, opts Options) (*generator, error) {
	g := &generator{snap: snap, opts: opts, res: newResolver(snap), nsLabels: namespaceLabels(snap)}
	var err error
	if snap.Agent == nil {
		err = g.flagSettings()
	} else {
		err = g.agentSettings(snap.Agent)
	}
	if err != nil {
		return nil, err
	}
	return g, nil
}

// flagSettings fills g.settings in flags-only mode.
func (g *generator) flagSettings() error {
	f := g.opts.Flags
	s := &g.settings
	var err error
	if s.sel, err = newFlagSelection(f); err != nil {
		return err
	}
	s.fileAccess = g.opts.AllowFileAccess
	s.sdRole = f.ServiceDiscoveryRole
	if s.sdRole == "" {
		s.sdRole = monitoringv1.EndpointSliceRole
	}
	if err := validateSDRole(s.sdRole); err != nil {
		return err
	}
	s.global = promconfig.DefaultGlobalConfig
	if err := setIntervals(&s.global, f.ScrapeInterval, f.ScrapeTimeout); err != nil {
		return err
	}
	s.global.ExternalLabels, err = externalLabels(f.ExternalLabels)
	return err
}

// agentSettings fills g.settings from a PrometheusAgent.
func (g *generator) agentSettings(a *monitoringv1alpha1.PrometheusAgent) error {
	spec := &a.Spec.CommonPrometheusFields
	s := &g.settings
	var err error
	if s.sel, err = newAgentSelection(spec, a.Namespace); err != nil {
		return err
	}
	s.overrideHonorLabels = spec.OverrideHonorLabels
	s.overrideHonorTimestamps = spec.OverrideHonorTimestamps
	s.ignoreNamespaceSelectors = spec.IgnoreNamespaceSelectors
	s.enforcedNamespaceLabel = spec.EnforcedNamespaceLabel
	s.excludedFromEnforcement = spec.ExcludedFromEnforcement
	s.podTargetLabels = spec.PodTargetLabels
	s.fileAccess = g.opts.AllowFileAccess || !spec.ArbitraryFSAccessThroughSMs.Deny
	s.enforced = limits{
		sampleLimit: spec.EnforcedSampleLimit, targetLimit: spec.EnforcedTargetLimit,
		labelLimit: spec.EnforcedLabelLimit, labelNameLengthLimit: spec.EnforcedLabelNameLengthLimit,
		labelValueLengthLimit: spec.EnforcedLabelValueLengthLimit, keepDroppedTargets: spec.EnforcedKeepDroppedTargets,
	}
	if spec.EnforcedBodySizeLimit != "" {
		s.enforced.bodySizeLimit = &spec.EnforcedBodySizeLimit
	}
	s.sdRole = monitoringv1.EndpointsRole
	if spec.ServiceDiscoveryRole != nil {
		s.sdRole = *spec.ServiceDiscoveryRole
	}
	if err := validateSDRole(s.sdRole); err != nil {
		return err
	}
	if err := g.loadScrapeClasses(spec.ScrapeClasses); err != nil {
		return err
	}
	return g.agentGlobal(a)
}

// agentGlobal builds the global section of a PrometheusAgent.
func (g *generator) agentGlobal(a *monitoringv1alpha1.PrometheusAgent) error {
	spec := &a.Spec.CommonPrometheusFields
	gl := promconfig.DefaultGlobalConfig
	interval, err := parseDuration(spec.ScrapeInterval)
	if err != nil {
		return fmt.Errorf("scrapeInterval: %w", err)
	}
	timeout, err := parseDuration(spec.ScrapeTimeout)
	if err != nil {
		return fmt.Errorf("scrapeTimeout: %w", err)
	}
	if err := setIntervals(&gl, interval, timeout); err != nil {
		return err
	}
	ext := map[string]string{}
	name := defaultPrometheusExternalLabel
	if spec.PrometheusExternalLabelName != nil {
		name = *spec.PrometheusExternalLabelName
	}
	if name != "" {
		ext[name] = a.Namespace + "/" + a.Name
	}
	// Never prometheus-operator's replica label ($(POD_NAME)): each target
	// is scraped by one replica only, and a per-replica label would split
	// its series whenever ownership moves to another replica.
	// Like prometheus-operator (buildExternalLabels), an external label
	// named like the reserved one set above is ignored.
	for k, v := range spec.ExternalLabels {
		if _, reserved := ext[k]; !reserved {
			ext[k] = v
		}
	}
	if gl.ExternalLabels, err = externalLabels(ext); err != nil {
		return err
	}
	if err := applyGlobalOptions(&gl, spec); err != nil {
		return err
	}
	g.settings.global = gl
	return g.globalLimits(spec)
}

// globalLimits sets the global limits like prometheus-operator's
// appendScrapeLimits: each limit capped by the enforced one, the enforced one
// when unset; the body size limit is the agent's own when set (not capped),
// else the enforced one.
func (g *generator) globalLimits(spec *monitoringv1.CommonPrometheusFields) error {
	gl := &g.settings.global
	own := limits{
		sampleLimit: spec.SampleLimit, targetLimit: spec.TargetLimit, labelLimit: spec.LabelLimit,
		labelNameLengthLimit: spec.LabelNameLengthLimit, labelValueLengthLimit: spec.LabelValueLengthLimit,
		keepDroppedTargets: spec.KeepDroppedTargets,
	}
	for _, f := range limitFields(own, g.settings.enforced, &gl.SampleLimit, &gl.TargetLimit, &gl.LabelLimit,
		&gl.LabelNameLengthLimit, &gl.LabelValueLengthLimit, &gl.KeepDroppedTargets) {
		v, err := effectiveLimit(f.user, f.enforce)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		*f.out = uint(v)
	}
	body := spec.BodySizeLimit
	if body.IsEmpty() {
		body = g.settings.enforced.bodySizeLimit
	}
	v, err := parseByteSize(body)
	if err != nil {
		return fmt.Errorf("bodySizeLimit: %w", err)
	}
	gl.BodySizeLimit = v
	return nil
}

// applyGlobalOptions copies scrape protocols, histogram and name
// validation options of the agent into the global section.
func applyGlobalOptions(gl *promconfig.GlobalConfig, spec *monitoringv1.CommonPrometheusFields) error {
	for _, p := range spec.ScrapeProtocols {
		sp := promconfig.ScrapeProtocol(p)
		if err := sp.Validate(); err != nil {
			return fmt.Errorf("scrapeProtocols: %w", err)
		}
		gl.ScrapeProtocols = append(gl.ScrapeProtocols, sp)
	}
	if spec.ScrapeNativeHistograms != nil {
		gl.ScrapeNativeHistograms = spec.ScrapeNativeHistograms
	}
	if spec.ScrapeClassicHistograms != nil {
		gl.AlwaysScrapeClassicHistograms = *spec.ScrapeClassicHistograms
	}
	if spec.ConvertClassicHistogramsToNHCB != nil {
		gl.ConvertClassicHistogramsToNHCB = *spec.ConvertClassicHistogramsToNHCB
	}
	if spec.ExtraScrapeMetrics != nil {
		gl.ExtraScrapeMetrics = spec.ExtraScrapeMetrics
	}
	if spec.NameValidationScheme != nil {
		switch *spec.NameValidationScheme {
		case monitoringv1.UTF8NameValidationScheme:
			gl.MetricNameValidationScheme = model.UTF8Validation
		case monitoringv1.LegacyNameValidationScheme:
			gl.MetricNameValidationScheme = model.LegacyValidation
			gl.MetricNameEscapingScheme = model.EscapeUnderscores
		default:
			return fmt.Errorf("unknown nameValidationScheme %q", *spec.NameValidationScheme)
		}
	}
	// prometheus-operator renders the agent's nameEscapingScheme into the
	// global section (appendNameEscapingScheme).
	if spec.NameEscapingScheme != nil {
		e, ok := nameEscapingSchemes[*spec.NameEscapingScheme]
		if !ok {
			return fmt.Errorf("unknown nameEscapingScheme %q", *spec.NameEscapingScheme)
		}
		if e == model.AllowUTF8 && gl.MetricNameValidationScheme == model.LegacyValidation {
			return fmt.Errorf("nameEscapingScheme %s needs nameValidationScheme %s", *spec.NameEscapingScheme, monitoringv1.UTF8NameValidationScheme)
		}
		gl.MetricNameEscapingScheme = e
	}
	return nil
}

// setIntervals sets the global interval and timeout; zero values take the
// defaults (30s, and 10s capped at the interval).
func setIntervals(gl *promconfig.GlobalConfig, interval, timeout model.Duration) error {
	if interval == 0 {
		interval = defaultScrapeInterval
	}
	if timeout == 0 {
		timeout = min(defaultScrapeTimeout, interval)
	}
	if timeout > interval {
		return fmt.Errorf("scrapeTimeout %s is longer than scrapeInterval %s", timeout, interval)
	}
	gl.ScrapeInterval, gl.ScrapeTimeout = interval, timeout
	return nil
}

// externalLabels validates and sorts external labels.
func externalLabels(m map[string]string) (labels.Labels, error) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !model.UTF8Validation.IsValidLabelName(k) {
			return labels.EmptyLabels(), fmt.Errorf("invalid external label name %q", k)
		}
	}
	return labels.FromMap(m), nil
}

func validateSDRole(r monitoringv1.ServiceDiscoveryRole) error {
	switch r {
	case monitoringv1.EndpointsRole, monitoringv1.EndpointSliceRole:
		return nil
	}
	return fmt.Errorf("unknown serviceDiscoveryRole %q (want Endpoints or EndpointSlice)", r)
}

// loadScrapeClasses indexes the agent's scrape classes; at most one may be
// the default, names must be unique and TLS and authorization valid.
func (g *generator) loadScrapeClasses(classes []monitoringv1.ScrapeClass) error {
	g.settings.scrapeClasses = make(map[string]*monitoringv1.ScrapeClass, len(classes))
	for i := range classes {
		c := &classes[i]
		if _, dup := g.settings.scrapeClasses[c.Name]; dup {
			return fmt.Errorf("duplicate scrapeClass %q", c.Name)
		}
		// Like prometheus-operator (getScrapeClassConfig), an invalid TLS or
		// authorization section makes every scrape class unusable.
		if err := c.TLSConfig.Validate(); err != nil {
			return fmt.Errorf("scrapeClass %q tlsConfig: %w", c.Name, err)
		}
		if err := c.Authorization.Validate(); err != nil {
			return fmt.Errorf("scrapeClass %q authorization: %w", c.Name, err)
		}
		g.settings.scrapeClasses[c.Name] = c
		if c.Default != nil && *c.Default {
			if g.settings.defaultClass != nil {
				return fmt.Errorf("scrapeClasses %q and %q are both default", g.settings.defaultClass.Name, c.Name)
			}
			g.settings.defaultClass = c
		}
	}
	return nil
}

// parseByteSize parses a CRD size such as 512MB (powers of 2).
func parseByteSize(b *monitoringv1.ByteSize) (units.Base2Bytes, error) {
	if b.IsEmpty() {
		return 0, nil
	}
	v, err := units.ParseBase2Bytes(string(*b))
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", *b, err)
	}
	return v, nil
}
