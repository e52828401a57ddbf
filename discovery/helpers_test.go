package discovery

import (
	"context"
	"sync"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/promshard/promshard/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	gvrServiceMonitors  = monitoringv1.SchemeGroupVersion.WithResource(resServiceMonitors)
	gvrPodMonitors      = monitoringv1.SchemeGroupVersion.WithResource(resPodMonitors)
	gvrProbes           = monitoringv1.SchemeGroupVersion.WithResource(resProbes)
	gvrScrapeConfigs    = monitoringv1alpha1.SchemeGroupVersion.WithResource(resScrapeConfigs)
	gvrPrometheusAgents = monitoringv1alpha1.SchemeGroupVersion.WithResource(resPrometheusAgents)
)

// monitoringV1 and monitoringV1alpha1 are what the discovery endpoint
// returns with prometheus-operator's CRDs installed.
var (
	monitoringV1 = &metav1.APIResourceList{
		GroupVersion: monitoringv1.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{
			{Name: resServiceMonitors, Namespaced: true, Kind: monitoringv1.ServiceMonitorsKind},
			{Name: resServiceMonitors + "/status", Namespaced: true, Kind: monitoringv1.ServiceMonitorsKind},
			{Name: resPodMonitors, Namespaced: true, Kind: monitoringv1.PodMonitorsKind},
			{Name: resProbes, Namespaced: true, Kind: monitoringv1.ProbesKind},
		},
	}
	monitoringV1alpha1 = &metav1.APIResourceList{
		GroupVersion: monitoringv1alpha1.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{
			{Name: resScrapeConfigs, Namespaced: true, Kind: monitoringv1alpha1.ScrapeConfigsKind},
			{Name: resPrometheusAgents, Namespaced: true, Kind: monitoringv1alpha1.PrometheusAgentsKind},
		},
	}
)

// lockedDiscovery wraps the fake discovery client so that a test can change
// the installed CRDs while the Watcher polls (FakeDiscovery reads its
// Resources without a lock).
type lockedDiscovery struct {
	mu   sync.Mutex
	fake *fakediscovery.FakeDiscovery
	err  error
}

func newLockedDiscovery(lists ...*metav1.APIResourceList) *lockedDiscovery {
	d := &lockedDiscovery{fake: &fakediscovery.FakeDiscovery{Fake: &kubefake.NewClientset().Fake}}
	d.set(lists...)
	return d
}

func (d *lockedDiscovery) set(lists ...*metav1.APIResourceList) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fake.Resources = lists
}

// setErr makes every discovery call fail with err; nil restores the lists.
func (d *lockedDiscovery) setErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

func (d *lockedDiscovery) ServerResourcesForGroupVersionWithContext(ctx context.Context, gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return nil, d.err
	}
	return d.fake.ServerResourcesForGroupVersionWithContext(ctx, gv)
}

var _ resourceDiscoverer = (*lockedDiscovery)(nil)

// harness runs a Watcher on fake clients.
type harness struct {
	kube *kubefake.Clientset
	dyn  *dynamicfake.FakeDynamicClient
	disc *lockedDiscovery
	w    *Watcher
	reg  *prometheus.Registry
}

// startWatcher runs a Watcher with opts on fake clients holding objs (typed
// core objects go to the clientset, unstructured ones to the dynamic
// client), discovering CRDs with disc. Run is stopped, and checked to
// return nil, when the test ends.
func startWatcher(t testing.TB, opts Options, disc *lockedDiscovery, objs ...runtime.Object) *harness {
	t.Helper()
	var core, custom []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*unstructured.Unstructured); ok {
			custom = append(custom, o)
		} else {
			core = append(core, o)
		}
	}
	h := &harness{
		kube: kubefake.NewClientset(core...),
		dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
			gvrServiceMonitors:  "ServiceMonitorList",
			gvrPodMonitors:      "PodMonitorList",
			gvrProbes:           "ProbeList",
			gvrScrapeConfigs:    "ScrapeConfigList",
			gvrPrometheusAgents: "PrometheusAgentList",
		}, custom...),
		disc: disc,
		reg:  prometheus.NewRegistry(),
	}
	if opts.Debounce == 0 {
		opts.Debounce = 20 * time.Millisecond
	}
	if opts.CRDCheckInterval == 0 {
		opts.CRDCheckInterval = 50 * time.Millisecond
	}
	opts.Registerer = h.reg
	w, err := newWatcher(opts, clients{kube: h.kube, dyn: h.dyn, disc: h.disc})
	require.NoError(t, err)
	h.w = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})
	return h
}

// waitFor reads snapshots until one satisfies cond, and returns it.
func (h *harness) waitFor(t testing.TB, what string, cond func(*config.Snapshot) bool) *config.Snapshot {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-h.w.Snapshots():
			if cond(s) {
				return s
			}
		case <-timeout:
			t.Fatalf("no snapshot with %s within 10s", what)
		}
	}
}

func newUnstructured(apiVersion, kind, ns, name string, labels map[string]any, spec map[string]any) *unstructured.Unstructured {
	meta := map[string]any{"namespace": ns, "name": name}
	if labels != nil {
		meta["labels"] = labels
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion,
		"kind":       kind,
		"metadata":   meta,
		"spec":       spec,
	}}
}

func serviceMonitor(ns, name string) *unstructured.Unstructured {
	return newUnstructured("monitoring.coreos.com/v1", "ServiceMonitor", ns, name, nil, map[string]any{
		"selector":  map[string]any{"matchLabels": map[string]any{"app": name}},
		"endpoints": []any{map[string]any{"port": "web", "interval": "10s"}},
	})
}

func podMonitor(ns, name string) *unstructured.Unstructured {
	return newUnstructured("monitoring.coreos.com/v1", "PodMonitor", ns, name, nil, map[string]any{
		"selector":            map[string]any{},
		"podMetricsEndpoints": []any{map[string]any{"port": "metrics"}},
	})
}

func probe(ns, name string) *unstructured.Unstructured {
	return newUnstructured("monitoring.coreos.com/v1", "Probe", ns, name, nil, map[string]any{
		"targets": map[string]any{"staticConfig": map[string]any{"static": []any{"example.test:80"}}},
	})
}

func scrapeConfig(ns, name string) *unstructured.Unstructured {
	return newUnstructured("monitoring.coreos.com/v1alpha1", "ScrapeConfig", ns, name, nil, map[string]any{
		"staticConfigs": []any{map[string]any{"targets": []any{"127.0.0.1:9090"}}},
	})
}

func prometheusAgent(ns, name string, externalLabels map[string]any) *unstructured.Unstructured {
	return newUnstructured("monitoring.coreos.com/v1alpha1", "PrometheusAgent", ns, name, nil, map[string]any{
		"externalLabels": externalLabels,
	})
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func secret(ns, name, value string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string][]byte{"password": []byte(value)},
	}
}

func helmRelease(ns, name string) *corev1.Secret {
	s := secret(ns, name, "chart")
	s.Type = helmReleaseSecretType
	return s
}

func configMap(ns, name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string]string{"ca.crt": "-----BEGIN CERTIFICATE-----"},
	}
}

// names returns "<namespace>/<name>" of objs, in order.
func names[T metav1.Object](objs []T) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	return out
}
