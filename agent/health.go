package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"
)

// Pipeline health: what /-/healthy answers.
//
// The process is unhealthy when its pipeline is stuck, which a restart may
// cure and waiting will not:
//
//   - scrape sync: a target update the syncer handed to the scrape manager
//     (scrapesync.go) has not been applied (its marker pool not synced) for
//     syncStuckReloads reload intervals, at least minStuckAfter: 30s at the
//     default ScrapeReloadInterval of 250ms, 200s at Prometheus' 5s.
//   - WAL: targets are owned (the groups handed to the scrape manager hold
//     targets; the filter hands over only owned targets its relabeling
//     keeps) and no scrape committed to the WAL for walStuckScrapes scrape
//     intervals of the running configuration's longest-interval job, at
//     least minStuckAfter, counted from the later of the last commit and
//     the moment targets became owned. Every scrape commits, a failed one
//     too (up, staleness markers), so silence means scraping or the WAL
//     stopped. The commits are counted by commitTracker, a wrapping
//     storage.AppendableV2 between the scrape manager and the agent DB.
//
// Without owned targets only the scrape sync is checked. The API server's
// reachability is not part of it: a restart does not fix a CA, and the
// last configuration keeps scraping meanwhile (/-/ready and the status page
// report it). Each check is a series of promshard_pipeline_healthy{check};
// a flip is logged once.
const (
	syncStuckReloads = 40
	walStuckScrapes  = 3
	minStuckAfter    = 30 * time.Second
	// healthCheckInterval is how often the gauge is updated and flips are
	// logged; /-/healthy evaluates on each request.
	healthCheckInterval = time.Second
)

// The checks, values of promshard_pipeline_healthy's check label.
const (
	checkScrapeSync = "scrape_sync"
	checkWAL        = "wal"
)

// commitTracker is the scrape manager's storage: it passes every call to
// the agent DB and records the time of each successful commit.
type commitTracker struct {
	storage.AppendableV2
	last    atomic.Int64 // Unix nanoseconds of the last successful commit; 0: none
	commits prometheus.Counter
}

// AppenderV2 implements storage.AppendableV2.
func (c *commitTracker) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &trackedAppender{AppenderV2: c.AppendableV2.AppenderV2(ctx), tracker: c}
}

// lastCommit returns the time of the last successful commit (zero: none).
func (c *commitTracker) lastCommit() time.Time {
	if n := c.last.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

type trackedAppender struct {
	storage.AppenderV2
	tracker *commitTracker
}

// Commit implements storage.AppenderTransaction.
func (a *trackedAppender) Commit() error {
	err := a.AppenderV2.Commit()
	if err == nil {
		a.tracker.last.Store(time.Now().UnixNano())
		a.tracker.commits.Inc()
	}
	return err
}

// healthInput is what one evaluation looks at.
type healthInput struct {
	now time.Time
	// syncWaitingSince is when the oldest unconfirmed target update was
	// handed to the scrape manager; zero: none outstanding.
	syncWaitingSince time.Time
	// owned counts the targets handed to the scrape manager; ownedSince is
	// when they went from none to some.
	owned      int
	ownedSince time.Time
	// lastCommit is the last successful WAL commit; zero: none.
	lastCommit                    time.Time
	syncStuckAfter, walStuckAfter time.Duration
}

// healthResult is one evaluation: the failing checks (in check order) and
// a one-line reason; both empty when healthy.
type healthResult struct {
	failing []string
	reason  string
}

func (r healthResult) healthy() bool { return len(r.failing) == 0 }

// evaluateHealth decides the pipeline's health from in.
func evaluateHealth(in healthInput) healthResult {
	var r healthResult
	var reasons []string
	if !in.syncWaitingSince.IsZero() {
		if waited := in.now.Sub(in.syncWaitingSince); waited > in.syncStuckAfter {
			r.failing = append(r.failing, checkScrapeSync)
			reasons = append(reasons, fmt.Sprintf("the scrape manager has not applied the targets handed to it %s ago (limit %s)",
				waited.Round(time.Second), in.syncStuckAfter))
		}
	}
	if in.owned > 0 {
		from := in.ownedSince
		if in.lastCommit.After(from) {
			from = in.lastCommit
		}
		if silent := in.now.Sub(from); silent > in.walStuckAfter {
			r.failing = append(r.failing, checkWAL)
			if in.lastCommit.After(in.ownedSince) {
				reasons = append(reasons, fmt.Sprintf("no scrape was appended to the WAL for %s while %d targets are owned (limit %s)",
					silent.Round(time.Second), in.owned, in.walStuckAfter))
			} else {
				reasons = append(reasons, fmt.Sprintf("no scrape was appended to the WAL in the %s since %d targets became owned (limit %s)",
					silent.Round(time.Second), in.owned, in.walStuckAfter))
			}
		}
	}
	r.reason = strings.Join(reasons, "; ")
	return r
}

// pipelineHealth evaluates and reports the pipeline's health.
type pipelineHealth struct {
	logger  *slog.Logger
	syncer  *syncer
	commits *commitTracker
	gauge   *prometheus.GaugeVec
	// syncStuckAfter is fixed at New; longest is the longest scrape
	// interval of the running configuration (nanoseconds), set at apply.
	syncStuckAfter time.Duration
	longest        atomic.Int64
	// floor is the WAL limit's minimum, minStuckAfter (tests lower it).
	floor time.Duration

	mu      sync.Mutex
	failing string // the failing checks of the last evaluation, joined
}

func newPipelineHealth(logger *slog.Logger, reg prometheus.Registerer, s *syncer, c *commitTracker, reloadInterval time.Duration) (*pipelineHealth, error) {
	h := &pipelineHealth{
		logger: logger, syncer: s, commits: c,
		syncStuckAfter: max(syncStuckReloads*reloadInterval, minStuckAfter),
		floor:          minStuckAfter,
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promshard_pipeline_healthy",
			Help: "Whether a stage of the scrape pipeline works (1) or is stuck (0): scrape_sync (the scrape manager applies the targets handed to it), wal (scrapes of owned targets reach the WAL). /-/healthy fails while one is 0.",
		}, []string{"check"}),
	}
	for _, c := range []string{checkScrapeSync, checkWAL} {
		h.gauge.WithLabelValues(c).Set(1)
	}
	if err := reg.Register(h.gauge); err != nil {
		return nil, fmt.Errorf("registering pipeline health metrics: %w", err)
	}
	return h, nil
}

// setLongestInterval records the longest scrape interval of the running
// configuration.
func (h *pipelineHealth) setLongestInterval(d time.Duration) { h.longest.Store(int64(d)) }

// walStuckAfter is the WAL check's limit.
func (h *pipelineHealth) walStuckAfter() time.Duration {
	return max(walStuckScrapes*time.Duration(h.longest.Load()), h.floor)
}

// check evaluates the health at now, updates the gauge and logs a flip.
func (h *pipelineHealth) check(now time.Time) healthResult {
	owned, ownedSince := h.syncer.ownedTargets()
	r := evaluateHealth(healthInput{
		now: now, syncWaitingSince: h.syncer.waitingSince(), owned: owned, ownedSince: ownedSince,
		lastCommit: h.commits.lastCommit(), syncStuckAfter: h.syncStuckAfter, walStuckAfter: h.walStuckAfter(),
	})
	failing := strings.Join(r.failing, ",")
	h.mu.Lock()
	defer h.mu.Unlock()
	if failing == h.failing {
		return r
	}
	h.failing = failing
	for _, c := range []string{checkScrapeSync, checkWAL} {
		v := 1.0
		if strings.Contains(failing, c) {
			v = 0
		}
		h.gauge.WithLabelValues(c).Set(v)
	}
	if failing == "" {
		h.logger.Info("Scrape pipeline healthy again")
	} else {
		h.logger.Error("Scrape pipeline stuck, /-/healthy fails", "checks", failing, "reason", r.reason)
	}
	return r
}

// run checks every interval until ctx is done.
func (h *pipelineHealth) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.check(now)
		}
	}
}

// Healthy reports whether the scrape pipeline works, and why not: the
// answer of /-/healthy (see health.go).
func (a *Agent) Healthy() (bool, string) {
	r := a.health.check(time.Now())
	return r.healthy(), r.reason
}
