package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/promshard/promshard/config"
)

// serviceMonitorWithAuth is a ServiceMonitor whose basic auth names Secret
// secretName.
func serviceMonitorWithAuth(ns, name, secretName string) *unstructured.Unstructured {
	sel := func(key string) map[string]any { return map[string]any{"name": secretName, "key": key} }
	return newUnstructured("monitoring.coreos.com/v1", "ServiceMonitor", ns, name, nil, map[string]any{
		"selector": map[string]any{},
		"endpoints": []any{map[string]any{"port": "web",
			"basicAuth": map[string]any{"username": sel("user"), "password": sel("password")}}},
	})
}

func TestUnreferencedSecretCausesNoRebuild(t *testing.T) {
	ctx := context.Background()
	refs := func(s *config.Snapshot) *config.References { return config.ReferencedObjects(s, config.Options{}) }
	h := startWatcher(t, Options{References: refs}, installed(),
		serviceMonitorWithAuth("default", "web", "auth"),
		secret("default", "auth", "v1"), secret("default", "other", "v1"), secret("apps", "auth", "v1"),
		configMap("default", "ca"),
	)
	h.waitFor(t, "first snapshot", func(*config.Snapshot) bool { return true })
	// Let the start-up signals (each resource's informers syncing) settle.
	time.Sleep(5 * h.w.opts.Debounce)
	select {
	case <-h.w.Snapshots():
	default:
	}
	before := testutil.ToFloat64(h.w.metrics.rebuilds)
	unreferenced := func() float64 {
		return testutil.ToFloat64(h.w.metrics.unreferenced.WithLabelValues(resSecrets)) +
			testutil.ToFloat64(h.w.metrics.unreferenced.WithLabelValues(resConfigMaps))
	}

	for i := range 20 {
		v := string(rune('a' + i))
		_, err := h.kube.CoreV1().Secrets("default").Update(ctx, secret("default", "other", v), metav1.UpdateOptions{})
		require.NoError(t, err)
		_, err = h.kube.CoreV1().Secrets("apps").Update(ctx, secret("apps", "auth", v), metav1.UpdateOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, h.kube.CoreV1().ConfigMaps("default").Delete(ctx, "ca", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return unreferenced() == 41 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(5 * h.w.opts.Debounce) // a rebuild would be due by now
	require.InDelta(t, before, testutil.ToFloat64(h.w.metrics.rebuilds), 0, "unreferenced changes rebuilt")
	select {
	case <-h.w.Snapshots():
		t.Fatal("a snapshot was published for unreferenced changes")
	default:
	}

	// A referenced Secret changes the snapshot.
	_, err := h.kube.CoreV1().Secrets("default").Update(ctx, secret("default", "auth", "v2"), metav1.UpdateOptions{})
	require.NoError(t, err)
	s := h.waitFor(t, "the referenced Secret's update", func(s *config.Snapshot) bool {
		for _, sec := range s.Secrets {
			if sec.Namespace == "default" && sec.Name == "auth" {
				return string(sec.Data["password"]) == "v2"
			}
		}
		return false
	})
	require.Len(t, s.Secrets, 3, "the snapshot still holds every cached Secret")

	// A monitor and the Secret it names, created together: the Secret is
	// in a snapshot even if its event was filtered against the old
	// references.
	_, err = h.dyn.Resource(gvrServiceMonitors).Namespace("apps").Create(ctx, serviceMonitorWithAuth("apps", "new", "fresh"), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = h.kube.CoreV1().Secrets("apps").Create(ctx, secret("apps", "fresh", "v1"), metav1.CreateOptions{})
	require.NoError(t, err)
	h.waitFor(t, "the new monitor's Secret", func(s *config.Snapshot) bool {
		return len(s.ServiceMonitors) == 2 && len(names(s.Secrets)) == 4
	})

	// Once referenced, "other" matters.
	_, err = h.dyn.Resource(gvrServiceMonitors).Namespace("default").Update(ctx, serviceMonitorWithAuth("default", "web", "other"), metav1.UpdateOptions{})
	require.NoError(t, err)
	h.waitFor(t, "the monitor now naming other", func(s *config.Snapshot) bool { return len(s.ServiceMonitors) == 2 })
	_, err = h.kube.CoreV1().Secrets("default").Update(ctx, secret("default", "other", "new"), metav1.UpdateOptions{})
	require.NoError(t, err)
	h.waitFor(t, "other's update", func(s *config.Snapshot) bool {
		for _, sec := range s.Secrets {
			if sec.Name == "other" {
				return string(sec.Data["password"]) == "new"
			}
		}
		return false
	})
}
