package sharding

import (
	"maps"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
)

// Dropped targets.
//
// A target its job's relabeling drops is scraped by nobody, and Prometheus
// lists it under droppedTargets of /api/v1/targets (at most
// keep_dropped_targets per job, when that is set). A scrape pool would keep
// it and build it again on every sync of the pool. The filter keeps such
// targets out of the scrape manager: it relabeled them already to decide
// ownership, and a dropped target sent to a pool makes every change of it a
// sync of that pool. With prometheus-operator's configurations that is most
// targets and most syncs. Every job of a ServiceMonitor discovers every
// endpoint of its namespaces and keeps only those of its Services, so a pod
// change in a namespace changes the dropped targets of every job there (20
// jobs at 5,000 monitors in 500 namespaces). Each such sync also builds the
// pool's sync-length summary again (see the agent's syncCounter).
//
// One member, the owner of the target's key, reports it instead
// (DroppedTargets), as its scrape pool did before: the cluster lists each
// dropped target once.

// droppedRef is a dropped target: the index of its entry in an input group.
type droppedRef struct {
	tg *targetgroup.Group
	i  int
}

// droppedJob is what the filter reports as dropped for one job.
type droppedJob struct {
	cfg  *config.ScrapeConfig
	refs []droppedRef
}

// setDropped records the dropped targets job's last assignment reports
// (none: refs or cfg nil).
func (f *Filter) setDropped(job string, cfg *config.ScrapeConfig, refs []droppedRef) {
	if len(refs) == 0 || cfg == nil {
		// Only Run's goroutine writes f.dropped: it may read it unlocked.
		if _, ok := f.dropped[job]; !ok {
			return // the common case: nothing to report, nothing reported
		}
	}
	f.droppedMtx.Lock()
	defer f.droppedMtx.Unlock()
	if len(refs) == 0 || cfg == nil {
		delete(f.dropped, job)
		return
	}
	if f.dropped == nil {
		f.dropped = map[string]droppedJob{}
	}
	f.dropped[job] = droppedJob{cfg: cfg, refs: refs}
}

// DroppedTargets returns, per job, the discovered labels of the targets its
// relabeling drops that this member reports (the first keep_dropped_targets
// of them, if that is set), and how many it reports in all: what Prometheus'
// scrape manager returns from TargetsDropped and TargetsDroppedCounts. The
// labels are built on each call.
func (f *Filter) DroppedTargets() (map[string][]labels.Labels, map[string]int) {
	f.droppedMtx.Lock()
	jobs := maps.Clone(f.dropped)
	f.droppedMtx.Unlock()
	targets := make(map[string][]labels.Labels, len(jobs))
	counts := make(map[string]int, len(jobs))
	lb := labels.NewBuilder(labels.EmptyLabels())
	for job, d := range jobs {
		n := len(d.refs)
		if k := d.cfg.KeepDroppedTargets; k > 0 && uint(n) > k {
			n = int(k)
		}
		ls := make([]labels.Labels, 0, n)
		for _, r := range d.refs[:n] {
			scrape.PopulateDiscoveredLabels(lb, d.cfg, r.tg.Targets[r.i], r.tg.Labels)
			ls = append(ls, lb.Labels())
		}
		targets[job], counts[job] = ls, len(d.refs)
	}
	return targets, counts
}
