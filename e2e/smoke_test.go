//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/promshard/promshard/e2e/testbed"
)

// TestSmoke proves each piece of the test bed once.
func TestSmoke(t *testing.T) {
	bed := startBed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	require.NoError(t, bed.CreateNamespace(ctx, "smoke", nil))

	t.Run("CRDs served", func(t *testing.T) { testCRDsServed(ctx, t, bed) })
	t.Run("ServiceMonitor accepted", func(t *testing.T) { testServiceMonitor(ctx, t, bed) })
	t.Run("netns targets answer", func(t *testing.T) { testNetnsTargets(ctx, t, bed) })
	t.Run("loopback pod target", func(t *testing.T) { testPodTarget(ctx, t, bed) })
	t.Run("receiver round trip", func(t *testing.T) { testReceiver(ctx, t, bed) })
	t.Run("cortex ruler API", func(t *testing.T) { testCortexRuler(t, bed) })
}

func testCRDsServed(_ context.Context, t *testing.T, bed *testbed.Bed) {
	want := map[string][]string{
		"monitoring.coreos.com/v1":       {"servicemonitors", "podmonitors", "probes"},
		"monitoring.coreos.com/v1alpha1": {"scrapeconfigs", "prometheusagents"},
	}
	for gv, resources := range want {
		list, err := bed.Kube.Discovery().ServerResourcesForGroupVersion(gv)
		require.NoError(t, err, gv)
		var served []string
		for _, r := range list.APIResources {
			served = append(served, r.Name)
		}
		for _, r := range resources {
			require.Contains(t, served, r, gv)
		}
	}
}

func testServiceMonitor(ctx context.Context, t *testing.T, bed *testbed.Bed) {
	sm := &monitoringv1.ServiceMonitor{
		ObjectMeta: metav1.ObjectMeta{Namespace: "smoke", Name: "app"},
		Spec: monitoringv1.ServiceMonitorSpec{
			Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "smoke"}},
			Endpoints: []monitoringv1.Endpoint{{Port: "metrics", Interval: "1s"}},
		},
	}
	_, err := bed.ApplyMonitoring(ctx, sm)
	require.NoError(t, err)

	gvr, err := testbed.MonitoringGVR(sm)
	require.NoError(t, err)
	u, err := bed.Dynamic.Resource(gvr).Namespace("smoke").Get(ctx, "app", metav1.GetOptions{})
	require.NoError(t, err)
	var got monitoringv1.ServiceMonitor
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &got))
	require.Equal(t, sm.Spec.Endpoints[0].Port, got.Spec.Endpoints[0].Port)
	require.Equal(t, sm.Spec.Selector, got.Spec.Selector)

	// The CRD schema is enforced: an unknown scheme is refused.
	bad := sm.DeepCopy()
	bad.Name = "bad-scheme"
	bad.Spec.Endpoints[0].Scheme = ptr.To(monitoringv1.Scheme("ftp"))
	_, err = bed.ApplyMonitoring(ctx, bad)
	require.ErrorContains(t, err, "scheme")
}

func testNetnsTargets(ctx context.Context, t *testing.T, bed *testbed.Bed) {
	h, err := bed.Netns(ctx)
	require.NoError(t, err)
	plain, err := h.AddTarget(ctx, "plain", testbed.TargetOptions{Series: 3})
	require.NoError(t, err)
	basic, err := h.AddTarget(ctx, "basic", testbed.TargetOptions{BasicAuthUser: "u", BasicAuthPassword: "p"})
	require.NoError(t, err)
	bearer, err := h.AddTarget(ctx, "bearer", testbed.TargetOptions{BearerToken: "s3cret"})
	require.NoError(t, err)
	secure, err := h.AddTarget(ctx, "secure", testbed.TargetOptions{TLS: true, NodeName: "node-a"})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(plain.IP.String(), "198.1"), plain.IP.String())

	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(bed.CACertPEM()))
	client := &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()

	cases := []struct {
		name     string
		target   *testbed.Target
		auth     func(*http.Request)
		wantCode int
	}{
		{"plain", plain, nil, http.StatusOK},
		{"basic auth ok", basic, func(r *http.Request) { r.SetBasicAuth("u", "p") }, http.StatusOK},
		{"basic auth wrong", basic, func(r *http.Request) { r.SetBasicAuth("u", "x") }, http.StatusUnauthorized},
		{"basic auth missing", basic, nil, http.StatusUnauthorized},
		{"bearer ok", bearer, func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, http.StatusOK},
		{"bearer missing", bearer, nil, http.StatusUnauthorized},
		{"tls verified by the bed CA", secure, nil, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := fetch(ctx, t, client, tc.target.URL(), tc.auth)
			require.Equal(t, tc.wantCode, code, body)
			if code == http.StatusOK {
				require.Contains(t, body, `testbed_target_info{target="`+tc.target.Name+`"} 1`)
			}
		})
	}
	_, body := fetch(ctx, t, client, plain.URL(), nil)
	require.Equal(t, 3, strings.Count(body, "testbed_series{"), body)

	// The Service, EndpointSlice and Endpoints carry the namespace addresses.
	targets := []*testbed.Target{plain, basic, bearer, secure}
	require.NoError(t, bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "smoke", Name: "app",
		Labels: map[string]string{"app": "smoke"}, Targets: targets}))
	eps, err := bed.Kube.DiscoveryV1().EndpointSlices("smoke").List(ctx, metav1.ListOptions{
		LabelSelector: "kubernetes.io/service-name=app"})
	require.NoError(t, err)
	require.Len(t, eps.Items, 1)
	require.Len(t, eps.Items[0].Endpoints, 4)
	require.Equal(t, "node-a", ptr.Deref(eps.Items[0].Endpoints[3].NodeName, ""))
	ep, err := bed.Kube.CoreV1().Endpoints("smoke").Get(ctx, "app", metav1.GetOptions{}) //nolint:staticcheck
	require.NoError(t, err)
	require.Len(t, ep.Subsets[0].Addresses, 4)

	// A removed target refuses connections; its stats show the scrapes so far.
	stats, err := h.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, stats["plain"].Scrapes)
	require.EqualValues(t, 2, stats["basic"].Rejected)
	require.NoError(t, h.RemoveTarget(ctx, "plain"))
	_, err = client.Get(plain.URL())
	require.Error(t, err)
	require.NoError(t, bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "smoke", Name: "app",
		Labels: map[string]string{"app": "smoke"}, Targets: targets[1:]}))
	eps, err = bed.Kube.DiscoveryV1().EndpointSlices("smoke").List(ctx, metav1.ListOptions{
		LabelSelector: "kubernetes.io/service-name=app"})
	require.NoError(t, err)
	require.Len(t, eps.Items[0].Endpoints, 3)
}

func testPodTarget(ctx context.Context, t *testing.T, bed *testbed.Bed) {
	h, err := bed.Loopback(ctx)
	require.NoError(t, err)
	tg, err := h.AddTarget(ctx, "pod-0", testbed.TargetOptions{NodeName: "node-b"})
	require.NoError(t, err)
	require.True(t, tg.IP.IsLoopback())
	pod, err := bed.CreatePod(ctx, testbed.PodSpec{Namespace: "smoke", Name: "pod-0",
		Labels: map[string]string{"app": "smoke"}, Target: tg})
	require.NoError(t, err)
	require.Equal(t, corev1.PodRunning, pod.Status.Phase)
	require.Equal(t, tg.IP.String(), pod.Status.PodIP)
	require.Equal(t, "node-b", pod.Spec.NodeName)
	code, body := fetch(ctx, t, http.DefaultClient, tg.URL(), nil)
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, bed.DeletePod(ctx, "smoke", "pod-0"))
}

func testReceiver(ctx context.Context, t *testing.T, bed *testbed.Bed) {
	r, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, testbed.Push(ctx, r.WriteURL(), []prompb.TimeSeries{
		testbed.Sample(map[string]string{"__name__": "smoke_sample", "job": "smoke"}, 42, now),
	}))
	vec, err := r.Query(ctx, `smoke_sample{job="smoke"}`, now)
	require.NoError(t, err)
	require.Len(t, vec, 1)
	require.Equal(t, model.SampleValue(42), vec[0].Value)
	n, err := r.SeriesCount(ctx, `{job="smoke"}`, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// Stopped and started again, the receiver keeps its data and port.
	r.Stop()
	require.NoError(t, r.Start(ctx))
	vec, err = r.Query(ctx, `smoke_sample{job="smoke"}`, now)
	require.NoError(t, err)
	require.Len(t, vec, 1)
}

func testCortexRuler(t *testing.T, bed *testbed.Bed) {
	// Cortex is built on first use (~3 min cold): its own deadline, then
	// one for the test.
	buildCtx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	_, err := testbed.CortexBinary(buildCtx, t.Logf)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	c, err := bed.StartCortex(ctx, testbed.CortexOptions{})
	require.NoError(t, err)
	const ns = "promshard/ns/obj"
	group := rulefmt.RuleGroup{Name: "g", Interval: model.Duration(30 * time.Second), Rules: []rulefmt.Rule{
		{Record: "job:up:sum", Expr: "sum by (job) (up)", Labels: map[string]string{"team": "a"}},
	}}
	require.NoError(t, c.SetRuleGroup(ctx, "t1", ns, group))
	got, err := c.RuleGroups(ctx, "t1")
	require.NoError(t, err)
	require.Equal(t, map[string][]rulefmt.RuleGroup{ns: {group}}, got)
	got, err = c.RuleGroups(ctx, "t2")
	require.NoError(t, err)
	require.Empty(t, got, "another tenant's rule groups")

	require.NoError(t, c.DeleteRuleGroup(ctx, "t1", ns, "g"))
	got, err = c.RuleGroups(ctx, "t1")
	require.NoError(t, err)
	require.Empty(t, got)

	// Stopped and started again, Cortex keeps its ports and rule store.
	require.NoError(t, c.SetRuleGroup(ctx, "t1", ns, group))
	c.Stop()
	require.NoError(t, c.Start(ctx))
	got, err = c.RuleGroups(ctx, "t1")
	require.NoError(t, err)
	require.Equal(t, map[string][]rulefmt.RuleGroup{ns: {group}}, got)
}

func fetch(ctx context.Context, t *testing.T, c *http.Client, url string, auth func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	if auth != nil {
		auth(req)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}
