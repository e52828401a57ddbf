//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/promshard/promshard/e2e/testbed"
)

// agentEnv is one bed, one receiver and one flags-only promshard replica
// shared by the subtests of TestAgent; each subtest works in its own
// namespace.
type agentEnv struct {
	bed      *testbed.Bed
	rcv      *testbed.Receiver
	netns    *testbed.Host
	loopback *testbed.Host
	ps       *testbed.Promshard
}

const agentNSLabel = "e2e-agent"

func newAgentEnv(t *testing.T) *agentEnv {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e := &agentEnv{bed: startBed(t)}
	var err error
	e.rcv, err = e.bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	e.netns, err = e.bed.Netns(ctx)
	require.NoError(t, err)
	e.loopback, err = e.bed.Loopback(ctx)
	require.NoError(t, err)
	e.ps = startPromshard(t, e.bed, testbed.PromshardOptions{Name: "solo", Args: []string{
		"--remote-write.url=" + e.rcv.WriteURL(),
		"--scrape.interval=1s",
		"--namespace.selector=" + agentNSLabel + "=yes",
		"--external-label=e2e=agent",
	}})
	return e
}

// namespace creates a selected namespace.
func (e *agentEnv) namespace(t *testing.T, name string) {
	require.NoError(t, e.bed.CreateNamespace(context.Background(), name, map[string]string{agentNSLabel: "yes"}))
}

// service serves n new targets in the network namespace behind Service
// ns/name labelled app=name.
func (e *agentEnv) service(t *testing.T, ns, name string, n int, opts testbed.TargetOptions) []*testbed.Target {
	ctx := context.Background()
	ts, err := e.netns.AddTargets(ctx, ns+"-"+name, n, opts)
	require.NoError(t, err)
	require.NoError(t, e.bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: ns, Name: name, Labels: map[string]string{"app": name}, Targets: ts, Pods: true}))
	return ts
}

func serviceMonitor(ns, name string, relabel ...monitoringv1.RelabelConfig) *monitoringv1.ServiceMonitor {
	return &monitoringv1.ServiceMonitor{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: monitoringv1.ServiceMonitorSpec{
			Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Endpoints: []monitoringv1.Endpoint{{Port: "metrics", Interval: "1s", RelabelConfigs: relabel}},
		},
	}
}

func setLabel(name, value string) monitoringv1.RelabelConfig {
	return monitoringv1.RelabelConfig{TargetLabel: name, Replacement: ptr.To(value), Action: "replace"}
}

func TestAgent(t *testing.T) {
	e := newAgentEnv(t)
	t.Run("ServiceMonitor lifecycle", e.testServiceMonitorLifecycle)
	t.Run("namespace labelled later", e.testNamespaceLabelledLater)
	t.Run("basic auth from a Secret, rotated", e.testBasicAuthRotation)
	t.Run("PodMonitor on loopback pods", e.testPodMonitor)
	t.Run("Probe with static targets", e.testProbe)
	t.Run("invalid monitor rejected, others kept", e.testInvalidMonitor)
	t.Run("CA Secret not a certificate rejects only its monitor", e.testUnusableCASecret)
	t.Run("no write refused by the receiver", e.testNoRefusedWrites)
}

// testNoRefusedWrites: after every scenario above delivered its samples, a
// strict receiver (remote write 1.0, no out-of-order window) refused none of
// one member's writes.
func (e *agentEnv) testNoRefusedWrites(t *testing.T) {
	accepted, refused, err := e.rcv.WriteRequests(context.Background())
	require.NoError(t, err)
	require.Positive(t, accepted, "accepted writes (prometheus_http_requests_total{handler=\"/api/v1/write\",code=~\"2..\"})")
	require.Zero(t, refused, "writes refused by the receiver (code 4xx)")
	t.Logf("receiver: %.0f writes accepted, %.0f refused", accepted, refused)
}

func (e *agentEnv) testServiceMonitorLifecycle(t *testing.T) {
	ctx := context.Background()
	e.namespace(t, "sm")
	ts := e.service(t, "sm", "web", 1, testbed.TargetOptions{Series: 3})
	_, err := e.bed.ApplyMonitoring(ctx, serviceMonitor("sm", "web", setLabel("team", "a")))
	require.NoError(t, err)

	// prometheus-operator's labels: job from the Service name, namespace,
	// service, pod and container (from the endpoint's targetRef), endpoint
	// (port name), plus the monitor's own relabeling and the external label.
	sel := fmt.Sprintf(`{job="web",namespace="sm",service="web",pod="web-0",container="target",endpoint="metrics",instance=%q,team="a",e2e="agent"}`, ts[0].Addr())
	eventually(t, 30*time.Second, "up == 1 at the receiver", queryCount(e.rcv, "up"+sel+" == 1", 1))
	eventually(t, 10*time.Second, "the target's own series", queryCount(e.rcv, "testbed_series"+sel, 3))
	eventually(t, 5*time.Second, "scrape pool in /api/v1/targets", healthyPool(e.ps, "serviceMonitor/sm/web/0", 1))

	// Editing the monitor changes the series labels.
	_, err = e.bed.ApplyMonitoring(ctx, serviceMonitor("sm", "web", setLabel("team", "b")))
	require.NoError(t, err)
	eventually(t, 15*time.Second, "relabeled series", queryCount(e.rcv, `up{namespace="sm",team="b"} == 1`, 1))
	eventually(t, 15*time.Second, "old series stale", queryCount(e.rcv, `up{namespace="sm",team="a"}`, 0))

	// Deleting it removes the target and the receiver sees staleness.
	gvr, err := testbed.MonitoringGVR(&monitoringv1.ServiceMonitor{})
	require.NoError(t, err)
	require.NoError(t, e.bed.Dynamic.Resource(gvr).Namespace("sm").Delete(ctx, "web", metav1.DeleteOptions{}))
	eventually(t, 10*time.Second, "target removed", func(ctx context.Context) error {
		ts, err := poolTargets(ctx, e.ps, "serviceMonitor/sm/web/0")
		if err != nil || len(ts) != 0 {
			return fmt.Errorf("targets %v, err %v", ts, err)
		}
		return nil
	})
	eventually(t, 15*time.Second, "staleness at the receiver", queryCount(e.rcv, `{namespace="sm"}`, 0))
}

func (e *agentEnv) testNamespaceLabelledLater(t *testing.T) {
	ctx := context.Background()
	require.NoError(t, e.bed.CreateNamespace(ctx, "late", nil))
	e.service(t, "late", "api", 2, testbed.TargetOptions{})
	_, err := e.bed.ApplyMonitoring(ctx, serviceMonitor("late", "api"))
	require.NoError(t, err)
	time.Sleep(2 * time.Second) // let promshard see the monitor: it must ignore it
	ts, err := poolTargets(ctx, e.ps, "serviceMonitor/late/api/0")
	require.NoError(t, err)
	require.Empty(t, ts, "monitor in an unselected namespace was scraped")

	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"yes"}}}`, agentNSLabel)
	_, err = e.bed.Kube.CoreV1().Namespaces().Patch(ctx, "late", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	require.NoError(t, err)
	eventually(t, 15*time.Second, "monitor picked up after labelling", healthyPool(e.ps, "serviceMonitor/late/api/0", 2))
	eventually(t, 15*time.Second, "series at the receiver", queryCount(e.rcv, `up{namespace="late"} == 1`, 2))
}

func (e *agentEnv) testBasicAuthRotation(t *testing.T) {
	ctx := context.Background()
	e.namespace(t, "auth")
	ts := e.service(t, "auth", "secure", 1, testbed.TargetOptions{BasicAuthUser: "scraper", BasicAuthPassword: "first"})
	require.NoError(t, applySecret(ctx, e.bed, secret("auth", "creds", map[string]string{"user": "scraper", "password": "first"})))
	sm := serviceMonitor("auth", "secure")
	sm.Spec.Endpoints[0].BasicAuth = &monitoringv1.BasicAuth{
		Username: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "user"},
		Password: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"},
	}
	_, err := e.bed.ApplyMonitoring(ctx, sm)
	require.NoError(t, err)
	eventually(t, 30*time.Second, "authenticated scrape", healthyPool(e.ps, "serviceMonitor/auth/secure/0", 1))

	// Rotate: the target now wants a new password, then the Secret follows.
	require.NoError(t, e.netns.SetAuth(ctx, ts[0], "scraper", "second", ""))
	eventually(t, 10*time.Second, "old password refused", func(ctx context.Context) error {
		got, err := poolTargets(ctx, e.ps, "serviceMonitor/auth/secure/0")
		if err != nil || len(got) != 1 || got[0].Health != "down" {
			return fmt.Errorf("want one down target, got %v (err %v)", got, err)
		}
		return nil
	})
	require.NoError(t, applySecret(ctx, e.bed, secret("auth", "creds", map[string]string{"user": "scraper", "password": "second"})))
	eventually(t, 15*time.Second, "rotated Secret applied without restart", healthyPool(e.ps, "serviceMonitor/auth/secure/0", 1))
	require.False(t, e.ps.Exited())
}

func (e *agentEnv) testPodMonitor(t *testing.T) {
	ctx := context.Background()
	e.namespace(t, "pods")
	for i := 0; i < 2; i++ {
		tgt, err := e.loopback.AddTarget(ctx, fmt.Sprintf("pod-%d", i), testbed.TargetOptions{})
		require.NoError(t, err)
		_, err = e.bed.CreatePod(ctx, testbed.PodSpec{Namespace: "pods", Name: fmt.Sprintf("worker-%d", i), Labels: map[string]string{"app": "worker"}, Target: tgt})
		require.NoError(t, err)
	}
	pm := &monitoringv1.PodMonitor{
		ObjectMeta: metav1.ObjectMeta{Namespace: "pods", Name: "worker"},
		Spec: monitoringv1.PodMonitorSpec{
			Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": "worker"}},
			PodMetricsEndpoints: []monitoringv1.PodMetricsEndpoint{{Port: ptr.To("metrics"), Interval: "1s"}},
		},
	}
	_, err := e.bed.ApplyMonitoring(ctx, pm)
	require.NoError(t, err)
	eventually(t, 30*time.Second, "pods scraped", healthyPool(e.ps, "podMonitor/pods/worker/0", 2))
	eventually(t, 15*time.Second, "pod labels at the receiver", queryCount(e.rcv, `up{namespace="pods",pod=~"worker-.",job="pods/worker"} == 1`, 2))
}

func (e *agentEnv) testProbe(t *testing.T) {
	ctx := context.Background()
	e.namespace(t, "probes")
	prober, err := e.loopback.AddTarget(ctx, "prober", testbed.TargetOptions{})
	require.NoError(t, err)
	probe := &monitoringv1.Probe{
		ObjectMeta: metav1.ObjectMeta{Namespace: "probes", Name: "sites"},
		Spec: monitoringv1.ProbeSpec{
			ProberSpec: monitoringv1.ProberSpec{URL: prober.Addr(), Path: "/metrics"},
			Module:     "http_2xx",
			Interval:   "1s",
			Targets: monitoringv1.ProbeTargets{StaticConfig: &monitoringv1.ProbeTargetStaticConfig{
				Targets: []string{"https://example.invalid", "https://example2.invalid"},
				Labels:  map[string]string{"site": "demo"},
			}},
		},
	}
	_, err = e.bed.ApplyMonitoring(ctx, probe)
	require.NoError(t, err)
	eventually(t, 30*time.Second, "probe targets scraped through the prober", healthyPool(e.ps, "probe/probes/sites", 2))
	eventually(t, 15*time.Second, "probe series", queryCount(e.rcv, `up{job="probe/probes/sites",instance="https://example.invalid",site="demo"} == 1`, 1))
}

func (e *agentEnv) testInvalidMonitor(t *testing.T) {
	ctx := context.Background()
	e.namespace(t, "bad")
	e.service(t, "bad", "broken", 1, testbed.TargetOptions{})
	e.service(t, "bad", "fine", 1, testbed.TargetOptions{})
	broken := serviceMonitor("bad", "broken", monitoringv1.RelabelConfig{SourceLabels: []monitoringv1.LabelName{"__address__"}, Regex: "([unclosed", Action: "keep"})
	_, err := e.bed.ApplyMonitoring(ctx, broken)
	require.NoError(t, err)
	_, err = e.bed.ApplyMonitoring(ctx, serviceMonitor("bad", "fine"))
	require.NoError(t, err)

	eventually(t, 30*time.Second, "the valid monitor is scraped", healthyPool(e.ps, "serviceMonitor/bad/fine/0", 1))
	eventually(t, 10*time.Second, "rejection metric", func(ctx context.Context) error {
		v, ok, err := e.ps.Metric(ctx, `promshard_rejected_objects{kind="ServiceMonitor"}`)
		if err != nil || !ok || v != 1 {
			return fmt.Errorf("value %v found %v err %v", v, ok, err)
		}
		return nil
	})
	log := e.ps.Log()
	require.Contains(t, log, "object rejected")
	require.Contains(t, log, "name=broken")
	// Every other monitor kept being scraped.
	for _, pool := range []string{"serviceMonitor/late/api/0", "serviceMonitor/auth/secure/0", "podMonitor/pods/worker/0"} {
		ts, err := poolTargets(ctx, e.ps, pool)
		require.NoError(t, err)
		require.NotEmpty(t, ts, pool)
	}
	ts, err := poolTargets(ctx, e.ps, "serviceMonitor/bad/broken/0")
	require.NoError(t, err)
	require.Empty(t, ts)
}

// TestAgentSIGTERM checks a graceful stop exits 0.
func TestAgentSIGTERM(t *testing.T) {
	bed := startBed(t)
	ps := startPromshard(t, bed, testbed.PromshardOptions{Name: "term"})
	ps.Signal(syscall.SIGTERM)
	require.Equal(t, 0, ps.Wait(30*time.Second), ps.LogTail(20))
	require.True(t, strings.Contains(ps.Log(), "promshard stopped"), ps.LogTail(20))
}
