//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/promshard/promshard/e2e/testbed"
)

func prometheusAgent(ns, name string, external map[string]string, writeURLs ...string) *monitoringv1alpha1.PrometheusAgent {
	pa := &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	pa.Spec.ServiceMonitorSelector = &metav1.LabelSelector{}
	pa.Spec.ScrapeInterval = "1s"
	pa.Spec.ExternalLabels = external
	for _, u := range writeURLs {
		pa.Spec.RemoteWrite = append(pa.Spec.RemoteWrite, monitoringv1.RemoteWriteSpec{URL: monitoringv1.URL(u)})
	}
	return pa
}

// TestAgentPrometheusAgentSettings: externalLabels and remoteWrite of the
// PrometheusAgent apply live, visible at the receivers.
func TestAgentPrometheusAgentSettings(t *testing.T) {
	ctx := context.Background()
	bed := startBed(t)
	rcv1, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{Name: "rcv1"})
	require.NoError(t, err)
	rcv2, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{Name: "rcv2"})
	require.NoError(t, err)
	monitoredService(t, bed, "mon", "app", 2)
	_, err = bed.ApplyMonitoring(ctx, prometheusAgent("mon", "agent", map[string]string{"cluster": "one"}, rcv1.WriteURL()))
	require.NoError(t, err)

	ps := startPromshard(t, bed, testbed.PromshardOptions{Name: "pa", Args: []string{"--prometheus-agent=mon/agent"}})
	eventually(t, 30*time.Second, "targets scraped", healthyPool(ps, "serviceMonitor/mon/app/0", 2))
	// prometheus-operator's external label prometheus=<ns>/<name>, never prometheus_replica.
	eventually(t, 30*time.Second, "external labels at receiver 1", queryCount(rcv1, `up{cluster="one",prometheus="mon/agent",namespace="mon"} == 1`, 2))
	v, err := rcv1.Query(ctx, `count({prometheus_replica!=""})`, time.Now())
	require.NoError(t, err)
	require.Empty(t, v, "no prometheus_replica label")

	// Change externalLabels and add a second remoteWrite: both apply live.
	_, err = bed.ApplyMonitoring(ctx, prometheusAgent("mon", "agent", map[string]string{"cluster": "two"}, rcv1.WriteURL(), rcv2.WriteURL()))
	require.NoError(t, err)
	eventually(t, 30*time.Second, "new external label at receiver 1", queryCount(rcv1, `up{cluster="two",namespace="mon"} == 1`, 2))
	eventually(t, 30*time.Second, "second remote write", queryCount(rcv2, `up{cluster="two",namespace="mon"} == 1`, 2))
	require.False(t, ps.Exited())
}

// TestAgentWALReplay: with the receiver down for a minute, the agent WAL
// keeps the samples and remote write delivers them once it is back.
func TestAgentWALReplay(t *testing.T) {
	ctx := context.Background()
	bed := startBed(t)
	rcv, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	monitoredService(t, bed, "wal", "app", 1)
	startPromshard(t, bed, testbed.PromshardOptions{Name: "wal", Args: []string{"--remote-write.url=" + rcv.WriteURL(), "--scrape.interval=1s"}})
	eventually(t, 30*time.Second, "up at the receiver", queryCount(rcv, `up{namespace="wal"} == 1`, 1))

	down := time.Now()
	rcv.Stop()
	time.Sleep(time.Minute)
	up := time.Now()
	require.NoError(t, rcv.Start(ctx))

	// Every 1s scrape of the minute arrives: count the raw samples.
	window := up.Sub(down)
	want := int(window.Seconds()) - 1
	q := fmt.Sprintf(`count_over_time(up{namespace="wal"}[%dms])`, window.Milliseconds())
	eventually(t, 60*time.Second, "samples of the outage delivered", func(ctx context.Context) error {
		v, err := rcv.Query(ctx, q, up)
		if err != nil {
			return err
		}
		if len(v) != 1 || int(v[0].Value) < want {
			return fmt.Errorf("%s = %s, want >= %d", q, vectorString(v), want)
		}
		return nil
	})
	fmt.Printf("e2e: receiver down %.0fs; all %d+ samples of the outage delivered from the WAL\n", window.Seconds(), want)
}

// BenchmarkServiceMonitorToTarget measures the latency from creating a
// ServiceMonitor to its target appearing in /api/v1/targets. Run it with
// -benchtime=60x (make bench) for 60 changes; it reports p50 and p99.
func BenchmarkServiceMonitorToTarget(b *testing.B) {
	ctx := context.Background()
	bed := testbed.StartForTest(b, testbed.Options{Bins: bins})
	host, err := bed.Netns(ctx)
	require.NoError(b, err)
	require.NoError(b, bed.CreateNamespace(ctx, "bench", nil))
	ts, err := host.AddTargets(ctx, "bench", 1, testbed.TargetOptions{})
	require.NoError(b, err)
	require.NoError(b, bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "bench", Name: "app", Labels: map[string]string{"app": "app"}, Targets: ts}))
	ps := startPromshard(b, bed, testbed.PromshardOptions{Name: "bench", Args: []string{"--scrape.interval=10s"}})

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sm := serviceMonitor("bench", fmt.Sprintf("m%03d", i))
		sm.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "app"}}
		pool := fmt.Sprintf("serviceMonitor/bench/m%03d/0", i)
		start := time.Now()
		_, err := bed.ApplyMonitoring(ctx, sm)
		require.NoError(b, err)
		for {
			got, err := poolTargets(ctx, ps, pool)
			require.NoError(b, err)
			if len(got) == 1 {
				break
			}
			require.Less(b, time.Since(start), 30*time.Second, "target of %s never appeared", pool)
			time.Sleep(5 * time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	b.ReportMetric(float64(p(0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p(0.99).Milliseconds()), "p99-ms")
	fmt.Printf("e2e: ServiceMonitor change -> target in /api/v1/targets over %d changes: p50 %s, p99 %s, max %s\n", len(lat), p(0.5), p(0.99), lat[len(lat)-1])
}

// TestAgentAdditionalScrapeConfigs: the PrometheusAgent's
// additionalScrapeConfigs Secret adds raw jobs after the generated ones;
// edits apply live, a broken Secret rejects that setting alone (the
// ServiceMonitor keeps being scraped) and says why in the PrometheusAgent's
// status, and fields promshard ignores are named on stderr, on the status
// page and in that status.
func TestAgentAdditionalScrapeConfigs(t *testing.T) {
	ctx := context.Background()
	bed := startBed(t)
	rcv, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	monitoredService(t, bed, "extra", "app", 1)
	host, err := bed.Netns(ctx)
	require.NoError(t, err)
	static, err := host.AddTargets(ctx, "extra-static", 2, testbed.TargetOptions{})
	require.NoError(t, err)
	jobs := func(name string, targets ...*testbed.Target) string {
		var addrs []string
		for _, tg := range targets {
			addrs = append(addrs, fmt.Sprintf("%q", tg.Addr()))
		}
		return fmt.Sprintf("- job_name: %s\n  scrape_interval: 1s\n  static_configs:\n  - targets: [%s]\n", name, strings.Join(addrs, ", "))
	}
	const key = "prometheus-additional.yaml"
	require.NoError(t, applySecret(ctx, bed, secret("extra", "additional", map[string]string{key: jobs("static-a", static[0])})))
	pa := prometheusAgent("extra", "agent", nil, rcv.WriteURL())
	pa.Spec.AdditionalScrapeConfigs = &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "additional"}, Key: key}
	pa.Spec.Shards = ptr.To[int32](2)
	_, err = bed.ApplyMonitoring(ctx, pa)
	require.NoError(t, err)
	reconciled := func(want string) func(context.Context) error {
		return func(ctx context.Context) error {
			u, err := bed.Dynamic.Resource(schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1alpha1", Resource: "prometheusagents"}).
				Namespace("extra").Get(ctx, "agent", metav1.GetOptions{})
			if err != nil {
				return err
			}
			var got monitoringv1alpha1.PrometheusAgent
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &got); err != nil {
				return err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == monitoringv1.Reconciled {
					if !strings.Contains(c.Message, want) {
						return fmt.Errorf("Reconciled message %q, want %q in it", c.Message, want)
					}
					return nil
				}
			}
			return fmt.Errorf("no Reconciled condition in %+v", got.Status)
		}
	}
	const ignored = "PrometheusAgent fields ignored (pod settings, which promshard takes from its own StatefulSet or DaemonSet and flags: shards)"
	ps := startPromshard(t, bed, testbed.PromshardOptions{Name: "extra", Args: []string{"--prometheus-agent=extra/agent"}})

	eventually(t, 30*time.Second, "the additional job scraped", healthyPool(ps, "static-a", 1))
	eventually(t, 30*time.Second, "the generated job scraped", healthyPool(ps, "serviceMonitor/extra/app/0", 1))
	eventually(t, 30*time.Second, "the additional job's samples at the receiver", queryCount(rcv, `up{job="static-a"} == 1`, 1))
	eventually(t, 30*time.Second, "ignored field in the PrometheusAgent status", reconciled("2 objects selected, 0 rejected; "+ignored))
	page, err := ps.Get(ctx, "/")
	require.NoError(t, err)
	require.Contains(t, string(page), ignored)
	require.Contains(t, ps.Log(), ignored)

	// Edited: the new job replaces the old one.
	require.NoError(t, applySecret(ctx, bed, secret("extra", "additional", map[string]string{key: jobs("static-b", static...)})))
	eventually(t, 30*time.Second, "the edited job scraped", healthyPool(ps, "static-b", 2))
	eventually(t, 10*time.Second, "the old job gone", func(ctx context.Context) error {
		ts, err := poolTargets(ctx, ps, "static-a")
		if err != nil || len(ts) != 0 {
			return fmt.Errorf("static-a has %d targets (err %v)", len(ts), err)
		}
		return nil
	})

	// Broken: rejected alone with Prometheus' reason; the generated job runs on.
	require.NoError(t, applySecret(ctx, bed, secret("extra", "additional", map[string]string{key: "- job_name: static-b\n  static_config: []\n"})))
	eventually(t, 30*time.Second, "the broken Secret in the PrometheusAgent status",
		reconciled(`1 rejected (first: AdditionalScrapeConfigs/extra/additional: additionalScrapeConfigs (secret extra/additional key "prometheus-additional.yaml"): not a list of Prometheus scrape configs: yaml: unmarshal errors:`))
	v, ok, err := ps.Metric(ctx, `promshard_rejected_objects{kind="AdditionalScrapeConfigs"}`)
	require.NoError(t, err)
	require.True(t, ok && v == 1, "promshard_rejected_objects{kind=AdditionalScrapeConfigs} = %v (found %v)", v, ok)
	require.NoError(t, healthyPool(ps, "serviceMonitor/extra/app/0", 1)(ctx))
	page, err = ps.Get(ctx, "/")
	require.NoError(t, err)
	require.Contains(t, string(page), "field static_config not found")

	// Fixed: back.
	require.NoError(t, applySecret(ctx, bed, secret("extra", "additional", map[string]string{key: jobs("static-b", static[1])})))
	eventually(t, 30*time.Second, "the fixed job scraped", healthyPool(ps, "static-b", 1))
	eventually(t, 30*time.Second, "accepted again", reconciled("2 objects selected, 0 rejected"))
	require.False(t, ps.Exited())
}
