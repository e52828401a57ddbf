package sharding

import (
	"maps"
	"time"

	"github.com/prometheus/prometheus/config"
)

// The scrape configurations the filter relabels with, and which of them
// changed since its last pass.

// SetScrapeConfigs gives the scrape configurations the targets are relabeled
// with: every job. Call it after every configuration apply; it triggers a
// re-filter. Until a job's configuration is known, its targets are owned by
// nobody. Jobs are compared by pointer: hand the same *config.ScrapeConfig
// for a job whose configuration did not change, or its targets are
// relabeled and assigned again (and it gets a new output slice). Only the
// jobs whose pointer changed are visited again, so the re-filter costs the
// change, not every job.
func (f *Filter) SetScrapeConfigs(cfgs []*config.ScrapeConfig) {
	m := make(map[string]*config.ScrapeConfig, len(cfgs))
	for _, c := range cfgs {
		m[c.JobName] = c
	}
	f.cfgMtx.Lock()
	for job, c := range m {
		if f.cfgs[job] != c {
			f.markChanged(job)
		}
	}
	for job := range f.cfgs {
		if _, ok := m[job]; !ok {
			f.markChanged(job)
		}
	}
	f.cfgs = m
	f.configured()
}

// ChangeScrapeConfigs is SetScrapeConfigs for the changed jobs only: each
// job of changes gets its new configuration, a job mapped to nil is
// removed, and every other job keeps its configuration. The map is not
// kept.
func (f *Filter) ChangeScrapeConfigs(changes map[string]*config.ScrapeConfig) {
	f.cfgMtx.Lock()
	if f.cfgs == nil {
		f.cfgs = make(map[string]*config.ScrapeConfig, len(changes))
	}
	for job, c := range changes {
		if f.cfgs[job] == c {
			continue
		}
		if c == nil {
			delete(f.cfgs, job)
		} else {
			f.cfgs[job] = c
		}
		f.markChanged(job)
	}
	f.configured()
}

// markChanged records that job's configuration changed; cfgMtx is held.
func (f *Filter) markChanged(job string) {
	if f.cfgDelta == nil {
		f.cfgDelta = map[string]struct{}{}
	}
	f.cfgDelta[job] = struct{}{}
}

// configured ends a configuration change: it counts it, unlocks cfgMtx and
// triggers a re-filter.
func (f *Filter) configured() {
	f.cfgGen++
	if f.cfgAt.IsZero() {
		f.cfgAt = time.Now()
	}
	f.cfgMtx.Unlock()
	select {
	case f.cfgChanged <- struct{}{}:
	default:
	}
}

// takeConfigs brings runCfgs up to date and returns the jobs whose
// configuration changed since the last call, or all == true when every
// job must be taken as changed.
func (f *Filter) takeConfigs() (changed map[string]struct{}, all bool) {
	f.cfgMtx.Lock()
	defer f.cfgMtx.Unlock()
	if f.cfgGen == f.runGen {
		return nil, false
	}
	f.runGen = f.cfgGen
	if f.runCfgs == nil {
		f.runCfgs = maps.Clone(f.cfgs)
		f.cfgDelta = nil
		return nil, true
	}
	for job := range f.cfgDelta {
		if c, ok := f.cfgs[job]; ok {
			f.runCfgs[job] = c
		} else {
			delete(f.runCfgs, job)
		}
	}
	changed, f.cfgDelta = f.cfgDelta, nil
	return changed, false
}
