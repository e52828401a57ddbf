package agent

import (
	"fmt"
	"slices"
	"strconv"

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
	cfg  promdiscovery.Config
}

// sdRegistry names distinct discovery configurations across applies. It
// remembers the sources of every job pointer, so an apply costs work only
// for new or changed jobs (unchanged jobs keep their pointer, see apply.go).
// Guarded by Agent.applyMtx.
type sdRegistry struct {
	clusterWide bool
	next        int
	// byKey buckets entries by the YAML of their configuration (secrets
	// print as <secret>); entries of one bucket are told apart by content.
	byKey map[string][]*sdEntry
	// jobs are the sources of the jobs of the last plan, by job pointer.
	jobs map[*promconfig.ScrapeConfig][]jobSource
	// sets is the last plan's discovery configuration per set name.
	sets map[string]promdiscovery.Configs
}

func newSDRegistry(clusterWide bool) *sdRegistry {
	return &sdRegistry{clusterWide: clusterWide, byKey: map[string][]*sdEntry{}, jobs: map[*promconfig.ScrapeConfig][]jobSource{}}
}

// sdPlan is the discovery of one configuration: the sources per job, the
// configuration per set and whether the sets differ from the running ones
// (the discovery manager needs an apply). commit makes it the running one.
type sdPlan struct {
	byJob   map[string][]jobSource
	sets    map[string]promdiscovery.Configs
	changed bool
	commit  func()
}

// plan computes the discovery of jobs. Only new configurations get a name
// before commit; the registry forgets names no committed plan uses.
func (r *sdRegistry) plan(jobs []*promconfig.ScrapeConfig) *sdPlan {
	p := &sdPlan{byJob: make(map[string][]jobSource, len(jobs)), sets: map[string]promdiscovery.Configs{}}
	nextJobs := make(map[*promconfig.ScrapeConfig][]jobSource, len(jobs))
	entries := map[string]*sdEntry{}
	for _, sc := range jobs {
		srcs, ok := r.jobs[sc]
		if !ok {
			srcs = r.sources(sc)
		}
		nextJobs[sc] = srcs
		p.byJob[sc.JobName] = srcs
		for _, s := range srcs {
			entries[s.set] = nil
		}
	}
	for _, bucket := range r.byKey {
		for _, e := range bucket {
			if _, ok := entries[e.name]; ok {
				entries[e.name] = e
				p.sets[e.name] = promdiscovery.Configs{e.cfg}
			}
		}
	}
	p.changed = r.sets == nil || len(p.sets) != len(r.sets)
	for name := range p.sets {
		if _, ok := r.sets[name]; !ok {
			p.changed = true
		}
	}
	p.commit = func() {
		for key, bucket := range r.byKey {
			kept := slices.DeleteFunc(bucket, func(e *sdEntry) bool { return entries[e.name] == nil })
			if len(kept) == 0 {
				delete(r.byKey, key)
			} else {
				r.byKey[key] = kept
			}
		}
		r.jobs, r.sets = nextJobs, p.sets
	}
	return p
}

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
			entry = &sdEntry{name: "sd/" + strconv.Itoa(r.next), cfg: shared}
			r.next++
			r.byKey[key] = append(r.byKey[key], entry)
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
