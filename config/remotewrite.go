package config

import (
	"fmt"
	"maps"
	"net/url"
	"slices"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/sigv4"
)

// remoteWrite builds the remote-write section from the PrometheusAgent or
// the flags. Any invalid entry fails the whole configuration: without its
// remote write an agent would collect data it cannot deliver.
func (g *generator) remoteWrite() ([]*promconfig.RemoteWriteConfig, error) {
	var out []*promconfig.RemoteWriteConfig
	if g.snap.Agent == nil {
		for i, u := range g.opts.Flags.RemoteWriteURLs {
			rw := promconfig.DefaultRemoteWriteConfig
			pu, err := parseRemoteURL(u)
			if err != nil {
				return nil, fmt.Errorf("remote write %d: %w", i, err)
			}
			rw.URL = pu
			if d := g.opts.Flags.BatchSendDeadline; d > 0 {
				rw.QueueConfig.BatchSendDeadline = d
			}
			out = append(out, &rw)
		}
		return out, nil
	}
	a := g.snap.Agent
	names := map[string]bool{}
	for i := range a.Spec.RemoteWrite {
		rw, err := g.remoteWriteEntry(a.Namespace, &a.Spec.RemoteWrite[i])
		if err != nil {
			return nil, fmt.Errorf("remoteWrite[%d]: %w", i, err)
		}
		if err := checkRemoteWrite(rw, g.settings.global); err != nil {
			return nil, fmt.Errorf("remoteWrite[%d]: %w", i, err)
		}
		if rw.Name != "" && names[rw.Name] {
			return nil, fmt.Errorf("remoteWrite[%d]: duplicate name %q", i, rw.Name)
		}
		names[rw.Name] = true
		out = append(out, rw)
	}
	return out, nil
}

func parseRemoteURL(s string) (*commoncfg.URL, error) {
	if err := validateURL(s); err != nil {
		return nil, err
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q: %s", RedactURLs(s), RedactURLs(err.Error()))
	}
	return &commoncfg.URL{URL: u}, nil
}

// remoteWriteEntry translates one RemoteWriteSpec. The agent's own settings
// may use files (they are the operator's choice, not a monitor's).
func (g *generator) remoteWriteEntry(ns string, spec *monitoringv1.RemoteWriteSpec) (*promconfig.RemoteWriteConfig, error) {
	rw := promconfig.DefaultRemoteWriteConfig
	var err error
	if rw.URL, err = parseRemoteURL(string(spec.URL)); err != nil {
		return nil, err
	}
	if spec.Name != nil {
		rw.Name = *spec.Name
	}
	if spec.MessageVersion != nil && *spec.MessageVersion == monitoringv1.RemoteWriteMessageVersion2_0 {
		rw.ProtobufMessage = remoteapi.WriteV2MessageType
	}
	rw.SendExemplars = spec.SendExemplars != nil && *spec.SendExemplars
	rw.SendNativeHistograms = spec.SendNativeHistograms != nil && *spec.SendNativeHistograms
	rw.RoundRobinDNS = spec.RoundRobinDNS != nil && *spec.RoundRobinDNS
	if spec.RemoteTimeout != nil {
		if rw.RemoteTimeout, err = parseDuration(*spec.RemoteTimeout); err != nil {
			return nil, fmt.Errorf("remoteTimeout: %w", err)
		}
	}
	if len(spec.Headers) > 0 {
		rw.Headers = maps.Clone(spec.Headers)
	}
	if rw.WriteRelabelConfigs, err = relabelConfigs(spec.WriteRelabelConfigs); err != nil {
		return nil, fmt.Errorf("writeRelabelConfigs: %w", err)
	}
	if rw.HTTPClientConfig, err = g.remoteWriteHTTP(ns, spec); err != nil {
		return nil, err
	}
	if rw.SigV4Config, err = g.sigv4(ns, spec.Sigv4); err != nil {
		return nil, err
	}
	if spec.AzureAD != nil {
		return nil, fmt.Errorf("azureAd is not supported by promshard")
	}
	if err := applyQueueConfig(&rw, spec); err != nil {
		return nil, err
	}
	return &rw, nil
}

// remoteWriteHTTP builds the HTTP client settings of a remote write.
func (g *generator) remoteWriteHTTP(ns string, spec *monitoringv1.RemoteWriteSpec) (commoncfg.HTTPClientConfig, error) {
	hc := promconfig.DefaultRemoteWriteHTTPClientConfig
	var err error
	if hc.BasicAuth, err = g.res.basicAuth(ns, spec.BasicAuth); err != nil {
		return hc, err
	}
	if spec.Authorization != nil {
		if spec.Authorization.CredentialsFile != "" {
			hc.Authorization = &commoncfg.Authorization{Type: authorizationType(spec.Authorization.Type), CredentialsFile: spec.Authorization.CredentialsFile}
		} else if hc.Authorization, err = g.res.authorization(ns, &spec.Authorization.SafeAuthorization); err != nil {
			return hc, err
		}
	}
	if hc.OAuth2, err = g.res.oauth2(ns, spec.OAuth2); err != nil {
		return hc, err
	}
	hc.BearerTokenFile = spec.BearerTokenFile
	hc.BearerToken = commoncfg.Secret(spec.BearerToken)
	if spec.TLSConfig != nil {
		if hc.TLSConfig, err = g.res.safeTLSConfig(ns, &spec.TLSConfig.SafeTLSConfig); err != nil {
			return hc, err
		}
		hc.TLSConfig.CAFile = spec.TLSConfig.CAFile
		hc.TLSConfig.CertFile = spec.TLSConfig.CertFile
		hc.TLSConfig.KeyFile = spec.TLSConfig.KeyFile
	}
	if hc.ProxyConfig, err = g.res.proxyConfig(ns, spec.ProxyConfig); err != nil {
		return hc, err
	}
	if spec.FollowRedirects != nil {
		hc.FollowRedirects = *spec.FollowRedirects
	}
	if spec.EnableHttp2 != nil {
		hc.EnableHTTP2 = *spec.EnableHttp2
	}
	if err := hc.Validate(); err != nil {
		return hc, err
	}
	return hc, nil
}

func (g *generator) sigv4(ns string, s *monitoringv1.Sigv4) (*sigv4.SigV4Config, error) {
	if s == nil {
		return nil, nil
	}
	out := &sigv4.SigV4Config{Region: s.Region, Profile: s.Profile, RoleARN: s.RoleArn, ExternalID: s.ExternalID}
	if s.UseFIPSSTSEndpoint != nil {
		out.UseFIPSSTSEndpoint = *s.UseFIPSSTSEndpoint
	}
	if s.AccessKey != nil {
		v, err := g.res.secretKey(ns, *s.AccessKey)
		if err != nil {
			return nil, fmt.Errorf("sigv4 accessKey: %w", err)
		}
		out.AccessKey = v
	}
	if s.SecretKey != nil {
		v, err := g.res.secretKey(ns, *s.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("sigv4 secretKey: %w", err)
		}
		out.SecretKey = commoncfg.Secret(v)
	}
	return out, nil
}

// applyQueueConfig copies queue and metadata settings over the defaults.
func applyQueueConfig(rw *promconfig.RemoteWriteConfig, spec *monitoringv1.RemoteWriteSpec) error {
	if q := spec.QueueConfig; q != nil {
		qc := &rw.QueueConfig
		setIfPositive(&qc.Capacity, q.Capacity)
		setIfPositive(&qc.MinShards, q.MinShards)
		setIfPositive(&qc.MaxShards, q.MaxShards)
		setIfPositive(&qc.MaxSamplesPerSend, q.MaxSamplesPerSend)
		qc.RetryOnRateLimit = q.RetryOnRateLimit
		for _, d := range []struct {
			name string
			in   *monitoringv1.Duration
			out  *model.Duration
		}{
			{"batchSendDeadline", q.BatchSendDeadline, &qc.BatchSendDeadline},
			{"minBackoff", q.MinBackoff, &qc.MinBackoff},
			{"maxBackoff", q.MaxBackoff, &qc.MaxBackoff},
			{"sampleAgeLimit", q.SampleAgeLimit, &qc.SampleAgeLimit},
		} {
			if d.in == nil {
				continue
			}
			v, err := parseDuration(*d.in)
			if err != nil {
				return fmt.Errorf("queueConfig %s: %w", d.name, err)
			}
			*d.out = v
		}
	}
	if m := spec.MetadataConfig; m != nil {
		// Like prometheus-operator (since its July 2026 fix, before
		// v0.95.1): with remote write 2.0 metadata travels with the samples,
		// so the separate metadata sending is rendered off.
		rw.MetadataConfig.Send = m.Send && rw.ProtobufMessage != remoteapi.WriteV2MessageType
		if m.SendInterval != "" {
			v, err := parseDuration(m.SendInterval)
			if err != nil {
				return fmt.Errorf("metadataConfig sendInterval: %w", err)
			}
			rw.MetadataConfig.SendInterval = v
		}
		if m.MaxSamplesPerSend != nil {
			rw.MetadataConfig.MaxSamplesPerSend = int(*m.MaxSamplesPerSend)
		}
	}
	return nil
}

func setIfPositive(dst *int, v int) {
	if v > 0 {
		*dst = v
	}
}

// checkRemoteWrite runs Prometheus' own validation of a remote-write entry
// by a YAML round trip (headers, auth exclusivity, queue config), then the
// relabel validation with the global name validation scheme.
func checkRemoteWrite(rw *promconfig.RemoteWriteConfig, gl promconfig.GlobalConfig) error {
	var back promconfig.RemoteWriteConfig
	if err := roundTrip(rw, &back); err != nil {
		return err
	}
	if err := rw.Validate(gl.MetricNameValidationScheme); err != nil {
		return err
	}
	return checkRemoteWriteClient(rw)
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
