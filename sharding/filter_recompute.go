package sharding

import (
	"time"

	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// recompute relabels what changed in the input if needed (reprepare: the
// input or the configurations changed), assigns owners where the input or
// the member view changed, hands moved targets off, updates f.out and
// returns the jobs whose output changed, with nil for a job no longer in
// it.
//
// When only some jobs' input or configuration changed since the last pass
// (and the member view did not, and no target is held back), only those
// jobs are visited: the others would keep their output anyway. Otherwise
// every job is.
func (f *Filter) recompute(reprepare bool) map[string][]*targetgroup.Group {
	start := time.Now()
	f.sweepFlagged(start)
	f.passGaveUp = false
	v := f.memberView(start)
	if v.key != f.keyer.Version() {
		f.rekey(v.key)
	}
	cfgJobs, cfgAll := f.takeConfigs()
	var jobs map[string]struct{} // the jobs to visit; nil: every job
	if f.prepared != nil && f.lastTracked && v.version == f.passView && !f.withheld.Load() && !cfgAll {
		jobs = f.lastChanged
		for job := range cfgJobs {
			jobs[job] = struct{}{}
		}
	}
	var visitJobs []string
	var visitPrepared []*preparedJob
	visit := func(job string, pj *preparedJob) {
		visitJobs, visitPrepared = append(visitJobs, job), append(visitPrepared, pj)
	}
	all := func() {
		visitJobs, visitPrepared = visitJobs[:0], visitPrepared[:0]
		for job, pj := range f.prepared {
			visit(job, pj)
		}
	}
	switch {
	case jobs != nil:
		f.prepareJobs(jobs, visit)
	case reprepare || f.prepared == nil || cfgAll || cfgJobs != nil:
		f.prepare(visit)
	default:
		all()
	}
	if v.series && f.balance(&v) {
		// Another assignment: a new member view, every job assigned again.
		f.viewVersion++
		v.version = f.viewVersion
		if jobs != nil {
			jobs = nil
			all()
		}
	}
	p := f.startAssign(v, len(visitJobs))
	for i, job := range visitJobs {
		f.assign(p, job, visitPrepared[i])
	}
	f.lastTracked, f.lastChanged = true, map[string]struct{}{}
	f.passView = v.version
	changed := f.diffOut(p.res, jobs)
	f.afterPass(&p.v, f.passGaveUp, time.Now())
	stats := f.publishStats(&p.v)
	if v.series {
		f.publishWeights(&p.v, time.Now())
		f.seriesStats(&stats)
	}
	if f.balancing() {
		f.metrics.setSeries(&stats) // none while a peer balances targets
	}
	f.metrics.recompute.Observe(time.Since(start).Seconds())
	f.metrics.discovered.Set(float64(stats.TotalTargets))
	f.metrics.owned.Set(float64(stats.Owned[f.opts.Self]))
	f.metrics.crossZone.Set(float64(stats.CrossZone))
	f.metrics.keyVersion.Set(float64(v.key))
	f.metrics.setUnowned(stats.Unowned)
	f.statsMtx.Lock()
	f.stats = stats
	f.statsMtx.Unlock()
	return changed
}

// diffOut records in f.out the output res of the jobs visited (nil: every
// job) and returns what changed.
func (f *Filter) diffOut(res map[string][]*targetgroup.Group, visited map[string]struct{}) map[string][]*targetgroup.Group {
	if f.out == nil {
		f.out = make(map[string][]*targetgroup.Group, len(res))
	}
	changed := map[string][]*targetgroup.Group{}
	for job, groups := range res {
		if prev, ok := f.out[job]; !ok || !sameSlice(prev, groups) {
			changed[job] = groups
			f.out[job] = groups
		}
	}
	gone := func(job string) {
		if _, ok := res[job]; !ok {
			if _, had := f.out[job]; had {
				changed[job] = nil
				delete(f.out, job)
				delete(f.outCfg, job)
			}
		}
	}
	if visited != nil {
		for job := range visited {
			gone(job)
		}
	} else if len(f.out) > len(res) {
		for job := range f.out {
			gone(job)
		}
	}
	return changed
}

// sameSlice reports whether a and b are the same slice, or both empty.
func sameSlice(a, b []*targetgroup.Group) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
