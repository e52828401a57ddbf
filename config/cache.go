package config

import (
	"sync"
	"sync/atomic"

	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	promconfig "github.com/prometheus/prometheus/config"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Cache makes GenerateWithCache proportional to the change: it remembers,
// per selected object, the finalized jobs and the Result of its last
// translation, and what that translation read, and hands them out again
// while none of it has changed. A translation depends on exactly three
// things, and the cache checks each:
//
//   - the object itself: unchanged when it is the same pointer as before
//     (discovery hands over the informer's objects, so an untouched
//     object keeps its pointer across snapshots), or, for a new pointer,
//     when it has the same non-empty resourceVersion, UID and generation
//     (an informer relist). An object without resourceVersion is
//     translated again whenever its pointer changes;
//   - every Secret and ConfigMap key it looked up: recorded by the resolver
//     with its outcome (value, or which of object and key was missing)
//     and looked up again in the new snapshot; only a different outcome
//     counts, so an edit of another key or of the Secret's metadata does
//     not;
//   - the global inputs: Options and the PrometheusAgent's namespace, name
//     and spec (semantic equality, so that a status update is no change).
//     When they change, the whole cache is dropped; a call that fails
//     (invalid settings or remote write) leaves the cache untouched.
//
// Nothing else of a Snapshot reaches a translation: namespaces only decide
// the selection, which runs on every call. Code that makes a translation
// read more of the snapshot must record it here. Entries of objects not
// selected by a call are evicted at its end. The output is exactly what
// Generate gives for the same snapshot; cache_test.go checks it.
//
// Jobs handed out again are the same *promconfig.ScrapeConfig pointers
// (and the Result the same value, its Jobs slice shared). They are already
// finalized (ScrapeConfig.Validate ran with the settings' global section),
// and everyone must treat them as read-only, except the first preparation
// of a job for the scrape manager, which may fill defaults in place once.
// A second Validate under the same global section changes no value but
// still writes fields whose value and default are both zero (sample
// limit, ...): the agent must not run it again on a pointer it has
// applied, as the scrape manager reads that job concurrently. A caller
// that adds rules to jobs (the replica relabeling) must do so
// idempotently, appending to a job only once.
//
// A Cache is safe for concurrent use; calls are serialized. The zero
// value is ready to use.
type Cache struct {
	mu sync.Mutex
	// primed is true once a call set opts and agent.
	primed bool
	opts   Options
	agent  *monitoringv1alpha1.PrometheusAgent
	// entries by object; call numbers the calls, used counts the entries
	// the current call looked up or stored.
	entries map[ObjectKey]*cacheEntry
	call    uint64
	used    int
	// extra is the outcome of the agent's additionalScrapeConfigs;
	// extraUsed is true once the current call used or stored it.
	extra     *additionalEntry
	extraUsed bool
	// The counters of Stats, readable without waiting for a call.
	hits, misses, drops atomic.Uint64
	objects             atomic.Int64
}

// CacheStats counts the work of a Cache since it was created.
type CacheStats struct {
	// Hits and Misses count selected objects whose translation was reused
	// or made; Drops counts changes of the global inputs.
	Hits, Misses, Drops uint64
	// Objects is the number of translations held.
	Objects int
}

// objectVersion identifies the version of an object a cached value was
// computed from.
type objectVersion struct {
	obj any // the object's pointer
	uid types.UID
	rv  string
	gen int64
}

func versionOf(obj any, meta *metav1.ObjectMeta) objectVersion {
	return objectVersion{obj: obj, uid: meta.UID, rv: meta.ResourceVersion, gen: meta.Generation}
}

// same reports whether obj is the object v was taken from: the same
// pointer, or the same non-empty resourceVersion, UID and generation.
func (v *objectVersion) same(obj any, meta *metav1.ObjectMeta) bool {
	if v.obj == obj {
		return true
	}
	return meta.ResourceVersion != "" && meta.ResourceVersion == v.rv && meta.UID == v.uid && meta.Generation == v.gen
}

// cacheEntry is the last translation of one object.
type cacheEntry struct {
	version objectVersion
	reads   []lookup
	jobs    []*promconfig.ScrapeConfig
	result  Result
	// call is the last call that used the entry.
	call uint64
}

// GenerateWithCache is Generate, reusing the translations in c of objects
// whose inputs have not changed (see Cache) and remembering the others.
// Its output equals Generate's; a nil c makes it Generate. Neither snap's
// objects nor opts' maps and selectors may be modified after the call.
func GenerateWithCache(snap *Snapshot, opts Options, c *Cache) (*promconfig.Config, []Result, error) {
	if c == nil {
		return Generate(snap, opts)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return generate(snap, opts, c)
}

// Stats returns the counters of c as of the last completed call; it does
// not wait for a running one.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Drops: c.drops.Load(), Objects: int(c.objects.Load())}
}

// begin starts a call with valid settings from opts and agent, dropping
// every entry when they differ from the last call's.
func (c *Cache) begin(opts Options, agent *monitoringv1alpha1.PrometheusAgent) {
	if c == nil {
		return
	}
	c.call++
	c.used = 0
	c.extraUsed = false
	if c.primed && sameGlobal(c.opts, c.agent, opts, agent) {
		c.agent = agent // the same spec; compare by pointer next time
		return
	}
	if len(c.entries) > 0 {
		c.drops.Add(1)
	}
	c.primed, c.opts, c.agent = true, opts, agent
	c.entries = map[ObjectKey]*cacheEntry{}
	c.extra = nil
}

// sameGlobal reports whether two sets of global inputs give the same
// settings.
func sameGlobal(o1 Options, a1 *monitoringv1alpha1.PrometheusAgent, o2 Options, a2 *monitoringv1alpha1.PrometheusAgent) bool {
	if !equality.Semantic.DeepEqual(o1, o2) {
		return false
	}
	switch {
	case a1 == a2:
		return true
	case a1 == nil || a2 == nil:
		return false
	}
	return a1.Namespace == a2.Namespace && a1.Name == a2.Name && equality.Semantic.DeepEqual(a1.Spec, a2.Spec)
}

// get returns the entry of key when obj and everything its translation
// read are unchanged in res, else nil. A key met twice in one call (a
// snapshot holding two objects of one name) is translated again.
func (c *Cache) get(key ObjectKey, obj any, meta *metav1.ObjectMeta, res *resolver) *cacheEntry {
	if c == nil {
		return nil
	}
	e := c.entries[key]
	if e == nil || e.call == c.call || !e.version.same(obj, meta) || !e.sameReads(res) {
		c.misses.Add(1)
		return nil
	}
	e.call = c.call
	c.used++
	c.hits.Add(1)
	return e
}

// put remembers a translation of key made in this call.
func (c *Cache) put(key ObjectKey, obj any, meta *metav1.ObjectMeta, reads []lookup, jobs []*promconfig.ScrapeConfig, r Result) {
	if c == nil {
		return
	}
	if old := c.entries[key]; old != nil && old.call == c.call {
		return // a duplicate key; the first one stays
	}
	c.entries[key] = &cacheEntry{version: versionOf(obj, meta), reads: reads, jobs: jobs, result: r, call: c.call}
	c.used++
}

// end evicts the entries this call did not use: objects deleted or no
// longer selected.
func (c *Cache) end() {
	if c == nil {
		return
	}
	if !c.extraUsed {
		c.extra = nil
	}
	if c.used != len(c.entries) {
		for k, e := range c.entries {
			if e.call != c.call {
				delete(c.entries, k)
			}
		}
	}
	c.objects.Store(int64(len(c.entries)))
}

// sameReads reports whether every lookup of e has the same outcome in res.
func (e *cacheEntry) sameReads(res *resolver) bool {
	for i := range e.reads {
		if !res.unchanged(&e.reads[i]) {
			return false
		}
	}
	return true
}
