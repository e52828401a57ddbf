package discovery

import (
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/promshard/promshard/config"
)

func TestDesiredCondition(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := t0.Add(time.Hour)
	accepted := config.Result{Kind: config.KindServiceMonitor, Namespace: "a", Name: "api", Generation: 3, Accepted: true}
	rejected := config.Result{Kind: config.KindServiceMonitor, Namespace: "a", Name: "api", Generation: 4, Reason: "endpoint 0: invalid regex \"(\""}
	synced := accepted
	synced.Message = "2 rule groups synced to ruler namespace promshard/a/api"
	wasTrue := &monitoringv1.ConfigResourceCondition{Type: monitoringv1.Accepted, Status: monitoringv1.ConditionTrue,
		LastTransitionTime: metav1.NewTime(t0), Reason: ReasonAccepted, Message: "3 targets, 3 up", ObservedGeneration: 3}
	for _, tc := range []struct {
		name     string
		res      config.Result
		health   *TargetHealth
		prev     *monitoringv1.ConfigResourceCondition
		status   monitoringv1.ConditionStatus
		reason   string
		message  string
		kept     bool // transition time kept from prev
		compared conditionChange
	}{
		{"new, healthy", accepted, &TargetHealth{Targets: 12, Up: 12}, nil, monitoringv1.ConditionTrue, ReasonAccepted, "12 targets, 12 up", false, changeVerdict},
		{"one down", accepted, &TargetHealth{Targets: 12, Up: 11, Down: "10.0.3.7:8080 connection refused"}, wasTrue,
			monitoringv1.ConditionTrue, ReasonAccepted, "12 targets, 11 up; down: 10.0.3.7:8080 connection refused", true, changeHealth},
		{"selects nothing", accepted, &TargetHealth{}, wasTrue, monitoringv1.ConditionTrue, ReasonAccepted,
			"0 targets: no target is discovered for the object's selectors and endpoints", true, changeHealth},
		{"unchanged", accepted, &TargetHealth{Targets: 3, Up: 3}, wasTrue, monitoringv1.ConditionTrue, ReasonAccepted, "3 targets, 3 up", true, changeNone},
		{"health unknown keeps message", accepted, nil, wasTrue, monitoringv1.ConditionTrue, ReasonAccepted, "3 targets, 3 up", true, changeNone},
		{"health unknown, new", accepted, nil, nil, monitoringv1.ConditionTrue, ReasonAccepted, "accepted; target counts are not known yet", false, changeVerdict},
		{"outcome message wins over health", synced, &TargetHealth{Targets: 3, Up: 3}, wasTrue, monitoringv1.ConditionTrue, ReasonAccepted, synced.Message, true, changeHealth},
		{"rejected", rejected, &TargetHealth{Targets: 3, Up: 3}, wasTrue, monitoringv1.ConditionFalse, ReasonInvalidConfiguration, rejected.Reason, false, changeVerdict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := desiredCondition(tc.res, tc.health, tc.prev, now)
			require.Equal(t, monitoringv1.Accepted, got.Type)
			require.Equal(t, tc.status, got.Status)
			require.Equal(t, tc.reason, got.Reason)
			require.Equal(t, tc.message, got.Message)
			require.Equal(t, tc.res.Generation, got.ObservedGeneration)
			if tc.kept {
				require.True(t, got.LastTransitionTime.Equal(&tc.prev.LastTransitionTime))
			} else {
				require.True(t, got.LastTransitionTime.Time.Equal(now))
			}
			require.Equal(t, tc.compared, compareCondition(tc.prev, got))
		})
	}
	t.Run("new generation is a verdict change", func(t *testing.T) {
		res := accepted
		res.Generation = 4
		got := desiredCondition(res, &TargetHealth{Targets: 3, Up: 3}, wasTrue, now)
		require.Equal(t, changeVerdict, compareCondition(wasTrue, got))
	})
	t.Run("long reasons are cut", func(t *testing.T) {
		res := rejected
		res.Reason = string(make([]byte, 5000))
		require.Len(t, desiredCondition(res, nil, nil, now).Message, maxMessage)
	})
}

// Counts a member did not give in its last answer are named in the
// message, with the time of the answer they come from, so that the message
// stays the same while the member stays unreachable; only the objects that
// member had targets of say so.
func TestClusterHealthOf(t *testing.T) {
	as := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	api := config.ObjectKey{Kind: config.KindServiceMonitor, Namespace: "a", Name: "api"}
	web := config.ObjectKey{Kind: config.KindServiceMonitor, Namespace: "a", Name: "web"}
	none := config.ObjectKey{Kind: config.KindPodMonitor, Namespace: "a", Name: "none"}
	stale := ClusterHealth{Objects: map[config.ObjectKey]*TargetHealth{
		api: {Targets: 4, Up: 3, Down: "10.0.0.3:80 connection refused", Stale: []StaleCounts{{Member: "b", As: as}}},
		web: {Targets: 2, Up: 2},
	}}
	missing := stale
	missing.Missing = []string{"c", "d"}
	for _, tc := range []struct {
		name   string
		health ClusterHealth
		key    config.ObjectKey
		want   string
	}{
		{"stale member's object", stale, api, "4 targets, 3 up; down: 10.0.0.3:80 connection refused; stale: counts of member b as of 2026-01-02T03:04:05Z"},
		{"other objects stay current", stale, web, "2 targets, 2 up"},
		{"no targets anywhere", stale, none, "0 targets: no target is discovered for the object's selectors and endpoints"},
		{"missing member, object with targets", missing, web, "2 targets, 2 up; not counted: targets of member c, d (no answer yet)"},
		{"missing member, object without targets", missing, none, "0 targets, 0 up; not counted: targets of member c, d (no answer yet)"},
		{"missing and stale", missing, api, "4 targets, 3 up; down: 10.0.0.3:80 connection refused; stale: counts of member b as of 2026-01-02T03:04:05Z; not counted: targets of member c, d (no answer yet)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.health.of(tc.key).message())
		})
	}
	require.Nil(t, stale.Objects[web].Missing, "of does not change the report")
}

func TestAgentStatus(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := t0.Add(time.Hour)
	a := &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Generation: 7}}
	a.Status.Conditions = []monitoringv1.Condition{{Type: monitoringv1.Available, Status: monitoringv1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0)}}
	results := []config.Result{
		{Kind: config.KindServiceMonitor, Namespace: "a", Name: "ok", Accepted: true},
		{Kind: config.KindPodMonitor, Namespace: "a", Name: "bad", Reason: "invalid regex"},
	}
	st := agentStatus(a, results, 3, 3, "", now)
	require.EqualValues(t, 3, st.Replicas)
	require.EqualValues(t, 3, st.AvailableReplicas)
	require.EqualValues(t, 0, st.UnavailableReplicas)
	require.Equal(t, monitoringv1.ConditionTrue, st.Conditions[0].Status)
	require.True(t, st.Conditions[0].LastTransitionTime.Equal(&a.Status.Conditions[0].LastTransitionTime), "unchanged status keeps its transition time")
	require.Equal(t, "2 objects selected, 1 rejected (first: PodMonitor/a/bad: invalid regex)", st.Conditions[1].Message)
	require.EqualValues(t, 7, st.Conditions[1].ObservedGeneration)

	st = agentStatus(a, results, 3, 2, "", now)
	require.Equal(t, monitoringv1.ConditionDegraded, st.Conditions[0].Status)
	require.True(t, st.Conditions[0].LastTransitionTime.Time.Equal(now))
	require.Equal(t, monitoringv1.ConditionFalse, agentStatus(a, results, 1, 0, "", now).Conditions[0].Status)

	// A cluster over --sharding.max-series-per-member is Degraded and says so.
	over := agentStatus(a, results, 3, 3, "series exceed 1000 per member: 4 members needed", now).Conditions[0]
	require.Equal(t, monitoringv1.ConditionDegraded, over.Status)
	require.Equal(t, "SeriesOverLimit", over.Reason)
	require.Equal(t, "3 of 3 members own targets; series exceed 1000 per member: 4 members needed", over.Message)

	// Fields promshard does not apply are named in the Reconciled message.
	a.Spec.Shards = ptr.To[int32](2)
	a.Spec.TSDB = &monitoringv1.TSDBSpec{}
	a.Spec.TSDB.OutOfOrderTimeWindow = ptr.To(monitoringv1.Duration("5m"))
	require.Equal(t, "2 objects selected, 1 rejected (first: PodMonitor/a/bad: invalid regex); PrometheusAgent fields ignored "+
		"(not implemented by promshard: tsdb; pod settings, which promshard takes from its own StatefulSet or DaemonSet and flags: shards)",
		agentStatus(a, results, 3, 3, "", now).Conditions[1].Message)
}

func TestNewStatusWriterValidates(t *testing.T) {
	owns := func(string) bool { return true }
	for _, agent := range []string{"", "ns", "/name", "ns/", "ns/a/b"} {
		_, err := NewStatusWriter(StatusOptions{RESTConfig: &rest.Config{Host: "https://127.0.0.1:1"}, Agent: agent, Owns: owns})
		require.ErrorContains(t, err, "want <namespace>/<name>", agent)
	}
	_, err := NewStatusWriter(StatusOptions{RESTConfig: &rest.Config{Host: "https://127.0.0.1:1"}, Agent: "ns/a"})
	require.ErrorContains(t, err, "required")
	w, err := NewStatusWriter(StatusOptions{RESTConfig: &rest.Config{Host: "https://127.0.0.1:1"}, Agent: "mon/agent", Owns: owns})
	require.NoError(t, err)
	require.Equal(t, "promshard/mon/agent", w.fieldManager)
	require.Equal(t, DefaultHealthInterval, w.opts.HealthInterval)
}
