package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// cacheWorld is a mutable cluster from which the cache test builds
// snapshots the way discovery does: unchanged objects keep their pointers,
// an edit is a new value with a new resourceVersion.
type cacheWorld struct {
	rv         int
	agent      *monitoringv1alpha1.PrometheusAgent
	sms        map[string]*monitoringv1.ServiceMonitor
	pms        map[string]*monitoringv1.PodMonitor
	probes     map[string]*monitoringv1.Probe
	scs        map[string]*monitoringv1alpha1.ScrapeConfig
	namespaces map[string]*corev1.Namespace
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
}

// meta returns fresh metadata: a new UID and the next resourceVersion.
func (w *cacheWorld) meta(ns, name string) metav1.ObjectMeta {
	w.rv++
	return metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(fmt.Sprintf("uid-%s-%s-%d", ns, name, w.rv)),
		ResourceVersion: strconv.Itoa(w.rv), Generation: 1}
}

// bump gives an edited copy of m: the same UID, a new resourceVersion and
// generation.
func (w *cacheWorld) bump(m metav1.ObjectMeta) metav1.ObjectMeta {
	w.rv++
	m.ResourceVersion = strconv.Itoa(w.rv)
	m.Generation++
	return m
}

func (w *cacheWorld) snapshot() *Snapshot {
	s := &Snapshot{Agent: w.agent}
	s.ServiceMonitors = sortedValues(w.sms)
	s.PodMonitors = sortedValues(w.pms)
	s.Probes = sortedValues(w.probes)
	s.ScrapeConfigs = sortedValues(w.scs)
	s.Namespaces = sortedValues(w.namespaces)
	s.Secrets = sortedValues(w.secrets)
	s.ConfigMaps = sortedValues(w.configMaps)
	return s
}

func sortedValues[T any](m map[string]T) []T {
	var out []T
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

func secretRef(name, key string) corev1.SecretKeySelector {
	return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}
}

func newCacheWorld(t *testing.T) *cacheWorld {
	w := &cacheWorld{
		sms: map[string]*monitoringv1.ServiceMonitor{}, pms: map[string]*monitoringv1.PodMonitor{},
		probes: map[string]*monitoringv1.Probe{}, scs: map[string]*monitoringv1alpha1.ScrapeConfig{},
		namespaces: map[string]*corev1.Namespace{}, secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{},
	}
	ca := readTestFile(t, "testdata/tls/cert.pem")
	w.agent = &monitoringv1alpha1.PrometheusAgent{ObjectMeta: w.meta("mon", "agent")}
	all := &metav1.LabelSelector{}
	notOff := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "off", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	spec := &w.agent.Spec.CommonPrometheusFields
	spec.ServiceMonitorSelector, spec.ServiceMonitorNamespaceSelector = all, notOff
	spec.PodMonitorSelector, spec.PodMonitorNamespaceSelector = all, all
	spec.ProbeSelector, spec.ProbeNamespaceSelector = all, all
	spec.ScrapeConfigSelector, spec.ScrapeConfigNamespaceSelector = all, all
	for _, ns := range []string{"app", "other"} {
		w.namespaces[ns] = &corev1.Namespace{ObjectMeta: w.meta("", ns)}
	}
	w.secrets["auth"] = &corev1.Secret{ObjectMeta: w.meta("app", "auth"), Data: map[string][]byte{"user": []byte("u"), "pass": []byte("p1")}}
	w.secrets["ca"] = &corev1.Secret{ObjectMeta: w.meta("app", "ca"), Data: map[string][]byte{"ca.crt": []byte(ca)}}
	w.secrets["unrelated"] = &corev1.Secret{ObjectMeta: w.meta("app", "unrelated"), StringData: map[string]string{"x": "1"}}
	w.configMaps["ca"] = &corev1.ConfigMap{ObjectMeta: w.meta("app", "ca"), Data: map[string]string{"ca.crt": ca}}

	basicAuth := &monitoringv1.BasicAuth{Username: secretRef("auth", "user"), Password: secretRef("auth", "pass")}
	sm := func(ns, name string, ep monitoringv1.Endpoint) {
		w.sms[ns+"/"+name] = &monitoringv1.ServiceMonitor{ObjectMeta: w.meta(ns, name),
			Spec: monitoringv1.ServiceMonitorSpec{Endpoints: []monitoringv1.Endpoint{ep},
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}}}
	}
	basic := monitoringv1.Endpoint{Port: "web"}
	basic.BasicAuth = basicAuth
	sm("app", "basic", basic)
	https := monitoringv1.Scheme("https")
	tls := monitoringv1.Endpoint{Port: "web", Scheme: &https}
	tls.TLSConfig = &monitoringv1.TLSConfig{SafeTLSConfig: monitoringv1.SafeTLSConfig{CA: monitoringv1.SecretOrConfigMap{Secret: ptrTo(secretRef("ca", "ca.crt"))}}}
	sm("app", "tls", tls)
	sm("app", "plain", monitoringv1.Endpoint{Port: "web"})
	needs := monitoringv1.Endpoint{Port: "web"}
	needs.BearerTokenSecret = ptrTo(secretRef("late", "token"))
	sm("app", "needs", needs)
	sm("app", "broken", monitoringv1.Endpoint{Port: "web", RelabelConfigs: []monitoringv1.RelabelConfig{{TargetLabel: "x", Regex: "("}}})
	sm("other", "x", monitoringv1.Endpoint{Port: "metrics"})
	// Without resourceVersion: reused only while the pointer is the same.
	sm("app", "norv", monitoringv1.Endpoint{Port: "web"})
	w.sms["app/norv"].ResourceVersion, w.sms["app/norv"].UID = "", ""

	pmEP := monitoringv1.PodMetricsEndpoint{Port: ptrTo("web")}
	pmEP.TLSConfig = &monitoringv1.SafeTLSConfig{CA: monitoringv1.SecretOrConfigMap{ConfigMap: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "ca"}, Key: "ca.crt"}}}
	w.pms["app/pods"] = &monitoringv1.PodMonitor{ObjectMeta: w.meta("app", "pods"),
		Spec: monitoringv1.PodMonitorSpec{PodMetricsEndpoints: []monitoringv1.PodMetricsEndpoint{pmEP}}}
	w.probes["app/probe"] = &monitoringv1.Probe{ObjectMeta: w.meta("app", "probe"), Spec: monitoringv1.ProbeSpec{
		ProberSpec: monitoringv1.ProberSpec{URL: "blackbox:9115"},
		Targets:    monitoringv1.ProbeTargets{StaticConfig: &monitoringv1.ProbeTargetStaticConfig{Targets: []string{"https://example.com"}}},
	}}
	w.scs["app/static"] = &monitoringv1alpha1.ScrapeConfig{ObjectMeta: w.meta("app", "static"), Spec: monitoringv1alpha1.ScrapeConfigSpec{
		StaticConfigs: []monitoringv1alpha1.StaticConfig{{Targets: []monitoringv1alpha1.Target{"a:80"}}},
		BasicAuth:     basicAuth,
	}}
	return w
}

func ptrTo[T any](v T) *T { return &v }

// TestGenerateWithCache drives a sequence of snapshots through Generate
// and GenerateWithCache: the output must be equal at every step, the jobs
// of objects whose inputs did not change must be the very pointers of the
// step before, and the others new ones. ReferencedObjectsWithCache must
// equal ReferencedObjects at every step too.
func TestGenerateWithCache(t *testing.T) {
	w := newCacheWorld(t)
	opts := Options{}
	all := []string{"*"}
	var stashedAgent *monitoringv1alpha1.PrometheusAgent
	steps := []struct {
		name string
		edit func()
		// fresh are the objects ("Kind/ns/name") translated anew; "*" is all.
		fresh []string
		// accepted are Result.Accepted values the step must give.
		accepted map[string]bool
		// absent are objects that must have no Result.
		absent  []string
		wantErr bool
	}{
		{name: "first call translates everything", edit: func() {}, fresh: all, accepted: map[string]bool{
			"ServiceMonitor/app/basic": true, "ServiceMonitor/app/tls": true, "ServiceMonitor/app/needs": false,
			"ServiceMonitor/app/broken": false, "PodMonitor/app/pods": true, "Probe/app/probe": true, "ScrapeConfig/app/static": true,
		}},
		{name: "same snapshot", edit: func() {}},
		{name: "monitor edited", edit: func() {
			old := w.sms["app/basic"]
			sm := old.DeepCopy()
			sm.ObjectMeta = w.bump(old.ObjectMeta)
			sm.Generation = old.Generation // only the resourceVersion tells
			sm.Spec.Endpoints[0].Interval = "15s"
			// A new reference (optional, missing: still accepted).
			sm.Spec.Endpoints[0].TLSConfig = &monitoringv1.TLSConfig{SafeTLSConfig: monitoringv1.SafeTLSConfig{CA: monitoringv1.SecretOrConfigMap{
				ConfigMap: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "extra"}, Key: "ca", Optional: ptrTo(true)}}}}
			w.sms["app/basic"] = sm
		}, fresh: []string{"ServiceMonitor/app/basic"}, accepted: map[string]bool{"ServiceMonitor/app/basic": true}},
		{name: "relist: new pointers, same resourceVersions", edit: func() {
			for k, sm := range w.sms {
				w.sms[k] = sm.DeepCopy()
			}
			for k, s := range w.secrets {
				w.secrets[k] = s.DeepCopy()
			}
			a := w.agent.DeepCopy()
			w.agent = a
		}, fresh: []string{"ServiceMonitor/app/norv"}},
		{name: "referenced Secret edited", edit: func() {
			s := w.secrets["auth"].DeepCopy()
			s.ObjectMeta = w.bump(s.ObjectMeta)
			s.Data["pass"] = []byte("p2")
			w.secrets["auth"] = s
		}, fresh: []string{"ServiceMonitor/app/basic", "ScrapeConfig/app/static"}},
		{name: "referenced Secret: another key added", edit: func() {
			s := w.secrets["auth"].DeepCopy()
			s.ObjectMeta = w.bump(s.ObjectMeta)
			s.Data["unused"] = []byte("z")
			w.secrets["auth"] = s
		}},
		{name: "unrelated Secret edited", edit: func() {
			s := w.secrets["unrelated"].DeepCopy()
			s.ObjectMeta = w.bump(s.ObjectMeta)
			s.StringData["x"] = "2"
			w.secrets["unrelated"] = s
		}},
		{name: "missing Secret created: rejected object accepted", edit: func() {
			w.secrets["late"] = &corev1.Secret{ObjectMeta: w.meta("app", "late"), StringData: map[string]string{"token": "t"}}
		}, fresh: []string{"ServiceMonitor/app/needs"}, accepted: map[string]bool{"ServiceMonitor/app/needs": true}},
		{name: "CA Secret becomes invalid PEM, CA ConfigMap edited", edit: func() {
			s := w.secrets["ca"].DeepCopy()
			s.ObjectMeta = w.bump(s.ObjectMeta)
			s.Data["ca.crt"] = []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
			w.secrets["ca"] = s
			c := w.configMaps["ca"].DeepCopy()
			c.ObjectMeta = w.bump(c.ObjectMeta)
			c.Data["ca.crt"] = "garbage"
			w.configMaps["ca"] = c
		}, fresh: []string{"ServiceMonitor/app/tls", "PodMonitor/app/pods"},
			accepted: map[string]bool{"ServiceMonitor/app/tls": false, "PodMonitor/app/pods": false}},
		{name: "rejected object fixed", edit: func() {
			old := w.sms["app/broken"]
			sm := old.DeepCopy()
			sm.ObjectMeta = w.bump(old.ObjectMeta)
			sm.Spec.Endpoints[0].RelabelConfigs[0].Regex = "(.*)"
			w.sms["app/broken"] = sm
		}, fresh: []string{"ServiceMonitor/app/broken"}, accepted: map[string]bool{"ServiceMonitor/app/broken": true}},
		{name: "PrometheusAgent status update", edit: func() {
			a := w.agent.DeepCopy()
			a.ObjectMeta = w.bump(a.ObjectMeta)
			a.Generation-- // status writes keep the generation
			a.Status.Replicas = 3
			w.agent = a
		}},
		{name: "PrometheusAgent spec edited", edit: func() {
			a := w.agent.DeepCopy()
			a.ObjectMeta = w.bump(a.ObjectMeta)
			a.Spec.ScrapeInterval = "1m"
			a.Spec.EnforcedSampleLimit = ptrTo(int64(1000))
			w.agent = a
		}, fresh: all},
		{name: "object deleted", edit: func() { delete(w.sms, "app/plain") }, absent: []string{"ServiceMonitor/app/plain"}},
		{name: "object re-created", edit: func() {
			ep := monitoringv1.Endpoint{Port: "other"}
			ep.BearerTokenSecret = ptrTo(secretRef("unrelated", "x")) // a new reference
			w.sms["app/plain"] = &monitoringv1.ServiceMonitor{ObjectMeta: w.meta("app", "plain"),
				Spec: monitoringv1.ServiceMonitorSpec{Endpoints: []monitoringv1.Endpoint{ep}}}
		}, fresh: []string{"ServiceMonitor/app/plain"}, accepted: map[string]bool{"ServiceMonitor/app/plain": true}},
		{name: "invalid PrometheusAgent", edit: func() {
			stashedAgent = w.agent
			a := w.agent.DeepCopy()
			a.ObjectMeta = w.bump(a.ObjectMeta)
			a.Spec.ScrapeInterval = "bogus"
			w.agent = a
		}, wantErr: true},
		{name: "back to the valid PrometheusAgent (a copy) keeps the cache", edit: func() {
			w.agent = stashedAgent.DeepCopy()
		}},
		{name: "namespace deselected", edit: func() {
			ns := w.namespaces["other"].DeepCopy()
			ns.ObjectMeta = w.bump(ns.ObjectMeta)
			ns.Labels = map[string]string{"off": "true"}
			w.namespaces["other"] = ns
		}, absent: []string{"ServiceMonitor/other/x"}},
		{name: "namespace selected again: evicted object translated", edit: func() {
			ns := w.namespaces["other"].DeepCopy()
			ns.ObjectMeta = w.bump(ns.ObjectMeta)
			ns.Labels = nil
			w.namespaces["other"] = ns
		}, fresh: []string{"ServiceMonitor/other/x"}},
		{name: "Options changed", edit: func() { opts.KubeconfigFile = "/kubeconfig" }, fresh: all},
		{name: "flags-only mode", edit: func() { w.agent = nil }, fresh: all},
		{name: "flags-only, monitor edited", edit: func() {
			old := w.sms["other/x"]
			sm := old.DeepCopy()
			sm.ObjectMeta = w.bump(old.ObjectMeta)
			sm.Spec.Endpoints[0].Path = "/x"
			w.sms["other/x"] = sm
		}, fresh: []string{"ServiceMonitor/other/x"}},
	}

	c, rc := &Cache{}, &ReferenceCache{}
	prev := map[string]*promconfig.ScrapeConfig{}
	var accepted, rejected int
	for _, step := range steps {
		step.edit()
		snap := w.snapshot()
		require.Equal(t, ReferencedObjects(snap, opts), ReferencedObjectsWithCache(snap, opts, rc), step.name)
		want, wantRes, wantErr := Generate(snap, opts)
		got, gotRes, gotErr := GenerateWithCache(snap, opts, c)
		require.Equal(t, wantErr, gotErr, step.name)
		if step.wantErr {
			require.Error(t, gotErr, step.name)
			continue
		}
		require.NoError(t, gotErr, step.name)
		require.Equal(t, wantRes, gotRes, step.name)
		wantYAML, err := Marshal(want, true)
		require.NoError(t, err)
		gotYAML, err := Marshal(got, true)
		require.NoError(t, err)
		require.Equal(t, string(wantYAML), string(gotYAML), step.name)
		require.Equal(t, len(gotRes), c.Stats().Objects, "%s: one entry per selected object", step.name)
		require.Len(t, rc.entries, len(gotRes), "%s: one reference entry per selected object", step.name)

		fresh := map[string]bool{}
		for _, k := range step.fresh {
			fresh[k] = true
		}
		next := map[string]*promconfig.ScrapeConfig{}
		for _, sc := range got.ScrapeConfigs {
			next[sc.JobName] = sc
			key, ok := JobObject(sc.JobName)
			require.True(t, ok, sc.JobName)
			old, had := prev[sc.JobName]
			if fresh["*"] || fresh[key.String()] {
				require.False(t, had && old == sc, "%s: job %s must be translated anew", step.name, sc.JobName)
				continue
			}
			require.True(t, had, "%s: job %s is new", step.name, sc.JobName)
			require.Same(t, old, sc, "%s: job %s must be reused", step.name, sc.JobName)
		}
		prev = next
		byKey := map[string]Result{}
		for _, r := range gotRes {
			byKey[r.Key().String()] = r
		}
		for k, want := range step.accepted {
			r, ok := byKey[k]
			require.True(t, ok, "%s: no result for %s", step.name, k)
			require.Equal(t, want, r.Accepted, "%s: %s: %s", step.name, k, r.Reason)
		}
		for _, k := range step.absent {
			require.NotContains(t, byKey, k, step.name)
		}
		for _, r := range gotRes {
			if r.Accepted {
				accepted++
			} else {
				rejected++
			}
		}
	}
	// The sequence covers both accepted and rejected objects.
	require.Positive(t, accepted)
	require.Positive(t, rejected)
}

// TestGenerateWithCacheRejectedReused checks that a rejected object is
// not translated again while nothing it read changes, and that a lookup
// of a missing Secret is what makes its creation count.
func TestGenerateWithCacheRejectedReused(t *testing.T) {
	w := newCacheWorld(t)
	c := &Cache{}
	_, res, err := GenerateWithCache(w.snapshot(), Options{}, c)
	require.NoError(t, err)
	before := c.Stats()
	_, res2, err := GenerateWithCache(w.snapshot(), Options{}, c)
	require.NoError(t, err)
	require.Equal(t, res, res2)
	after := c.Stats()
	require.Equal(t, before.Misses, after.Misses, "nothing translated again")
	require.Equal(t, before.Hits+uint64(len(res)), after.Hits)
	var needs Result
	for _, r := range res2 {
		if r.Name == "needs" {
			needs = r
		}
	}
	require.False(t, needs.Accepted)
	require.Contains(t, needs.Reason, "secret app/late not found")
}

// TestGenerateWithCacheDuplicateKey: two objects of one kind and name (a
// producer bug) still give Generate's output.
func TestGenerateWithCacheDuplicateKey(t *testing.T) {
	a := newTestSM("ns", "dup", nil, monitoringv1.Endpoint{Port: "a"})
	b := newTestSM("ns", "dup", nil, monitoringv1.Endpoint{Port: "b"})
	snap := &Snapshot{ServiceMonitors: []*monitoringv1.ServiceMonitor{a, b}}
	c := &Cache{}
	for range 3 {
		want, wantRes, err := Generate(snap, Options{})
		require.NoError(t, err)
		got, gotRes, err := GenerateWithCache(snap, Options{}, c)
		require.NoError(t, err)
		require.Equal(t, wantRes, gotRes)
		wantYAML, err := Marshal(want, true)
		require.NoError(t, err)
		gotYAML, err := Marshal(got, true)
		require.NoError(t, err)
		require.Equal(t, string(wantYAML), string(gotYAML))
	}
}

// TestCompareKeys: compareKeys orders like comparing the "namespace/name"
// strings, including namespaces that are prefixes of others.
func TestCompareKeys(t *testing.T) {
	parts := []string{"", "a", "a-b", "a.b", "a/b", "ab", "a0", "b", "a/", "-", "/"}
	for _, ns1 := range parts {
		for _, n1 := range parts {
			for _, ns2 := range parts {
				for _, n2 := range parts {
					want := strings.Compare(ns1+"/"+n1, ns2+"/"+n2)
					require.Equal(t, want, compareKeys(ns1, n1, ns2, n2), "%q/%q vs %q/%q", ns1, n1, ns2, n2)
				}
			}
		}
	}
}
