//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/promshard/promshard/e2e/testbed"
)

// resilienceEnv is one bed, one receiver and one flags-only replica shared
// by the subtests of TestResilience.
type resilienceEnv struct {
	bed *testbed.Bed
	rcv *testbed.Receiver
	ps  *testbed.Promshard
}

// TestResilience: work stays proportional to what changed (unreferenced
// Secret updates cause no translation and no new remote-write connection)
// and watches resume at once after an API server outage.
func TestResilience(t *testing.T) {
	ctx := context.Background()
	e := &resilienceEnv{bed: startBed(t)}
	var err error
	e.rcv, err = e.bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	e.ps = startPromshard(t, e.bed, testbed.PromshardOptions{Name: "resilience", Args: []string{
		"--remote-write.url=" + e.rcv.WriteURL(), "--scrape.interval=1s",
	}})
	t.Run("unreferenced Secret updates", e.testUnreferencedSecret)
	t.Run("API server outage", e.testAPIServerOutage)
}

// authedMonitor is the ServiceMonitor of monitoredService with basic auth
// from Secret ns/creds (the targets ignore it).
func authedMonitor(ns, name string) *monitoringv1.ServiceMonitor {
	sm := serviceMonitor(ns, name)
	sel := func(key string) corev1.SecretKeySelector {
		return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: key}
	}
	sm.Spec.Endpoints[0].BasicAuth = &monitoringv1.BasicAuth{Username: sel("user"), Password: sel("password")}
	return sm
}

func (e *resilienceEnv) metric(t *testing.T, series string) float64 {
	t.Helper()
	v, _, err := e.ps.Metric(context.Background(), series)
	require.NoError(t, err)
	return v
}

// receiverAccepts reads the receiver's count of accepted TCP connections
// through c; with keep-alive, reads after the first reuse its connection
// and do not count themselves.
func (e *resilienceEnv) receiverAccepts(t *testing.T, c *http.Client) int {
	t.Helper()
	resp, err := c.Get(e.rcv.URL() + "/metrics")
	require.NoError(t, err)
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body) // read to the end, or the connection is not reused
		resp.Body.Close()
	}()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, `net_conntrack_listener_conn_accepted_total{listener_name="http"}`) {
			f := strings.Fields(line)
			n, err := strconv.ParseFloat(f[len(f)-1], 64)
			require.NoError(t, err)
			return int(n)
		}
	}
	require.NoError(t, sc.Err())
	t.Fatal("receiver exports no net_conntrack_listener_conn_accepted_total")
	return 0
}

func (e *resilienceEnv) testUnreferencedSecret(t *testing.T) {
	ctx := context.Background()
	const ns = "res-secrets"
	monitoredService(t, e.bed, ns, "web", 2)
	require.NoError(t, applySecret(ctx, e.bed, secret(ns, "creds", map[string]string{"user": "u", "password": "p1"})))
	_, err := e.bed.ApplyMonitoring(ctx, authedMonitor(ns, "web"))
	require.NoError(t, err)
	require.NoError(t, applySecret(ctx, e.bed, secret(ns, "unrelated", map[string]string{"v": "0"})))
	eventually(t, 60*time.Second, "targets scraped", healthyPool(e.ps, "serviceMonitor/"+ns+"/web/0", 2))
	eventually(t, 30*time.Second, "remote write flowing", queryCount(e.rcv, `up{namespace="`+ns+`"} == 1`, 2))
	// Settle: no change pending.
	var gens float64
	eventually(t, 10*time.Second, "generations settled", func(context.Context) error {
		g := e.metric(t, "promshard_config_generations_total")
		time.Sleep(time.Second) // two observations a debounce window apart
		if now := e.metric(t, "promshard_config_generations_total"); now != g {
			return fmt.Errorf("generations still moving: %v -> %v", g, now)
		}
		gens = g
		return nil
	})
	c := &http.Client{}
	defer c.CloseIdleConnections()
	accepts := e.receiverAccepts(t, c)
	skipped := e.metric(t, `promshard_discovery_unreferenced_events_total{resource="secrets"}`)

	for i := range 100 {
		require.NoError(t, applySecret(ctx, e.bed, secret(ns, "unrelated", map[string]string{"v": strconv.Itoa(i + 1)})))
	}
	eventually(t, 30*time.Second, "100 updates seen and skipped", func(context.Context) error {
		if got := e.metric(t, `promshard_discovery_unreferenced_events_total{resource="secrets"}`) - skipped; got < 100 {
			return fmt.Errorf("%v of 100 skipped", got)
		}
		return nil
	})
	time.Sleep(time.Second) // ten debounce windows: a rebuild would have happened
	require.InDelta(t, gens, e.metric(t, "promshard_config_generations_total"), 0, "translations caused by an unreferenced Secret")
	require.Equal(t, accepts, e.receiverAccepts(t, c), "new connections at the receiver")

	// Control: the referenced Secret is translated again.
	require.NoError(t, applySecret(ctx, e.bed, secret(ns, "creds", map[string]string{"user": "u", "password": "p2"})))
	eventually(t, 10*time.Second, "a translation for the referenced Secret", func(context.Context) error {
		if g := e.metric(t, "promshard_config_generations_total"); g <= gens {
			return fmt.Errorf("generations %v, want > %v", g, gens)
		}
		return nil
	})
}

func (e *resilienceEnv) testAPIServerOutage(t *testing.T) {
	ctx := context.Background()
	before := monitoredService(t, e.bed, "res-before", "web", 1)
	eventually(t, 60*time.Second, "monitor before the outage scraped", healthyPool(e.ps, "serviceMonitor/res-before/web/0", 1))
	spare, err := e.bed.Netns(ctx)
	require.NoError(t, err)
	extra, err := spare.AddTargets(ctx, "res-before-extra", 1, testbed.TargetOptions{})
	require.NoError(t, err)

	e.bed.StopAPIServer()
	t.Log("kube-apiserver stopped for 60s")
	time.Sleep(60 * time.Second) // the outage is the scenario, not a wait for a condition
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	require.NoError(t, e.bed.StartAPIServer(startCtx))
	t.Log("kube-apiserver ready again")

	// Built before the monitor: only the ServiceMonitor's creation counts.
	require.NoError(t, e.bed.CreateNamespace(ctx, "res-after", nil))
	ts, err := spare.AddTargets(ctx, "res-after-web", 1, testbed.TargetOptions{})
	require.NoError(t, err)
	require.NoError(t, e.bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "res-after", Name: "web", Labels: map[string]string{"app": "web"}, Targets: ts}))
	created := time.Now()
	_, err = e.bed.ApplyMonitoring(ctx, serviceMonitor("res-after", "web"))
	require.NoError(t, err)
	eventually(t, 5*time.Second, "monitor created after the outage in /api/v1/targets", func(ctx context.Context) error {
		got, err := poolTargets(ctx, e.ps, "serviceMonitor/res-after/web/0")
		if err != nil {
			return err
		}
		if len(got) != 1 {
			return fmt.Errorf("%d targets", len(got))
		}
		return nil
	})
	t.Logf("monitor created after the outage was in /api/v1/targets after %s", time.Since(created).Round(10*time.Millisecond))

	// An endpoint added to a Service discovered before the outage: the
	// service discovery's own watches resumed too (through the gated proxy).
	changed := time.Now()
	require.NoError(t, e.bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "res-before", Name: "web", Labels: map[string]string{"app": "web"},
		Targets: append(before, extra...)}))
	eventually(t, 5*time.Second, "endpoint added after the outage in /api/v1/targets", healthyPool(e.ps, "serviceMonitor/res-before/web/0", 2))
	t.Logf("endpoint added after the outage was scraped after %s", time.Since(changed).Round(10*time.Millisecond))
}
