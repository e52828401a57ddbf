//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/promshard/promshard/e2e/testbed"
)

// tlsServiceMonitor scrapes Service ns/name over HTTPS, trusting the CA in
// key "ca.crt" of Secret ns/caSecret.
func tlsServiceMonitor(ns, name, caSecret string) *monitoringv1.ServiceMonitor {
	sm := serviceMonitor(ns, name)
	sm.Spec.Endpoints[0].Scheme = ptr.To(monitoringv1.Scheme("https"))
	sm.Spec.Endpoints[0].TLSConfig = &monitoringv1.TLSConfig{SafeTLSConfig: monitoringv1.SafeTLSConfig{
		CA:         monitoringv1.SecretOrConfigMap{Secret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: caSecret}, Key: "ca.crt"}},
		ServerName: ptr.To("target.testbed"),
	}}
	return sm
}

// testUnusableCASecret: a CA Secret that stops being a certificate, and a
// new monitor whose CA Secret never was one, are rejected alone with a
// reason (log, metric, status page); a monitor created after them is
// scraped within 5s and the other monitors keep their targets.
func (e *agentEnv) testUnusableCASecret(t *testing.T) {
	ctx := context.Background()
	e.namespace(t, "tls")
	e.service(t, "tls", "secure", 1, testbed.TargetOptions{TLS: true})
	e.service(t, "tls", "fresh", 1, testbed.TargetOptions{TLS: true})
	e.service(t, "tls", "steady", 2, testbed.TargetOptions{})
	e.service(t, "tls", "after", 1, testbed.TargetOptions{})
	ca := string(e.bed.CACertPEM())
	require.NoError(t, applySecret(ctx, e.bed, secret("tls", "ca", map[string]string{"ca.crt": ca})))
	for _, sm := range []*monitoringv1.ServiceMonitor{tlsServiceMonitor("tls", "secure", "ca"), serviceMonitor("tls", "steady")} {
		_, err := e.bed.ApplyMonitoring(ctx, sm)
		require.NoError(t, err)
	}
	eventually(t, 30*time.Second, "TLS monitor scraped", healthyPool(e.ps, "serviceMonitor/tls/secure/0", 1))
	eventually(t, 30*time.Second, "steady monitor scraped", healthyPool(e.ps, "serviceMonitor/tls/steady/0", 2))
	before, _, err := e.ps.Metric(ctx, `promshard_rejected_objects{kind="ServiceMonitor"}`)
	require.NoError(t, err)
	pools := e.otherPools(t)

	require.NoError(t, applySecret(ctx, e.bed, secret("tls", "ca", map[string]string{"ca.crt": "not a certificate"})))
	require.NoError(t, applySecret(ctx, e.bed, secret("tls", "ca-bad", map[string]string{"ca.crt": "not a certificate"})))
	_, err = e.bed.ApplyMonitoring(ctx, tlsServiceMonitor("tls", "fresh", "ca-bad"))
	require.NoError(t, err)

	eventually(t, 15*time.Second, "both rejected in promshard_rejected_objects", func(ctx context.Context) error {
		v, ok, err := e.ps.Metric(ctx, `promshard_rejected_objects{kind="ServiceMonitor"}`)
		if err != nil || !ok || v != before+2 {
			return fmt.Errorf("value %v (want %v) found %v err %v", v, before+2, ok, err)
		}
		return nil
	})
	page, err := e.ps.Get(ctx, "/")
	require.NoError(t, err)
	for _, want := range []string{"tls/secure", "tls/fresh", "CA is not a PEM-encoded certificate"} {
		require.Contains(t, string(page), want, "status page")
	}
	log := e.ps.Log()
	for _, name := range []string{"secure", "fresh"} {
		require.Regexp(t, `object rejected.*namespace=tls name=`+name+` reason=".*CA is not a PEM-encoded certificate`, log)
	}
	require.NotContains(t, log, "keeping the previous one")

	start := time.Now()
	_, err = e.bed.ApplyMonitoring(ctx, serviceMonitor("tls", "after"))
	require.NoError(t, err)
	eventually(t, 5*time.Second, "monitor created after the rejections scraped", healthyPool(e.ps, "serviceMonitor/tls/after/0", 1))
	t.Logf("monitor created after two rejected ones in /api/v1/targets after %s", time.Since(start).Round(time.Millisecond))

	eventually(t, 10*time.Second, "rejected monitor's job gone", func(ctx context.Context) error {
		ts, err := poolTargets(ctx, e.ps, "serviceMonitor/tls/secure/0")
		if err != nil || len(ts) != 0 {
			return fmt.Errorf("targets %v err %v", ts, err)
		}
		return nil
	})
	require.NoError(t, healthyPool(e.ps, "serviceMonitor/tls/steady/0", 2)(ctx))
	for pool, n := range pools {
		ts, err := poolTargets(ctx, e.ps, pool)
		require.NoError(t, err)
		require.Len(t, ts, n, pool)
	}
	ts, err := poolTargets(ctx, e.ps, "serviceMonitor/tls/fresh/0")
	require.NoError(t, err)
	require.Empty(t, ts)
}

// otherPools returns the target count of every pool outside namespace tls.
func (e *agentEnv) otherPools(t *testing.T) map[string]int {
	ts, err := e.ps.Targets(context.Background())
	require.NoError(t, err)
	out := map[string]int{}
	for _, tg := range ts {
		if !strings.HasPrefix(tg.ScrapePool, "serviceMonitor/tls/") {
			out[tg.ScrapePool]++
		}
	}
	return out
}
