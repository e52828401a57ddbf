//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/promshard/promshard/deploy/helm"
	"github.com/promshard/promshard/e2e/testbed"
)

// renderHelm renders deploy/helm/promshard as `helm template promshard -n
// promshard` with values and reads the objects back as the deploy tests do.
func renderHelm(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	dir, err := helm.ChartDir()
	require.NoError(t, err)
	out, err := helm.Render(dir, "promshard", "promshard", values)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "manifests.yaml")
	require.NoError(t, os.WriteFile(path, []byte(out), 0o600))
	objs, err := readDeployManifests(path)
	require.NoError(t, err)
	return objs
}

// TestDeployHelm server-side dry-runs (dryRun=All, strict field validation)
// every object of the chart in both modes against the test bed's API server,
// in the chart's own "restricted" namespace: any Pod Security warning fails.
func TestDeployHelm(t *testing.T) {
	start := time.Now()
	bed := startBed(t)
	c := newDeployClient(t, bed)
	ctx := context.Background()
	sts := renderHelm(t, map[string]any{"mode": "statefulset", "namespace": map[string]any{"create": true}})
	ds := renderHelm(t, map[string]any{"mode": "daemonset"})
	ns := deployObject(t, sts, "Namespace", "promshard")
	w, err := c.create(ctx, ns, true)
	require.NoError(t, err)
	require.Empty(t, w)
	_, err = c.create(ctx, ns, false)
	require.NoError(t, err)
	for name, objs := range map[string][]*unstructured.Unstructured{"statefulset": sts, "daemonset": ds} {
		kinds := map[string]bool{}
		for _, o := range objs {
			kinds[o.GetKind()] = true
			if o.GetKind() == "Namespace" {
				continue
			}
			w, err := c.create(ctx, o, true)
			require.NoError(t, err, "%s: server-side dry-run", name)
			require.Empty(t, w, "%s: %s %s: API server warnings", name, o.GetKind(), o.GetName())
		}
		for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret", "Service",
			"PrometheusAgent", "ServiceMonitor", "PrometheusRule", "ConfigMap"} {
			require.True(t, kinds[k], "%s: no %s rendered", name, k)
		}
		t.Logf("%s: %d objects accepted by server-side dry-run", name, len(objs))
	}
	deployObject(t, sts, "StatefulSet", "promshard")
	deployObject(t, sts, "PodDisruptionBudget", "promshard")
	deployObject(t, ds, "DaemonSet", "promshard")

	t.Run("an upgrade keeps the gossip key", func(t *testing.T) { testHelmKeepsKey(t, bed, c, sts) })
	t.Logf("done in %.1fs", time.Since(start).Seconds())
}

// testHelmKeepsKey: rendered against the cluster, the chart looks up the
// gossip key Secret it created at install and keeps its key; without it,
// every rendering generates a new one.
func testHelmKeepsKey(t *testing.T, bed *testbed.Bed, c *deployClient, installed []*unstructured.Unstructured) {
	ctx := context.Background()
	dir, err := helm.ChartDir()
	require.NoError(t, err)
	const tpl = "promshard/templates/secret-gossip.yaml"
	keyOf := func() string {
		out, err := helm.RenderUpgrade(dir, "promshard", "promshard", nil, bed.RestConfig)
		require.NoError(t, err)
		path := filepath.Join(t.TempDir(), "secret.yaml")
		require.NoError(t, os.WriteFile(path, []byte(out[tpl]), 0o600))
		objs, err := readDeployManifests(path)
		require.NoError(t, err)
		require.Len(t, objs, 1, "%s", out[tpl])
		key, _, _ := unstructured.NestedString(objs[0].Object, "data", "key")
		require.NotEmpty(t, key)
		return key
	}
	require.NotEqual(t, keyOf(), keyOf(), "before install each rendering generates a key")
	secret := deployObject(t, installed, "Secret", "promshard-gossip-key")
	_, err = c.create(ctx, secret, false)
	require.NoError(t, err)
	want, _, _ := unstructured.NestedString(secret.Object, "data", "key")
	require.Equal(t, want, keyOf(), "upgrade must keep the installed key")
	require.Equal(t, want, keyOf())
}
