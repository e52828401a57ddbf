package agent

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"go.yaml.in/yaml/v2"
)

// Shared service discovery.
//
// prometheus-operator gives every ServiceMonitor endpoint its own job with
// its own Kubernetes SD configuration, restricted to the monitor's
// namespaces. Prometheus' discovery manager runs one provider per distinct
// configuration, but finds the provider of a job by comparing its
// configuration with every running provider's (reflect.DeepEqual), so that
// an apply costs jobs x providers comparisons (10,000 x 1,500 at 5,000
// monitors in 500 namespaces: seconds), and it sends the target groups of
// every job on every discovery update.
//
// The agent therefore hands the discovery manager one target set per
// distinct discovery configuration ("sd/<n>", names stable while the
// configuration is in use), not one per job, and fans the sets' groups out
// to the jobs itself (fanout.go). The discovery manager is applied only
// when the distinct configurations change, which a monitor edit seldom
// does.
//
// With Options.KubernetesSDClusterWide, namespaced Kubernetes SD
// configurations (any role but node, without own_namespace) that differ
// only in their namespace list share one cluster-wide discovery, and each
// job gets the groups of its own namespaces (every Kubernetes target group
// carries __meta_kubernetes_namespace). The process then holds one watch
// per resource kind instead of one per namespace and kind, and a monitor
// in a new namespace starts no discovery at all; in exchange it caches
// those resources of every namespace, and needs list/watch on them
// cluster-wide.

// namespaceLabel is the group label of Kubernetes SD naming the namespace.
const namespaceLabel = "__meta_kubernetes_namespace"

// jobSource is one discovery configuration of a job: the shared set it
// reads and, for a cluster-wide Kubernetes set, the namespaces it keeps
// (nil: all).
type jobSource struct {
	set        string
	namespaces map[string]struct{}
}

// sdEntry is one distinct discovery configuration in use.
type sdEntry struct {
	name string
	key  string // its bucket in sdRegistry.byKey
	cfg  promdiscovery.Config
	// run is the configuration the discovery manager runs: cfg, or cfg
	// wrapped with needs when its labels are trimmed (sdtrim.go).
	run   promdiscovery.Config
	needs *labelNeeds
}

// trimSettings turn on trimmed discovered labels (sdtrim.go).
type trimSettings struct {
	keep    []string // kept although no job reads them
	relists prometheus.Counter
}

// sdRegistry names distinct discovery configurations across applies. It
// keeps the sources of every job of the last committed plan and how many
// jobs read each set, so that a plan costs only the jobs that changed
// (unchanged jobs keep their pointer, see apply.go).
// Guarded by Agent.applyMtx.
type sdRegistry struct {
	clusterWide bool
	trim        *trimSettings // nil: labels are not trimmed
	next        int
	// byKey buckets entries by the YAML of their configuration (secrets
	// print as <secret>); entries of one bucket are told apart by content.
	// entries holds the same entries by set name.
	byKey   map[string][]*sdEntry
	entries map[string]*sdEntry
	// jobs are the committed jobs' sources, refs the number of committed
	// sources reading each set.
	jobs map[string][]jobSource
	refs map[string]int
	// fresh are the entries named since the last commit; a commit forgets
	// those no job reads (named by plans that were not committed).
	fresh     []*sdEntry
	committed bool
}

func newSDRegistry(clusterWide bool) *sdRegistry {
	return &sdRegistry{clusterWide: clusterWide, byKey: map[string][]*sdEntry{}, entries: map[string]*sdEntry{},
		jobs: map[string][]jobSource{}, refs: map[string]int{}}
}

// sdPlan is the discovery of one configuration change: the sources of each
// changed job (nil: the job is gone), and, when the sets in use differ from
// the running ones (the discovery manager needs an apply), the
// configuration of every set. commit makes it the running one.
type sdPlan struct {
	changes map[string][]jobSource
	sets    map[string]promdiscovery.Configs
	changed bool
	commit  func()
}

// plan computes the discovery after the changes to the committed jobs
// (changes maps a job to its new configuration, nil: removed). Only new
// configurations get a name before commit; the registry forgets names no
// committed job reads.
func (r *sdRegistry) plan(changes map[string]*promconfig.ScrapeConfig) *sdPlan {
	p := &sdPlan{changes: make(map[string][]jobSource, len(changes))}
	delta := map[string]int{} // set -> change of its readers
	for job, sc := range changes {
		for _, s := range r.jobs[job] {
			delta[s.set]--
		}
		var srcs []jobSource
		if sc != nil {
			srcs = r.sources(sc)
			for _, s := range srcs {
				delta[s.set]++
			}
		}
		p.changes[job] = srcs
	}
	p.changed = !r.committed
	for set, d := range delta {
		if n := r.refs[set]; (n > 0) != (n+d > 0) {
			p.changed = true
		}
	}
	if p.changed {
		p.sets = make(map[string]promdiscovery.Configs, len(r.refs)+len(delta))
		for set, n := range r.refs {
			if n+delta[set] > 0 {
				p.sets[set] = promdiscovery.Configs{r.entries[set].run}
			}
		}
		for set, d := range delta {
			if r.refs[set] == 0 && d > 0 {
				p.sets[set] = promdiscovery.Configs{r.entries[set].run}
			}
		}
	}
	p.commit = func() {
		for job, srcs := range p.changes {
			if srcs == nil {
				delete(r.jobs, job)
			} else {
				r.jobs[job] = srcs
			}
		}
		for set, d := range delta {
			if r.refs[set] += d; r.refs[set] <= 0 {
				delete(r.refs, set)
				r.forget(set)
			}
		}
		for _, e := range r.fresh {
			if r.refs[e.name] == 0 {
				r.forget(e.name)
			}
		}
		r.fresh, r.committed = nil, true
	}
	return p
}

// forget drops the entry of set.
func (r *sdRegistry) forget(set string) {
	e := r.entries[set]
	if e == nil {
		return
	}
	delete(r.entries, set)
	kept := slices.DeleteFunc(r.byKey[e.key], func(x *sdEntry) bool { return x == e })
	if len(kept) == 0 {
		delete(r.byKey, e.key)
	} else {
		r.byKey[e.key] = kept
	}
}

// sets returns the number of sets the committed jobs read.
func (r *sdRegistry) sets() int { return len(r.refs) }

// sources returns the sources of a job not seen before, naming new
// distinct configurations.
func (r *sdRegistry) sources(sc *promconfig.ScrapeConfig) []jobSource {
	srcs := make([]jobSource, 0, len(sc.ServiceDiscoveryConfigs))
	for _, cfg := range sc.ServiceDiscoveryConfigs {
		shared, namespaces := r.share(cfg)
		key := sdKey(shared, sc.JobName, len(srcs))
		var entry *sdEntry
		for _, e := range r.byKey[key] {
			if sameContent(e.cfg, shared) {
				entry = e
				break
			}
		}
		if entry == nil {
			entry = &sdEntry{name: "sd/" + strconv.Itoa(r.next), key: key, cfg: shared, run: shared}
			if _, ok := shared.(*kubernetes.SDConfig); ok && r.trim != nil {
				entry.needs = newLabelNeeds(r.trim.keep)
				entry.run = &trimConfig{inner: shared, needs: entry.needs, relist: r.trim.relists}
			}
			r.next++
			r.byKey[key] = append(r.byKey[key], entry)
			r.entries[entry.name] = entry
			r.fresh = append(r.fresh, entry)
		}
		if entry.needs != nil {
			// Before the job runs: a set started now has the labels at
			// once, a running one relists (a plan that is not committed
			// only keeps more labels than needed).
			entry.needs.add(sc.RelabelConfigs)
		}
		srcs = append(srcs, jobSource{set: entry.name, namespaces: namespaces})
	}
	return srcs
}

// share returns the configuration a job's discovery runs as and the
// namespaces the job keeps of it (nil: all).
func (r *sdRegistry) share(cfg promdiscovery.Config) (promdiscovery.Config, map[string]struct{}) {
	k, ok := cfg.(*kubernetes.SDConfig)
	if !ok || !r.clusterWide || k.Role == kubernetes.RoleNode || k.NamespaceDiscovery.IncludeOwnNamespace || len(k.NamespaceDiscovery.Names) == 0 {
		return cfg, nil
	}
	cw := *k
	cw.NamespaceDiscovery = kubernetes.NamespaceDiscovery{}
	namespaces := make(map[string]struct{}, len(k.NamespaceDiscovery.Names))
	for _, ns := range k.NamespaceDiscovery.Names {
		namespaces[ns] = struct{}{}
	}
	return &cw, namespaces
}

// sdKey is a discovery configuration's bucket: its type and YAML. A
// configuration that does not marshal (none of Prometheus' do today) gets
// a bucket of its own, named after its job and position: it is not shared.
func sdKey(cfg promdiscovery.Config, job string, i int) string {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Sprintf("\x00unshared\x00%s\x00%d", job, i)
	}
	return cfg.Name() + "\x00" + string(b)
}
