package sharding

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/scrape"
	"github.com/stretchr/testify/require"
)

// TestRankHandoffWithScrapeManager runs n0 of a rank-mode cluster (R=2) in
// front of a real scrape.Manager. When n1 dies, n0 is promoted from rank 1
// to rank 0 for the targets n1 led: its rank-1 series stop without
// staleness markers (n2 continues them) and rank-0 series start. When n2
// dies too, n0's remaining rank-1 series end for good: nobody holds rank 1
// with one participant, so they get their markers.
func TestRankHandoffWithScrapeManager(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "demo_value 1") }))
	t.Cleanup(srv.Close)
	cfg, err := config.Load("scrape_configs:\n- job_name: it\n  scrape_interval: 200ms\n  scrape_timeout: 100ms\n", nil)
	require.NoError(t, err)
	scs, err := cfg.GetScrapeConfigs()
	require.NoError(t, err)
	AppendReplicaRelabeling(scs, ReplicaRelabelConfig(DefaultReplicaLabel, "n0", 2, ReplicationRank))
	store := &recordingAppendable{}
	sm, err := scrape.NewManager(&scrape.Options{DiscoveryReloadInterval: model.Duration(20 * time.Millisecond)}, nil, nil, store, nil, prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, sm.ApplyConfig(cfg))
	members := newTestMembers("n0", "n1", "n2")
	f, err := NewFilter(FilterOptions{Self: "n0", Members: members, Staleness: sm, ReplicationFactor: 2})
	require.NoError(t, err)
	f.SetScrapeConfigs(scs)
	in, out := make(chan map[string][]*targetgroup.Group), make(chan map[string][]*targetgroup.Group)
	ctx, cancel := context.WithCancel(context.Background())
	filterDone, scrapeDone := make(chan error, 1), make(chan error, 1)
	go func() { filterDone <- f.Run(ctx, in, out) }()
	go func() { scrapeDone <- sm.Run(out) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-filterDone)
		sm.Stop()
		require.NoError(t, <-scrapeDone)
	})

	addr := strings.TrimPrefix(srv.URL, "http://")
	tg := &targetgroup.Group{Source: "static"}
	rank := map[string]map[string]int{} // members → target → n0's rank (-1: not an owner)
	for _, names := range [][]string{{"n0", "n1", "n2"}, {"n0", "n2"}, {"n0"}} {
		rank[strings.Join(names, ",")] = map[string]int{}
	}
	lb := labels.NewBuilder(labels.EmptyLabels())
	for i := range 30 {
		id := fmt.Sprint(i)
		tg.Targets = append(tg.Targets, model.LabelSet{"__address__": model.LabelValue(addr), "t": model.LabelValue(id)})
		lset, err := scrape.PopulateLabels(lb, scs[0], tg.Targets[i], nil)
		require.NoError(t, err)
		for names, ranks := range rank {
			ranks[id] = -1
			for r, o := range NewRendezvous(strings.Split(names, ",")...).Owners(TargetKey("it", lset), 2, nil) {
				if o == "n0" {
					ranks[id] = r
				}
			}
		}
	}
	in <- map[string][]*targetgroup.Group{"it": {tg}}

	// scraped: whether target id has an `up` sample of rank r (only
	// staleness markers with stale).
	scraped := func(id string, r int, stale bool) bool {
		store.mtx.Lock()
		defer store.mtx.Unlock()
		for _, s := range store.samples {
			if s.lset.Get("__name__") == "up" && s.lset.Get("t") == id && s.lset.Get(DefaultReplicaLabel) == fmt.Sprint(r) && (!stale || value.IsStaleNaN(s.v)) {
				return true
			}
		}
		return false
	}
	all := func(names string) func() bool {
		return func() bool {
			for id, r := range rank[names] {
				if r >= 0 && !scraped(id, r, false) {
					return false
				}
			}
			return true
		}
	}
	require.Eventually(t, all("n0,n1,n2"), 10*time.Second, 50*time.Millisecond, "n0 scrapes its copies, labelled with its ranks")

	var promoted, ending []string
	for id, r := range rank["n0,n1,n2"] {
		if r == 1 && rank["n0,n2"][id] == 0 {
			promoted = append(promoted, id)
		}
	}
	require.NotEmpty(t, promoted)
	members.set("n0", "n2")
	require.Eventually(t, all("n0,n2"), 10*time.Second, 50*time.Millisecond, "promoted to rank 0")
	for id, r := range rank["n0,n2"] {
		if r == 1 {
			ending = append(ending, id)
		}
	}
	require.NotEmpty(t, ending)
	members.set("n0")
	require.Eventually(t, all("n0"), 10*time.Second, 50*time.Millisecond, "alone: rank 0 of every target")
	// End-of-run staleness waits for the next scrape slots.
	require.Eventually(t, func() bool {
		for _, id := range ending {
			if !scraped(id, 1, true) {
				return false
			}
		}
		return true
	}, 5*time.Second, 50*time.Millisecond, "rank-1 series nobody continues get their markers")
	for _, id := range promoted {
		require.False(t, scraped(id, 1, true), "target %s: its rank-1 series moved to n2, no staleness markers", id)
	}
}
