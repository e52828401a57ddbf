package config

import (
	"errors"
	"fmt"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	commoncfg "github.com/prometheus/common/config"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	promk8s "github.com/prometheus/prometheus/discovery/kubernetes"
)

// limitFields pairs each limit of an object with the enforced one and the
// field it sets.
func limitFields(l, e limits, sampleLimit, targetLimit, labelLimit, nameLen, valueLen, keepDropped *uint) []limitField {
	return []limitField{
		{"sampleLimit", l.sampleLimit, e.sampleLimit, sampleLimit},
		{"targetLimit", l.targetLimit, e.targetLimit, targetLimit},
		{"labelLimit", l.labelLimit, e.labelLimit, labelLimit},
		{"labelNameLengthLimit", l.labelNameLengthLimit, e.labelNameLengthLimit, nameLen},
		{"labelValueLengthLimit", l.labelValueLengthLimit, e.labelValueLengthLimit, valueLen},
		{"keepDroppedTargets", l.keepDroppedTargets, e.keepDroppedTargets, keepDropped},
	}
}

type limitField struct {
	name          string
	user, enforce *int64
	out           *uint
}

// applyLimits sets the scrape limits of a job from the object's limits,
// capped by the PrometheusAgent's enforced limits like prometheus-operator
// (getLimit, for Prometheus >= 2.45): a set limit becomes the smaller of it
// and the enforced one; an unset or zero (unlimited) limit stays zero, so the
// job inherits the global limit, which agentGlobal already capped by the
// enforced one. The body size limit is the exception, as in
// prometheus-operator (getLowerByteSize): unset takes the enforced value.
func (g *generator) applyLimits(sc *promconfig.ScrapeConfig, l limits) error {
	e := g.settings.enforced
	for _, f := range limitFields(l, e, &sc.SampleLimit, &sc.TargetLimit, &sc.LabelLimit,
		&sc.LabelNameLengthLimit, &sc.LabelValueLengthLimit, &sc.KeepDroppedTargets) {
		v, err := effectiveLimit(f.user, f.enforce)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		if f.user == nil || *f.user == 0 {
			v = 0
		}
		*f.out = uint(v)
	}
	user, err := parseByteSize(l.bodySizeLimit)
	if err != nil {
		return fmt.Errorf("bodySizeLimit: %w", err)
	}
	enforced, err := parseByteSize(e.bodySizeLimit)
	if err != nil {
		return fmt.Errorf("enforcedBodySizeLimit: %w", err)
	}
	if enforced > 0 && (user == 0 || user > enforced) {
		user = enforced
	}
	sc.BodySizeLimit = user
	return nil
}

// effectiveLimit is the smaller of a limit and the enforced one, where zero
// or unset means unlimited (prometheus-operator's appendGlobalLimits).
func effectiveLimit(user, enforced *int64) (int64, error) {
	var u, e int64
	if user != nil {
		u = *user
	}
	if enforced != nil {
		e = *enforced
	}
	if u < 0 || e < 0 {
		return 0, errors.New("limit must not be negative")
	}
	if e > 0 && (u == 0 || u > e) {
		return e, nil
	}
	return u, nil
}

// applyScrapeProtocols sets the scrape protocols and the fallback protocol.
func applyScrapeProtocols(sc *promconfig.ScrapeConfig, protos []monitoringv1.ScrapeProtocol, fallback *monitoringv1.ScrapeProtocol) error {
	for _, p := range protos {
		sp := promconfig.ScrapeProtocol(p)
		if err := sp.Validate(); err != nil {
			return fmt.Errorf("scrapeProtocols: %w", err)
		}
		sc.ScrapeProtocols = append(sc.ScrapeProtocols, sp)
	}
	if fallback != nil && *fallback != "" {
		sp := promconfig.ScrapeProtocol(*fallback)
		if err := sp.Validate(); err != nil {
			return fmt.Errorf("fallbackScrapeProtocol: %w", err)
		}
		sc.ScrapeFallbackProtocol = sp
	}
	return nil
}

// applyNativeHistograms copies the native-histogram fields of a monitor.
func applyNativeHistograms(sc *promconfig.ScrapeConfig, nh monitoringv1.NativeHistogramConfig) {
	if nh.ScrapeNativeHistograms != nil {
		v := *nh.ScrapeNativeHistograms
		sc.ScrapeNativeHistograms = &v
	}
	if nh.ScrapeClassicHistograms != nil {
		v := *nh.ScrapeClassicHistograms
		sc.AlwaysScrapeClassicHistograms = &v
	}
	if nh.ConvertClassicHistogramsToNHCB != nil {
		v := *nh.ConvertClassicHistogramsToNHCB
		sc.ConvertClassicHistogramsToNHCB = &v
	}
	if nh.NativeHistogramBucketLimit != nil && *nh.NativeHistogramBucketLimit > 0 {
		sc.NativeHistogramBucketLimit = uint(*nh.NativeHistogramBucketLimit)
	}
	if nh.NativeHistogramMinBucketFactor != nil {
		sc.NativeHistogramMinBucketFactor = nh.NativeHistogramMinBucketFactor.AsApproximateFloat64()
	}
}

// kubernetesSD returns a Kubernetes SD config for role in namespaces (nil =
// all), using Options.KubeconfigFile.
func (g *generator) kubernetesSD(role promk8s.Role, namespaces []string, attachNode bool) *promk8s.SDConfig {
	sd := promk8s.DefaultSDConfig
	sd.Role = role
	sd.KubeConfig = g.opts.KubeconfigFile
	if len(namespaces) > 0 {
		sd.NamespaceDiscovery.Names = append([]string(nil), namespaces...)
	}
	sd.AttachMetadata.Node = attachNode
	return &sd
}

// attachNodeMetadata decides attach_metadata.node: the monitor's
// attachMetadata when it has one (an empty one means false), else the scrape
// class', like prometheus-operator's mergeAttachMetadataWithScrapeClass.
func attachNodeMetadata(own *monitoringv1.AttachMetadata, cls *monitoringv1.ScrapeClass) bool {
	if own != nil {
		return own.Node != nil && *own.Node
	}
	if cls != nil && cls.AttachMetadata != nil && cls.AttachMetadata.Node != nil {
		return *cls.AttachMetadata.Node
	}
	return false
}

// sdConfigs wraps one Kubernetes SD config.
func sdConfigs(sd *promk8s.SDConfig) promdiscovery.Configs {
	return promdiscovery.Configs{sd}
}

// endpointHTTP gathers the HTTP client fields of a monitor endpoint.
type endpointHTTP struct {
	auth            monitoringv1.HTTPConfigWithoutTLS
	tls             *monitoringv1.TLSConfig
	bearerTokenFile string
	proxy           monitoringv1.ProxyConfig
}

// httpClientConfig resolves the HTTP client of a monitor endpoint in
// namespace ns, with the scrape class' TLS and authorization as defaults.
// File references are rejected unless file access is allowed.
func (g *generator) httpClientConfig(ns string, e endpointHTTP, cls *monitoringv1.ScrapeClass) (commoncfg.HTTPClientConfig, error) {
	hc := commoncfg.DefaultHTTPClientConfig
	if err := e.auth.Validate(); err != nil {
		return hc, err
	}
	if err := g.checkFileAccess(e); err != nil {
		return hc, err
	}
	var err error
	if hc.BasicAuth, err = g.res.basicAuth(ns, e.auth.BasicAuth); err != nil {
		return hc, err
	}
	if hc.Authorization, err = g.res.authorization(ns, e.auth.Authorization); err != nil {
		return hc, err
	}
	if hc.OAuth2, err = g.res.oauth2(ns, e.auth.OAuth2); err != nil {
		return hc, err
	}
	if e.auth.BearerTokenSecret != nil && e.auth.BearerTokenSecret.Name != "" {
		tok, err := g.res.secretKey(ns, *e.auth.BearerTokenSecret)
		if err != nil {
			return hc, fmt.Errorf("bearerTokenSecret: %w", err)
		}
		hc.BearerToken = commoncfg.Secret(tok)
	}
	hc.BearerTokenFile = e.bearerTokenFile
	// The class' authorization applies when the endpoint has no credentials
	// of any kind. prometheus-operator adds it whenever the endpoint has no
	// authorization, even next to basicAuth, OAuth2 or a bearer token, which
	// gives a configuration Prometheus refuses to load; promshard does not
	// follow it there.
	noAuth := hc.BasicAuth == nil && hc.Authorization == nil && hc.OAuth2 == nil && hc.BearerToken == "" && hc.BearerTokenFile == ""
	if noAuth && cls != nil && cls.Authorization != nil {
		hc.Authorization = classAuthorization(cls.Authorization)
	}
	if hc.TLSConfig, err = g.tlsConfig(ns, e.tls, cls); err != nil {
		return hc, err
	}
	if hc.ProxyConfig, err = g.res.proxyConfig(ns, e.proxy); err != nil {
		return hc, err
	}
	if e.auth.FollowRedirects != nil {
		hc.FollowRedirects = *e.auth.FollowRedirects
	}
	if e.auth.EnableHTTP2 != nil {
		hc.EnableHTTP2 = *e.auth.EnableHTTP2
	}
	if err := hc.Validate(); err != nil {
		return hc, err
	}
	return hc, nil
}

// classAuthorization converts a scrape class' authorization; like
// prometheus-operator, only credentialsFile is supported there.
func classAuthorization(a *monitoringv1.Authorization) *commoncfg.Authorization {
	if a.CredentialsFile == "" {
		return nil
	}
	return &commoncfg.Authorization{Type: authorizationType(a.Type), CredentialsFile: a.CredentialsFile}
}

// authorizationType is the authorization type as prometheus-operator renders
// it: surrounding spaces trimmed, Bearer when empty.
func authorizationType(t string) string {
	if t = strings.TrimSpace(t); t == "" {
		return "Bearer"
	}
	return t
}

// checkFileAccess rejects file references unless they are allowed.
func (g *generator) checkFileAccess(e endpointHTTP) error {
	if g.settings.fileAccess {
		return nil
	}
	if e.bearerTokenFile != "" {
		return fmt.Errorf("bearerTokenFile %q: file access is not allowed (see arbitraryFSAccessThroughSMs / --allow-file-access)", e.bearerTokenFile)
	}
	if t := e.tls; t != nil {
		for _, f := range []struct{ name, v string }{{"caFile", t.CAFile}, {"certFile", t.CertFile}, {"keyFile", t.KeyFile}} {
			if f.v != "" {
				return fmt.Errorf("tlsConfig %s %q: file access is not allowed (see arbitraryFSAccessThroughSMs / --allow-file-access)", f.name, f.v)
			}
		}
	}
	return nil
}

// tlsConfig resolves an endpoint's TLS settings with the scrape class' as
// defaults, like prometheus-operator's mergeTLSConfigWithScrapeClass:
//   - an endpoint without tlsConfig gets the class' TLS settings as they are
//     (files, serverName, insecureSkipVerify, TLS versions; Secret and
//     ConfigMap references are not supported in a class, as its CRD
//     documentation says, and are ignored);
//   - an endpoint with its own tlsConfig keeps it and only takes the class'
//     caFile, certFile and keyFile, each when the endpoint sets neither the
//     file nor the matching Secret/ConfigMap reference; serverName and
//     insecureSkipVerify never come from the class then.
//
// Callers with a SafeTLSConfig (PodMonitor, Probe, ScrapeConfig) pass nil
// for an empty one (see safeTLSAsTLS), as prometheus-operator treats an
// empty SafeTLSConfig as unset; a ServiceMonitor's empty `tlsConfig: {}`
// counts as its own.
func (g *generator) tlsConfig(ns string, t *monitoringv1.TLSConfig, cls *monitoringv1.ScrapeClass) (commoncfg.TLSConfig, error) {
	var class *monitoringv1.TLSConfig
	if cls != nil {
		class = cls.TLSConfig
	}
	if t == nil {
		if class == nil {
			return commoncfg.TLSConfig{}, nil
		}
		own := *class
		own.CA, own.Cert, own.KeySecret = monitoringv1.SecretOrConfigMap{}, monitoringv1.SecretOrConfigMap{}, nil
		out, err := g.res.safeTLSConfig(ns, &own.SafeTLSConfig)
		if err != nil {
			return out, fmt.Errorf("scrapeClass %s: %w", cls.Name, err)
		}
		out.CAFile, out.CertFile, out.KeyFile = own.CAFile, own.CertFile, own.KeyFile
		if err := out.Validate(); err != nil {
			return out, fmt.Errorf("scrapeClass %s tlsConfig: %w", cls.Name, err)
		}
		return out, nil
	}
	if err := t.Validate(); err != nil {
		return commoncfg.TLSConfig{}, fmt.Errorf("tlsConfig: %w", err)
	}
	out, err := g.res.safeTLSConfig(ns, &t.SafeTLSConfig)
	if err != nil {
		return out, err
	}
	out.CAFile, out.CertFile, out.KeyFile = t.CAFile, t.CertFile, t.KeyFile
	if class != nil {
		if t.CAFile == "" && t.CA == (monitoringv1.SecretOrConfigMap{}) {
			out.CAFile = class.CAFile
		}
		if t.CertFile == "" && t.Cert == (monitoringv1.SecretOrConfigMap{}) {
			out.CertFile = class.CertFile
		}
		if t.KeyFile == "" && t.KeySecret == nil {
			out.KeyFile = class.KeyFile
		}
	}
	if err := out.Validate(); err != nil {
		return out, fmt.Errorf("tlsConfig: %w", err)
	}
	return out, nil
}
