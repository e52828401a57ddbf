package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	commoncfg "github.com/prometheus/common/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/aws"
	"github.com/prometheus/prometheus/discovery/azure"
	"github.com/prometheus/prometheus/discovery/digitalocean"
	"github.com/prometheus/prometheus/discovery/gce"
	"github.com/prometheus/prometheus/discovery/hetzner"
	"github.com/prometheus/prometheus/discovery/ionos"
	"github.com/prometheus/prometheus/discovery/linode"
	"github.com/prometheus/prometheus/discovery/openstack"
	"github.com/prometheus/prometheus/discovery/ovhcloud"
	"github.com/prometheus/prometheus/discovery/scaleway"
	corev1 "k8s.io/api/core/v1"
)

// This file translates the cloud-provider SD sections of a ScrapeConfig.

// awsKeys resolves an AWS access key pair. Both or neither must be given.
func (r *resolver) awsKeys(ns string, access, secret *corev1.SecretKeySelector) (string, commoncfg.Secret, error) {
	if access == nil && secret == nil {
		return "", "", nil
	}
	if access == nil || secret == nil {
		return "", "", errors.New("accessKey and secretKey must be set together")
	}
	a, err := r.secretKey(ns, *access)
	if err != nil {
		return "", "", fmt.Errorf("accessKey: %w", err)
	}
	s, err := r.secretKey(ns, *secret)
	if err != nil {
		return "", "", fmt.Errorf("secretKey: %w", err)
	}
	return a, commoncfg.Secret(s), nil
}

// sortedFilters copies CRD filters sorted by name, as prometheus-operator
// renders them.
func sortedFilters(in monitoringv1alpha1.Filters) monitoringv1alpha1.Filters {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b monitoringv1alpha1.Filter) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (g *generator) ec2SDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.EC2SDConfigs, func(ns string, e monitoringv1alpha1.EC2SDConfig) (promdiscovery.Config, error) {
		c := aws.DefaultEC2SDConfig
		c.Region = optString(e.Region, c.Region)
		var err error
		if c.AccessKey, c.SecretKey, err = g.res.awsKeys(ns, e.AccessKey, e.SecretKey); err != nil {
			return nil, err
		}
		c.RoleARN = optString(e.RoleARN, c.RoleARN)
		c.Port = optPort(e.Port, c.Port)
		for _, f := range sortedFilters(e.Filters) {
			c.Filters = append(c.Filters, &aws.Filter{Name: f.Name, Values: slices.Clone(f.Values)})
		}
		return &c, g.sdRefreshAndClient(ns, e.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			tlsConfig: e.TLSConfig, proxy: e.ProxyConfig,
			followRedirects: e.FollowRedirects, enableHTTP2: e.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}

func (g *generator) lightSailSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.LightSailSDConfigs, func(ns string, l monitoringv1alpha1.LightSailSDConfig) (promdiscovery.Config, error) {
		c := aws.DefaultLightsailSDConfig
		c.Region = optString(l.Region, c.Region)
		var err error
		if c.AccessKey, c.SecretKey, err = g.res.awsKeys(ns, l.AccessKey, l.SecretKey); err != nil {
			return nil, err
		}
		c.RoleARN = optString(l.RoleARN, c.RoleARN)
		c.Endpoint = optString(l.Endpoint, c.Endpoint)
		c.Port = optPort(l.Port, c.Port)
		return &c, g.sdRefreshAndClient(ns, l.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			basicAuth: l.BasicAuth, authorization: l.Authorization, oauth2: l.OAuth2,
			tlsConfig: l.TLSConfig, proxy: l.ProxyConfig,
			followRedirects: l.FollowRedirects, enableHTTP2: l.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}

func (g *generator) azureSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.AzureSDConfigs, g.azureSDConfig)
}

func (g *generator) azureSDConfig(ns string, a monitoringv1alpha1.AzureSDConfig) (promdiscovery.Config, error) {
	c := azure.DefaultSDConfig
	c.Environment = optString(a.Environment, c.Environment)
	if a.AuthenticationMethod != nil {
		c.AuthenticationMethod = string(*a.AuthenticationMethod)
	}
	c.SubscriptionID = a.SubscriptionID
	c.TenantID = optString(a.TenantID, c.TenantID)
	c.ClientID = optString(a.ClientID, c.ClientID)
	if a.ClientSecret != nil {
		s, err := g.res.secretKey(ns, *a.ClientSecret)
		if err != nil {
			return nil, fmt.Errorf("clientSecret: %w", err)
		}
		c.ClientSecret = commoncfg.Secret(s)
	}
	c.ResourceGroup = optString(a.ResourceGroup, c.ResourceGroup)
	c.Port = optPort(a.Port, c.Port)
	return &c, g.sdRefreshAndClient(ns, a.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
		basicAuth: a.BasicAuth, authorization: a.Authorization, oauth2: a.OAuth2,
		tlsConfig: a.TLSConfig, proxy: a.ProxyConfig,
		followRedirects: a.FollowRedirects, enableHTTP2: a.EnableHTTP2,
	}, &c.HTTPClientConfig)
}

func (g *generator) gceSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.GCESDConfigs, func(_ string, s monitoringv1alpha1.GCESDConfig) (promdiscovery.Config, error) {
		c := gce.DefaultSDConfig
		c.Project = s.Project
		c.Zone = s.Zone
		c.Filter = optString(s.Filter, c.Filter)
		c.Port = optPort(s.Port, c.Port)
		c.TagSeparator = optString(s.TagSeparator, c.TagSeparator)
		var err error
		if c.RefreshInterval, err = optDuration(s.RefreshInterval, c.RefreshInterval); err != nil {
			return nil, err
		}
		return &c, nil
	})
}

func (g *generator) openstackSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.OpenStackSDConfigs, g.openstackSDConfig)
}

func (g *generator) openstackSDConfig(ns string, o monitoringv1alpha1.OpenStackSDConfig) (promdiscovery.Config, error) {
	c := openstack.DefaultSDConfig
	c.Role = openstack.Role(strings.ToLower(string(o.Role)))
	c.Region = o.Region
	if o.IdentityEndpoint != nil {
		if _, err := url.Parse(string(*o.IdentityEndpoint)); err != nil {
			return nil, fmt.Errorf("identityEndpoint: invalid URL %q: %w", *o.IdentityEndpoint, err)
		}
		c.IdentityEndpoint = string(*o.IdentityEndpoint)
	}
	c.Username = optString(o.Username, c.Username)
	c.UserID = optString(o.UserID, c.UserID)
	c.DomainName = optString(o.DomainName, c.DomainName)
	c.DomainID = optString(o.DomainID, c.DomainID)
	c.ProjectName = optString(o.ProjectName, c.ProjectName)
	c.ProjectID = optString(o.ProjectID, c.ProjectID)
	c.ApplicationCredentialName = optString(o.ApplicationCredentialName, c.ApplicationCredentialName)
	c.ApplicationCredentialID = optString(o.ApplicationCredentialID, c.ApplicationCredentialID)
	if o.Password != nil {
		s, err := g.res.secretKey(ns, *o.Password)
		if err != nil {
			return nil, fmt.Errorf("password: %w", err)
		}
		c.Password = commoncfg.Secret(s)
	}
	if o.ApplicationCredentialSecret != nil {
		s, err := g.res.secretKey(ns, *o.ApplicationCredentialSecret)
		if err != nil {
			return nil, fmt.Errorf("applicationCredentialSecret: %w", err)
		}
		c.ApplicationCredentialSecret = commoncfg.Secret(s)
	}
	c.AllTenants = optBool(o.AllTenants, c.AllTenants)
	c.Port = optPort(o.Port, c.Port)
	if o.Availability != nil {
		c.Availability = strings.ToLower(string(*o.Availability))
	}
	var err error
	if c.RefreshInterval, err = optDuration(o.RefreshInterval, c.RefreshInterval); err != nil {
		return nil, err
	}
	if c.TLSConfig, err = g.res.safeTLSConfig(ns, o.TLSConfig); err != nil {
		return nil, err
	}
	return &c, nil
}

func (g *generator) digitalOceanSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.DigitalOceanSDConfigs, func(ns string, d monitoringv1alpha1.DigitalOceanSDConfig) (promdiscovery.Config, error) {
		c := digitalocean.DefaultSDConfig
		c.Port = optPort(d.Port, c.Port)
		return &c, g.sdRefreshAndClient(ns, d.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			authorization: d.Authorization, oauth2: d.OAuth2,
			tlsConfig: d.TLSConfig, proxy: d.ProxyConfig,
			followRedirects: d.FollowRedirects, enableHTTP2: d.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}

func (g *generator) linodeSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.LinodeSDConfigs, func(ns string, l monitoringv1alpha1.LinodeSDConfig) (promdiscovery.Config, error) {
		c := linode.DefaultSDConfig
		c.Region = optString(l.Region, c.Region)
		c.Port = optPort(l.Port, c.Port)
		c.TagSeparator = optString(l.TagSeparator, c.TagSeparator)
		return &c, g.sdRefreshAndClient(ns, l.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			authorization: l.Authorization, oauth2: l.OAuth2,
			tlsConfig: l.TLSConfig, proxy: l.ProxyConfig,
			followRedirects: l.FollowRedirects, enableHTTP2: l.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}

func (g *generator) hetznerSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.HetznerSDConfigs, func(ns string, h monitoringv1alpha1.HetznerSDConfig) (promdiscovery.Config, error) {
		c := hetzner.DefaultSDConfig
		c.Role = hetzner.Role(strings.ToLower(string(h.Role)))
		c.Port = optPort(h.Port, c.Port)
		c.LabelSelector = optString(h.LabelSelector, c.LabelSelector)
		return &c, g.sdRefreshAndClient(ns, h.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			basicAuth: h.BasicAuth, authorization: h.Authorization, oauth2: h.OAuth2,
			tlsConfig: h.TLSConfig, proxy: h.ProxyConfig,
			followRedirects: h.FollowRedirects, enableHTTP2: h.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}

// ovhServices maps the CRD's service names to Prometheus' values.
var ovhServices = map[monitoringv1alpha1.OVHService]string{
	monitoringv1alpha1.OVHServiceVPS:             "vps",
	monitoringv1alpha1.OVHServiceDedicatedServer: "dedicated_server",
}

func (g *generator) ovhcloudSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.OVHCloudSDConfigs, func(ns string, o monitoringv1alpha1.OVHCloudSDConfig) (promdiscovery.Config, error) {
		c := ovhcloud.DefaultSDConfig
		c.ApplicationKey = o.ApplicationKey
		s, err := g.res.secretKey(ns, o.ApplicationSecret)
		if err != nil {
			return nil, fmt.Errorf("applicationSecret: %w", err)
		}
		c.ApplicationSecret = commoncfg.Secret(s)
		if s, err = g.res.secretKey(ns, o.ConsumerKey); err != nil {
			return nil, fmt.Errorf("consumerKey: %w", err)
		}
		c.ConsumerKey = commoncfg.Secret(s)
		svc, ok := ovhServices[o.Service]
		if !ok {
			return nil, fmt.Errorf("unknown service %q (want VPS or DedicatedServer)", o.Service)
		}
		c.Service = svc
		c.Endpoint = optString(o.Endpoint, c.Endpoint)
		if c.RefreshInterval, err = optDuration(o.RefreshInterval, c.RefreshInterval); err != nil {
			return nil, err
		}
		return &c, nil
	})
}

func (g *generator) scalewaySDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.ScalewaySDConfigs, g.scalewaySDConfig)
}

func (g *generator) scalewaySDConfig(ns string, s monitoringv1alpha1.ScalewaySDConfig) (promdiscovery.Config, error) {
	c := scaleway.DefaultSDConfig
	c.AccessKey = s.AccessKey
	secret, err := g.res.secretKey(ns, s.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("secretKey: %w", err)
	}
	c.SecretKey = commoncfg.Secret(secret)
	c.Project = s.ProjectID
	// The role type is unexported in Prometheus; constants convert to it.
	switch s.Role {
	case monitoringv1alpha1.ScalewayRoleInstance:
		c.Role = "instance"
	case monitoringv1alpha1.ScalewayRoleBaremetal:
		c.Role = "baremetal"
	default:
		return nil, fmt.Errorf("unknown role %q (want Instance or Baremetal)", s.Role)
	}
	c.Port = optPort(s.Port, c.Port)
	if s.ApiURL != nil {
		c.APIURL = string(*s.ApiURL)
	}
	c.Zone = optString(s.Zone, c.Zone)
	c.NameFilter = optString(s.NameFilter, c.NameFilter)
	c.TagsFilter = slices.Clone(s.TagsFilter)
	return &c, g.sdRefreshAndClient(ns, s.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
		tlsConfig: s.TLSConfig, proxy: s.ProxyConfig,
		followRedirects: s.FollowRedirects, enableHTTP2: s.EnableHTTP2,
	}, &c.HTTPClientConfig)
}

func (g *generator) ionosSDConfigs(ns string, spec *monitoringv1alpha1.ScrapeConfigSpec) ([]promdiscovery.Config, error) {
	return each(ns, spec.IonosSDConfigs, func(ns string, s monitoringv1alpha1.IonosSDConfig) (promdiscovery.Config, error) {
		c := ionos.DefaultSDConfig
		c.DatacenterID = s.DataCenterID
		c.Port = optPort(s.Port, c.Port)
		authz := s.Authorization
		return &c, g.sdRefreshAndClient(ns, s.RefreshInterval, &c.RefreshInterval, sdHTTPFields{
			authorization: &authz, oauth2: s.OAuth2,
			tlsConfig: s.TLSConfig, proxy: s.ProxyConfig,
			followRedirects: s.FollowRedirects, enableHTTP2: s.EnableHTTP2,
		}, &c.HTTPClientConfig)
	})
}
