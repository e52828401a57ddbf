package config

import (
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	commoncfg "github.com/prometheus/common/config"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newTestResolver() *resolver {
	return newResolver(&Snapshot{
		Secrets: []*corev1.Secret{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"},
			Data:       map[string][]byte{"user": []byte("alice"), "pass": []byte("pw"), "key": []byte("KEY")},
			StringData: map[string]string{"token": "tok"},
		}},
		ConfigMaps: []*corev1.ConfigMap{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm"},
			Data:       map[string]string{"ca": "CA"},
			BinaryData: map[string][]byte{"bin": []byte("BIN")},
		}},
	})
}

func resSecretSel(name, key string) corev1.SecretKeySelector {
	return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}
}

func resCMSel(name, key string) *corev1.ConfigMapKeySelector {
	return &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}
}

func TestResolverKeys(t *testing.T) {
	r := newTestResolver()
	optional := true
	for _, tc := range []struct {
		name    string
		get     func() (string, error)
		want    string
		wantErr string
	}{
		{"secret data", func() (string, error) { return r.secretKey("ns", resSecretSel("s", "user")) }, "alice", ""},
		{"secret stringData", func() (string, error) { return r.secretKey("ns", resSecretSel("s", "token")) }, "tok", ""},
		{"missing key", func() (string, error) { return r.secretKey("ns", resSecretSel("s", "nope")) }, "", `secret ns/s has no key "nope"`},
		{"missing secret", func() (string, error) { return r.secretKey("ns", resSecretSel("x", "k")) }, "", "secret ns/x not found"},
		{"other namespace", func() (string, error) { return r.secretKey("other", resSecretSel("s", "user")) }, "", "secret other/s not found"},
		{"optional missing", func() (string, error) {
			s := resSecretSel("x", "k")
			s.Optional = &optional
			return r.secretKey("ns", s)
		}, "", ""},
		{"configmap data", func() (string, error) { return r.configMapKey("ns", *resCMSel("cm", "ca")) }, "CA", ""},
		{"configmap binary", func() (string, error) { return r.configMapKey("ns", *resCMSel("cm", "bin")) }, "BIN", ""},
		{"configmap missing key", func() (string, error) { return r.configMapKey("ns", *resCMSel("cm", "x")) }, "", `configmap ns/cm has no key "x"`},
		{"secretOrConfigMap secret", func() (string, error) {
			s := resSecretSel("s", "pass")
			return r.secretOrConfigMap("ns", monitoringv1.SecretOrConfigMap{Secret: &s})
		}, "pw", ""},
		{"secretOrConfigMap both", func() (string, error) {
			s := resSecretSel("s", "pass")
			return r.secretOrConfigMap("ns", monitoringv1.SecretOrConfigMap{Secret: &s, ConfigMap: resCMSel("cm", "ca")})
		}, "", "cannot specify both"},
		{"secretOrConfigMap empty", func() (string, error) { return r.secretOrConfigMap("ns", monitoringv1.SecretOrConfigMap{}) }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.get()
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestResolverHTTPAuth(t *testing.T) {
	r := newTestResolver()
	ba, err := r.basicAuth("ns", nil)
	require.NoError(t, err)
	require.Nil(t, ba)
	ba, err = r.basicAuth("ns", &monitoringv1.BasicAuth{Username: resSecretSel("s", "user"), Password: resSecretSel("s", "pass")})
	require.NoError(t, err)
	require.Equal(t, &commoncfg.BasicAuth{Username: "alice", Password: "pw"}, ba)

	tok := resSecretSel("s", "token")
	a, err := r.authorization("ns", &monitoringv1.SafeAuthorization{Credentials: &tok})
	require.NoError(t, err)
	require.Equal(t, &commoncfg.Authorization{Type: "Bearer", Credentials: "tok"}, a)
	_, err = r.authorization("ns", &monitoringv1.SafeAuthorization{Type: "Basic", Credentials: &tok})
	require.Error(t, err)

	o, err := r.oauth2("ns", &monitoringv1.OAuth2{
		ClientID:     monitoringv1.SecretOrConfigMap{ConfigMap: resCMSel("cm", "ca")},
		ClientSecret: resSecretSel("s", "pass"),
		TokenURL:     "https://auth/token",
		Scopes:       []string{"a"},
	})
	require.NoError(t, err)
	require.Equal(t, "CA", o.ClientID)
	require.Equal(t, commoncfg.Secret("pw"), o.ClientSecret)
	_, err = r.oauth2("ns", &monitoringv1.OAuth2{
		ClientID:     monitoringv1.SecretOrConfigMap{ConfigMap: resCMSel("cm", "ca")},
		ClientSecret: resSecretSel("s", "pass"),
		TokenURL:     "ftp://auth/token",
	})
	require.ErrorContains(t, err, "scheme must be http or https")
}

func TestResolverTLSAndProxy(t *testing.T) {
	r := newTestResolver()
	key := resSecretSel("s", "key")
	cert := resSecretSel("s", "user")
	min := monitoringv1.TLSVersion12
	tls, err := r.safeTLSConfig("ns", &monitoringv1.SafeTLSConfig{
		CA:         monitoringv1.SecretOrConfigMap{ConfigMap: resCMSel("cm", "ca")},
		Cert:       monitoringv1.SecretOrConfigMap{Secret: &cert},
		KeySecret:  &key,
		MinVersion: &min,
	})
	require.NoError(t, err)
	require.Equal(t, "CA", tls.CA)
	require.Equal(t, "alice", tls.Cert)
	require.Equal(t, commoncfg.Secret("KEY"), tls.Key)
	require.Equal(t, commoncfg.TLSVersions["TLS12"], tls.MinVersion)

	_, err = r.safeTLSConfig("ns", &monitoringv1.SafeTLSConfig{Cert: monitoringv1.SecretOrConfigMap{Secret: &cert}})
	require.ErrorContains(t, err, "client cert specified without client key")
	bad := monitoringv1.TLSVersion("TLS99")
	_, err = r.safeTLSConfig("ns", &monitoringv1.SafeTLSConfig{MinVersion: &bad})
	require.ErrorContains(t, err, "unknown TLS version")

	u := "http://proxy:3128"
	p, err := r.proxyConfig("ns", monitoringv1.ProxyConfig{
		ProxyURL:           &u,
		ProxyConnectHeader: map[string][]corev1.SecretKeySelector{"X": {resSecretSel("s", "token")}},
	})
	require.NoError(t, err)
	require.Equal(t, u, p.ProxyURL.String())
	require.Equal(t, []commoncfg.Secret{"tok"}, p.ProxyConnectHeader["X"])
	_, err = r.proxyConfig("ns", monitoringv1.ProxyConfig{
		ProxyConnectHeader: map[string][]corev1.SecretKeySelector{"X": {resSecretSel("s", "token")}},
	})
	require.Error(t, err)
}
