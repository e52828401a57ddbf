package agent

import (
	"maps"
	"time"

	promconfig "github.com/prometheus/prometheus/config"
)

// Draining removed jobs.
//
// When a job disappears from the configuration (a ServiceMonitor was
// deleted), Prometheus' scrape manager stops the job's pool and cancels its
// context before the scrape loops write their end-of-run staleness markers,
// so the job's series would linger at the receiver for the 5 minute lookback.
// promshard instead keeps a removed job's pool for a drain period in which
// the pool is sent empty target groups (by the syncer, scrapesync.go): its loops stop the normal way and
// write staleness markers. The job is dropped from the configuration once
// the markers are written.

// drainPeriod is how long a removed job is kept: Prometheus writes
// end-of-run staleness markers just over two intervals after a target
// stops (in case it comes back), plus slack for the target reload.
func drainPeriod(sc *promconfig.ScrapeConfig) time.Duration {
	return 2*time.Duration(sc.ScrapeInterval) + time.Duration(sc.ScrapeInterval)/5 + 2*time.Second
}

// drainState tracks removed jobs; guarded by Agent.applyMtx.
type drainState struct {
	jobs  map[string]*promconfig.ScrapeConfig
	until map[string]time.Time
	timer *time.Timer
}

// update computes the draining jobs for a new configuration whose jobs
// want indexes: jobs of the previously effective configuration missing from
// it start draining; jobs whose period passed or that came back stop. It
// returns the scrape configs to keep and the earliest deadline (zero if
// none).
func (s *drainState) update(prev *promconfig.Config, want jobIndex, now time.Time) ([]*promconfig.ScrapeConfig, time.Time) {
	if s.jobs == nil {
		s.jobs, s.until = map[string]*promconfig.ScrapeConfig{}, map[string]time.Time{}
	}
	if prev != nil {
		for _, sc := range prev.ScrapeConfigs {
			if _, ok := s.jobs[sc.JobName]; !ok && want[sc.JobName] == nil {
				s.jobs[sc.JobName] = sc
				s.until[sc.JobName] = now.Add(drainPeriod(sc))
			}
		}
	}
	var keep []*promconfig.ScrapeConfig
	var earliest time.Time
	for job, sc := range s.jobs {
		if want[job] != nil || !now.Before(s.until[job]) {
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
