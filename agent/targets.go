package agent

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"

	"github.com/promshard/promshard/config"
)

// apiTarget is one active target in Prometheus' /api/v1/targets shape.
type apiTarget struct {
	DiscoveredLabels   map[string]string `json:"discoveredLabels"`
	Labels             map[string]string `json:"labels"`
	ScrapePool         string            `json:"scrapePool"`
	ScrapeURL          string            `json:"scrapeUrl"`
	GlobalURL          string            `json:"globalUrl"`
	LastError          string            `json:"lastError"`
	LastScrape         time.Time         `json:"lastScrape"`
	LastScrapeDuration float64           `json:"lastScrapeDuration"`
	Health             string            `json:"health"`
	ScrapeInterval     string            `json:"scrapeInterval"`
	ScrapeTimeout      string            `json:"scrapeTimeout"`
}

type apiDroppedTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	ScrapePool       string            `json:"scrapePool"`
}

type targetDiscovery struct {
	ActiveTargets       []apiTarget        `json:"activeTargets"`
	DroppedTargets      []apiDroppedTarget `json:"droppedTargets"`
	DroppedTargetCounts map[string]int     `json:"droppedTargetCounts"`
}

// targetsOf returns this member's active and dropped targets, sorted by scrape
// pool and scrape URL, in the shape of Prometheus' /api/v1/targets.
func targetsOf(sm *scrape.Manager) targetDiscovery {
	lb := labels.NewBuilder(labels.EmptyLabels())
	td := targetDiscovery{
		ActiveTargets:       []apiTarget{},
		DroppedTargets:      []apiDroppedTarget{},
		DroppedTargetCounts: sm.TargetsDroppedCounts(),
	}
	for pool, ts := range sm.TargetsActive() {
		for _, t := range ts {
			lastErr := ""
			if err := t.LastError(); err != nil {
				lastErr = err.Error()
			}
			interval := t.GetValue("__scrape_interval__")
			timeout := t.GetValue("__scrape_timeout__")
			// A password in the address (user:pw@host) is never shown.
			u := t.URL().Redacted()
			td.ActiveTargets = append(td.ActiveTargets, apiTarget{
				DiscoveredLabels:   t.DiscoveredLabels(lb).Map(),
				Labels:             t.Labels(lb).Map(),
				ScrapePool:         pool,
				ScrapeURL:          u,
				GlobalURL:          u,
				LastError:          config.RedactURLs(lastErr),
				LastScrape:         t.LastScrape(),
				LastScrapeDuration: t.LastScrapeDuration().Seconds(),
				Health:             string(t.Health()),
				ScrapeInterval:     interval,
				ScrapeTimeout:      timeout,
			})
		}
	}
	for pool, ts := range sm.TargetsDropped() {
		for _, t := range ts {
			td.DroppedTargets = append(td.DroppedTargets, apiDroppedTarget{
				DiscoveredLabels: t.DiscoveredLabels(lb).Map(),
				ScrapePool:       pool,
			})
		}
	}
	sort.Slice(td.ActiveTargets, func(i, j int) bool {
		a, b := td.ActiveTargets[i], td.ActiveTargets[j]
		if a.ScrapePool != b.ScrapePool {
			return a.ScrapePool < b.ScrapePool
		}
		return a.ScrapeURL < b.ScrapeURL
	})
	sort.SliceStable(td.DroppedTargets, func(i, j int) bool {
		return td.DroppedTargets[i].ScrapePool < td.DroppedTargets[j].ScrapePool
	})
	return td
}

// apiResponse is Prometheus' HTTP API envelope.
type apiResponse struct {
	Status string `json:"status"`
	Data   any    `json:"data,omitempty"`
	Error  string `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
