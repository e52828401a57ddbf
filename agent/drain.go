package agent

import (
	"context"
	"maps"
	"sync"
	"time"

	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// Draining removed jobs.
//
// When a job disappears from the configuration (a ServiceMonitor was
// deleted), Prometheus' scrape manager stops the job's pool and cancels its
// context before the scrape loops write their end-of-run staleness markers,
// so the job's series would linger at the receiver for the 5 minute lookback.
// promshard instead keeps a removed job's pool for a drain period in which
// the pool is sent empty target groups: its loops stop the normal way and
// write staleness markers. The job is dropped from the configuration once
// the markers are written.

// drainPeriod is how long a removed job is kept: Prometheus writes
// end-of-run staleness markers just over two intervals after a target
// stops (in case it comes back), plus slack for the target reload.
func drainPeriod(sc *promconfig.ScrapeConfig) time.Duration {
	return 2*time.Duration(sc.ScrapeInterval) + time.Duration(sc.ScrapeInterval)/5 + 2*time.Second
}

// drainer is the stage between the ownership filter and scrape.Manager.Run:
// it forwards target sets, replacing the groups of draining jobs with none.
type drainer struct {
	mtx      sync.Mutex
	draining map[string]struct{}
	changed  chan struct{}
}

func newDrainer() *drainer {
	return &drainer{draining: map[string]struct{}{}, changed: make(chan struct{}, 1)}
}

// set replaces the draining jobs and re-sends the last target sets.
func (d *drainer) set(jobs map[string]struct{}) {
	d.mtx.Lock()
	d.draining = jobs
	d.mtx.Unlock()
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

func (d *drainer) run(ctx context.Context, in <-chan map[string][]*targetgroup.Group, out chan<- map[string][]*targetgroup.Group) {
	var last map[string][]*targetgroup.Group
	for {
		select {
		case <-ctx.Done():
			return
		case ts, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			last = ts
		case <-d.changed:
		}
		d.mtx.Lock()
		res := make(map[string][]*targetgroup.Group, len(last)+len(d.draining))
		for job, groups := range last {
			res[job] = groups
		}
		for job := range d.draining {
			res[job] = []*targetgroup.Group{}
		}
		d.mtx.Unlock()
		if len(res) == 0 {
			continue
		}
		select {
		case out <- res:
		case <-ctx.Done():
			return
		}
	}
}

// drainState tracks removed jobs; guarded by Agent.applyMtx.
type drainState struct {
	jobs  map[string]*promconfig.ScrapeConfig
	until map[string]time.Time
	timer *time.Timer
}

// update computes the draining jobs for a new configuration: jobs of the
// previously effective configuration missing from next start draining; jobs
// whose period passed or that came back stop. It returns the scrape configs
// to keep and the earliest deadline (zero if none).
func (s *drainState) update(prev, next *promconfig.Config, now time.Time) ([]*promconfig.ScrapeConfig, time.Time) {
	if s.jobs == nil {
		s.jobs, s.until = map[string]*promconfig.ScrapeConfig{}, map[string]time.Time{}
	}
	want := map[string]bool{}
	for _, sc := range next.ScrapeConfigs {
		want[sc.JobName] = true
	}
	if prev != nil {
		for _, sc := range prev.ScrapeConfigs {
			if _, ok := s.jobs[sc.JobName]; !ok && !want[sc.JobName] {
				s.jobs[sc.JobName] = sc
				s.until[sc.JobName] = now.Add(drainPeriod(sc))
			}
		}
	}
	var keep []*promconfig.ScrapeConfig
	var earliest time.Time
	for job, sc := range s.jobs {
		if want[job] || !now.Before(s.until[job]) {
			delete(s.jobs, job)
			delete(s.until, job)
			continue
		}
		keep = append(keep, sc)
		if earliest.IsZero() || s.until[job].Before(earliest) {
			earliest = s.until[job]
		}
	}
	return keep, earliest
}

// clone copies the drain state, so that a failed apply can restore it.
func (s *drainState) clone() drainState {
	return drainState{jobs: maps.Clone(s.jobs), until: maps.Clone(s.until), timer: s.timer}
}

func (s *drainState) names() map[string]struct{} {
	out := make(map[string]struct{}, len(s.jobs))
	for job := range s.jobs {
		out[job] = struct{}{}
	}
	return out
}
