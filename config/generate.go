package config

// Shared generator API (config-B: probe.go and scrapeconfig.go use these):
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
// ServiceMonitor, PodMonitor, Probe and ScrapeConfig gets one Result; an
// object that cannot be translated is rejected and left out, without
// affecting the others. Objects not selected by the settings get no Result.
// The error is non-nil only when the PrometheusAgent or the flag settings
// make the whole configuration impossible (for example an invalid
// scrapeInterval or remote-write URL).
//
// The output is deterministic: jobs follow the order prometheus-operator
// gives a PrometheusAgent (GenerateAgentConfiguration: PodMonitors,
// ServiceMonitors, Probes, ScrapeConfigs, each sorted by their
// "namespace/name" key) and Results are sorted by kind, namespace and name.
func Generate(snap *Snapshot, opts Options) (*promconfig.Config, []Result, error) {
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
	var results []Result
	add := func(kind string, meta metav1.ObjectMeta, jobs []*promconfig.ScrapeConfig, err error) {
		if err == nil {
			err = g.finalize(jobs)
		}
		r := Result{Kind: kind, Namespace: meta.Namespace, Name: meta.Name, Generation: meta.Generation, Accepted: err == nil}
		if err != nil {
			r.Reason = err.Error()
		} else {
			cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, jobs...)
			r.Jobs = jobNames(jobs)
		}
		results = append(results, r)
	}
	for _, pm := range sorted(g.selectPodMonitors()) {
		jobs, err := g.podMonitorJobs(pm)
		add(KindPodMonitor, pm.ObjectMeta, jobs, err)
	}
	for _, sm := range sorted(g.selectServiceMonitors()) {
		jobs, err := g.serviceMonitorJobs(sm)
		add(KindServiceMonitor, sm.ObjectMeta, jobs, err)
	}
	for _, p := range sorted(g.selectProbes()) {
		jobs, err := g.probeJobs(p)
		add(KindProbe, p.ObjectMeta, jobs, err)
	}
	for _, sc := range sorted(g.selectScrapeConfigs()) {
		jobs, err := g.scrapeConfigJobs(sc)
		add(KindScrapeConfig, sc.ObjectMeta, jobs, err)
	}
	slices.SortStableFunc(results, func(a, b Result) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return &cfg, results, nil
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
// before "a/x"); a new slice.
func sorted[T objectMeta](objs []T) []T {
	type keyed struct {
		key string
		obj T
	}
	ks := make([]keyed, len(objs))
	for i, o := range objs {
		ks[i] = keyed{o.GetNamespace() + "/" + o.GetName(), o}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	out := make([]T, len(ks))
	for i, k := range ks {
		out[i] = k.obj
	}
	return out
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
