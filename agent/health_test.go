package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

func TestEvaluateHealth(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const syncLimit, walLimit = 30 * time.Second, 90 * time.Second
	for _, tc := range []struct {
		name    string
		in      healthInput
		failing []string
		reason  string // substring
	}{
		{name: "idle: no targets, never a commit", in: healthInput{}},
		{name: "idle: no targets, commits stopped long ago", in: healthInput{lastCommit: ago(time.Hour)}},
		{name: "owned targets, recent commit", in: healthInput{owned: 3, ownedSince: ago(time.Hour), lastCommit: ago(time.Second)}},
		{name: "owned targets, commits stopped", in: healthInput{owned: 3, ownedSince: ago(time.Hour), lastCommit: ago(2 * time.Minute)},
			failing: []string{checkWAL}, reason: "no scrape was appended to the WAL for 2m0s while 3 targets are owned (limit 1m30s)"},
		{name: "just owned after a long idle time", in: healthInput{owned: 1, ownedSince: ago(time.Minute), lastCommit: ago(time.Hour)}},
		{name: "owned for long, never a commit", in: healthInput{owned: 2, ownedSince: ago(5 * time.Minute)},
			failing: []string{checkWAL}, reason: "in the 5m0s since 2 targets became owned (limit 1m30s)"},
		{name: "owned for long, last commit before", in: healthInput{owned: 2, ownedSince: ago(5 * time.Minute), lastCommit: ago(time.Hour)},
			failing: []string{checkWAL}, reason: "since 2 targets became owned"},
		{name: "at the WAL limit", in: healthInput{owned: 1, ownedSince: ago(time.Hour), lastCommit: ago(walLimit)}},
		{name: "target update outstanding within the limit", in: healthInput{syncWaitingSince: ago(10 * time.Second)}},
		{name: "target update not applied", in: healthInput{syncWaitingSince: ago(45 * time.Second)},
			failing: []string{checkScrapeSync}, reason: "the scrape manager has not applied the targets handed to it 45s ago (limit 30s)"},
		{name: "both stuck", in: healthInput{syncWaitingSince: ago(time.Minute), owned: 1, ownedSince: ago(time.Hour), lastCommit: ago(time.Hour)},
			failing: []string{checkScrapeSync, checkWAL}, reason: "ago (limit 30s); no scrape was appended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.now, in.syncStuckAfter, in.walStuckAfter = now, syncLimit, walLimit
			r := evaluateHealth(in)
			require.Equal(t, tc.failing, r.failing)
			require.Equal(t, tc.failing == nil, r.healthy())
			if tc.reason == "" {
				require.Empty(t, r.reason)
				return
			}
			require.Contains(t, r.reason, tc.reason)
			require.NotContains(t, r.reason, "\n")
		})
	}
}

func TestHealthLimitsFromIntervals(t *testing.T) {
	a := newTestAgent(t)
	t.Cleanup(a.closeStorage)
	require.Equal(t, minStuckAfter, a.health.syncStuckAfter, "250ms reloads: the floor")
	require.Equal(t, minStuckAfter, a.health.walStuckAfter(), "no configuration: the floor")
	a.health.setLongestInterval(time.Minute)
	require.Equal(t, 3*time.Minute, a.health.walStuckAfter())

	b, err := New(Options{StoragePath: t.TempDir(), Registerer: prometheus.NewRegistry(), ScrapeReloadInterval: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(b.closeStorage)
	require.Equal(t, 200*time.Second, b.health.syncStuckAfter, "40 reload intervals of Prometheus' 5s")
	require.Equal(t, time.Duration(0), longestInterval(nil))
	require.Equal(t, 2*time.Minute, longestInterval([]*promconfig.ScrapeConfig{
		{ScrapeInterval: model.Duration(time.Minute)}, {ScrapeInterval: model.Duration(2 * time.Minute)},
	}))
}

// TestHealthStuckScrapeSync hands the syncer a target update while the
// scrape manager does not run, then starts it.
func TestHealthStuckScrapeSync(t *testing.T) {
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	a, err := New(Options{StoragePath: t.TempDir(), Registerer: reg, RemoteFlushDeadline: time.Second, ScrapeReloadInterval: 5 * time.Millisecond,
		Logger: promslog.New(&promslog.Config{Writer: &logs})})
	require.NoError(t, err)
	a.health.syncStuckAfter = 100 * time.Millisecond
	loaded, err := prepare(&promconfig.Config{}, nil, nil)
	require.NoError(t, err)
	require.NoError(t, a.scrape.ApplyConfig(a.withMarker(loaded)))

	ctx, cancel := context.WithCancel(context.Background())
	in := make(chan map[string][]*targetgroup.Group)
	out := make(chan map[string][]*targetgroup.Group)
	done := make(chan struct{})
	go func() { defer close(done); a.syncer.run(ctx, in, out) }()
	scrapeDone := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
		a.scrape.Stop()
		<-scrapeDone
		a.closeStorage()
	})
	a.syncer.set(nil)
	ok, reason := a.Healthy()
	require.True(t, ok, reason)

	in <- map[string][]*targetgroup.Group{"job": {{Source: "s", Targets: []model.LabelSet{
		{model.AddressLabel: "127.0.0.1:1"}, {model.AddressLabel: "127.0.0.1:2"},
	}}}}
	require.Eventually(t, func() bool { n, _ := a.syncer.ownedTargets(); return n == 2 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { ok, _ := a.Healthy(); return !ok }, 5*time.Second, 5*time.Millisecond)
	ok, reason = a.Healthy()
	require.False(t, ok)
	require.Contains(t, reason, "the scrape manager has not applied the targets handed to it")
	require.NotContains(t, reason, "WAL", "the WAL limit (30s) is not reached")
	a.health.check(time.Now())
	require.InDelta(t, 0, testutil.ToFloat64(a.health.gauge.WithLabelValues(checkScrapeSync)), 0)
	require.InDelta(t, 1, testutil.ToFloat64(a.health.gauge.WithLabelValues(checkWAL)), 0)

	// The scrape manager runs: the update is applied, healthy again.
	go func() { defer close(scrapeDone); _ = a.scrape.Run(out) }()
	require.Eventually(t, func() bool { ok, _ := a.Healthy(); return ok }, 10*time.Second, 5*time.Millisecond)
	require.True(t, a.syncer.waitingSince().IsZero())
	require.InDelta(t, 1, testutil.ToFloat64(a.health.gauge.WithLabelValues(checkScrapeSync)), 0)
	require.Equal(t, 1, strings.Count(logs.String(), "Scrape pipeline stuck"), logs.String())
	require.Equal(t, 1, strings.Count(logs.String(), "Scrape pipeline healthy again"), logs.String())
}

// failingAppendable refuses every commit while fail is set.
type failingAppendable struct {
	storage.AppendableV2
	fail *atomic.Bool
}

func (f failingAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return failingAppender{AppenderV2: f.AppendableV2.AppenderV2(ctx), fail: f.fail}
}

type failingAppender struct {
	storage.AppenderV2
	fail *atomic.Bool
}

func (f failingAppender) Commit() error {
	if f.fail.Load() {
		_ = f.AppenderV2.Rollback()
		return errors.New("disk full")
	}
	return f.AppenderV2.Commit()
}

// TestHealthWAL runs the real managers: idle without targets, healthy
// while a target is scraped (also when the scrape fails: the scrape
// manager commits its report), stuck while the WAL refuses commits.
func TestHealthWAL(t *testing.T) {
	var failing atomic.Bool
	var status atomic.Int32
	status.Store(http.StatusOK)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(status.Load()))
		fmt.Fprintln(w, "demo 1")
	}))
	defer target.Close()
	a := newTestAgent(t)
	a.commits.AppendableV2 = failingAppendable{AppendableV2: a.commits.AppendableV2, fail: &failing}
	a.health.floor = 0 // the limit is three scrape intervals: 300ms
	web, err := NewWeb(WebOptions{ListenAddress: "127.0.0.1:0"}, a)
	require.NoError(t, err)
	defer web.ln.Close()
	healthy := func() (int, string) {
		rec := httptest.NewRecorder()
		web.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/-/healthy", nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	// Idle: a job without targets, nothing ever committed, a zero floor.
	require.NoError(t, a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("empty")}}))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(a.metrics.syncUpdates) >= 1 && a.syncer.waitingSince().IsZero()
	}, 10*time.Second, 5*time.Millisecond, "the empty job's update applied")
	code, body := healthy()
	require.Equal(t, http.StatusOK, code, body)
	r := a.health.check(time.Now().Add(time.Hour))
	require.True(t, r.healthy(), "an hour without a commit and without targets: %s", r.reason)

	require.NoError(t, a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{scrapeJob("static", target.Listener.Addr().String())}}))
	require.Equal(t, 300*time.Millisecond, a.health.walStuckAfter())
	// The scrape manager appends through the tracker (the contract the WAL
	// check relies on).
	require.Eventually(t, func() bool { return testutil.ToFloat64(a.commits.commits) >= 3 }, 20*time.Second, 10*time.Millisecond)
	status.Store(http.StatusInternalServerError)
	seen := testutil.ToFloat64(a.commits.commits)
	require.Eventually(t, func() bool { return testutil.ToFloat64(a.commits.commits) >= seen+5 }, 20*time.Second, 10*time.Millisecond,
		"failed scrapes commit too")
	code, body = healthy()
	require.Equal(t, http.StatusOK, code, body)

	failing.Store(true)
	require.Eventually(t, func() bool { code, _ := healthy(); return code == http.StatusServiceUnavailable }, 10*time.Second, 10*time.Millisecond)
	code, body = healthy()
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Regexp(t, `^promshard is not healthy: no scrape was appended to the WAL for \S+ while 1 targets are owned \(limit 300ms\)\n$`, body)
	a.health.check(time.Now())
	require.InDelta(t, 0, testutil.ToFloat64(a.health.gauge.WithLabelValues(checkWAL)), 0)

	failing.Store(false)
	require.Eventually(t, func() bool { code, _ := healthy(); return code == http.StatusOK }, 10*time.Second, 10*time.Millisecond)
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
