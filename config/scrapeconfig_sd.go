package config

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/dns"
	"github.com/prometheus/prometheus/discovery/file"
	httpsd "github.com/prometheus/prometheus/discovery/http"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// This file translates the service-discovery sections of a ScrapeConfig
// that are not tied to a cloud provider: static, file, HTTP, Kubernetes,
// Consul and DNS. Cloud and container SDs live in scrapeconfig_sd_cloud.go
// and scrapeconfig_sd_other.go.

// sdHTTPFields are the HTTP client settings that the ScrapeConfig CRD
// repeats in most SD sections. Nil pointers mean "Prometheus default".
type sdHTTPFields struct {
	basicAuth       *monitoringv1.BasicAuth
	authorization   *monitoringv1.SafeAuthorization
	oauth2          *monitoringv1.OAuth2
	tlsConfig       *monitoringv1.SafeTLSConfig
	proxy           monitoringv1.ProxyConfig
	followRedirects *bool
	enableHTTP2     *bool
}

// sdHTTPClientConfig resolves f into a typed HTTP client configuration,
// starting from Prometheus' defaults (follow redirects, HTTP/2 on).
func (r *resolver) sdHTTPClientConfig(ns string, f sdHTTPFields) (commoncfg.HTTPClientConfig, error) {
	out := commoncfg.DefaultHTTPClientConfig
	var err error
	if out.BasicAuth, err = r.basicAuth(ns, f.basicAuth); err != nil {
		return out, err
	}
	if out.Authorization, err = r.authorization(ns, f.authorization); err != nil {
		return out, err
	}
	if out.OAuth2, err = r.oauth2(ns, f.oauth2); err != nil {
		return out, err
	}
	if out.TLSConfig, err = r.safeTLSConfig(ns, f.tlsConfig); err != nil {
		return out, err
	}
	if out.ProxyConfig, err = r.proxyConfig(ns, f.proxy); err != nil {
		return out, err
	}
	if f.followRedirects != nil {
		out.FollowRedirects = *f.followRedirects
	}
	if f.enableHTTP2 != nil {
		out.EnableHTTP2 = *f.enableHTTP2
	}
	if err := out.Validate(); err != nil {
		return out, err
	}
	return out, nil
}

// optDuration parses an optional CRD duration; nil or empty keeps def.
func optDuration(d *monitoringv1.Duration, def model.Duration) (model.Duration, error) {
	if d == nil || *d == "" {
		return def, nil
	}
	v, err := parseDuration(*d)
	if err != nil {
		return 0, fmt.Errorf("refreshInterval: %w", err)
	}
	return v, nil
}

func optString(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}

func optBool(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func optPort(p *int32, def int) int {
	if p == nil {
		return def
	}
	return int(*p)
}

// validateSD checks c the way Prometheus checks a configuration file: it
// renders c to YAML and parses it back into a fresh value of the same type,
// which runs the SD package's own defaulting and validation. The parsed copy
// is discarded; c is kept as built.
func validateSD(c promdiscovery.Config) error {
	fresh := reflect.New(reflect.TypeOf(c).Elem()).Interface()
	return roundTrip(c, fresh)
}

// sdBuilder turns one SD family of a ScrapeConfig into typed configs.
type sdBuilder struct {
	field string // CRD field name, used in error texts
	build func(g *generator, ns string, sc *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error)
}

// sdBuilders lists every SD family of the CRD in a fixed order (the
// order of prometheus-operator's output), so the result is deterministic.
var sdBuilders = []sdBuilder{
	{"fileSDConfigs", (*generator).fileSDConfigs},
	{"httpSDConfigs", (*generator).httpSDConfigs},
	{"kubernetesSDConfigs", (*generator).kubernetesSDConfigs},
	{"consulSDConfigs", (*generator).consulSDConfigs},
	{"dnsSDConfigs", (*generator).dnsSDConfigs},
	{"ec2SDConfigs", (*generator).ec2SDConfigs},
	{"azureSDConfigs", (*generator).azureSDConfigs},
	{"gceSDConfigs", (*generator).gceSDConfigs},
	{"openstackSDConfigs", (*generator).openstackSDConfigs},
	{"digitalOceanSDConfigs", (*generator).digitalOceanSDConfigs},
	{"kumaSDConfigs", (*generator).kumaSDConfigs},
	{"eurekaSDConfigs", (*generator).eurekaSDConfigs},
	{"dockerSDConfigs", (*generator).dockerSDConfigs},
	{"linodeSDConfigs", (*generator).linodeSDConfigs},
	{"hetznerSDConfigs", (*generator).hetznerSDConfigs},
	{"nomadSDConfigs", (*generator).nomadSDConfigs},
	{"dockerSwarmSDConfigs", (*generator).dockerSwarmSDConfigs},
	{"puppetDBSDConfigs", (*generator).puppetDBSDConfigs},
	{"lightSailSDConfigs", (*generator).lightSailSDConfigs},
	{"ovhcloudSDConfigs", (*generator).ovhcloudSDConfigs},
	{"scalewaySDConfigs", (*generator).scalewaySDConfigs},
	{"ionosSDConfigs", (*generator).ionosSDConfigs},
	// Last, like config.Load, which coalesces static_configs at the end.
	{"staticConfigs", (*generator).staticSDConfigs},
}

// serviceDiscoveryConfigs translates every SD section of a ScrapeConfig.
// Each built config is validated like Prometheus would validate it.
func (g *generator) serviceDiscoveryConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) (promdiscovery.Configs, error) {
	var out promdiscovery.Configs
	for _, b := range sdBuilders {
		cfgs, err := b.build(g, ns, spec)
		if err != nil {
			var ie *sdIndexError
			if errors.As(err, &ie) {
				return nil, fmt.Errorf("%s[%d]: %w", b.field, ie.i, ie.err)
			}
			return nil, fmt.Errorf("%s: %w", b.field, err)
		}
		for i, c := range cfgs {
			if _, static := c.(promdiscovery.StaticConfig); static {
				continue
			}
			if err := validateSD(c); err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", b.field, i, err)
			}
		}
		out = append(out, cfgs...)
	}
	return out, nil
}

// sdIndexError records which item of an SD list failed; the field name is
// added by serviceDiscoveryConfigs.
type sdIndexError struct {
	i   int
	err error
}

func (e *sdIndexError) Error() string { return fmt.Sprintf("[%d]: %v", e.i, e.err) }
func (e *sdIndexError) Unwrap() error { return e.err }

func indexErr(i int, err error) error {
	return &sdIndexError{i: i, err: err}
}

// each builds one SD config per item of a CRD list, in order. A failure is
// reported with the item's index (indexErr); the CRD field name is added by
// serviceDiscoveryConfigs. A config that build returns along with an error
// is dropped, so build may return its half-built config with the error.
func each[T any](ns string, items []T, build func(ns string, item T) (promdiscovery.Config, error)) ([]promdiscovery.Config, error) {
	out := make([]promdiscovery.Config, 0, len(items))
	for i, item := range items {
		c, err := build(ns, item)
		if err != nil {
			return nil, indexErr(i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// sdRefreshAndClient sets the refresh interval and the HTTP client that most
// SD sections share. The refresh interval is checked first, so its error
// wins when both are wrong.
func (g *generator) sdRefreshAndClient(ns string, refresh *monitoringv1.Duration, interval *model.Duration, f sdHTTPFields, client *commoncfg.HTTPClientConfig) error {
	var err error
	if *interval, err = optDuration(refresh, *interval); err != nil {
		return err
	}
	*client, err = g.res.sdHTTPClientConfig(ns, f)
	return err
}

func (g *generator) staticSDConfigs(_ string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	if len(spec.StaticConfigs) == 0 {
		return nil, nil
	}
	groups := make([]*targetgroup.Group, 0, len(spec.StaticConfigs))
	for i, sc := range spec.StaticConfigs {
		tg := &targetgroup.Group{Source: fmt.Sprint(i)}
		for _, t := range sc.Targets {
			if err := validateStaticTarget(string(t)); err != nil {
				return nil, indexErr(i, err)
			}
			tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(t)})
		}
		if len(sc.Labels) > 0 {
			tg.Labels = model.LabelSet{}
			for k, v := range sc.Labels {
				if !model.UTF8Validation.IsValidLabelName(k) {
					return nil, indexErr(i, fmt.Errorf("invalid label name %q", k))
				}
				tg.Labels[model.LabelName(k)] = model.LabelValue(v)
			}
		}
		groups = append(groups, tg)
	}
	return []promdiscovery.Config{promdiscovery.StaticConfig(groups)}, nil
}

// validateStaticTarget rejects empty targets. Like prometheus-operator it
// accepts URL-shaped targets: Prometheus only refuses them in jobs without
// relabelings, and every generated job has some (blackbox-style ScrapeConfigs
// rewrite __address__).
func validateStaticTarget(t string) error {
	if t == "" {
		return errors.New("empty target")
	}
	return nil
}

func (g *generator) fileSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	if len(spec.FileSDConfigs) == 0 {
		return nil, nil
	}
	if !g.settings.fileAccess {
		return nil, errors.New("file references are not allowed (enable file access to use fileSDConfigs)")
	}
	return each(ns, spec.FileSDConfigs, func(_ string, f monitoringv1alpha1.FileSDConfig) (promdiscovery.Config, error) {
		c := file.DefaultSDConfig
		c.Files = nil
		for _, name := range f.Files {
			c.Files = append(c.Files, string(name))
		}
		var err error
		if c.RefreshInterval, err = optDuration(f.RefreshInterval, c.RefreshInterval); err != nil {
			return nil, err
		}
		return &c, nil
	})
}

func (g *generator) httpSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.HTTPSDConfigs, func(ns string, h monitoringv1alpha1.HTTPSDConfig) (promdiscovery.Config, error) {
		c := httpsd.DefaultSDConfig
		if err := validateURL(string(h.URL)); err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		c.URL = string(h.URL)
		return &c, g.sdRefreshAndClient(ns, h.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			basicAuth: h.BasicAuth, authorization: h.Authorization, oauth2: h.OAuth2,
			tlsConfig: h.TLSConfig, proxy: h.ProxyConfig,
			followRedirects: h.FollowRedirects, enableHTTP2: h.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}

func (g *generator) kubernetesSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.KubernetesSDConfigs, g.kubernetesSDConfig)
}

func (g *generator) kubernetesSDConfig(ns string, k monitoringv1alpha1.KubernetesSDConfig) (promdiscovery.Config, error) {
	c := kubernetes.DefaultSDConfig
	c.Role = kubernetes.Role(strings.ToLower(string(k.Role)))
	if k.APIServer != nil && *k.APIServer != "" {
		u, err := url.Parse(*k.APIServer)
		if err != nil {
			return nil, fmt.Errorf("apiServer: invalid URL %q: %w", *k.APIServer, err)
		}
		c.APIServer = commoncfg.URL{URL: u}
	} else {
		c.KubeConfig = g.opts.KubeconfigFile
	}
	var err error
	c.HTTPClientConfig, err = g.res.sdHTTPClientConfig(ns, sdHTTPFields{
		basicAuth: k.BasicAuth, authorization: k.Authorization, oauth2: k.OAuth2,
		tlsConfig: k.TLSConfig, proxy: k.ProxyConfig,
		followRedirects: k.FollowRedirects, enableHTTP2: k.EnableHTTP2,
	})
	if err != nil {
		return nil, err
	}
	if k.Namespaces != nil {
		c.NamespaceDiscovery.Names = slices.Clone(k.Namespaces.Names)
		c.NamespaceDiscovery.IncludeOwnNamespace = optBool(k.Namespaces.IncludeOwnNamespace, false)
	}
	for _, s := range k.Selectors {
		c.Selectors = append(c.Selectors, kubernetes.SelectorConfig{
			Role:  kubernetes.Role(strings.ToLower(string(s.Role))),
			Label: optString(s.Label, ""),
			Field: optString(s.Field, ""),
		})
	}
	// Prometheus honours attach_metadata only for these roles;
	// prometheus-operator drops it for the others, and so do we.
	if k.AttachMetadata != nil {
		switch c.Role {
		case kubernetes.RolePod, kubernetes.RoleEndpoint, kubernetes.RoleEndpointSlice:
			c.AttachMetadata.Node = optBool(k.AttachMetadata.Node, false)
		}
	}
	return &c, nil
}

func (g *generator) consulSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.ConsulSDConfigs, g.consulSDConfig)
}

func (g *generator) consulSDConfig(ns string, k monitoringv1alpha1.ConsulSDConfig) (promdiscovery.Config, error) {
	c := consul.DefaultSDConfig
	c.Server = k.Server
	c.PathPrefix = optString(k.PathPrefix, c.PathPrefix)
	if k.TokenRef != nil {
		tok, err := g.res.secretKey(ns, *k.TokenRef)
		if err != nil {
			return nil, fmt.Errorf("tokenRef: %w", err)
		}
		c.Token = commoncfg.Secret(tok)
	}
	c.Datacenter = optString(k.Datacenter, c.Datacenter)
	c.Namespace = optString(k.Namespace, c.Namespace)
	c.Partition = optString(k.Partition, c.Partition)
	if k.Scheme != nil {
		c.Scheme = k.Scheme.String()
	}
	c.Services = slices.Clone(k.Services)
	c.ServiceTags = slices.Clone(k.Tags)
	c.TagSeparator = optString(k.TagSeparator, c.TagSeparator)
	if len(k.NodeMeta) > 0 {
		c.NodeMeta = make(map[string]string, len(k.NodeMeta))
		for key, v := range k.NodeMeta {
			c.NodeMeta[key] = v
		}
	}
	c.Filter = optString(k.Filter, c.Filter)
	c.HealthFilter = optString(k.HealthFilter, c.HealthFilter)
	c.AllowStale = optBool(k.AllowStale, c.AllowStale)
	return &c, g.sdRefreshAndClient(ns, k.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
		basicAuth: k.BasicAuth, authorization: k.Authorization, oauth2: k.OAuth2,
		tlsConfig: k.TLSConfig, proxy: k.ProxyConfig,
		followRedirects: k.FollowRedirects, enableHTTP2: k.EnableHttp2,
	}, &c.HTTPClientConfig)
}

func (g *generator) dnsSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.DNSSDConfigs, func(_ string, d monitoringv1alpha1.DNSSDConfig) (promdiscovery.Config, error) {
		c := dns.DefaultSDConfig
		c.Names = slices.Clone(d.Names)
		var err error
		if c.RefreshInterval, err = optDuration(d.RefreshInterval, c.RefreshInterval); err != nil {
			return nil, err
		}
		if d.Type != nil {
			c.Type = string(*d.Type)
		}
		c.Port = optPort(d.Port, c.Port)
		return &c, nil
	})
}

// nomadSDConfigs rejects Nomad SD: promshard's build replaces
// github.com/hashicorp/nomad/api with a version Prometheus' Nomad SD was not
// built against (see go.mod's replace directive), so it is not compiled in.
func (g *generator) nomadSDConfigs(_ string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	if len(spec.NomadSDConfigs) == 0 {
		return nil, nil
	}
	return nil, errors.New("Nomad service discovery is not supported by promshard (its build does not include the Nomad SD)")
}
