package discovery

import (
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

func TestChanged(t *testing.T) {
	sm := func(rv string, gen int64, labels map[string]string) *monitoringv1.ServiceMonitor {
		return &monitoringv1.ServiceMonitor{ObjectMeta: metav1.ObjectMeta{
			Name: "web", ResourceVersion: rv, Generation: gen, Labels: labels,
		}}
	}
	sec := func(rv string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", ResourceVersion: rv, Generation: 1}}
	}
	nsObj := func(rv string, labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", ResourceVersion: rv, Labels: labels}}
	}
	withAnnotation := sm("2", 1, nil)
	withAnnotation.Annotations = map[string]string{"a": "b"}
	deleting := sm("2", 1, nil)
	deleting.DeletionTimestamp = &metav1.Time{}
	invalid := &unstructured.Unstructured{}
	invalid.SetName("web")
	invalid.SetResourceVersion("1")
	invalid.SetGeneration(1)

	tests := []struct {
		name     string
		old, new any
		want     bool
	}{
		{name: "resync of a Secret", old: sec("1"), new: sec("1"), want: false},
		{name: "Secret changed", old: sec("1"), new: sec("2"), want: true},
		{name: "resync of a monitor", old: sm("1", 1, nil), new: sm("1", 1, nil), want: false},
		{name: "monitor spec changed", old: sm("1", 1, nil), new: sm("2", 2, nil), want: true},
		{name: "monitor status only", old: sm("1", 1, nil), new: sm("2", 1, nil), want: false},
		{name: "monitor labels", old: sm("1", 1, nil), new: sm("2", 1, map[string]string{"a": "b"}), want: true},
		{name: "monitor annotations", old: sm("1", 1, nil), new: withAnnotation, want: true},
		{name: "monitor being deleted", old: sm("1", 1, nil), new: deleting, want: true},
		{name: "no generation set", old: sm("1", 0, nil), new: sm("2", 0, nil), want: true},
		{name: "invalid becomes valid", old: invalid, new: sm("2", 1, nil), want: true},
		{name: "valid becomes invalid", old: sm("0", 1, nil), new: invalid, want: true},
		{name: "not an object", old: "x", new: "y", want: true},
		{name: "no resourceVersion", old: sec(""), new: sec(""), want: true},
		{name: "Namespace labels", old: nsObj("1", nil), new: nsObj("2", map[string]string{"team": "a"}), want: true},
		{name: "Namespace status or annotations only", old: nsObj("1", map[string]string{"team": "a"}), new: nsObj("2", map[string]string{"team": "a"}), want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, changed(tc.old, tc.new))
		})
	}
}

func TestTransform(t *testing.T) {
	w, err := newWatcher(Options{}, clients{})
	require.NoError(t, err)
	var smKind, secretKind *kind
	for _, k := range w.kinds {
		switch k.resource {
		case resServiceMonitors:
			smKind = k
		case resSecrets:
			secretKind = k
		}
	}
	require.NotNil(t, smKind)
	require.NotNil(t, secretKind)

	t.Run("secret", func(t *testing.T) {
		s := secret("ns", "s", "x")
		s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
		s.Annotations = map[string]string{lastAppliedAnnotation: `{"data":{"password":"eA=="}}`, "keep": "me"}
		out, err := w.transform(secretKind)(s)
		require.NoError(t, err)
		got := out.(*corev1.Secret)
		require.Nil(t, got.ManagedFields)
		require.Nil(t, got.Annotations, "nothing reads a Secret's annotations")
		require.Equal(t, []byte("x"), got.Data["password"])
		require.Equal(t, "ns/s", got.Namespace+"/"+got.Name)
		again, err := w.transform(secretKind)(got)
		require.NoError(t, err)
		require.Equal(t, got, again)
	})

	t.Run("namespace: name and labels", func(t *testing.T) {
		ns := namespace("team", map[string]string{"tier": "prod"})
		ns.Annotations = map[string]string{"a": "b"}
		ns.Status.Phase = corev1.NamespaceTerminating
		var nsKind *kind
		for _, k := range w.kinds {
			if k.resource == resNamespaces {
				nsKind = k
			}
		}
		out, err := w.transform(nsKind)(ns)
		require.NoError(t, err)
		require.Equal(t, namespace("team", map[string]string{"tier": "prod"}), out)
	})

	t.Run("monitor converted, idempotent", func(t *testing.T) {
		u := serviceMonitor("ns", "web")
		u.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl"}})
		out, err := w.transform(smKind)(u)
		require.NoError(t, err)
		got, ok := out.(*monitoringv1.ServiceMonitor)
		require.True(t, ok, "got %T", out)
		require.Equal(t, "web", got.Name)
		require.Nil(t, got.ManagedFields)
		require.Equal(t, "10s", string(got.Spec.Endpoints[0].Interval))
		again, err := w.transform(smKind)(got)
		require.NoError(t, err)
		require.Same(t, got, again)
	})

	t.Run("invalid monitor kept unstructured", func(t *testing.T) {
		u := serviceMonitor("ns", "bad")
		u.Object["spec"].(map[string]any)["endpoints"] = map[string]any{"port": int64(1)}
		out, err := w.transform(smKind)(u)
		require.NoError(t, err, "a transform error would stop the informer")
		require.IsType(t, &unstructured.Unstructured{}, out)
	})

	t.Run("tombstone untouched", func(t *testing.T) {
		tomb := cache.DeletedFinalStateUnknown{Key: "ns/web", Obj: serviceMonitor("ns", "web")}
		out, err := w.transform(smKind)(tomb)
		require.NoError(t, err)
		require.Equal(t, tomb, out)
	})
}
