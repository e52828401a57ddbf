package agent

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/scrape"
	"github.com/stretchr/testify/require"
)

// TestSyncerPartialUpdatesLoseNothing drives the syncer into a real scrape
// manager with a fast reloader: many quick inputs in which a few jobs
// change each time, passed on as changes. Every pool must end with the last input's targets
// (no partial update lost to a map replaced before its reload), and a job
// that never changed must have been synced exactly once.
func TestSyncerPartialUpdatesLoseNothing(t *testing.T) {
	const jobs = 30
	names := make([]string, jobs)
	for i := range jobs {
		names[i] = fmt.Sprintf("job-%d", i)
	}
	var drops atomic.Int64
	a, reg, in := startSyncer(t, names, func(a *Agent) {
		dropSyncLengths := a.syncer.synced
		a.syncer.synced = func() { drops.Add(1); dropSyncLengths() }
	})

	addr := func(job, version int) []*targetgroup.Group {
		return []*targetgroup.Group{{Source: "s", Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(fmt.Sprintf("127.0.0.1:%d", 10000+job*100+version))}}}}
	}
	cur := map[string][]*targetgroup.Group{}
	version := make([]int, jobs)
	for i := range jobs {
		cur[fmt.Sprintf("job-%d", i)] = addr(i, 0)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	in <- maps.Clone(cur) // the first input names every job
	for i := range 300 {
		changes := map[string][]*targetgroup.Group{}
		for range 1 + rng.IntN(3) {
			j := 1 + rng.IntN(jobs-1) // job-0 never changes
			version[j]++
			changes[fmt.Sprintf("job-%d", j)] = addr(j, version[j])
		}
		applyChanges(cur, changes)
		if i%50 == 0 {
			changes = maps.Clone(cur) // now and then every job, which is valid changes too
		}
		in <- changes
		if rng.IntN(10) == 0 {
			time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
		}
	}

	want := map[string]string{}
	for i := range jobs {
		want[fmt.Sprintf("job-%d", i)] = fmt.Sprintf("127.0.0.1:%d", 10000+i*100+version[i])
	}
	if !assertEventually(func() bool { return equalActive(a.scrape, want) }, 10*time.Second) {
		t.Logf("marker syncs %v, active %d pools", a.syncer.count(), len(a.scrape.TargetsActive()))
		for job, ts := range a.scrape.TargetsActive() {
			for _, tt := range ts {
				t.Logf("%s: %s want %s", job, tt.GetValue(model.AddressLabel), want[job])
			}
		}
		t.Fatal("scrape pools do not have the last input's targets")
	}

	syncs := syncCounts(t, reg)
	require.Equal(t, 1.0, syncs["job-0"], "an unchanged job is synced once")
	total := 0.0
	for job, n := range syncs {
		if job != markerJob {
			total += n
		}
	}
	require.Less(t, total, float64(jobs)*syncs[markerJob], "updates carry only changed jobs")

	// The per-pool sync-length summaries are dropped after confirmed
	// updates and never exported; the histograms stay.
	require.Positive(t, drops.Load())
	// A reload may still be syncing pools: drop until one drop leaves none.
	require.True(t, assertEventually(func() bool {
		a.syncs.dropSyncLengths()
		return testutil.CollectAndCount(a.syncs.syncLength) == 0
	}, 5*time.Second), "the summaries are dropped")
	require.Zero(t, testutil.CollectAndCount(reg, "prometheus_target_sync_length_seconds"))
	require.Positive(t, testutil.CollectAndCount(reg, "prometheus_target_sync_length_histogram_seconds"))
}

// startSyncer runs an agent's syncer into its real scrape manager, which
// has the given jobs and a fast reloader, and returns the agent, its
// registry and the syncer's input. before, if not nil, is called before
// anything runs.
func startSyncer(t *testing.T, jobs []string, before func(*Agent)) (*Agent, *prometheus.Registry, chan<- map[string][]*targetgroup.Group) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := New(Options{StoragePath: t.TempDir(), Registerer: reg, RemoteFlushDeadline: time.Second, ScrapeReloadInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	cfg := &promconfig.Config{}
	for _, job := range jobs {
		cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, &promconfig.ScrapeConfig{
			JobName: job, ScrapeInterval: model.Duration(time.Hour), ScrapeTimeout: model.Duration(time.Second),
		})
	}
	loaded, err := prepare(cfg, nil, nil)
	require.NoError(t, err)
	require.NoError(t, a.scrape.ApplyConfig(a.withMarker(loaded)))
	if before != nil {
		before(a)
	}

	ctx, cancel := context.WithCancel(context.Background())
	in := make(chan map[string][]*targetgroup.Group)
	out := make(chan map[string][]*targetgroup.Group)
	done := make(chan struct{})
	go func() { defer close(done); a.syncer.run(ctx, in, out) }()
	go func() { _ = a.scrape.Run(out) }()
	t.Cleanup(func() {
		cancel()
		<-done
		a.scrape.Stop()
		a.closeStorage()
	})
	a.syncer.set(nil)
	return a, reg, in
}

func assertEventually(cond func() bool, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func equalActive(sm *scrape.Manager, want map[string]string) bool {
	got := map[string]string{}
	for job, ts := range sm.TargetsActive() {
		if len(ts) != 1 {
			continue
		}
		got[job] = ts[0].GetValue(model.AddressLabel)
	}
	for job, addr := range want {
		if got[job] != addr {
			return false
		}
	}
	return true
}

func syncCounts(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "prometheus_target_scrape_pool_sync_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "scrape_job" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("syncs: marker %v, jobs %d", out[markerJob], len(keys)-1)
	return out
}
