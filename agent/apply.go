package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
	promconfig "github.com/prometheus/prometheus/config"

	"github.com/promshard/promshard/config"
)

// Applying a configuration.
//
// An apply is all or nothing. Before any manager is touched, ApplyConfig
// builds for every new or changed job what the scrape manager builds for a
// pool (its HTTP client, which reads and parses CA, certificate and key, and
// its name escaping scheme) and for every changed remote write its HTTP
// client. A job that fails makes ApplyConfig return a JobErrors naming it,
// so that the caller can leave its object out and apply the rest. If a
// manager still refuses the configuration, the managers already changed get
// the previous configuration back.
//
// A configuration equal to the applied one (same global section, remote
// writes and jobs, compared like reflect.DeepEqual, see equal.go)
// touches no manager: no remote-write client is rebuilt, no discovery
// provider restarted, no target re-synced. Jobs whose content did not change
// keep the *ScrapeConfig pointer of the previous apply, so the scrape
// manager, the discovery manager and the ownership filter (whose relabel
// cache is keyed by that pointer) see them as unchanged at pointer
// comparison cost.

// JobErrors is returned by ApplyConfig when jobs of the configuration
// would be refused by the scrape manager, with the reason by job name. No
// manager was touched.
type JobErrors map[string]error

func (e JobErrors) Error() string {
	jobs := make([]string, 0, len(e))
	for job := range e {
		jobs = append(jobs, job)
	}
	slices.Sort(jobs)
	msgs := make([]string, len(jobs))
	for i, job := range jobs {
		msgs[i] = fmt.Sprintf("job %s: %v", job, e[job])
	}
	return "scrape jobs refused: " + strings.Join(msgs, "; ")
}

// RemoteWriteError is returned by ApplyConfig when the HTTP client of a
// remote write cannot be built (e.g. its CA file is not a certificate). No
// manager was touched.
type RemoteWriteError struct {
	URL string // credentials redacted
	Err error
}

func (e *RemoteWriteError) Error() string { return "remote write " + e.URL + ": " + e.Err.Error() }
func (e *RemoteWriteError) Unwrap() error { return e.Err }

// ApplyConfig applies cfg in Prometheus' reload order: remote storage,
// scrape manager, filter, discovery manager. Scrape pools whose
// configuration did not change keep running untouched; jobs that disappear
// are drained first so their series get staleness markers (see drain.go).
// A configuration equal to the applied one is a no-op, and so is any call
// after Run returned. On error the previously applied configuration keeps
// running. cfg must not be modified afterwards. Its jobs are either new
// values, whose defaults ApplyConfig fills, or the very jobs of the running
// configuration (under the same global section), which it takes as they
// are.
func (a *Agent) ApplyConfig(cfg *promconfig.Config) error {
	a.applyMtx.Lock()
	defer a.applyMtx.Unlock()
	if a.stopped {
		a.logger.Debug("agent stopped, configuration not applied")
		return nil
	}
	if a.next == nil {
		a.next = jobIndex{}
	}
	loaded, err := prepareInto(cfg, a.desired, a.running, a.next, a.logger)
	if err != nil {
		a.metrics.applyFailures.Inc()
		return err
	}
	a.lastChanged = false
	if a.reuseUnchanged(loaded) {
		a.metrics.applySkips.Inc()
		return nil
	}
	if err := a.check(loaded); err != nil {
		a.metrics.applyFailures.Inc()
		return err
	}
	if err := a.apply(loaded, a.next); err != nil {
		return err
	}
	a.desired = loaded
	a.running, a.next = a.next, a.running
	a.lastChanged = true
	return nil
}

// LastApplyChanged reports whether the last successful ApplyConfig changed
// the running configuration (false when it equalled it).
func (a *Agent) LastApplyChanged() bool {
	a.applyMtx.Lock()
	defer a.applyMtx.Unlock()
	return a.lastChanged
}

// reuseUnchanged replaces every job of next whose content equals the
// applied job of the same name with the applied pointer (in a.next too),
// and reports whether next as a whole equals the applied configuration.
func (a *Agent) reuseUnchanged(next *promconfig.Config) bool {
	prev := a.desired
	if prev == nil {
		return false
	}
	same := len(prev.ScrapeConfigs) == len(next.ScrapeConfigs)
	for i, sc := range next.ScrapeConfigs {
		old := a.running[sc.JobName]
		if old != sc && (old == nil || !sameContent(old, sc)) {
			same = false
			continue
		}
		next.ScrapeConfigs[i] = old
		a.next[sc.JobName] = old
		same = same && prev.ScrapeConfigs[i] == old
	}
	return same && sameContent(prev.GlobalConfig, next.GlobalConfig) &&
		sameContent(prev.RemoteWriteConfigs, next.RemoteWriteConfigs)
}

// check builds the HTTP clients of the jobs and remote writes of next that
// are not running yet, as the managers would, and drops them again.
func (a *Agent) check(next *promconfig.Config) error {
	jobErrs := JobErrors{}
	for _, sc := range next.ScrapeConfigs {
		if a.running[sc.JobName] == sc {
			continue
		}
		if err := checkJob(sc); err != nil {
			jobErrs[sc.JobName] = err
		}
	}
	if len(jobErrs) > 0 {
		return jobErrs
	}
	for i, rw := range next.RemoteWriteConfigs {
		if a.desired != nil && i < len(a.desired.RemoteWriteConfigs) && sameContent(a.desired.RemoteWriteConfigs[i], rw) {
			continue
		}
		if err := checkClient(rw.HTTPClientConfig, "remote_write"); err != nil {
			return &RemoteWriteError{URL: redactedURL(rw.URL), Err: err}
		}
	}
	return nil
}

// jobChanges returns the jobs of loaded (indexed by idx) that are not
// running as they are, and the running jobs gone, mapped to nil.
func (a *Agent) jobChanges(loaded *promconfig.Config, idx jobIndex) map[string]*promconfig.ScrapeConfig {
	changes := map[string]*promconfig.ScrapeConfig{}
	kept := 0 // running names still in loaded
	for _, sc := range loaded.ScrapeConfigs {
		old, ok := a.running[sc.JobName]
		if ok {
			kept++
		}
		if old != sc {
			changes[sc.JobName] = sc
		}
	}
	if kept < len(a.running) {
		for job := range a.running {
			if _, ok := idx[job]; !ok {
				changes[job] = nil
			}
		}
	}
	return changes
}

// checkJob builds what scrape.newScrapePool builds for sc, and the HTTP
// clients of its service discoveries that read files (config checked the
// inline ones; a discovery whose client cannot be built would be skipped
// by the discovery manager with only a log line, leaving the job without
// targets).
func checkJob(sc *promconfig.ScrapeConfig) error {
	if err := checkClient(sc.HTTPClientConfig, sc.JobName); err != nil {
		return err
	}
	if _, err := promconfig.ToEscapingScheme(sc.MetricNameEscapingScheme, sc.MetricNameValidationScheme); err != nil {
		return fmt.Errorf("invalid metric name escaping scheme: %w", err)
	}
	for i, sd := range sc.ServiceDiscoveryConfigs {
		hc := config.SDHTTPClientConfig(sd)
		if hc == nil || !readsFiles(hc) {
			continue
		}
		if err := checkClient(*hc, sc.JobName); err != nil {
			return fmt.Errorf("%s service discovery %d: %w", sd.Name(), i, err)
		}
	}
	return nil
}

// readsFiles reports whether building a client for hc reads TLS files.
func readsFiles(hc *commoncfg.HTTPClientConfig) bool {
	t := hc.TLSConfig
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != ""
}

func checkClient(hc commoncfg.HTTPClientConfig, name string) error {
	c, err := commoncfg.NewClientFromConfig(hc, name)
	if err != nil {
		return fmt.Errorf("error creating HTTP client: %w", err)
	}
	c.CloseIdleConnections()
	return nil
}

// apply applies a prepared and checked configuration whose jobs idx
// indexes; applyMtx is held. Only the jobs that differ from the running
// ones are handed to discovery, the fan-out and the filter; the scrape
// manager takes every job (it compares them itself).
func (a *Agent) apply(loaded *promconfig.Config, idx jobIndex) error {
	start := time.Now()
	changes := a.jobChanges(loaded, idx)
	// The discovery plan commits nothing until the managers took the
	// configuration.
	plan := a.sd.plan(changes)
	drainBefore := a.drain.clone()
	keep, nextDrain := a.drain.update(a.effective, idx, start)
	eff := *loaded
	eff.ScrapeConfigs = append(append([]*promconfig.ScrapeConfig(nil), loaded.ScrapeConfigs...), keep...)

	fail := func(err error) error {
		a.drain = drainBefore
		a.metrics.applyFailures.Inc()
		return errors.New(config.RedactURLs(err.Error()))
	}
	planned := time.Now()
	if err := a.remote.ApplyConfig(&eff); err != nil {
		return fail(fmt.Errorf("applying remote write configuration: %w", err))
	}
	remoteDone := time.Now()
	a.delivery.setDeadline(eff.RemoteWriteConfigs)
	if err := a.scrape.ApplyConfig(a.withMarker(&eff)); err != nil {
		a.rollback()
		return fail(fmt.Errorf("applying scrape configuration: %w", err))
	}
	scrapeDone := time.Now()
	a.effective = &eff
	a.health.setLongestInterval(longestInterval(eff.ScrapeConfigs))
	a.syncer.set(a.drain.names())
	// The filter learns the new relabeling before discovery can send
	// groups of a new job.
	switch filter := a.targetFilter(); {
	case filter == nil:
	case filter != a.fed:
		filter.SetScrapeConfigs(loaded.ScrapeConfigs)
		a.fed = filter
	case len(changes) > 0:
		filter.ChangeScrapeConfigs(changes)
	}
	if plan.changed {
		// Prometheus' discovery manager logs and counts providers it
		// cannot create instead of failing; it never returns an error
		// today.
		if err := a.discovery.ApplyConfig(plan.sets); err != nil {
			a.metrics.applyFailures.Inc()
			a.fed = nil // it has jobs that are not running: all again next time
			return fmt.Errorf("applying discovery configuration: %w", err)
		}
		a.metrics.sdApplies.Inc()
	}
	plan.commit()
	a.fanout.setSources(plan.changes)
	a.scheduleDrainEnd(nextDrain)
	a.metrics.applies.Inc()
	a.metrics.applyDuration.Observe(time.Since(start).Seconds())
	a.logger.Debug("managers applied", "changed_jobs", len(changes), "plan", planned.Sub(start).String(),
		"remote_write", remoteDone.Sub(planned).String(), "scrape_manager", scrapeDone.Sub(remoteDone).String(),
		"discovery", time.Since(scrapeDone).String())
	a.metrics.lastApply.SetToCurrentTime()
	a.metrics.scrapePools.Set(float64(len(loaded.ScrapeConfigs)))
	a.metrics.sdSets.Set(float64(a.sd.sets()))
	return nil
}

// rollback gives the remote storage and the scrape manager the last
// effective configuration back after the scrape manager refused a new one,
// so that no manager is left half-applied.
func (a *Agent) rollback() {
	prev := a.effective
	if prev == nil {
		prev = a.empty
	}
	if err := a.remote.ApplyConfig(prev); err != nil {
		a.logger.Error("restoring the previous remote write configuration failed", "err", config.RedactURLs(err.Error()))
	}
	if err := a.scrape.ApplyConfig(a.withMarker(prev)); err != nil {
		a.logger.Error("restoring the previous scrape configuration failed", "err", config.RedactURLs(err.Error()))
	}
}

// withMarker returns what the scrape manager runs for cfg: its jobs and the
// syncer's marker job (scrapesync.go).
func (a *Agent) withMarker(cfg *promconfig.Config) *promconfig.Config {
	c := *cfg
	c.ScrapeConfigs = append(slices.Clip(cfg.ScrapeConfigs), a.marker)
	return &c
}

// scheduleDrainEnd re-applies the desired configuration when the earliest
// drain period ends, dropping the drained jobs. Called with applyMtx held.
func (a *Agent) scheduleDrainEnd(at time.Time) {
	if a.drain.timer != nil {
		a.drain.timer.Stop()
		a.drain.timer = nil
	}
	if at.IsZero() || a.stopped {
		return
	}
	a.drain.timer = time.AfterFunc(time.Until(at), func() {
		a.applyMtx.Lock()
		defer a.applyMtx.Unlock()
		if a.stopped || a.desired == nil {
			return
		}
		if err := a.apply(a.desired, a.running); err != nil {
			a.logger.Error("dropping drained jobs", "err", err)
		}
	})
}

// longestInterval is the longest scrape interval of jobs (prepared: every
// interval is set).
func longestInterval(jobs []*promconfig.ScrapeConfig) time.Duration {
	var d time.Duration
	for _, sc := range jobs {
		d = max(d, time.Duration(sc.ScrapeInterval))
	}
	return d
}
