package sharding

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"
)

// TestSeriesCounterCountsWhatTheScrapeLoopWrites runs Prometheus' scrape
// manager over a SeriesCounter against two HTTP targets of 3 and 40
// series: each target's count is its series after metric relabeling (one
// dropped) plus the loop's report series.
func TestSeriesCounterCountsWhatTheScrapeLoopWrites(t *testing.T) {
	serve := func(n int) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			for i := range n {
				fmt.Fprintf(w, "s{i=\"%d\"} %d\n", i, i)
			}
			fmt.Fprintln(w, "dropped_by_relabeling 1")
		}))
	}
	small, big := serve(3), serve(40)
	defer small.Close()
	defer big.Close()
	counter := NewSeriesCounter(teststorage.NewAppendable())
	m, err := scrape.NewManager(&scrape.Options{PassMetadataInContext: true, DiscoveryReloadInterval: model.Duration(10 * time.Millisecond)},
		promslog.NewNopLogger(), nil, nil, counter, prometheus.NewRegistry())
	require.NoError(t, err)
	cfg, err := config.Load(`
scrape_configs:
  - job_name: sized
    scrape_interval: 200ms
    scrape_timeout: 190ms
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: dropped_by_relabeling
        action: drop
`, promslog.NewNopLogger())
	require.NoError(t, err)
	require.NoError(t, m.ApplyConfig(cfg))
	ch := make(chan map[string][]*targetgroup.Group, 1)
	host := func(s *httptest.Server) model.LabelValue { u, _ := url.Parse(s.URL); return model.LabelValue(u.Host) }
	ch <- map[string][]*targetgroup.Group{"sized": {{Source: "0", Targets: []model.LabelSet{{"__address__": host(small)}, {"__address__": host(big)}}}}}
	done := make(chan struct{})
	go func() { _ = m.Run(ch); close(done) }()
	defer func() { m.Stop(); <-done }()

	const report = 5 // up, scrape_duration_seconds, scrape_samples_scraped, scrape_samples_post_metric_relabeling, scrape_series_added
	want := map[string]int{string(host(small)): 3 + report, string(host(big)): 40 + report}
	// Each target must show its full count after some scrape. A scrape
	// that times out on a loaded machine (go test -race on 2 cores)
	// writes only the report series, so the two targets are checked
	// separately rather than required to succeed in the same poll.
	seen := map[string]bool{}
	last := map[string]int{}
	require.Eventually(t, func() bool {
		for _, tg := range m.TargetsActive()["sized"] {
			host := tg.URL().Host
			n, ok := counter.Series(loopKey(tg, labels.NewBuilder(labels.EmptyLabels())))
			if ok {
				last[host] = n
			}
			if ok && n == want[host] {
				seen[host] = true
			}
		}
		return len(seen) == len(want)
	}, 20*time.Second, 20*time.Millisecond, "last counts %v, want %v", last, want)
}
