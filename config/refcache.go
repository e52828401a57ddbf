package config

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReferenceCache makes ReferencedObjectsWithCache proportional to the
// change: the walk over a monitor's spec for Secret and ConfigMap
// selectors, the expensive part (reflection over every field), is
// remembered per object while the object is unchanged (the same pointer,
// or the same non-empty resourceVersion, UID and generation; see Cache).
// The walk depends on the object alone, so the settings do not invalidate
// it; selection and the PrometheusAgent's own references are computed on
// every call. Entries of objects not selected by a call are evicted.
//
// A ReferenceCache is safe for concurrent use; calls are serialized. The
// zero value is ready to use.
type ReferenceCache struct {
	mu      sync.Mutex
	entries map[ObjectKey]*refEntry
	call    uint64
	used    int
}

// refEntry holds the selector names of one object's spec.
type refEntry struct {
	version objectVersion
	names   selectorNames
	call    uint64
}

// ReferencedObjectsWithCache is ReferencedObjects, walking only the specs
// of objects that changed since the last call with c; a nil c makes it
// ReferencedObjects. The result equals ReferencedObjects'.
func ReferencedObjectsWithCache(snap *Snapshot, opts Options, c *ReferenceCache) *References {
	if c == nil {
		return ReferencedObjects(snap, opts)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return referencedObjects(snap, opts, c)
}

func (c *ReferenceCache) begin() {
	if c == nil {
		return
	}
	c.call++
	c.used = 0
	if c.entries == nil {
		c.entries = map[ObjectKey]*refEntry{}
	}
}

// names returns the selector names of spec, the spec of obj.
func (c *ReferenceCache) names(key ObjectKey, obj any, meta *metav1.ObjectMeta, spec any) selectorNames {
	if c == nil {
		return specSelectorNames(spec)
	}
	e := c.entries[key]
	if e != nil && e.call != c.call && e.version.same(obj, meta) {
		e.call = c.call
		c.used++
		return e.names
	}
	names := specSelectorNames(spec)
	if e == nil || e.call != c.call { // the first of duplicate keys stays
		c.entries[key] = &refEntry{version: versionOf(obj, meta), names: names, call: c.call}
		c.used++
	}
	return names
}

// end evicts the entries this call did not use.
func (c *ReferenceCache) end() {
	if c == nil || c.used == len(c.entries) {
		return
	}
	for k, e := range c.entries {
		if e.call != c.call {
			delete(c.entries, k)
		}
	}
}
