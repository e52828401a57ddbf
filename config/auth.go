package config

import (
	"fmt"
	"net/url"
	"sort"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	commoncfg "github.com/prometheus/common/config"
	corev1 "k8s.io/api/core/v1"
)

// resolver resolves Secret and ConfigMap references from the snapshot. The
// values it returns go inline into typed HTTP client configuration; nothing
// is written to disk.
type resolver struct {
	secrets    map[NamespacedName]*corev1.Secret
	configMaps map[NamespacedName]*corev1.ConfigMap
	// reads, when not nil, records every lookup, so that a cached
	// translation can tell whether what it read has changed (cache.go).
	reads *[]lookup
}

// newResolver indexes the Secrets and ConfigMaps of snap. A nil snapshot
// gives a resolver that finds nothing.
func newResolver(snap *Snapshot) *resolver {
	if snap == nil {
		snap = &Snapshot{}
	}
	r := &resolver{
		secrets:    make(map[NamespacedName]*corev1.Secret, len(snap.Secrets)),
		configMaps: make(map[NamespacedName]*corev1.ConfigMap, len(snap.ConfigMaps)),
	}
	for _, s := range snap.Secrets {
		if s != nil {
			r.secrets[NamespacedName{s.Namespace, s.Name}] = s
		}
	}
	for _, c := range snap.ConfigMaps {
		if c != nil {
			r.configMaps[NamespacedName{c.Namespace, c.Name}] = c
		}
	}
	return r
}

// lookup is one read of a Secret or ConfigMap key and its outcome.
type lookup struct {
	configMap bool
	ns        string
	name, key string
	optional  bool
	// value and missing are the outcome; value is "" when the object or
	// the key is missing.
	value   string
	missing lookupMiss
}

// lookupMiss tells what a lookup did not find.
type lookupMiss uint8

const (
	foundKey lookupMiss = iota
	missingObject
	missingKey
)

// secretKey returns the value of key sel.Key in Secret ns/sel.Name.
func (r *resolver) secretKey(ns string, sel corev1.SecretKeySelector) (string, error) {
	return r.read(lookup{ns: ns, name: sel.Name, key: sel.Key, optional: sel.Optional != nil && *sel.Optional})
}

// configMapKey returns the value of key sel.Key in ConfigMap ns/sel.Name.
func (r *resolver) configMapKey(ns string, sel corev1.ConfigMapKeySelector) (string, error) {
	return r.read(lookup{configMap: true, ns: ns, name: sel.Name, key: sel.Key, optional: sel.Optional != nil && *sel.Optional})
}

// read resolves l, records it when recording, and turns a miss of a
// required key into an error.
func (r *resolver) read(l lookup) (string, error) {
	l.value, l.missing = r.resolve(&l)
	if r.reads != nil {
		*r.reads = append(*r.reads, l)
	}
	if l.missing == foundKey || l.optional {
		return l.value, nil
	}
	kind := "secret"
	if l.configMap {
		kind = "configmap"
	}
	if l.missing == missingObject {
		return "", fmt.Errorf("%s %s/%s not found", kind, l.ns, l.name)
	}
	return "", fmt.Errorf("%s %s/%s has no key %q", kind, l.ns, l.name, l.key)
}

// resolve looks up the key of l.
func (r *resolver) resolve(l *lookup) (string, lookupMiss) {
	s, b, isBytes, miss := r.find(l)
	if isBytes {
		return string(b), miss
	}
	return s, miss
}

// unchanged reports whether l would read the same outcome from r; it
// does not copy the value.
func (r *resolver) unchanged(l *lookup) bool {
	s, b, isBytes, miss := r.find(l)
	if miss != l.missing {
		return false
	}
	if isBytes {
		return string(b) == l.value
	}
	return s == l.value
}

// find looks up the key of l: a Secret's data before its stringData, a
// ConfigMap's data before its binaryData. The value is b when isBytes,
// else s.
func (r *resolver) find(l *lookup) (s string, b []byte, isBytes bool, miss lookupMiss) {
	ref := NamespacedName{l.ns, l.name}
	if l.configMap {
		c, ok := r.configMaps[ref]
		if !ok {
			return "", nil, false, missingObject
		}
		if v, ok := c.Data[l.key]; ok {
			return v, nil, false, foundKey
		}
		if v, ok := c.BinaryData[l.key]; ok {
			return "", v, true, foundKey
		}
		return "", nil, false, missingKey
	}
	sec, ok := r.secrets[ref]
	if !ok {
		return "", nil, false, missingObject
	}
	if v, ok := sec.Data[l.key]; ok {
		return "", v, true, foundKey
	}
	if v, ok := sec.StringData[l.key]; ok {
		return v, nil, false, foundKey
	}
	return "", nil, false, missingKey
}

// secretOrConfigMap returns the referenced value; an empty reference gives "".
func (r *resolver) secretOrConfigMap(ns string, s monitoringv1.SecretOrConfigMap) (string, error) {
	switch {
	case s.Secret != nil && s.ConfigMap != nil:
		return "", fmt.Errorf("cannot specify both secret and configMap")
	case s.Secret != nil:
		return r.secretKey(ns, *s.Secret)
	case s.ConfigMap != nil:
		return r.configMapKey(ns, *s.ConfigMap)
	}
	return "", nil
}

// basicAuth resolves a BasicAuth; nil in gives nil out.
func (r *resolver) basicAuth(ns string, ba *monitoringv1.BasicAuth) (*commoncfg.BasicAuth, error) {
	if ba == nil {
		return nil, nil
	}
	user, err := r.secretKey(ns, ba.Username)
	if err != nil {
		return nil, fmt.Errorf("basicAuth username: %w", err)
	}
	pass, err := r.secretKey(ns, ba.Password)
	if err != nil {
		return nil, fmt.Errorf("basicAuth password: %w", err)
	}
	return &commoncfg.BasicAuth{Username: user, Password: commoncfg.Secret(pass)}, nil
}

// authorization resolves a SafeAuthorization; nil in gives nil out.
func (r *resolver) authorization(ns string, a *monitoringv1.SafeAuthorization) (*commoncfg.Authorization, error) {
	if a == nil {
		return nil, nil
	}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("authorization: %w", err)
	}
	cred, err := r.secretKey(ns, *a.Credentials)
	if err != nil {
		return nil, fmt.Errorf("authorization credentials: %w", err)
	}
	return &commoncfg.Authorization{Type: authorizationType(a.Type), Credentials: commoncfg.Secret(cred)}, nil
}

// oauth2 resolves an OAuth2 client configuration; nil in gives nil out.
func (r *resolver) oauth2(ns string, o *monitoringv1.OAuth2) (*commoncfg.OAuth2, error) {
	if o == nil {
		return nil, nil
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("oauth2: %w", err)
	}
	if err := validateURL(string(o.TokenURL)); err != nil {
		return nil, fmt.Errorf("oauth2 tokenUrl: %w", err)
	}
	id, err := r.secretOrConfigMap(ns, o.ClientID)
	if err != nil {
		return nil, fmt.Errorf("oauth2 clientId: %w", err)
	}
	secret, err := r.secretKey(ns, o.ClientSecret)
	if err != nil {
		return nil, fmt.Errorf("oauth2 clientSecret: %w", err)
	}
	out := &commoncfg.OAuth2{
		ClientID:     id,
		ClientSecret: commoncfg.Secret(secret),
		TokenURL:     string(o.TokenURL),
		Scopes:       o.Scopes,
	}
	if len(o.EndpointParams) > 0 {
		out.EndpointParams = o.EndpointParams
	}
	tls, err := r.safeTLSConfig(ns, o.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("oauth2: %w", err)
	}
	out.TLSConfig = tls
	proxy, err := r.proxyConfig(ns, o.ProxyConfig)
	if err != nil {
		return nil, fmt.Errorf("oauth2: %w", err)
	}
	out.ProxyConfig = proxy
	return out, nil
}

// safeTLSConfig resolves a SafeTLSConfig with CA, certificate and key
// inline. A nil config gives the zero TLSConfig.
func (r *resolver) safeTLSConfig(ns string, t *monitoringv1.SafeTLSConfig) (commoncfg.TLSConfig, error) {
	var out commoncfg.TLSConfig
	if t == nil {
		return out, nil
	}
	if err := t.Validate(); err != nil {
		return out, fmt.Errorf("tlsConfig: %w", err)
	}
	ca, err := r.secretOrConfigMap(ns, t.CA)
	if err != nil {
		return out, fmt.Errorf("tlsConfig ca: %w", err)
	}
	cert, err := r.secretOrConfigMap(ns, t.Cert)
	if err != nil {
		return out, fmt.Errorf("tlsConfig cert: %w", err)
	}
	out.CA, out.Cert = ca, cert
	if t.KeySecret != nil {
		key, err := r.secretKey(ns, *t.KeySecret)
		if err != nil {
			return out, fmt.Errorf("tlsConfig keySecret: %w", err)
		}
		out.Key = commoncfg.Secret(key)
	}
	if t.ServerName != nil {
		out.ServerName = *t.ServerName
	}
	if t.InsecureSkipVerify != nil {
		out.InsecureSkipVerify = *t.InsecureSkipVerify
	}
	if out.MinVersion, err = tlsVersion(t.MinVersion); err != nil {
		return out, fmt.Errorf("tlsConfig minVersion: %w", err)
	}
	if out.MaxVersion, err = tlsVersion(t.MaxVersion); err != nil {
		return out, fmt.Errorf("tlsConfig maxVersion: %w", err)
	}
	if err := out.Validate(); err != nil {
		return out, fmt.Errorf("tlsConfig: %w", err)
	}
	return out, nil
}

func tlsVersion(v *monitoringv1.TLSVersion) (commoncfg.TLSVersion, error) {
	if v == nil || *v == "" {
		return 0, nil
	}
	tv, ok := commoncfg.TLSVersions[string(*v)]
	if !ok {
		return 0, fmt.Errorf("unknown TLS version %q", *v)
	}
	return tv, nil
}

// proxyConfig resolves proxy settings, including the Secret values of the
// proxy CONNECT headers.
func (r *resolver) proxyConfig(ns string, p monitoringv1.ProxyConfig) (commoncfg.ProxyConfig, error) {
	var out commoncfg.ProxyConfig
	if err := p.Validate(); err != nil {
		return out, fmt.Errorf("proxy: %w", err)
	}
	if p.ProxyURL != nil && *p.ProxyURL != "" {
		u, err := url.Parse(*p.ProxyURL)
		if err != nil {
			return out, fmt.Errorf("invalid proxyUrl: %w", err)
		}
		out.ProxyURL = commoncfg.URL{URL: u}
	}
	if p.NoProxy != nil {
		out.NoProxy = *p.NoProxy
	}
	if p.ProxyFromEnvironment != nil {
		out.ProxyFromEnvironment = *p.ProxyFromEnvironment
	}
	if len(p.ProxyConnectHeader) > 0 {
		out.ProxyConnectHeader = commoncfg.ProxyHeader{}
		names := make([]string, 0, len(p.ProxyConnectHeader))
		for k := range p.ProxyConnectHeader {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			for _, sel := range p.ProxyConnectHeader[k] {
				v, err := r.secretKey(ns, sel)
				if err != nil {
					return out, fmt.Errorf("proxyConnectHeader %s: %w", k, err)
				}
				out.ProxyConnectHeader[k] = append(out.ProxyConnectHeader[k], commoncfg.Secret(v))
			}
		}
	}
	if err := out.Validate(); err != nil {
		return out, fmt.Errorf("proxy: %w", err)
	}
	return out, nil
}

// validateURL accepts absolute http(s) URLs with a host.
func validateURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %s", RedactURLs(s), RedactURLs(err.Error()))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("invalid URL %q: scheme must be http or https", RedactURLs(s))
	}
	if u.Host == "" {
		return fmt.Errorf("invalid URL %q: no host", RedactURLs(s))
	}
	return nil
}
