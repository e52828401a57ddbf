//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/promshard/promshard/e2e/testbed"
)

// untrustedKubeconfig writes a copy of kubeconfig whose clusters trust a
// freshly generated CA instead of the one that signed the API server's
// certificate, as after a CA rotation the kubeconfig missed.
func untrustedKubeconfig(t *testing.T, kubeconfig string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the API server's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	require.NoError(t, err)
	require.NotEmpty(t, cfg.Clusters)
	for _, c := range cfg.Clusters {
		c.InsecureSkipTLSVerify = false // the bed's own kubeconfig skips verification
		c.CertificateAuthority = ""
		c.CertificateAuthorityData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

// logLines returns the lines of log containing every one of parts.
func logLines(log string, parts ...string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// TestHealthUntrustedAPIServer starts promshard with a kubeconfig whose CA
// did not sign the API server's certificate: within the wait limit the TLS
// error is logged (by the gate once, by client-go's reflectors), /-/ready
// and the status page say the API server is unreachable and why, and the
// process keeps serving and stays healthy (it owns nothing).
func TestHealthUntrustedAPIServer(t *testing.T) {
	bed := startBed(t)
	const limit = 3 * time.Second
	p := startPromshard(t, bed, testbed.PromshardOptions{
		Name: "untrusted", Kubeconfig: untrustedKubeconfig(t, bed.Kubeconfig), NoWaitReady: true,
		Args: []string{"--kubernetes.unreachable-timeout=" + limit.String()},
	})
	started := time.Now()

	// client-go's reflectors got the error after the wait limit and logged
	// it, more than once (they retry with their backoff).
	eventually(t, limit+15*time.Second, "client-go logs the TLS error", func(context.Context) error {
		if n := len(logLines(p.Log(), "component=client-go", "x509: certificate signed by unknown authority")); n < 2 {
			return fmt.Errorf("%d client-go lines with the x509 error", n)
		}
		return nil
	})
	require.GreaterOrEqual(t, time.Since(started), limit, "errors reached client-go before the wait limit")
	log := p.Log()
	gate := `component=kubernetes`
	require.Len(t, logLines(log, gate, "API server unreachable, requests wait until it is ready", "x509"), 1, "the outage is logged once:\n%s", log)
	eventually(t, 10*time.Second, "the gate logs the outage past its limit", func(context.Context) error {
		if n := len(logLines(p.Log(), gate, "longer than the wait limit", "x509")); n != 1 {
			return fmt.Errorf("%d lines", n)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.Get(ctx, "/-/ready")
	require.Error(t, err)
	require.Contains(t, err.Error(), "503 Service Unavailable: promshard is not ready: the Kubernetes API server has been unreachable for")
	require.Contains(t, err.Error(), "longer than the wait limit of 3s")
	require.Contains(t, err.Error(), "x509: certificate signed by unknown authority")

	page, err := p.Get(ctx, "/")
	require.NoError(t, err)
	require.Contains(t, string(page), `id="apiserver">Kubernetes API: the Kubernetes API server has been unreachable for`)
	require.Contains(t, string(page), "x509: certificate signed by unknown authority")
	require.Contains(t, string(page), `id="pipeline-health">Scrape pipeline healthy.`)

	// It keeps serving: healthy (nothing owned, nothing stuck), metrics.
	body, err := p.Get(ctx, "/-/healthy")
	require.NoError(t, err)
	require.Equal(t, "promshard is Healthy.\n", string(body))
	for series, want := range map[string]float64{
		"promshard_discovery_apiserver_reachable":         0,
		`promshard_pipeline_healthy{check="scrape_sync"}`: 1,
		`promshard_pipeline_healthy{check="wal"}`:         1,
	} {
		v, ok, err := p.Metric(ctx, series)
		require.NoError(t, err)
		require.True(t, ok, series)
		require.InDelta(t, want, v, 0, series)
	}
	require.False(t, p.Exited())
	t.Logf("untrusted API server reported after %s", time.Since(started).Round(10*time.Millisecond))
}
