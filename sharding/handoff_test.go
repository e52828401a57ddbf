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

// handoffRig is the filter in front of a real scrape.Manager scraping a
// real HTTP target under 20 label sets (t=0..19) of job "it".
type handoffRig struct {
	f       *Filter
	members *testMembers
	in      chan map[string][]*targetgroup.Group
	store   *recordingAppendable
	cfg     *config.ScrapeConfig
	addr    string
	ids     []int
}

func newHandoffRig(t *testing.T, reload time.Duration) *handoffRig {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "demo_value 1")
	}))
	t.Cleanup(srv.Close)
	cfg, err := config.Load(`
scrape_configs:
- job_name: it
  scrape_interval: 200ms
  scrape_timeout: 100ms
`, nil)
	require.NoError(t, err)
	r := &handoffRig{store: &recordingAppendable{}, members: newTestMembers("n0"), in: make(chan map[string][]*targetgroup.Group),
		addr: strings.TrimPrefix(srv.URL, "http://")}
	sm, err := scrape.NewManager(&scrape.Options{DiscoveryReloadInterval: model.Duration(reload)}, nil, nil, r.store, nil, prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, sm.ApplyConfig(cfg))
	r.f, err = NewFilter(FilterOptions{Self: "n0", Members: r.members, Staleness: sm})
	require.NoError(t, err)
	scs, err := cfg.GetScrapeConfigs()
	require.NoError(t, err)
	r.cfg = scs[0]
	r.f.SetScrapeConfigs(scs)

	out := make(chan map[string][]*targetgroup.Group)
	ctx, cancel := context.WithCancel(context.Background())
	filterDone, scrapeDone := make(chan error, 1), make(chan error, 1)
	go func() { filterDone <- r.f.Run(ctx, r.in, out) }()
	go func() { scrapeDone <- sm.Run(out) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-filterDone)
		sm.Stop()
		require.NoError(t, <-scrapeDone)
	})
	for i := range 20 {
		r.ids = append(r.ids, i)
	}
	r.in <- r.group(r.ids...)
	require.Eventually(t, func() bool { return len(scrapedUp(r.store, false)) == 20 }, 10*time.Second, 50*time.Millisecond)
	return r
}

func (r *handoffRig) group(ids ...int) map[string][]*targetgroup.Group {
	tg := &targetgroup.Group{Source: "static"}
	for _, i := range ids {
		tg.Targets = append(tg.Targets, model.LabelSet{"__address__": model.LabelValue(r.addr), "t": model.LabelValue(fmt.Sprint(i))})
	}
	return map[string][]*targetgroup.Group{"it": {tg}}
}

// TestHandoffWithScrapeManager: targets that move to another member stop
// without staleness markers, targets that vanish from discovery get them.
func TestHandoffWithScrapeManager(t *testing.T) {
	r := newHandoffRig(t, 20*time.Millisecond)
	// n1 joins: about half the targets move to it.
	r.members.set("n0", "n1")
	require.Eventually(t, func() bool {
		st := r.f.Stats()
		return st.Owned["n0"]+st.Owned["n1"] == 20 && st.Owned["n1"] > 0
	}, 5*time.Second, 10*time.Millisecond)
	owned := ownedIDs(t, r.cfg, r.group(r.ids...))
	var kept []int
	for _, i := range r.ids {
		if owned[i] {
			kept = append(kept, i)
		}
	}
	require.NotEmpty(t, kept)
	// One kept target vanishes from discovery.
	vanished := kept[0]
	r.in <- r.group(without(r.ids, vanished)...)

	// End-of-run staleness waits for the next scrape slots: give it time.
	time.Sleep(time.Second)
	stale := scrapedUp(r.store, true)
	require.Equal(t, map[string]bool{fmt.Sprint(vanished): true}, stale,
		"only the vanished target gets staleness markers; moved ones (%d) do not", 20-len(kept))
}

// TestHandoffBackBeforeReload: targets handed off and back before the scrape
// manager's reload must not keep loops whose staleness markers are off: one
// that vanishes later still gets its markers.
func TestHandoffBackBeforeReload(t *testing.T) {
	// The rig returns right after the first reload (all 20 scraped once):
	// the next one is ~1.3 s away, time enough to move away and back.
	r := newHandoffRig(t, 1500*time.Millisecond)
	owned := ownedIDs(t, r.cfg, r.group(r.ids...))
	var moved []int
	for _, i := range r.ids {
		if !owned[i] {
			moved = append(moved, i)
		}
	}
	require.NotEmpty(t, moved)
	r.members.set("n0", "n1") // handed off: their loops get the flag
	require.Eventually(t, func() bool { return r.f.Stats().Owned["n1"] > 0 }, 5*time.Second, time.Millisecond)
	r.members.set("n0") // back, within the same reload interval
	require.Eventually(t, func() bool { return r.f.Stats().Owned["n0"] == 20 }, 5*time.Second, time.Millisecond)
	// The old loops of the targets that came back end at the next reload
	// (their markers are off, so they were withheld); at the reload after
	// it every target runs again, in a fresh loop, which scrapes before the
	// target vanishes. (A target that vanishes before its fresh loop's
	// first scrape gets no markers from anyone: its last samples came from
	// the loop handed off without them.) Waiting on the filter's withheld
	// flag instead would race with the pass that sets it.
	active := func() int { return len(r.f.opts.Staleness.TargetsActive()["it"]) }
	require.Eventually(t, func() bool { return active() == len(r.ids)-len(moved) }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return active() == len(r.ids) }, 5*time.Second, 10*time.Millisecond)
	vanished := moved[0]
	scraped := upSamples(r.store, vanished)
	require.Eventually(t, func() bool { return upSamples(r.store, vanished) > scraped }, 5*time.Second, 10*time.Millisecond)
	r.in <- r.group(without(r.ids, vanished)...)
	require.Eventually(t, func() bool { return scrapedUp(r.store, true)[fmt.Sprint(vanished)] }, 5*time.Second, 50*time.Millisecond,
		"a target that came back must get staleness markers when it vanishes")
}

// upSamples counts the `up` samples of target t.
func upSamples(store *recordingAppendable, t int) int {
	store.mtx.Lock()
	defer store.mtx.Unlock()
	n := 0
	for _, s := range store.samples {
		if s.lset.Get("__name__") == "up" && s.lset.Get("t") == fmt.Sprint(t) {
			n++
		}
	}
	return n
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
