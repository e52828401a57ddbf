package config

import (
	"os"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	commoncfg "github.com/prometheus/common/config"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func readTestFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return string(b)
}

func TestCheckHTTPClient(t *testing.T) {
	cert := readTestFile(t, "testdata/tls/cert.pem")
	key := readTestFile(t, "testdata/tls/key.pem")
	otherKey := readTestFile(t, "testdata/tls/other-key.pem")
	for _, tc := range []struct {
		name string
		hc   commoncfg.HTTPClientConfig
		err  string
	}{
		{name: "empty"},
		{name: "valid CA, cert and key", hc: commoncfg.HTTPClientConfig{TLSConfig: commoncfg.TLSConfig{CA: cert, Cert: cert, Key: commoncfg.Secret(key)}}},
		{name: "CA not PEM", hc: commoncfg.HTTPClientConfig{TLSConfig: commoncfg.TLSConfig{CA: "not a certificate"}}, err: "tlsConfig: CA is not a PEM-encoded certificate"},
		{name: "CA PEM of garbage", hc: commoncfg.HTTPClientConfig{TLSConfig: commoncfg.TLSConfig{CA: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}}, err: "CA holds no usable certificate"},
		{name: "key of another cert", hc: commoncfg.HTTPClientConfig{TLSConfig: commoncfg.TLSConfig{Cert: cert, Key: commoncfg.Secret(otherKey)}}, err: "private key does not match public key"},
		{name: "key not PEM", hc: commoncfg.HTTPClientConfig{TLSConfig: commoncfg.TLSConfig{Cert: cert, Key: "nope"}}, err: "client certificate and key"},
		{name: "files are not read", hc: commoncfg.HTTPClientConfig{TLSConfig: commoncfg.TLSConfig{CAFile: "/nonexistent/ca", CertFile: "/nonexistent/c", KeyFile: "/nonexistent/k"}}},
		{name: "oauth2 CA not PEM", hc: commoncfg.HTTPClientConfig{OAuth2: &commoncfg.OAuth2{ClientID: "id", TokenURL: "https://t", TLSConfig: commoncfg.TLSConfig{CA: "x"}}}, err: "oauth2 tlsConfig: CA is not"},
		{name: "oauth2 without token URL", hc: commoncfg.HTTPClientConfig{OAuth2: &commoncfg.OAuth2{ClientID: "id"}}, err: "tokenUrl is required"},
		{name: "proxy from environment and URL", hc: func() commoncfg.HTTPClientConfig {
			u, _ := parseRemoteURL("http://proxy:3128")
			return commoncfg.HTTPClientConfig{ProxyConfig: commoncfg.ProxyConfig{ProxyURL: *u, ProxyFromEnvironment: true}}
		}(), err: "proxy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkHTTPClient(&tc.hc)
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
		})
	}
}

// A monitor whose CA Secret is not a certificate is rejected alone; a
// PrometheusAgent whose remote-write CA is not one fails the configuration.
func TestGenerateRejectsUnusableTLS(t *testing.T) {
	cert := readTestFile(t, "testdata/tls/cert.pem")
	secret := func(name, ca string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Data: map[string][]byte{"ca": []byte(ca)}}
	}
	ep := func(secretName string) monitoringv1.Endpoint {
		return monitoringv1.Endpoint{Port: "web", HTTPConfigWithProxyAndTLSFiles: monitoringv1.HTTPConfigWithProxyAndTLSFiles{
			HTTPConfigWithTLSFiles: monitoringv1.HTTPConfigWithTLSFiles{TLSConfig: &monitoringv1.TLSConfig{SafeTLSConfig: monitoringv1.SafeTLSConfig{
				CA: monitoringv1.SecretOrConfigMap{Secret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: "ca"}},
			}}},
		}}
	}
	snap := &Snapshot{
		ServiceMonitors: []*monitoringv1.ServiceMonitor{newTestSM("ns", "bad", nil, ep("bad")), newTestSM("ns", "good", nil, ep("good"))},
		Secrets:         []*corev1.Secret{secret("bad", "not a certificate"), secret("good", cert)},
	}
	cfg, results, err := Generate(snap, Options{})
	require.NoError(t, err)
	require.Equal(t, []string{"serviceMonitor/ns/good/0"}, testJobNames(cfg))
	require.Len(t, results, 2)
	require.False(t, results[0].Accepted)
	require.Contains(t, results[0].Reason, "CA is not a PEM-encoded certificate")
	require.True(t, results[1].Accepted)
	require.Equal(t, []string{"serviceMonitor/ns/good/0"}, results[1].Jobs)

	snap.Agent = &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}}
	snap.Agent.Spec.RemoteWrite = []monitoringv1.RemoteWriteSpec{{URL: "https://rw.example/api/v1/write", TLSConfig: ep("bad").TLSConfig}}
	_, _, err = Generate(snap, Options{})
	require.ErrorContains(t, err, "remoteWrite[0]: tlsConfig: CA is not a PEM-encoded certificate")
}

// BenchmarkCheckJobClients measures the client checks Generate adds per job
// (a ServiceMonitor job and its Kubernetes SD), without and with a CA
// (shared CA bundles are parsed once, see pemCache).
func BenchmarkCheckJobClients(b *testing.B) {
	ca, err := os.ReadFile("testdata/tls/cert.pem")
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"no CA", "CA"} {
		b.Run(name, func(b *testing.B) {
			snap := &Snapshot{ServiceMonitors: []*monitoringv1.ServiceMonitor{newTestSM("ns", "m", nil, monitoringv1.Endpoint{Port: "web"})}}
			cfg, _, err := Generate(snap, Options{})
			if err != nil {
				b.Fatal(err)
			}
			sc := cfg.ScrapeConfigs[0]
			if name == "CA" {
				sc.HTTPClientConfig.TLSConfig.CA = string(ca)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := checkJobClients(sc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
