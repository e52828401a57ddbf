package config

import (
	"reflect"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NamespacedName names a namespaced object.
type NamespacedName struct {
	Namespace, Name string
}

// References are the Secrets and ConfigMaps a Generate call can read: a
// change of any other Secret or ConfigMap cannot change its output. Build
// it with ReferencedObjects.
type References struct {
	// All is true when the references are unknown (the settings are
	// invalid): every Secret and ConfigMap may matter.
	All bool
	// Secrets and ConfigMaps referenced by a selected monitor or the
	// PrometheusAgent, by namespace and name.
	Secrets, ConfigMaps map[NamespacedName]bool
	// AnyNamespace are names the PrometheusAgent references (scrape
	// classes, remote write, …): scrape-class credentials resolve in the
	// namespace of each monitor using the class, so a Secret or ConfigMap
	// with such a name matters in every namespace.
	AnySecrets, AnyConfigMaps map[string]bool
}

// Secret reports whether the Secret namespace/name can influence Generate.
func (r *References) Secret(namespace, name string) bool {
	return r == nil || r.All || r.Secrets[NamespacedName{namespace, name}] || r.AnySecrets[name]
}

// ConfigMap reports whether the ConfigMap namespace/name can influence
// Generate.
func (r *References) ConfigMap(namespace, name string) bool {
	return r == nil || r.All || r.ConfigMaps[NamespacedName{namespace, name}] || r.AnyConfigMaps[name]
}

// ReferencedObjects returns the Secrets and ConfigMaps Generate(snap, opts)
// can read: those named by a SecretKeySelector or ConfigMapKeySelector
// anywhere in the spec of a selected ServiceMonitor, PodMonitor, Probe or
// ScrapeConfig (in its namespace) or of the PrometheusAgent (in any
// namespace, see References.AnySecrets). Every credential of the CRDs is
// one of these two selector types, and the translation resolves nothing
// else, so the set is complete by construction; it may hold references of
// fields promshard ignores, which only costs a needless rebuild. Objects
// missing from snap count as referenced, so that creating them is seen.
func ReferencedObjects(snap *Snapshot, opts Options) *References {
	return referencedObjects(snap, opts, nil)
}

// referencedObjects is ReferencedObjects, taking the references of
// unchanged monitors from c when c is not nil (the caller holds c.mu).
func referencedObjects(snap *Snapshot, opts Options, c *ReferenceCache) *References {
	if snap == nil {
		snap = &Snapshot{}
	}
	g, err := newGenerator(snap, opts)
	if err != nil {
		return &References{All: true}
	}
	r := &References{
		Secrets: map[NamespacedName]bool{}, ConfigMaps: map[NamespacedName]bool{},
		AnySecrets: map[string]bool{}, AnyConfigMaps: map[string]bool{},
	}
	if snap.Agent != nil {
		walkSelectors(reflect.ValueOf(&snap.Agent.Spec),
			func(name string) { r.AnySecrets[name] = true },
			func(name string) { r.AnyConfigMaps[name] = true })
	}
	c.begin()
	add := func(kind string, obj any, meta *metav1.ObjectMeta, spec any) {
		names := c.names(ObjectKey{Kind: kind, Namespace: meta.Namespace, Name: meta.Name}, obj, meta, spec)
		for _, name := range names.secrets {
			r.Secrets[NamespacedName{meta.Namespace, name}] = true
		}
		for _, name := range names.configMaps {
			r.ConfigMaps[NamespacedName{meta.Namespace, name}] = true
		}
	}
	for _, o := range g.selectServiceMonitors() {
		add(KindServiceMonitor, o, &o.ObjectMeta, &o.Spec)
	}
	for _, o := range g.selectPodMonitors() {
		add(KindPodMonitor, o, &o.ObjectMeta, &o.Spec)
	}
	for _, o := range g.selectProbes() {
		add(KindProbe, o, &o.ObjectMeta, &o.Spec)
	}
	for _, o := range g.selectScrapeConfigs() {
		add(KindScrapeConfig, o, &o.ObjectMeta, &o.Spec)
	}
	c.end()
	return r
}

// selectorNames are the names of the Secrets and ConfigMaps a spec refers
// to.
type selectorNames struct {
	secrets, configMaps []string
}

// specSelectorNames walks spec for its selectors.
func specSelectorNames(spec any) selectorNames {
	var n selectorNames
	walkSelectors(reflect.ValueOf(spec),
		func(name string) { n.secrets = append(n.secrets, name) },
		func(name string) { n.configMaps = append(n.configMaps, name) })
	return n
}

var (
	secretKeySelectorType    = reflect.TypeFor[corev1.SecretKeySelector]()
	configMapKeySelectorType = reflect.TypeFor[corev1.ConfigMapKeySelector]()
)

// walkSelectors calls secret or configMap with the name of every
// SecretKeySelector and ConfigMapKeySelector reachable from v (pointers,
// structs, slices, arrays, maps and interfaces; the CRD types have no
// cycles).
func walkSelectors(v reflect.Value, secret, configMap func(name string)) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkSelectors(v.Elem(), secret, configMap)
		}
	case reflect.Struct:
		switch v.Type() {
		case secretKeySelectorType:
			if name := v.Interface().(corev1.SecretKeySelector).Name; name != "" {
				secret(name)
			}
			return
		case configMapKeySelectorType:
			if name := v.Interface().(corev1.ConfigMapKeySelector).Name; name != "" {
				configMap(name)
			}
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				walkSelectors(v.Field(i), secret, configMap)
			}
		}
	case reflect.Slice, reflect.Array:
		if !mayHoldSelectors(v.Type().Elem().Kind()) {
			return // e.g. []byte, []string
		}
		for i := range v.Len() {
			walkSelectors(v.Index(i), secret, configMap)
		}
	case reflect.Map:
		if !mayHoldSelectors(v.Type().Elem().Kind()) {
			return
		}
		iter := v.MapRange()
		for iter.Next() {
			walkSelectors(iter.Value(), secret, configMap)
		}
	}
}

// mayHoldSelectors reports whether a value of kind k can contain a selector.
func mayHoldSelectors(k reflect.Kind) bool {
	switch k {
	case reflect.Pointer, reflect.Interface, reflect.Struct, reflect.Slice, reflect.Array, reflect.Map:
		return true
	}
	return false
}
