package config

import (
	"fmt"
	"slices"
	"strings"

	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/eureka"
	"github.com/prometheus/prometheus/discovery/moby"
	"github.com/prometheus/prometheus/discovery/puppetdb"
	"github.com/prometheus/prometheus/discovery/xds"
)

// This file translates the container, registry and inventory SD sections of
// a ScrapeConfig: Docker, Docker Swarm, Eureka, Kuma and PuppetDB.

func mobyFilters(in monitoringv1alpha1.Filters) []moby.Filter {
	var out []moby.Filter
	for _, f := range sortedFilters(in) {
		out = append(out, moby.Filter{Name: f.Name, Values: slices.Clone(f.Values)})
	}
	return out
}

func (g *generator) dockerSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	out := make([]promdiscovery.Config, 0, len(spec.DockerSDConfigs))
	for i, d := range spec.DockerSDConfigs {
		c := moby.DefaultDockerSDConfig
		c.Host = d.Host
		c.Port = optPort(d.Port, c.Port)
		c.HostNetworkingHost = optString(d.HostNetworkingHost, c.HostNetworkingHost)
		c.MatchFirstNetwork = optBool(d.MatchFirstNetwork, c.MatchFirstNetwork)
		c.Filters = mobyFilters(d.Filters)
		var err error
		if c.RefreshInterval, err = optDuration(d.RefreshInterval, c.RefreshInterval); err != nil {
			return nil, indexErr(i, err)
		}
		c.HTTPClientConfig, err = g.res.sdHTTPClientConfig(ns, sdHTTPFields{
			basicAuth: d.BasicAuth, authorization: d.Authorization, oauth2: d.OAuth2,
			tlsConfig: d.TLSConfig, proxy: d.ProxyConfig,
			followRedirects: d.FollowRedirects, enableHTTP2: d.EnableHTTP2,
		})
		if err != nil {
			return nil, indexErr(i, err)
		}
		out = append(out, &c)
	}
	return out, nil
}

func (g *generator) dockerSwarmSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	out := make([]promdiscovery.Config, 0, len(spec.DockerSwarmSDConfigs))
	for i, d := range spec.DockerSwarmSDConfigs {
		c := moby.DefaultDockerSwarmSDConfig
		c.Host = d.Host
		c.Role = strings.ToLower(string(d.Role))
		c.Port = optPort(d.Port, c.Port)
		c.Filters = mobyFilters(d.Filters)
		var err error
		if c.RefreshInterval, err = optDuration(d.RefreshInterval, c.RefreshInterval); err != nil {
			return nil, indexErr(i, err)
		}
		c.HTTPClientConfig, err = g.res.sdHTTPClientConfig(ns, sdHTTPFields{
			basicAuth: d.BasicAuth, authorization: d.Authorization, oauth2: d.OAuth2,
			tlsConfig: d.TLSConfig, proxy: d.ProxyConfig,
			followRedirects: d.FollowRedirects, enableHTTP2: d.EnableHTTP2,
		})
		if err != nil {
			return nil, indexErr(i, err)
		}
		out = append(out, &c)
	}
	return out, nil
}

func (g *generator) eurekaSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	out := make([]promdiscovery.Config, 0, len(spec.EurekaSDConfigs))
	for i, e := range spec.EurekaSDConfigs {
		c := eureka.DefaultSDConfig
		if err := validateURL(string(e.Server)); err != nil {
			return nil, indexErr(i, fmt.Errorf("server: %w", err))
		}
		c.Server = string(e.Server)
		var err error
		if c.RefreshInterval, err = optDuration(e.RefreshInterval, c.RefreshInterval); err != nil {
			return nil, indexErr(i, err)
		}
		c.HTTPClientConfig, err = g.res.sdHTTPClientConfig(ns, sdHTTPFields{
			basicAuth: e.BasicAuth, authorization: e.Authorization, oauth2: e.OAuth2,
			tlsConfig: e.TLSConfig, proxy: e.ProxyConfig,
			followRedirects: e.FollowRedirects, enableHTTP2: e.EnableHTTP2,
		})
		if err != nil {
			return nil, indexErr(i, err)
		}
		out = append(out, &c)
	}
	return out, nil
}

func (g *generator) kumaSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	out := make([]promdiscovery.Config, 0, len(spec.KumaSDConfigs))
	for i, k := range spec.KumaSDConfigs {
		c := xds.DefaultKumaSDConfig
		if err := validateURL(string(k.Server)); err != nil {
			return nil, indexErr(i, fmt.Errorf("server: %w", err))
		}
		c.Server = string(k.Server)
		c.ClientID = optString(k.ClientID, c.ClientID)
		var err error
		if c.RefreshInterval, err = optDuration(k.RefreshInterval, c.RefreshInterval); err != nil {
			return nil, indexErr(i, err)
		}
		if k.FetchTimeout != nil && *k.FetchTimeout != "" {
			if c.FetchTimeout, err = parseDuration(*k.FetchTimeout); err != nil {
				return nil, indexErr(i, fmt.Errorf("fetchTimeout: %w", err))
			}
		}
		c.HTTPClientConfig, err = g.res.sdHTTPClientConfig(ns, sdHTTPFields{
			basicAuth: k.BasicAuth, authorization: k.Authorization, oauth2: k.OAuth2,
			tlsConfig: k.TLSConfig, proxy: k.ProxyConfig,
			followRedirects: k.FollowRedirects, enableHTTP2: k.EnableHTTP2,
		})
		if err != nil {
			return nil, indexErr(i, err)
		}
		out = append(out, &c)
	}
	return out, nil
}

func (g *generator) puppetDBSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	out := make([]promdiscovery.Config, 0, len(spec.PuppetDBSDConfigs))
	for i, p := range spec.PuppetDBSDConfigs {
		c := puppetdb.DefaultSDConfig
		if err := validateURL(string(p.URL)); err != nil {
			return nil, indexErr(i, fmt.Errorf("url: %w", err))
		}
		c.URL = string(p.URL)
		c.Query = p.Query
		c.IncludeParameters = optBool(p.IncludeParameters, c.IncludeParameters)
		c.Port = optPort(p.Port, c.Port)
		var err error
		if c.RefreshInterval, err = optDuration(p.RefreshInterval, c.RefreshInterval); err != nil {
			return nil, indexErr(i, err)
		}
		c.HTTPClientConfig, err = g.res.sdHTTPClientConfig(ns, sdHTTPFields{
			basicAuth: p.BasicAuth, authorization: p.Authorization, oauth2: p.OAuth2,
			tlsConfig: p.TLSConfig, proxy: p.ProxyConfig,
			followRedirects: p.FollowRedirects, enableHTTP2: p.EnableHTTP2,
		})
		if err != nil {
			return nil, indexErr(i, err)
		}
		out = append(out, &c)
	}
	return out, nil
}
