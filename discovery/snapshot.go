package discovery

import (
	"cmp"
	"slices"
	"strings"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promshard/promshard/config"
)

// rebuild builds a snapshot from the informer caches. ok is false while the
// first snapshot cannot be built yet: no CRD check has succeeded, or a
// started informer has not synced. Later, a resource whose informers have
// not synced yet (a CRD that just appeared) is left out, as before it
// appeared.
func (w *Watcher) rebuild() (snap *config.Snapshot, ok bool) {
	start := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.Synced() {
		if !w.crdChecked {
			return nil, false
		}
		for _, r := range w.running {
			if !r.synced() {
				return nil, false
			}
		}
	}

	snap = &config.Snapshot{}
	for _, k := range w.kinds {
		r, running := w.running[k.resource]
		if !running || !r.synced() {
			w.metrics.objects.WithLabelValues(k.resource).Set(0)
			w.metrics.invalid.WithLabelValues(k.resource).Set(0)
			continue
		}
		n, invalid := w.fill(snap, k.resource, r)
		w.metrics.objects.WithLabelValues(k.resource).Set(float64(n))
		w.metrics.invalid.WithLabelValues(k.resource).Set(float64(invalid))
	}

	w.metrics.rebuilds.Inc()
	w.metrics.rebuildDuration.Observe(time.Since(start).Seconds())
	w.metrics.lastSnapshot.SetToCurrentTime()
	return snap, true
}

// fill sets the snapshot field of resource from the caches of r and returns
// the number of objects put in and of invalid objects skipped.
func (w *Watcher) fill(snap *config.Snapshot, resource string, r *runningKind) (n, invalid int) {
	items := cachedItems(r)
	switch resource {
	case resServiceMonitors:
		snap.ServiceMonitors, invalid = collect[monitoringv1.ServiceMonitor](items, nil)
		n = len(snap.ServiceMonitors)
	case resPodMonitors:
		snap.PodMonitors, invalid = collect[monitoringv1.PodMonitor](items, nil)
		n = len(snap.PodMonitors)
	case resProbes:
		snap.Probes, invalid = collect[monitoringv1.Probe](items, nil)
		n = len(snap.Probes)
	case resScrapeConfigs:
		snap.ScrapeConfigs, invalid = collect[monitoringv1alpha1.ScrapeConfig](items, nil)
		n = len(snap.ScrapeConfigs)
	case resPrometheusRules:
		snap.PrometheusRules, invalid = collect[monitoringv1.PrometheusRule](items, nil)
		n = len(snap.PrometheusRules)
	case resPrometheusAgents:
		// The field selector already limits the informer to the agent;
		// filtering again keeps a server that ignores it harmless.
		agents, bad := collect(items, func(a *monitoringv1alpha1.PrometheusAgent) bool {
			return a.Namespace == w.agentNS && a.Name == w.agentName
		})
		if len(agents) > 0 {
			snap.Agent = agents[0]
		}
		n, invalid = len(agents), bad
		w.logAgentPresence(n > 0)
	case resNamespaces:
		keep := w.namespaceFilter()
		snap.Namespaces, invalid = collect(items, keep)
		n = len(snap.Namespaces)
	case resSecrets:
		snap.Secrets, invalid = collect(items, func(s *corev1.Secret) bool { return s.Type != helmReleaseSecretType })
		n = len(snap.Secrets)
	case resConfigMaps:
		snap.ConfigMaps, invalid = collect[corev1.ConfigMap](items, nil)
		n = len(snap.ConfigMaps)
	}
	return n, invalid
}

// namespaceFilter keeps the watched Namespace objects; nil keeps all.
func (w *Watcher) namespaceFilter() func(*corev1.Namespace) bool {
	if len(w.monitorNS) == 1 && w.monitorNS[0] == metav1.NamespaceAll {
		return nil
	}
	return func(ns *corev1.Namespace) bool { return slices.Contains(w.monitorNS, ns.Name) }
}

// cachedItems returns the objects of every informer of r.
func cachedItems(r *runningKind) []any {
	var items []any
	for _, inf := range r.informers {
		items = append(items, inf.GetStore().List()...)
	}
	return items
}

// collect returns the items of type *T that keep accepts (nil keeps all),
// sorted by namespace and name, and the number of items of another type:
// custom resources that failed conversion stay *unstructured.Unstructured.
func collect[T any, PT interface {
	*T
	metav1.Object
}](items []any, keep func(PT) bool) (out []PT, invalid int) {
	out = make([]PT, 0, len(items))
	for _, item := range items {
		obj, ok := item.(PT)
		if !ok {
			invalid++
			continue
		}
		if keep == nil || keep(obj) {
			out = append(out, obj)
		}
	}
	slices.SortFunc(out, func(a, b PT) int {
		return cmp.Or(strings.Compare(a.GetNamespace(), b.GetNamespace()), strings.Compare(a.GetName(), b.GetName()))
	})
	return out, invalid
}

// logAgentPresence logs when the named PrometheusAgent appears or goes away.
// Without it the snapshot has no Agent; the reconciler then keeps the last
// applied settings, or applies nothing before the agent was first seen.
func (w *Watcher) logAgentPresence(found bool) {
	if w.agentLogged && w.agentFound == found {
		return
	}
	w.agentLogged, w.agentFound = true, found
	if found {
		w.logger.Info("PrometheusAgent found", "namespace", w.agentNS, "name", w.agentName)
		return
	}
	w.logger.Warn("PrometheusAgent not found", "namespace", w.agentNS, "name", w.agentName)
}
