package sharding

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// TestHandoffWithScrapeManager runs the filter in front of a real
// scrape.Manager scraping a real HTTP target: targets that move to another
// member stop without staleness markers, targets that vanish from discovery
// get them.
func TestHandoffWithScrapeManager(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "demo_value 1")
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	cfg, err := config.Load(`
scrape_configs:
- job_name: it
  scrape_interval: 200ms
  scrape_timeout: 100ms
`, nil)
	require.NoError(t, err)
	store := &recordingAppendable{}
	sm, err := scrape.NewManager(&scrape.Options{DiscoveryReloadInterval: model.Duration(20 * time.Millisecond)}, nil, nil, store, nil, prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, sm.ApplyConfig(cfg))

	members := newTestMembers("n0")
	f, err := NewFilter(FilterOptions{Self: "n0", Members: members, Staleness: sm})
	require.NoError(t, err)
	scs, err := cfg.GetScrapeConfigs()
	require.NoError(t, err)
	f.SetScrapeConfigs(scs)

	in := make(chan map[string][]*targetgroup.Group)
	out := make(chan map[string][]*targetgroup.Group)
	ctx, cancel := context.WithCancel(context.Background())
	filterDone, scrapeDone := make(chan error, 1), make(chan error, 1)
	go func() { filterDone <- f.Run(ctx, in, out) }()
	go func() { scrapeDone <- sm.Run(out) }()
	defer func() {
		cancel()
		require.NoError(t, <-filterDone)
		sm.Stop()
		require.NoError(t, <-scrapeDone)
	}()

	group := func(ids ...int) map[string][]*targetgroup.Group {
		tg := &targetgroup.Group{Source: "static"}
		for _, i := range ids {
			tg.Targets = append(tg.Targets, model.LabelSet{"__address__": model.LabelValue(addr), "t": model.LabelValue(fmt.Sprint(i))})
		}
		return map[string][]*targetgroup.Group{"it": {tg}}
	}
	ids := make([]int, 20)
	for i := range ids {
		ids[i] = i
	}
	in <- group(ids...)
	require.Eventually(t, func() bool { return len(scrapedUp(store, false)) == 20 }, 10*time.Second, 50*time.Millisecond)

	// n1 joins: about half the targets move to it.
	members.set("n0", "n1")
	var kept []int
	require.Eventually(t, func() bool {
		st := f.Stats()
		return st.Owned["n0"]+st.Owned["n1"] == 20 && st.Owned["n1"] > 0
	}, 5*time.Second, 10*time.Millisecond)
	owned := ownedIDs(t, scs[0], group(ids...))
	for _, i := range ids {
		if owned[i] {
			kept = append(kept, i)
		}
	}
	require.NotEmpty(t, kept)
	// One kept target vanishes from discovery.
	vanished := kept[0]
	in <- group(without(ids, vanished)...)

	// End-of-run staleness waits for the next scrape slots: give it time.
	time.Sleep(time.Second)
	stale := scrapedUp(store, true)
	require.Equal(t, map[string]bool{fmt.Sprint(vanished): true}, stale,
		"only the vanished target gets staleness markers; moved ones (%d) do not", 20-len(kept))
}

// scrapedUp returns the t labels of targets with an `up` sample, only
// staleness markers when stale is set.
func scrapedUp(store *recordingAppendable, stale bool) map[string]bool {
	store.mtx.Lock()
	defer store.mtx.Unlock()
	out := map[string]bool{}
	for _, s := range store.samples {
		if s.lset.Get("__name__") == "up" && (!stale || value.IsStaleNaN(s.v)) {
			out[s.lset.Get("t")] = true
		}
	}
	return out
}

// recordingAppendable records committed float samples; unlike
// teststorage.Appendable it supports the scrape loops' concurrent appenders.
type recordingAppendable struct {
	mtx     sync.Mutex
	samples []recordedSample
}

type recordedSample struct {
	lset labels.Labels
	v    float64
}

func (r *recordingAppendable) Appender(context.Context) storage.Appender {
	return &recordingAppender{r: r}
}

// recordingAppender implements the float path the scrape loop uses for the
// text format; other methods are left to the nil embedded interface.
type recordingAppender struct {
	storage.Appender
	r       *recordingAppendable
	pending []recordedSample
}

func (a *recordingAppender) SetOptions(*storage.AppendOptions) {}

func (a *recordingAppender) Append(_ storage.SeriesRef, l labels.Labels, _ int64, v float64) (storage.SeriesRef, error) {
	a.pending = append(a.pending, recordedSample{lset: l.Copy(), v: v})
	return 0, nil
}

func (a *recordingAppender) Commit() error {
	a.r.mtx.Lock()
	defer a.r.mtx.Unlock()
	a.r.samples = append(a.r.samples, a.pending...)
	a.pending = nil
	return nil
}

func (a *recordingAppender) Rollback() error {
	a.pending = nil
	return nil
}

// ownedIDs computes independently of the filter which ids n0 owns in a
// cluster of n0 and n1.
func ownedIDs(t *testing.T, cfg *config.ScrapeConfig, tsets map[string][]*targetgroup.Group) map[int]bool {
	t.Helper()
	h := NewRendezvous("n0", "n1")
	res := map[int]bool{}
	lb := labels.NewBuilder(labels.EmptyLabels())
	for _, tg := range tsets["it"] {
		for _, tl := range tg.Targets {
			lset, err := scrape.PopulateLabels(lb, cfg, tl, tg.Labels)
			require.NoError(t, err)
			id := 0
			_, err = fmt.Sscan(string(tl["t"]), &id)
			require.NoError(t, err)
			res[id] = h.Owners(TargetKey("it", lset), 1, nil)[0] == "n0"
		}
	}
	return res
}

func without(ids []int, drop int) []int {
	var out []int
	for _, i := range ids {
		if i != drop {
			out = append(out, i)
		}
	}
	return out
}
