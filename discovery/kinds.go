package discovery

import (
	"context"
	"maps"
	"sync"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Resource names: the plural API resource, also the "resource" label of the
// promshard_discovery_* metrics.
const (
	resServiceMonitors  = monitoringv1.ServiceMonitorName
	resPodMonitors      = monitoringv1.PodMonitorName
	resProbes           = monitoringv1.ProbeName
	resScrapeConfigs    = monitoringv1alpha1.ScrapeConfigName
	resPrometheusAgents = monitoringv1alpha1.PrometheusAgentName
	resPrometheusRules  = monitoringv1.PrometheusRuleName
	resNamespaces       = "namespaces"
	resSecrets          = "secrets"
	resConfigMaps       = "configmaps"
)

// lastAppliedAnnotation is kubectl's copy of the whole object; for a Secret
// it even holds the data in clear. Nothing downstream reads it.
const lastAppliedAnnotation = corev1.LastAppliedConfigAnnotation

// secretFieldSelector leaves Helm's release Secrets out of the cache: they
// are often the largest Secrets of a cluster (a compressed chart and its
// values, per revision) and no monitor can use them as a credential.
const secretFieldSelector = "type!=" + helmReleaseSecretType

const helmReleaseSecretType = "helm.sh/release.v1"

// syncPollPeriod is how often a starting resource's informers are checked
// for having synced.
const syncPollPeriod = 20 * time.Millisecond

// kind is one watched resource.
type kind struct {
	resource string
	// crd is true for the monitoring CRDs, which may be missing; their
	// informers start and stop with the CRD.
	crd bool
	gvr schema.GroupVersionResource
	// convert turns a custom resource into its typed struct.
	convert func(*unstructured.Unstructured) (runtime.Object, error)
	// newInformers builds the resource's (not yet started) informers.
	newInformers func() []cache.SharedIndexInformer
}

// runningKind are the started informers of one resource.
type runningKind struct {
	cancel    context.CancelFunc
	informers []cache.SharedIndexInformer
}

// synced reports whether every informer of the resource has synced.
func (r *runningKind) synced() bool {
	for _, inf := range r.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// convertTo returns a converter from unstructured into a fresh *T.
func convertTo[T any, PT interface {
	*T
	runtime.Object
}]() func(*unstructured.Unstructured) (runtime.Object, error) {
	return func(u *unstructured.Unstructured) (runtime.Object, error) {
		out := PT(new(T))
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
			return nil, err
		}
		return out, nil
	}
}

// buildKinds lists the resources this Watcher watches.
func (w *Watcher) buildKinds() []*kind {
	v1 := monitoringv1.SchemeGroupVersion
	v1alpha1 := monitoringv1alpha1.SchemeGroupVersion
	crds := []*kind{
		{resource: resServiceMonitors, gvr: v1.WithResource(resServiceMonitors),
			convert: convertTo[monitoringv1.ServiceMonitor]()},
		{resource: resPodMonitors, gvr: v1.WithResource(resPodMonitors),
			convert: convertTo[monitoringv1.PodMonitor]()},
		{resource: resProbes, gvr: v1.WithResource(resProbes),
			convert: convertTo[monitoringv1.Probe]()},
		{resource: resScrapeConfigs, gvr: v1alpha1.WithResource(resScrapeConfigs),
			convert: convertTo[monitoringv1alpha1.ScrapeConfig]()},
	}
	if w.opts.Rules {
		crds = append(crds, &kind{resource: resPrometheusRules, gvr: v1.WithResource(resPrometheusRules),
			convert: convertTo[monitoringv1.PrometheusRule]()})
	}
	for _, k := range crds {
		k.crd = true
		k.newInformers = w.dynamicInformers(k.gvr, w.monitorNS, nil)
	}
	if w.agentName != "" {
		selector := fields.OneTermEqualSelector("metadata.name", w.agentName).String()
		crds = append(crds, &kind{
			resource: resPrometheusAgents, crd: true,
			gvr:     v1alpha1.WithResource(resPrometheusAgents),
			convert: convertTo[monitoringv1alpha1.PrometheusAgent](),
			newInformers: w.dynamicInformers(v1alpha1.WithResource(resPrometheusAgents),
				[]string{w.agentNS}, func(o *metav1.ListOptions) { o.FieldSelector = selector }),
		})
	}
	return append([]*kind{
		{resource: resNamespaces, newInformers: w.namespaceInformers},
		{resource: resSecrets, newInformers: func() []cache.SharedIndexInformer {
			return perNamespace(w.resourceNS, func(ns string) cache.SharedIndexInformer {
				return coreinformers.NewFilteredSecretInformer(w.clients.kube, ns, w.opts.ResyncPeriod, cache.Indexers{},
					func(o *metav1.ListOptions) { o.FieldSelector = secretFieldSelector })
			})
		}},
		{resource: resConfigMaps, newInformers: func() []cache.SharedIndexInformer {
			return perNamespace(w.resourceNS, func(ns string) cache.SharedIndexInformer {
				return coreinformers.NewFilteredConfigMapInformer(w.clients.kube, ns, w.opts.ResyncPeriod, cache.Indexers{}, nil)
			})
		}},
	}, crds...)
}

func perNamespace(namespaces []string, f func(ns string) cache.SharedIndexInformer) []cache.SharedIndexInformer {
	out := make([]cache.SharedIndexInformer, 0, len(namespaces))
	for _, ns := range namespaces {
		out = append(out, f(ns))
	}
	return out
}

// dynamicInformers returns a builder of one dynamic informer per namespace.
func (w *Watcher) dynamicInformers(gvr schema.GroupVersionResource, namespaces []string, tweak dynamicinformer.TweakListOptionsFunc) func() []cache.SharedIndexInformer {
	return func() []cache.SharedIndexInformer {
		return perNamespace(namespaces, func(ns string) cache.SharedIndexInformer {
			return dynamicinformer.NewFilteredDynamicInformer(w.clients.dyn, gvr, ns, w.opts.ResyncPeriod, cache.Indexers{}, tweak).Informer()
		})
	}
}

// namespaceInformers watches every Namespace, or, when the namespaces are
// limited, each of them by name (a field selector: no other Namespace object
// is transferred or kept).
func (w *Watcher) namespaceInformers() []cache.SharedIndexInformer {
	if len(w.monitorNS) == 1 && w.monitorNS[0] == metav1.NamespaceAll {
		return []cache.SharedIndexInformer{coreinformers.NewNamespaceInformer(w.clients.kube, w.opts.ResyncPeriod, cache.Indexers{})}
	}
	return perNamespace(w.monitorNS, func(ns string) cache.SharedIndexInformer {
		selector := fields.OneTermEqualSelector("metadata.name", ns).String()
		return coreinformers.NewFilteredNamespaceInformer(w.clients.kube, w.opts.ResyncPeriod, cache.Indexers{},
			func(o *metav1.ListOptions) { o.FieldSelector = selector })
	})
}

// startKindLocked starts the informers of k, and a goroutine that signals the
// worker once they have synced. w.mu must be held.
func (w *Watcher) startKindLocked(ctx context.Context, wg *sync.WaitGroup, k *kind) {
	if _, ok := w.running[k.resource]; ok {
		return
	}
	infs := k.newInformers()
	kctx, cancel := context.WithCancel(ctx)
	for _, inf := range infs {
		// Both only fail on a started informer; these are new.
		_ = inf.SetTransform(w.transform(k))
		_, _ = inf.AddEventHandler(w.eventHandler(k.resource))
	}
	r := &runningKind{cancel: cancel, informers: infs}
	w.running[k.resource] = r
	for _, inf := range infs {
		wg.Go(func() { inf.RunWithContext(kctx) })
	}
	wg.Go(func() {
		ticker := time.NewTicker(syncPollPeriod)
		defer ticker.Stop()
		for !r.synced() {
			select {
			case <-kctx.Done():
				return
			case <-ticker.C:
			}
		}
		w.logger.Debug("informers synced", "resource", k.resource, "informers", len(infs))
		w.signal()
	})
}

// stopKindLocked stops the informers of resource; the snapshot no longer
// contains its objects. w.mu must be held.
func (w *Watcher) stopKindLocked(resource string) {
	r, ok := w.running[resource]
	if !ok {
		return
	}
	r.cancel()
	delete(w.running, resource)
	w.signal()
}

// transform drops what nobody reads from every cached object (managedFields,
// kubectl's last-applied copy; of a Namespace everything but its name and
// labels, of a Secret or ConfigMap everything but its name and data) and
// converts custom resources to their typed
// struct once, when they enter the cache. A custom resource that does not
// convert is kept as *unstructured.Unstructured, logged, and skipped (and
// counted) by every rebuild: a transform error would stop the whole
// informer. The transform is idempotent, as client-go requires.
func (w *Watcher) transform(k *kind) cache.TransformFunc {
	return func(obj any) (any, error) {
		switch o := obj.(type) {
		case *corev1.Namespace:
			// Namespace selectors read the name and labels only.
			return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name: o.Name, Labels: o.Labels, ResourceVersion: o.ResourceVersion, UID: o.UID,
			}}, nil
		case *corev1.Secret:
			// Credentials are read by key; labels, annotations and owners
			// of every Secret of the cluster would only take memory.
			return &corev1.Secret{ObjectMeta: trimmedMeta(o.ObjectMeta), Type: o.Type, Data: o.Data}, nil
		case *corev1.ConfigMap:
			return &corev1.ConfigMap{ObjectMeta: trimmedMeta(o.ObjectMeta), Data: o.Data, BinaryData: o.BinaryData}, nil
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return obj, nil // tombstones and the like: leave as they are
		}
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a != nil {
			if _, ok := a[lastAppliedAnnotation]; ok {
				a = maps.Clone(a)
				delete(a, lastAppliedAnnotation)
				m.SetAnnotations(a)
			}
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok || k.convert == nil {
			return obj, nil
		}
		typed, err := k.convert(u)
		if err != nil {
			w.logger.Warn("invalid object skipped", "resource", k.resource,
				"namespace", u.GetNamespace(), "name", u.GetName(), "err", err)
			return u, nil
		}
		return typed, nil
	}
}

// trimmedMeta keeps what the cache and the translation need of a Secret's
// or ConfigMap's metadata.
func trimmedMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name, ResourceVersion: m.ResourceVersion, UID: m.UID}
}

// changed reports whether an update can change the snapshot (for a
// Namespace: its labels). Informer
// resyncs deliver the same object again (same resourceVersion; an empty
// one, which only fake clients produce, counts as a change). For custom
// resources, a change of status only (same generation, labels and
// annotations) cannot change the configuration either: skipping it keeps
// status writers from causing rebuilds.
func changed(oldObj, newObj any) bool {
	o, err1 := meta.Accessor(oldObj)
	n, err2 := meta.Accessor(newObj)
	if err1 != nil || err2 != nil {
		return true
	}
	if rv := n.GetResourceVersion(); rv != "" && rv == o.GetResourceVersion() {
		return false
	}
	// Only a Namespace's labels reach the translation (namespace
	// selectors): its status and annotations change often, e.g. while
	// it terminates.
	if on, ok := oldObj.(*corev1.Namespace); ok {
		if nn, ok := newObj.(*corev1.Namespace); ok {
			return !maps.Equal(on.Labels, nn.Labels)
		}
	}
	if !isMonitoringObject(newObj) || n.GetGeneration() == 0 || o.GetGeneration() != n.GetGeneration() {
		return true
	}
	if isMonitoringObject(oldObj) != isMonitoringObject(newObj) {
		return true
	}
	return !maps.Equal(o.GetLabels(), n.GetLabels()) || !maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
		!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
}

// isMonitoringObject reports whether obj is a converted monitoring custom
// resource (whose generation tracks its spec).
func isMonitoringObject(obj any) bool {
	switch obj.(type) {
	case *monitoringv1.ServiceMonitor, *monitoringv1.PodMonitor, *monitoringv1.Probe,
		*monitoringv1alpha1.ScrapeConfig, *monitoringv1alpha1.PrometheusAgent, *monitoringv1.PrometheusRule:
		return true
	}
	return false
}
