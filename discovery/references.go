package discovery

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/promshard/promshard/config"
)

// refFilter decides whether a Secret or ConfigMap change needs a rebuild:
// only if the last snapshot's selected objects reference it (see
// Options.References). Without a References function, or before the first
// snapshot, every change does.
//
// Race: a change the filter skipped while a rebuild was reading the caches
// may concern an object the new snapshot references (a monitor naming a
// Secret and the Secret created together). Such skipped changes are kept
// until the new references are known and trigger another rebuild if they
// are referenced by then.
type refFilter struct {
	compute func(*config.Snapshot) *config.References

	mu   sync.Mutex
	refs *config.References // nil: unknown, everything matters
	// skipped are the changes skipped since the current rebuild started
	// reading the caches.
	skipped []skippedChange
}

type skippedChange struct {
	resource, namespace, name string
}

// matters reports whether a change of the object namespace/name of resource
// (secrets or configmaps) can change the snapshot's translation, and
// remembers it if not.
func (f *refFilter) matters(resource, namespace, name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs == nil || referenced(f.refs, resource, namespace, name) {
		return true
	}
	f.skipped = append(f.skipped, skippedChange{resource, namespace, name})
	return false
}

func referenced(refs *config.References, resource, namespace, name string) bool {
	if resource == resSecrets {
		return refs.Secret(namespace, name)
	}
	return refs.ConfigMap(namespace, name)
}

// rebuilding is called before a rebuild reads the caches: the changes
// skipped so far are in the caches and so in the new snapshot.
func (f *refFilter) rebuilding() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skipped = f.skipped[:0]
}

// rebuilt computes the references of snap and reports whether a change
// skipped during the rebuild is referenced now (another rebuild is due).
func (f *refFilter) rebuilt(snap *config.Snapshot) (again bool) {
	if f.compute == nil {
		return false
	}
	refs := f.compute(snap)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refs = refs
	for _, c := range f.skipped {
		if referenced(refs, c.resource, c.namespace, c.name) {
			again = true
		}
	}
	f.skipped = f.skipped[:0]
	return again
}

// informerObjectName returns the namespace and name of an informer object or
// tombstone.
func informerObjectName(obj any) (namespace, name string, ok bool) {
	if t, isTombstone := obj.(cache.DeletedFinalStateUnknown); isTombstone {
		ns, n, err := cache.SplitMetaNamespaceKey(t.Key)
		return ns, n, err == nil
	}
	m, isObj := obj.(metav1.Object)
	if !isObj {
		return "", "", false
	}
	return m.GetNamespace(), m.GetName(), true
}
