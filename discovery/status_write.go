package discovery

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/promshard/promshard/config"
)

// writeTimeout bounds one status or Event write.
const writeTimeout = 10 * time.Second

// syncObject writes one object's binding if this member owns it and it
// differs from what runs.
func (w *StatusWriter) syncObject(ctx context.Context, o monitoredObject, owned bool, results map[config.ObjectKey]config.Result, now time.Time) {
	if !owned {
		delete(w.written, o.key) // another member writes it now
		delete(w.events, o.key)
		return
	}
	current := findBinding(o.bindings, w.binding())
	res, selected := results[o.key]
	if !selected {
		delete(w.events, o.key)
		if current == nil {
			delete(w.written, o.key)
			return
		}
		if w.apply(ctx, o, nil) {
			delete(w.written, o.key)
		}
		return
	}
	prev := acceptedOf(current)
	if last, ok := w.written[o.key]; ok {
		prev = &last.cond // the informer may not have seen our last write yet
	}
	var health *TargetHealth
	if w.health != nil && res.Accepted && res.Message == "" {
		health = w.health.of(o.key)
	}
	want := desiredCondition(res, health, prev, now)
	switch compareCondition(prev, want) {
	case changeNone:
		return
	case changeHealth:
		// Only target counts are rate limited; an outcome message (a rule
		// sync) is written when it changes.
		if last, ok := w.written[o.key]; ok && res.Message == "" && now.Sub(last.at) < w.opts.HealthInterval {
			return
		}
	}
	b := w.binding()
	b.Conditions = []monitoringv1.ConfigResourceCondition{want}
	if w.apply(ctx, o, &b) {
		w.written[o.key] = writtenCondition{cond: want, at: now}
	}
	if !res.Accepted && w.events[o.key] != res.Reason {
		if w.warn(ctx, o, res.Reason, now) {
			w.events[o.key] = res.Reason
		}
	} else if res.Accepted {
		delete(w.events, o.key)
	}
}

// apply server-side applies the object's status with binding b as the only
// entry this writer owns; nil removes the entry. It reports success.
func (w *StatusWriter) apply(ctx context.Context, o monitoredObject, b *monitoringv1.WorkloadBinding) bool {
	// An empty list (not an empty status, which the API server reads as
	// null) tells server-side apply that this manager owns no entry any
	// more: its binding is removed, other managers' bindings stay.
	bindings := []any{}
	if b != nil {
		ub, err := runtime.DefaultUnstructuredConverter.ToUnstructured(b)
		if err != nil {
			w.logger.Error("Encoding a status binding failed", "object", o.key.String(), "err", err)
			return false
		}
		bindings = append(bindings, ub)
	}
	status := map[string]any{"bindings": bindings}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": o.apiVer, "kind": o.key.Kind,
		"metadata": map[string]any{"name": o.key.Name, "namespace": o.key.Namespace},
		"status":   status,
	}}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	_, err := w.dyn.Resource(o.gvr).Namespace(o.key.Namespace).Apply(ctx, o.key.Name, u,
		metav1.ApplyOptions{FieldManager: w.fieldManager, Force: true}, "status")
	w.metrics.writes.WithLabelValues(o.key.Kind, result(err)).Inc()
	if err != nil && !apierrors.IsNotFound(err) {
		w.logger.Warn("Writing object status failed", "object", o.key.String(), "err", err)
		return false
	}
	return true
}

// warn emits one Warning Event for a rejection. Its name is derived from
// the object and the reason, so every member, and every restart, creates
// the same Event: a rejection is reported once, not once per writer.
func (w *StatusWriter) warn(ctx context.Context, o monitoredObject, reason string, now time.Time) bool {
	h := fnv.New32a()
	_, _ = h.Write([]byte(o.uid + "\x00" + reason))
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.promshard.%08x", o.key.Name, h.Sum32()), Namespace: o.key.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: o.apiVer, Kind: o.key.Kind, Namespace: o.key.Namespace, Name: o.key.Name, UID: types.UID(o.uid),
		},
		Type: corev1.EventTypeWarning, Reason: ReasonInvalidConfiguration,
		Message:        truncate(fmt.Sprintf("rejected by promshard (PrometheusAgent %s/%s): %s", w.agentNS, w.agentName, reason), maxMessage),
		Source:         corev1.EventSource{Component: "promshard"},
		FirstTimestamp: metav1.NewTime(now), LastTimestamp: metav1.NewTime(now), Count: 1,
		ReportingController: "promshard", ReportingInstance: w.fieldManager,
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	_, err := w.kube.CoreV1().Events(o.key.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return true
	}
	w.metrics.events.WithLabelValues(result(err)).Inc()
	if err != nil {
		w.logger.Warn("Emitting a rejection Event failed", "object", o.key.String(), "err", err)
		return false
	}
	return true
}

// syncAgent writes the PrometheusAgent's status: replicas, available
// replicas, and the Available and Reconciled conditions.
func (w *StatusWriter) syncAgent(ctx context.Context, a *monitoringv1alpha1.PrometheusAgent, results []config.Result, now time.Time) {
	key := config.ObjectKey{Kind: config.KindPrometheusAgent, Namespace: a.Namespace, Name: a.Name}
	if !w.opts.Owns(key.String()) {
		w.agentLast = ""
		return
	}
	members, available := w.opts.Replicas()
	capacity := ""
	if w.opts.Capacity != nil {
		capacity = w.opts.Capacity()
	}
	want := agentStatus(a, results, members, available, capacity, now)
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&want)
	if err != nil {
		w.logger.Error("Encoding the PrometheusAgent status failed", "err", err)
		return
	}
	fingerprint := fmt.Sprint(u)
	if fingerprint == w.agentLast {
		return
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": monitoringv1alpha1.SchemeGroupVersion.String(), "kind": config.KindPrometheusAgent,
		"metadata": map[string]any{"name": a.Name, "namespace": a.Namespace},
		"status":   u,
	}}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	_, err = w.dyn.Resource(monitoringv1alpha1.SchemeGroupVersion.WithResource(resPrometheusAgents)).Namespace(a.Namespace).
		Apply(ctx, a.Name, obj, metav1.ApplyOptions{FieldManager: w.fieldManager, Force: true}, "status")
	w.metrics.writes.WithLabelValues(config.KindPrometheusAgent, result(err)).Inc()
	if apierrors.IsNotFound(err) {
		// Deleted: its last settings keep running (the reconciler says so);
		// there is no status to write until it is back.
		w.logger.Debug("PrometheusAgent is gone, not writing its status", "err", err)
		w.agentLast = fingerprint
		return
	}
	if err != nil {
		w.logger.Warn("Writing the PrometheusAgent status failed", "err", err)
		return
	}
	w.agentLast = fingerprint
}

// agentStatus is the PrometheusAgent status promshard reports; capacity,
// when not empty, says why the cluster cannot hold its load (see
// StatusOptions.Capacity). Transition times are kept from the current
// status while a condition's status stays.
func agentStatus(a *monitoringv1alpha1.PrometheusAgent, results []config.Result, members, available int, capacity string, now time.Time) monitoringv1.PrometheusStatus {
	rejected, first := 0, ""
	for _, r := range results {
		if !r.Accepted && r.Kind != config.KindPrometheusAgent {
			if rejected == 0 {
				first = fmt.Sprintf(" (first: %s: %s)", r.Key(), truncate(r.Reason, 256))
			}
			rejected++
		}
	}
	avail := monitoringv1.Condition{Type: monitoringv1.Available, Status: monitoringv1.ConditionTrue, Reason: "AllReplicasReady",
		Message: fmt.Sprintf("%d of %d members own targets", available, members), ObservedGeneration: a.Generation}
	switch {
	case available == 0:
		avail.Status, avail.Reason = monitoringv1.ConditionFalse, "NoReplicaReady"
	case available < members:
		avail.Status, avail.Reason = monitoringv1.ConditionDegraded, "SomeReplicasNotReady"
	case capacity != "":
		avail.Status, avail.Reason = monitoringv1.ConditionDegraded, "SeriesOverLimit"
	}
	if capacity != "" {
		avail.Message += "; " + capacity
	}
	rec := monitoringv1.Condition{Type: monitoringv1.Reconciled, Status: monitoringv1.ConditionTrue, Reason: "Applied",
		Message: fmt.Sprintf("%d objects selected, %d rejected%s", countSelected(results), rejected, first), ObservedGeneration: a.Generation}
	if ignored := config.IgnoredFields(&a.Spec); !ignored.Empty() {
		rec.Message += "; " + ignored.String()
	}
	conds := []monitoringv1.Condition{avail, rec}
	for i := range conds {
		conds[i].LastTransitionTime = metav1.NewTime(now.UTC().Truncate(time.Second))
		for _, old := range a.Status.Conditions {
			if old.Type == conds[i].Type && old.Status == conds[i].Status {
				conds[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	return monitoringv1.PrometheusStatus{
		Replicas: int32(members), UpdatedReplicas: int32(members), AvailableReplicas: int32(available),
		UnavailableReplicas: int32(members - available), Conditions: conds,
	}
}

func countSelected(results []config.Result) int {
	n := 0
	for _, r := range results {
		if r.Kind != config.KindPrometheusAgent {
			n++
		}
	}
	return n
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "success"
}

// statusMetrics count the writer's API calls.
type statusMetrics struct {
	writes *prometheus.CounterVec
	events *prometheus.CounterVec
}

func newStatusMetrics(reg prometheus.Registerer) (*statusMetrics, error) {
	m := &statusMetrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promshard_status_writes_total",
			Help: "Status subresource writes (server-side apply) by object kind and result.",
		}, []string{"kind", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promshard_status_events_total",
			Help: "Warning Events created for rejected objects, by result (an Event that already exists is not counted).",
		}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.writes, m.events} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
