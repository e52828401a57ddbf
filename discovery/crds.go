package discovery

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// checkCRDsLoop asks the API server which monitoring CRDs are installed, now
// and every CRDCheckInterval, and starts or stops their informers. It
// returns when ctx is done.
func (w *Watcher) checkCRDsLoop(ctx context.Context, wg *sync.WaitGroup) {
	ticker := time.NewTicker(w.opts.CRDCheckInterval)
	defer ticker.Stop()
	for first := true; ; first = false {
		w.checkCRDs(ctx, wg)
		if !first && !w.Synced() {
			if pending := w.pendingResources(); len(pending) > 0 {
				w.logger.Info("waiting for informers to sync", "resources", pending)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// checkCRDs runs one CRD check. A resource whose group version cannot be
// queried (other than "not found") keeps its last known state.
func (w *Watcher) checkCRDs(ctx context.Context, wg *sync.WaitGroup) {
	installed := map[string]bool{}
	complete := true
	byGroupVersion := map[string][]*kind{}
	for _, k := range w.kinds {
		if k.crd {
			gv := k.gvr.GroupVersion().String()
			byGroupVersion[gv] = append(byGroupVersion[gv], k)
		}
	}
	for gv, kinds := range byGroupVersion {
		names, err := w.servedResources(ctx, gv)
		if err != nil {
			if ctx.Err() == nil {
				w.logger.Warn("cannot check installed CRDs", "groupVersion", gv, "err", err)
			}
			complete = false
			continue
		}
		for _, k := range kinds {
			installed[k.resource] = names[k.resource]
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if ctx.Err() != nil {
		return // do not start informers that Run would not wait for
	}
	for _, k := range w.kinds {
		now, known := installed[k.resource]
		if !k.crd || !known {
			continue
		}
		before, seen := w.crdState[k.resource]
		w.crdState[k.resource] = now
		w.metrics.crdInstalled.WithLabelValues(k.resource).Set(boolToFloat(now))
		switch {
		case now && (!seen || !before):
			w.logger.Info("CRD installed, watching", "resource", k.resource, "groupVersion", k.gvr.GroupVersion().String())
			w.startKindLocked(ctx, wg, k)
		case !now && !seen:
			w.logger.Info("CRD not installed, waiting", "resource", k.resource, "groupVersion", k.gvr.GroupVersion().String())
		case !now && before:
			w.logger.Warn("CRD removed, stopped watching", "resource", k.resource, "groupVersion", k.gvr.GroupVersion().String())
			w.stopKindLocked(k.resource)
		}
	}
	if complete && !w.crdChecked {
		w.crdChecked = true
		w.signal() // the first snapshot may now be built
	}
}

// servedResources returns the resource names served in groupVersion; a group
// version the server does not know serves none.
func (w *Watcher) servedResources(ctx context.Context, groupVersion string) (map[string]bool, error) {
	list, err := w.clients.disc.ServerResourcesForGroupVersionWithContext(ctx, groupVersion)
	if apierrors.IsNotFound(err) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discovery of %s: %w", groupVersion, err)
	}
	names := map[string]bool{}
	for _, r := range list.APIResources {
		names[r.Name] = true
	}
	return names, nil
}

// pendingResources lists the started resources whose informers have not
// synced yet, and "crds" while no CRD check has succeeded.
func (w *Watcher) pendingResources() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var pending []string
	if !w.crdChecked {
		pending = append(pending, "crds")
	}
	for _, k := range w.kinds {
		if r, ok := w.running[k.resource]; ok && !r.synced() {
			pending = append(pending, k.resource)
		}
	}
	return pending
}

func boolToFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
