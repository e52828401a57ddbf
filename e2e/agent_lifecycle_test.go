//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promshard/promshard/e2e/testbed"
)

// holdsFor polls cond every 250ms for d and fails at the first error.
func holdsFor(t testing.TB, d time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cond(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: stopped holding after %s: %v", what, d-time.Until(end), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// noTargets holds when no scrape pool has a target.
func noTargets(p *testbed.Promshard) func(context.Context) error {
	return func(ctx context.Context) error {
		ts, err := p.Targets(ctx)
		if err != nil || len(ts) != 0 {
			return fmt.Errorf("%d targets (err %v)", len(ts), err)
		}
		return nil
	}
}

func agentMetric(p *testbed.Promshard, state string) func(context.Context) error {
	return func(ctx context.Context) error {
		v, ok, err := p.Metric(ctx, fmt.Sprintf(`promshard_prometheus_agent_state{state=%q}`, state))
		if err != nil || !ok || v != 1 {
			return fmt.Errorf("promshard_prometheus_agent_state{state=%q} = %v (found %v, err %v)", state, v, ok, err)
		}
		return nil
	}
}

// TestAgentPrometheusAgentLifecycle: with --prometheus-agent, promshard
// scrapes nothing and is not ready before the PrometheusAgent exists; when
// it is deleted, its last applied settings keep running (selection, remote
// write); the flags' settings are never used.
func TestAgentPrometheusAgentLifecycle(t *testing.T) {
	ctx := context.Background()
	bed := startBed(t)
	rcv, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	monitoredService(t, bed, "mon", "picked", 2)
	monitoredService(t, bed, "mon", "ignored", 1)
	// The PrometheusAgent selects ServiceMonitors labelled select=yes.
	picked := serviceMonitor("mon", "picked")
	picked.Labels = map[string]string{"select": "yes"}
	_, err = bed.ApplyMonitoring(ctx, picked)
	require.NoError(t, err)
	gvr, err := testbed.MonitoringGVR(&monitoringv1alpha1.PrometheusAgent{})
	require.NoError(t, err)
	newAgent := func(cluster string, sel *metav1.LabelSelector) *monitoringv1alpha1.PrometheusAgent {
		pa := prometheusAgent("mon", "agent", map[string]string{"cluster": cluster}, rcv.WriteURL())
		pa.Spec.ServiceMonitorSelector = sel
		return pa
	}
	ps := startPromshard(t, bed, testbed.PromshardOptions{Name: "lifecycle", NoWaitReady: true, Args: []string{"--prometheus-agent=mon/agent"}})

	t.Run("before the PrometheusAgent exists", func(t *testing.T) {
		eventually(t, 15*time.Second, "waiting state", agentMetric(ps, "waiting"))
		_, err := ps.Get(ctx, "/-/ready")
		require.ErrorContains(t, err, "503")
		require.ErrorContains(t, err, "PrometheusAgent mon/agent not found yet")
		page, err := ps.Get(ctx, "/")
		require.NoError(t, err)
		require.Contains(t, string(page), "PrometheusAgent mon/agent not found yet: nothing is scraped until it exists")
		holdsFor(t, 5*time.Second, "nothing scraped", noTargets(ps))
		require.Contains(t, ps.Log(), "waiting for the PrometheusAgent before scraping anything")
	})

	t.Run("created", func(t *testing.T) {
		_, err := bed.ApplyMonitoring(ctx, newAgent("one", &metav1.LabelSelector{MatchLabels: map[string]string{"select": "yes"}}))
		require.NoError(t, err)
		eventually(t, 30*time.Second, "selected monitor scraped", healthyPool(ps, "serviceMonitor/mon/picked/0", 2))
		eventually(t, 10*time.Second, "ready", func(ctx context.Context) error { _, err := ps.Get(ctx, "/-/ready"); return err })
		eventually(t, 30*time.Second, "samples with the agent's external labels", queryCount(rcv, `up{namespace="mon",cluster="one",prometheus="mon/agent"} == 1`, 2))
		ts, err := poolTargets(ctx, ps, "serviceMonitor/mon/ignored/0")
		require.NoError(t, err)
		require.Empty(t, ts)
	})

	t.Run("deleted", func(t *testing.T) {
		applies, ok, err := ps.Metric(ctx, "promshard_config_applies_total")
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, bed.Dynamic.Resource(gvr).Namespace("mon").Delete(ctx, "agent", metav1.DeleteOptions{}))
		eventually(t, 15*time.Second, "missing state", agentMetric(ps, "missing"))
		deleted := time.Now()
		holdsFor(t, 20*time.Second, "last applied settings keep running", func(ctx context.Context) error {
			if err := healthyPool(ps, "serviceMonitor/mon/picked/0", 2)(ctx); err != nil {
				return err
			}
			ts, err := poolTargets(ctx, ps, "serviceMonitor/mon/ignored/0")
			if err != nil || len(ts) != 0 {
				return fmt.Errorf("unselected monitor scraped: %d targets (err %v)", len(ts), err)
			}
			return nil
		})
		// Fresh samples kept arriving through the agent's remote write,
		// with its external labels: one per second and target.
		window := time.Since(deleted)
		q := fmt.Sprintf(`count_over_time(up{namespace="mon",job="picked",cluster="one",prometheus="mon/agent"}[%dms])`, window.Milliseconds())
		eventually(t, 30*time.Second, "samples after the deletion", func(ctx context.Context) error {
			v, err := rcv.Query(ctx, q, deleted.Add(window))
			if err != nil {
				return err
			}
			least := model.SampleValue(window.Seconds() - 3)
			if len(v) != 2 || v[0].Value < least || v[1].Value < least {
				return fmt.Errorf("%s = %s, want 2 series with >= %.0f samples", q, vectorString(v), window.Seconds()-3)
			}
			return nil
		})
		_, err = ps.Get(ctx, "/-/ready")
		require.NoError(t, err, "still ready: a configuration runs")
		// The last applied settings render the running configuration: no
		// Prometheus component was touched.
		after, _, err := ps.Metric(ctx, "promshard_config_applies_total")
		require.NoError(t, err)
		require.Equal(t, applies, after, "applies while the PrometheusAgent was gone")
		page, err := ps.Get(ctx, "/")
		require.NoError(t, err)
		require.Contains(t, string(page), "PrometheusAgent mon/agent was deleted: its last applied settings keep running")
		require.True(t, strings.Contains(ps.Log(), "PrometheusAgent deleted; its last applied settings keep running"), ps.LogTail(20))
	})

	t.Run("back", func(t *testing.T) {
		// Back with every monitor selected and another external label.
		_, err := bed.ApplyMonitoring(ctx, newAgent("two", &metav1.LabelSelector{}))
		require.NoError(t, err)
		eventually(t, 15*time.Second, "present state", agentMetric(ps, "present"))
		eventually(t, 30*time.Second, "newly selected monitor scraped", healthyPool(ps, "serviceMonitor/mon/ignored/0", 1))
		eventually(t, 30*time.Second, "new external label", queryCount(rcv, `up{namespace="mon",cluster="two"} == 1`, 3))
	})
}
