package config

import (
	"path/filepath"
	"slices"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestReferencedObjectsComplete proves on every golden input that a Secret
// or ConfigMap ReferencedObjects leaves out cannot change the output:
// removing it from the snapshot renders the same configuration and results.
func TestReferencedObjectsComplete(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			snap, opts := loadTestInput(t, in)
			want := renderGolden(t, snap, opts)
			refs := ReferencedObjects(snap, opts)
			require.False(t, refs.All)
			pruned := *snap
			pruned.Secrets = slices.DeleteFunc(slices.Clone(snap.Secrets), func(s *corev1.Secret) bool {
				return !refs.Secret(s.Namespace, s.Name)
			})
			pruned.ConfigMaps = slices.DeleteFunc(slices.Clone(snap.ConfigMaps), func(c *corev1.ConfigMap) bool {
				return !refs.ConfigMap(c.Namespace, c.Name)
			})
			require.Equal(t, string(want), string(renderGolden(t, &pruned, opts)))
		})
	}
}

func TestReferencedObjects(t *testing.T) {
	sm := func(ns, name string, labels map[string]string, secret string) *monitoringv1.ServiceMonitor {
		return &monitoringv1.ServiceMonitor{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec: monitoringv1.ServiceMonitorSpec{Endpoints: []monitoringv1.Endpoint{{
				Port: "web",
				HTTPConfigWithProxyAndTLSFiles: monitoringv1.HTTPConfigWithProxyAndTLSFiles{HTTPConfigWithTLSFiles: monitoringv1.HTTPConfigWithTLSFiles{
					HTTPConfigWithoutTLS: monitoringv1.HTTPConfigWithoutTLS{BasicAuth: &monitoringv1.BasicAuth{
						Username: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "u"},
						Password: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "p"},
					}},
				}},
			}}},
		}
	}
	snap := &Snapshot{ServiceMonitors: []*monitoringv1.ServiceMonitor{
		sm("a", "selected", map[string]string{"team": "x"}, "creds"),
		sm("b", "unselected", nil, "other"),
	}}
	opts := Options{Flags: FlagSettings{MonitorSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}}}
	refs := ReferencedObjects(snap, opts)
	for _, tc := range []struct {
		ns, name string
		want     bool
	}{
		{"a", "creds", true},
		{"b", "creds", false},
		{"b", "other", false}, // only an unselected monitor names it
		{"a", "other", false},
	} {
		require.Equal(t, tc.want, refs.Secret(tc.ns, tc.name), "%s/%s", tc.ns, tc.name)
	}
	require.False(t, refs.ConfigMap("a", "creds"))

	bad := Options{Flags: FlagSettings{ServiceDiscoveryRole: "Nope"}}
	require.True(t, ReferencedObjects(snap, bad).Secret("b", "anything"), "invalid settings: everything may matter")
	var unknown *References
	require.True(t, unknown.ConfigMap("x", "y"))
}
