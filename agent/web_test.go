package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

// writeWebConfig writes a self-signed certificate and an exporter-toolkit
// web configuration requiring TLS and basic auth (user "promshard",
// password "secret") into dir, and returns the configuration's path.
func writeWebConfig(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "promshard"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	require.NoError(t, err)
	cfg := "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  promshard: " + string(hash) + "\n"
	p := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

func TestWebConfigFile(t *testing.T) {
	path := writeWebConfig(t, t.TempDir())
	w, err := NewWeb(WebOptions{ListenAddress: "127.0.0.1:0", ConfigFile: path}, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(scheme, user, pass string) int {
		req, err := http.NewRequest(http.MethodGet, scheme+"://"+w.Addr()+"/-/healthy", nil)
		require.NoError(t, err)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		var code int
		require.Eventually(t, func() bool {
			resp, err := client.Do(req)
			if err != nil {
				code = -1
				return scheme == "http" // plain HTTP to a TLS port fails at the protocol level
			}
			resp.Body.Close()
			code = resp.StatusCode
			return true
		}, 5*time.Second, 20*time.Millisecond)
		return code
	}
	require.Equal(t, http.StatusUnauthorized, get("https", "", ""))
	require.Equal(t, http.StatusUnauthorized, get("https", "promshard", "wrong"))
	require.Equal(t, http.StatusOK, get("https", "promshard", "secret"))
	require.NotEqual(t, http.StatusOK, get("http", "promshard", "secret"), "plain HTTP must not be served")
}

func TestWebConfigFileInvalid(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(bad, []byte("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n"), 0o600))
	_, err := NewWeb(WebOptions{ListenAddress: "127.0.0.1:0", ConfigFile: bad}, nil)
	require.ErrorContains(t, err, "web config file")
	_, err = NewWeb(WebOptions{ListenAddress: "127.0.0.1:0", ConfigFile: filepath.Join(dir, "absent.yml")}, nil)
	require.ErrorContains(t, err, "web config file")
}
