package config

// Shared generator API (probe.go and scrapeconfig.go use these):
//
//	type generator struct {
//		snap     *Snapshot
//		opts     Options
//		res      *resolver     // g.res.secretKey, g.res.basicAuth, g.res.safeTLSConfig, ...
//		settings settings      // see the settings type below
//		nsLabels map[string]labels.Set
//	}
//	func newScrapeConfig(jobName string) *promconfig.ScrapeConfig          // Prometheus defaults + job name
//	func (g *generator) scrapeClass(name *string) (*monitoringv1.ScrapeClass, error)
//	func (g *generator) applyLimits(sc *promconfig.ScrapeConfig, l limits) error
//	func (g *generator) enforceNamespaceLabel(rcs []*relabel.Config, resource, ns, name string) []*relabel.Config
//	func (g *generator) httpClientConfig(ns string, e endpointHTTP, cls *monitoringv1.ScrapeClass) (commoncfg.HTTPClientConfig, error)  // class TLS/authorization defaults, file-access check
//	func applyScrapeProtocols(sc *promconfig.ScrapeConfig, protos []monitoringv1.ScrapeProtocol, fallback *monitoringv1.ScrapeProtocol) error
//	func applyNativeHistograms(sc *promconfig.ScrapeConfig, nh monitoringv1.NativeHistogramConfig)
//	func (g *generator) kubernetesSD(role promk8s.Role, namespaces []string, attachNode bool) *promk8s.SDConfig
//
// Generate calls probeJobs/scrapeConfigJobs, then fills every returned job's
// defaults from the global section with ScrapeConfig.Validate, rejecting
// the object if that fails; callers need not do it themselves.

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/relabel"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Resource names used by excludedFromEnforcement references.
const (
	resourceServiceMonitors = "servicemonitors"
	resourcePodMonitors     = "podmonitors"
	resourceProbes          = "probes"
	resourceScrapeConfigs   = "scrapeconfigs"
)

// settings are the effective PrometheusAgent (or flag) settings that shape
// every scrape job.
type settings struct {
	// global is the global section (interval, timeout, external labels,
	// global limits); jobs inherit unset values from it.
	global promconfig.GlobalConfig
	// overrideHonorLabels forces honor_labels to false.
	overrideHonorLabels bool
	// overrideHonorTimestamps forces honor_timestamps to false.
	overrideHonorTimestamps bool
	// ignoreNamespaceSelectors makes every monitor select its own namespace.
	ignoreNamespaceSelectors bool
	// enforcedNamespaceLabel, when set, is added to every target and series
	// with the monitor's namespace, except for excludedFromEnforcement.
	enforcedNamespaceLabel  string
	excludedFromEnforcement []monitoringv1.ObjectReference
	// enforced holds the enforced*Limit values (nil = not enforced).
	enforced limits
	// podTargetLabels are added to every ServiceMonitor's and PodMonitor's
	// podTargetLabels.
	podTargetLabels []string
	// scrapeClasses by name; defaultClass is the one marked default (or nil).
	scrapeClasses map[string]*monitoringv1.ScrapeClass
	defaultClass  *monitoringv1.ScrapeClass
	// fileAccess allows file references (bearerTokenFile, tlsConfig *File).
	fileAccess bool
	// sdRole is the Kubernetes SD role of ServiceMonitors without their own.
	sdRole monitoringv1.ServiceDiscoveryRole
	// selection of monitor objects; see selection.go.
	sel selection
}

// limits are the per-object scrape limits as given in the CRDs; nil means
// unset.
type limits struct {
	sampleLimit           *int64
	targetLimit           *int64
	labelLimit            *int64
	labelNameLengthLimit  *int64
	labelValueLengthLimit *int64
	keepDroppedTargets    *int64
	bodySizeLimit         *monitoringv1.ByteSize
}

// generator holds the state of one Generate call.
type generator struct {
	snap     *Snapshot
	opts     Options
	res      *resolver
	settings settings
	// nsLabels are the labels of the snapshot's namespaces, by name.
	nsLabels map[string]labels.Set
}

// Generate translates snap into a Prometheus configuration. Every selected
// ServiceMonitor, PodMonitor, Probe and ScrapeConfig gets one Result, and
// so does the PrometheusAgent's additionalScrapeConfigs when set
// (additional.go); an object that cannot be translated is rejected and
// left out, without affecting the others. Objects not selected by the settings get no Result.
// The error is non-nil only when the PrometheusAgent or the flag settings
// make the whole configuration impossible (for example an invalid
// scrapeInterval or remote-write URL).
//
// The output is deterministic: jobs follow the order prometheus-operator
// gives a PrometheusAgent (GenerateAgentConfiguration: PodMonitors,
// ServiceMonitors, Probes, ScrapeConfigs, each sorted by their
// "namespace/name" key, then the additional scrape configs) and Results
// are sorted by kind, namespace and name.
func Generate(snap *Snapshot, opts Options) (*promconfig.Config, []Result, error) {
	return generate(snap, opts, nil)
}

// generate is Generate, reusing and updating the translations in c when c
// is not nil (the caller holds c.mu).
func generate(snap *Snapshot, opts Options, c *Cache) (*promconfig.Config, []Result, error) {
	if snap == nil {
		snap = &Snapshot{}
	}
	g, err := newGenerator(snap, opts)
	if err != nil {
		return nil, nil, err
	}
	cfg := promconfig.DefaultConfig
	cfg.GlobalConfig = g.settings.global
	if cfg.RemoteWriteConfigs, err = g.remoteWrite(); err != nil {
		return nil, nil, err
	}
	// The cache is touched only once the settings are known to be valid:
	// a rejected PrometheusAgent leaves the translations of the last
	// valid one in place.
	c.begin(opts, snap.Agent)
	pms, sms := sorted(g.selectPodMonitors()), sorted(g.selectServiceMonitors())
	probes, scs := sorted(g.selectProbes()), sorted(g.selectScrapeConfigs())
	n := len(pms) + len(sms) + len(probes) + len(scs)
	// Jobs in prometheus-operator's order (pod monitors, service monitors,
	// probes, scrape configs), results in the order of their kind names
	// (PodMonitor, Probe, ScrapeConfig, ServiceMonitor), so that
	// sortResults usually only checks.
	// The additionalScrapeConfigs' Result, when the agent sets them, goes
	// first (its kind sorts first).
	off := 0
	if snap.Agent != nil && snap.Agent.Spec.AdditionalScrapeConfigs != nil {
		off = 1
	}
	results := make([]Result, off+n)
	pmAt, probeAt := off, off+len(pms)
	scAt := probeAt + len(probes)
	smAt := scAt + len(scs)
	// Jobs per object first, so that the job list is allocated once.
	objJobs := make([][]*promconfig.ScrapeConfig, 0, n)
	jobCount := 0
	add := func(at *int) func([]*promconfig.ScrapeConfig, Result) {
		return func(jobs []*promconfig.ScrapeConfig, r Result) {
			objJobs = append(objJobs, jobs)
			jobCount += len(jobs)
			results[*at] = r
			*at++
		}
	}
	for _, pm := range pms {
		add(&pmAt)(g.translate(c, KindPodMonitor, pm, &pm.ObjectMeta, func() ([]*promconfig.ScrapeConfig, error) { return g.podMonitorJobs(pm) }))
	}
	for _, sm := range sms {
		add(&smAt)(g.translate(c, KindServiceMonitor, sm, &sm.ObjectMeta, func() ([]*promconfig.ScrapeConfig, error) { return g.serviceMonitorJobs(sm) }))
	}
	for _, p := range probes {
		add(&probeAt)(g.translate(c, KindProbe, p, &p.ObjectMeta, func() ([]*promconfig.ScrapeConfig, error) { return g.probeJobs(p) }))
	}
	for _, sc := range scs {
		add(&scAt)(g.translate(c, KindScrapeConfig, sc, &sc.ObjectMeta, func() ([]*promconfig.ScrapeConfig, error) { return g.scrapeConfigJobs(sc) }))
	}
	if jobCount > 0 {
		cfg.ScrapeConfigs = make([]*promconfig.ScrapeConfig, 0, jobCount)
		for _, jobs := range objJobs {
			cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, jobs...)
		}
	}
	// The agent's additionalScrapeConfigs come after every generated job,
	// as in prometheus-operator; their Result sorts first by kind.
	if extra, r := g.additionalJobs(c, cfg.ScrapeConfigs); r != nil {
		cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, extra...)
		results[0] = *r
	}
	c.end()
	return &cfg, sortResults(results), nil
}

// sortResults sorts results by kind, namespace and name, keeping the order
// of equal ones. generate places them in that order already, except where
// a namespace is a prefix of another one (objects are sorted by
// "namespace/name"), so this usually only checks; else it sorts indexes,
// not the large Result values, into a new slice.
func sortResults(results []Result) []Result {
	if len(results) == 0 {
		return nil
	}
	byKey := func(a, b *Result) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	}
	if slices.IsSortedFunc(results, func(a, b Result) int { return byKey(&a, &b) }) {
		return results
	}
	idx := make([]int, len(results))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int { return cmp.Or(byKey(&results[i], &results[j]), cmp.Compare(i, j)) })
	out := make([]Result, len(results))
	for i, k := range idx {
		out[i] = results[k]
	}
	return out
}

// translate returns the finalized jobs and the Result of one selected
// object: from c when nothing the translation read has changed, else
// translated by jobsOf (and remembered in c). A rejected object has no
// jobs.
func (g *generator) translate(c *Cache, kind string, obj any, meta *metav1.ObjectMeta, jobsOf func() ([]*promconfig.ScrapeConfig, error)) ([]*promconfig.ScrapeConfig, Result) {
	key := ObjectKey{Kind: kind, Namespace: meta.Namespace, Name: meta.Name}
	if e := c.get(key, obj, meta, g.res); e != nil {
		return e.jobs, e.result
	}
	var reads []lookup
	if c != nil {
		g.res.reads = &reads
	}
	jobs, err := jobsOf()
	if err == nil {
		err = g.finalize(jobs)
	}
	g.res.reads = nil
	r := Result{Kind: kind, Namespace: meta.Namespace, Name: meta.Name, Generation: meta.Generation, Accepted: err == nil}
	if err != nil {
		r.Reason = err.Error()
		jobs = nil
	} else {
		r.Jobs = jobNames(jobs)
	}
	c.put(key, obj, meta, reads, jobs, r)
	return jobs, r
}

func jobNames(jobs []*promconfig.ScrapeConfig) []string {
	names := make([]string, len(jobs))
	for i, sc := range jobs {
		names[i] = sc.JobName
	}
	return names
}

// objectMeta is implemented by every CRD pointer type.
type objectMeta interface {
	GetNamespace() string
	GetName() string
}

// sorted returns objs sorted by their "namespace/name" key, as
// prometheus-operator sorts the keys of its object maps (so "a-b/x" comes
// before "a/x"), in place (objs must be the caller's own). Objects of equal
// keys keep their order. Snapshots from discovery are sorted by namespace,
// then name, which is the same order unless a namespace is a prefix of
// another one: usually this only checks.
func sorted[T objectMeta](objs []T) []T {
	byKey := func(a, b T) int { return compareKeys(a.GetNamespace(), a.GetName(), b.GetNamespace(), b.GetName()) }
	if !slices.IsSortedFunc(objs, byKey) {
		slices.SortStableFunc(objs, byKey)
	}
	return objs
}

// compareKeys compares ns1+"/"+name1 with ns2+"/"+name2 without building
// the strings.
func compareKeys(ns1, name1, ns2, name2 string) int {
	if ns1 == ns2 {
		return strings.Compare(name1, name2)
	}
	n := min(len(ns1), len(ns2))
	for i := range n {
		if ns1[i] != ns2[i] {
			return cmp.Compare(ns1[i], ns2[i])
		}
	}
	// One namespace is a prefix of the other: "/" meets the longer one's
	// next byte, unless that is a "/" too (not a valid namespace).
	if len(ns1) < len(ns2) && ns2[n] != '/' {
		return cmp.Compare(byte('/'), ns2[n])
	}
	if len(ns2) < len(ns1) && ns1[n] != '/' {
		return cmp.Compare(ns1[n], byte('/'))
	}
	return strings.Compare(ns1+"/"+name1, ns2+"/"+name2)
}

// finalize fills each job's unset values from the global section and runs
// Prometheus' own validation of a scrape config, relabelings included, and
// the checks building its HTTP clients would run (validate.go).
func (g *generator) finalize(jobs []*promconfig.ScrapeConfig) error {
	for _, sc := range jobs {
		if err := sc.Validate(g.settings.global); err != nil {
			return fmt.Errorf("job %s: %w", sc.JobName, err)
		}
		if err := checkJobClients(sc); err != nil {
			return fmt.Errorf("job %s: %w", sc.JobName, err)
		}
	}
	return nil
}

// newScrapeConfig returns a scrape config with Prometheus' defaults, as if
// loaded from YAML, named jobName.
func newScrapeConfig(jobName string) *promconfig.ScrapeConfig {
	sc := promconfig.DefaultScrapeConfig
	sc.JobName = jobName
	return &sc
}

// scrapeClass returns the scrape class called *name, or the default class
// when name is nil (nil when there is none). An unknown name is an error.
func (g *generator) scrapeClass(name *string) (*monitoringv1.ScrapeClass, error) {
	if name == nil {
		return g.settings.defaultClass, nil
	}
	c, ok := g.settings.scrapeClasses[*name]
	if !ok {
		return nil, fmt.Errorf("unknown scrapeClass %q", *name)
	}
	return c, nil
}

// enforceNamespaceLabel appends the rule setting the enforced namespace label
// to ns, unless the setting is off or the object (resource is e.g.
// "servicemonitors") is excluded from enforcement.
func (g *generator) enforceNamespaceLabel(rcs []*relabel.Config, resource, ns, name string) []*relabel.Config {
	label := g.settings.enforcedNamespaceLabel
	if label == "" {
		return rcs
	}
	for _, ref := range g.settings.excludedFromEnforcement {
		group := ref.Group
		if group == "" {
			group = monitoringv1.SchemeGroupVersion.Group
		}
		if group == monitoringv1.SchemeGroupVersion.Group && ref.Resource == resource &&
			ref.Namespace == ns && (ref.Name == "" || ref.Name == name) {
			return rcs
		}
	}
	rc := relabel.DefaultRelabelConfig
	rc.TargetLabel = label
	rc.Replacement = ns
	return append(rcs, &rc)
}
