package agent

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// Partial target updates.
//
// scrape.Manager.Run keeps only the last map of target groups it received
// and, at its next reload, syncs every pool named in it, which relabels
// all of the pool's targets again. Sent every job on every discovery
// update, pod churn would re-relabel every target of the process several
// times a second. The stages before pass on only the jobs that changed
// (TargetFilter.RunChanges); the syncer, the last stage before
// scrape.Manager.Run, keeps every job's groups, sends only the jobs whose
// groups differ from what it sent (compared element by element by pointer),
// and empty groups for draining jobs (drain.go).
//
// A map that reaches the scrape manager before its reload picked up the
// previous one replaces it, which would lose the jobs of the previous one.
// So at most one update is outstanding: every update also names the marker
// job, an empty pool the agent keeps in the scrape manager's configuration,
// and the next update is sent only once the marker pool's sync counter
// (prometheus_target_scrape_pool_sync_total{scrape_job="promshard-sync"})
// moved, that is once a reload read the outstanding map. Changes that
// arrive meanwhile accumulate. Should the counter not move within
// syncConfirmTimeout, the syncer logs it and sends every job again.
//
// When the oldest unconfirmed update was handed over, and how many targets
// the scrape manager has or will have, feed the pipeline health
// (health.go).

// markerJob names the marker pool. It has no targets; the targets API and
// the status page leave it out.
const markerJob = "promshard-sync"

const (
	syncPollInterval   = 10 * time.Millisecond
	syncConfirmTimeout = time.Minute
)

// newMarkerJob returns the marker job's configuration, validated against
// the default global section.
func newMarkerJob() (*promconfig.ScrapeConfig, error) {
	sc := promconfig.DefaultScrapeConfig
	sc.JobName = markerJob
	if err := sc.Validate(promconfig.DefaultGlobalConfig); err != nil {
		return nil, err
	}
	return &sc, nil
}

type syncer struct {
	logger  *slog.Logger
	count   func() float64 // the marker pool's syncs
	synced  func()         // called after every confirmed update and every syncLengthDropInterval
	metrics *metrics

	// waiting is when the oldest unconfirmed update was handed over (Unix
	// nanoseconds, 0: none); owned counts the targets in what the scrape
	// manager has or will have, ownedAt is when it went from 0 to more
	// (health.go reads them).
	waiting, owned, ownedAt atomic.Int64

	mtx      sync.Mutex
	draining map[string]struct{}
	enabled  bool // the marker job is in the scrape manager's configuration
	changed  chan struct{}
}

func newSyncer(logger *slog.Logger, count func() float64, synced func(), m *metrics) *syncer {
	return &syncer{logger: logger, count: count, synced: synced, metrics: m, draining: map[string]struct{}{}, changed: make(chan struct{}, 1)}
}

// set replaces the draining jobs and tells that the scrape manager has the
// marker job. Either change makes run compare every job again; an apply
// that changed neither costs run nothing.
func (s *syncer) set(draining map[string]struct{}) {
	s.mtx.Lock()
	same := s.enabled && maps.Equal(s.draining, draining)
	s.draining = draining
	s.enabled = true
	s.mtx.Unlock()
	if same {
		return
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *syncer) run(ctx context.Context, in <-chan map[string][]*targetgroup.Group, out chan<- map[string][]*targetgroup.Group) {
	var (
		last        = map[string][]*targetgroup.Group{} // every job's latest input
		sent        = map[string][]*targetgroup.Group{} // per job: what the scrape manager has or will have
		pending     = map[string][]*targetgroup.Group{} // changed since the outstanding update
		outstanding bool
		base        float64
		sentAt      time.Time
	)
	poll := time.NewTimer(time.Hour)
	poll.Stop()
	defer poll.Stop()
	drop := time.NewTicker(syncLengthDropInterval)
	defer drop.Stop()
	for {
		var changes map[string][]*targetgroup.Group // nil: compare every job
		select {
		case <-ctx.Done():
			return
		case ts, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			changes = ts
			applyChanges(last, ts)
		case <-s.changed:
		case <-poll.C:
			changes = map[string][]*targetgroup.Group{} // nothing new
		case <-drop.C:
			s.synced()
			continue
		}
		if outstanding {
			switch {
			case s.count() > base:
				outstanding = false
				s.waiting.Store(0)
				s.synced()
			case time.Since(sentAt) > syncConfirmTimeout:
				s.logger.Warn("The scrape manager did not confirm a target update; sending every job again", "waited", time.Since(sentAt))
				outstanding = false
				maps.Copy(pending, sent)
			}
		}
		s.mtx.Lock()
		draining, enabled := s.draining, s.enabled
		s.mtx.Unlock()
		if changes == nil {
			if s.diff(last, draining, sent, pending) {
				s.setOwned(countTargets(sent, nil))
			}
		} else {
			// Only the changed jobs' targets are counted again: pod churn
			// sends a few jobs at a time, sent holds every job.
			before := countTargets(sent, changes)
			if diffChanges(changes, draining, sent, pending) {
				s.setOwned(int(s.owned.Load()) + countTargets(sent, changes) - before)
			}
		}
		if outstanding {
			poll.Reset(syncPollInterval)
			continue
		}
		if len(pending) == 0 || !enabled {
			continue
		}
		msg := make(map[string][]*targetgroup.Group, len(pending)+1)
		maps.Copy(msg, pending)
		msg[markerJob] = []*targetgroup.Group{}
		base = s.count()
		if s.waiting.Load() == 0 { // a resend keeps the first update's time
			s.waiting.Store(time.Now().UnixNano())
		}
		select {
		case out <- msg:
		case <-ctx.Done():
			return
		}
		s.metrics.syncedJobs.Add(float64(len(pending)))
		s.metrics.syncUpdates.Inc()
		outstanding, sentAt = true, time.Now()
		clear(pending)
		poll.Reset(syncPollInterval)
	}
}

// diff records in pending the jobs whose groups differ from sent, over
// every job of last and every draining job (which gets empty groups), and
// reports whether sent changed. The stages before keep an unchanged job's
// slice, so the common case is one identity check per job.
func (s *syncer) diff(last map[string][]*targetgroup.Group, draining map[string]struct{}, sent, pending map[string][]*targetgroup.Group) bool {
	wanted, changed := len(last), false
	for job, g := range last {
		if _, ok := draining[job]; !ok {
			changed = setJob(job, g, sent, pending) || changed
		}
	}
	for job := range draining {
		if _, ok := last[job]; !ok {
			wanted++
		}
		changed = setJob(job, []*targetgroup.Group{}, sent, pending) || changed
	}
	if len(sent) == wanted {
		return changed // every job in sent is wanted
	}
	for job := range sent {
		_, ok := last[job]
		if _, drains := draining[job]; !ok && !drains {
			delete(sent, job)
			delete(pending, job)
			changed = true
		}
	}
	return changed
}

// diffChanges is diff for the jobs of one input of changes only, when the
// draining jobs did not change since the last diff.
func diffChanges(changes map[string][]*targetgroup.Group, draining map[string]struct{}, sent, pending map[string][]*targetgroup.Group) bool {
	changed := false
	for job, g := range changes {
		if _, drains := draining[job]; drains {
			continue // it keeps its empty groups
		}
		if g == nil {
			_, had := sent[job]
			delete(sent, job)
			delete(pending, job)
			changed = changed || had
			continue
		}
		changed = setJob(job, g, sent, pending) || changed
	}
	return changed
}

// setJob records g as job's groups in sent and pending unless sent has
// them, and reports whether it did.
func setJob(job string, g []*targetgroup.Group, sent, pending map[string][]*targetgroup.Group) bool {
	if prev, had := sent[job]; had && (sameSlice(prev, g) || slices.Equal(prev, g)) {
		return false
	}
	sent[job], pending[job] = g, g
	return true
}

// countTargets counts the targets of jobs' groups: of every job, or with
// only set of the jobs named in only.
func countTargets(jobs, only map[string][]*targetgroup.Group) int {
	n := 0
	count := func(groups []*targetgroup.Group) {
		for _, g := range groups {
			if g != nil {
				n += len(g.Targets)
			}
		}
	}
	if only == nil {
		for _, groups := range jobs {
			count(groups)
		}
		return n
	}
	for job := range only {
		count(jobs[job])
	}
	return n
}

// setOwned records the count of targets handed to the scrape manager.
func (s *syncer) setOwned(n int) {
	prev := s.owned.Swap(int64(n))
	switch {
	case n == 0:
		s.ownedAt.Store(0)
	case prev == 0:
		s.ownedAt.Store(time.Now().UnixNano())
	}
}

// ownedTargets returns the count of targets handed to the scrape manager
// and since when it is above zero.
func (s *syncer) ownedTargets() (int, time.Time) {
	n := int(s.owned.Load())
	if at := s.ownedAt.Load(); n > 0 && at != 0 {
		return n, time.Unix(0, at)
	}
	return n, time.Time{}
}

// waitingSince returns when the oldest target update the scrape manager
// has not confirmed was handed over; zero when none is outstanding.
func (s *syncer) waitingSince() time.Time {
	if n := s.waiting.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// applyChanges applies a map of changes (TargetFilter.RunChanges) to dst,
// a full map, and returns dst.
func applyChanges(dst, changes map[string][]*targetgroup.Group) map[string][]*targetgroup.Group {
	for job, groups := range changes {
		if groups == nil {
			delete(dst, job)
		} else {
			dst[job] = groups
		}
	}
	return dst
}

// sameSlice reports whether a and b are the very same slice.
func sameSlice(a, b []*targetgroup.Group) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// syncCounter sits between the scrape manager and the registry. It
// captures the per-pool sync counter the syncer waits on, and it keeps the
// per-pool sync-length summaries out of the process.
//
// Prometheus observes every pool sync in a summary per pool,
// prometheus_target_sync_length_seconds{scrape_job}: five quantiles over a
// sliding window, about 70 KB per pool once observed. At 10,000 pools
// (5,000 ServiceMonitors with two endpoints) that is 700 MB, most of the
// heap, and 70,000 series on /metrics. The same observations go to the
// histogram prometheus_target_sync_length_histogram_seconds{scrape_job},
// which stays. The summary vector is not registered, and dropSyncLengths,
// which the syncer calls after every confirmed update and every
// syncLengthDropInterval, deletes its children.
type syncCounter struct {
	prometheus.Registerer
	vec        *prometheus.CounterVec
	syncLength *prometheus.SummaryVec
}

// syncLengthDropInterval bounds how long the summaries of a reload pass
// that went on after its update was confirmed are kept.
const syncLengthDropInterval = 10 * time.Second

func (c *syncCounter) Register(col prometheus.Collector) error {
	if v, ok := col.(*prometheus.CounterVec); ok && describes(v, "prometheus_target_scrape_pool_sync_total") {
		c.vec = v
	}
	if v, ok := col.(*prometheus.SummaryVec); ok && describes(v, "prometheus_target_sync_length_seconds") {
		c.syncLength = v
		return nil
	}
	return c.Registerer.Register(col)
}

func (c *syncCounter) Unregister(col prometheus.Collector) bool {
	if v, ok := col.(*prometheus.SummaryVec); ok && v == c.syncLength {
		return true
	}
	return c.Registerer.Unregister(col)
}

// dropSyncLengths deletes the per-pool sync-length summaries observed so
// far.
func (c *syncCounter) dropSyncLengths() {
	if c.syncLength != nil {
		c.syncLength.Reset()
	}
}

func (c *syncCounter) MustRegister(cols ...prometheus.Collector) {
	for _, col := range cols {
		if err := c.Register(col); err != nil {
			panic(err)
		}
	}
}

// value returns the marker pool's sync count.
func (c *syncCounter) value() float64 {
	ctr, err := c.vec.GetMetricWithLabelValues(markerJob)
	if err != nil {
		return 0
	}
	var m dto.Metric
	if err := ctr.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func (c *syncCounter) check() error {
	if c.vec == nil {
		return errors.New("the scrape manager did not register prometheus_target_scrape_pool_sync_total")
	}
	return nil
}

// describes reports whether c describes a metric named fqName.
func describes(c prometheus.Collector, fqName string) bool {
	ch := make(chan *prometheus.Desc, 4)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	found := false
	for d := range ch {
		found = found || strings.Contains(d.String(), `fqName: "`+fqName+`"`)
	}
	return found
}
