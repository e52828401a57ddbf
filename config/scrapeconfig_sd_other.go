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
	return each(ns, spec.DockerSDConfigs, func(ns string, d monitoringv1alpha1.DockerSDConfig) (promdiscovery.Config, error) {
		c := moby.DefaultDockerSDConfig
		c.Host = d.Host
		c.Port = optPort(d.Port, c.Port)
		c.HostNetworkingHost = optString(d.HostNetworkingHost, c.HostNetworkingHost)
		c.MatchFirstNetwork = optBool(d.MatchFirstNetwork, c.MatchFirstNetwork)
		c.Filters = mobyFilters(d.Filters)
		return &c, g.sdRefreshAndClient(ns, d.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			basicAuth: d.BasicAuth, authorization: d.Authorization, oauth2: d.OAuth2,
			tlsConfig: d.TLSConfig, proxy: d.ProxyConfig,
			followRedirects: d.FollowRedirects, enableHTTP2: d.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}

func (g *generator) dockerSwarmSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.DockerSwarmSDConfigs, func(ns string, d monitoringv1alpha1.DockerSwarmSDConfig) (promdiscovery.Config, error) {
		c := moby.DefaultDockerSwarmSDConfig
		c.Host = d.Host
		c.Role = strings.ToLower(string(d.Role))
		c.Port = optPort(d.Port, c.Port)
		c.Filters = mobyFilters(d.Filters)
		return &c, g.sdRefreshAndClient(ns, d.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			basicAuth: d.BasicAuth, authorization: d.Authorization, oauth2: d.OAuth2,
			tlsConfig: d.TLSConfig, proxy: d.ProxyConfig,
			followRedirects: d.FollowRedirects, enableHTTP2: d.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}

func (g *generator) eurekaSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.EurekaSDConfigs, func(ns string, e monitoringv1alpha1.EurekaSDConfig) (promdiscovery.Config, error) {
		c := eureka.DefaultSDConfig
		if err := validateURL(string(e.Server)); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		c.Server = string(e.Server)
		return &c, g.sdRefreshAndClient(ns, e.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			basicAuth: e.BasicAuth, authorization: e.Authorization, oauth2: e.OAuth2,
			tlsConfig: e.TLSConfig, proxy: e.ProxyConfig,
			followRedirects: e.FollowRedirects, enableHTTP2: e.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}

func (g *generator) kumaSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.KumaSDConfigs, func(ns string, k monitoringv1alpha1.KumaSDConfig) (promdiscovery.Config, error) {
		c := xds.DefaultKumaSDConfig
		if err := validateURL(string(k.Server)); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		c.Server = string(k.Server)
		c.ClientID = optString(k.ClientID, c.ClientID)
		var err error
		if c.RefreshInterval, err = optDuration(k.RefreshInterval, c.RefreshInterval); err != nil {
			return nil, err
		}
		// fetchTimeout is checked between refreshInterval and the HTTP
		// client, so sdRefreshAndClient does not fit here.
		if k.FetchTimeout != nil && *k.FetchTimeout != "" {
			if c.FetchTimeout, err = parseDuration(*k.FetchTimeout); err != nil {
				return nil, fmt.Errorf("fetchTimeout: %w", err)
			}
		}
		if c.HTTPClientConfig, err = g.res.sdHTTPClientConfig(ns, sdHTTPFields{
			basicAuth: k.BasicAuth, authorization: k.Authorization, oauth2: k.OAuth2,
			tlsConfig: k.TLSConfig, proxy: k.ProxyConfig,
			followRedirects: k.FollowRedirects, enableHTTP2: k.EnableHTTP2,
		}); err != nil {
			return nil, err
		}
		return &c, nil
	})
}

func (g *generator) puppetDBSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.PuppetDBSDConfigs, func(ns string, p monitoringv1alpha1.PuppetDBSDConfig) (promdiscovery.Config, error) {
		c := puppetdb.DefaultSDConfig
		if err := validateURL(string(p.URL)); err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		c.URL = string(p.URL)
		c.Query = p.Query
		c.IncludeParameters = optBool(p.IncludeParameters, c.IncludeParameters)
		c.Port = optPort(p.Port, c.Port)
		return &c, g.sdRefreshAndClient(ns, p.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			basicAuth: p.BasicAuth, authorization: p.Authorization, oauth2: p.OAuth2,
			tlsConfig: p.TLSConfig, proxy: p.ProxyConfig,
			followRedirects: p.FollowRedirects, enableHTTP2: p.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}
