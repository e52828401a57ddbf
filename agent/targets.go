package agent

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"

	"github.com/promshard/promshard/config"
)

// Target is one active target in Prometheus' /api/v1/targets shape, plus
// the member that scrapes it.
type Target struct {
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
	Owner              string            `json:"owner,omitempty"`
}

// DroppedTarget is a target dropped by relabeling, as Prometheus reports it
// (bounded per job by keep_dropped_targets), plus the member reporting it.
type DroppedTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	ScrapePool       string            `json:"scrapePool"`
	Owner            string            `json:"owner,omitempty"`
}

// TargetDiscovery is the data of /api/v1/targets.
type TargetDiscovery struct {
	ActiveTargets       []Target        `json:"activeTargets"`
	DroppedTargets      []DroppedTarget `json:"droppedTargets"`
	DroppedTargetCounts map[string]int  `json:"droppedTargetCounts"`
}

// DroppedTargetsReporter is implemented by a TargetFilter that keeps the
// targets relabeling drops out of the scrape manager and reports them
// itself (sharding.Filter does): per job their discovered labels (at most
// keep_dropped_targets) and their number.
type DroppedTargetsReporter interface {
	DroppedTargets() (map[string][]labels.Labels, map[string]int)
}

// targets returns this member's active and dropped targets, sorted by scrape
// pool and scrape URL, in the shape of Prometheus' /api/v1/targets.
func (a *Agent) targets() TargetDiscovery {
	var dropped DroppedTargetsReporter
	if r, ok := a.targetFilter().(DroppedTargetsReporter); ok {
		dropped = r
	}
	return targetsOf(a.ScrapeManager(), dropped)
}

// targetsOf returns the targets of sm, with the dropped ones of dropped
// (nil: none) added to sm's.
func targetsOf(sm *scrape.Manager, dropped DroppedTargetsReporter) TargetDiscovery {
	lb := labels.NewBuilder(labels.EmptyLabels())
	td := TargetDiscovery{
		ActiveTargets:       []Target{},
		DroppedTargets:      []DroppedTarget{},
		DroppedTargetCounts: sm.TargetsDroppedCounts(),
	}
	delete(td.DroppedTargetCounts, markerJob) // internal, never has targets
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
			td.ActiveTargets = append(td.ActiveTargets, Target{
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
			td.DroppedTargets = append(td.DroppedTargets, DroppedTarget{
				DiscoveredLabels: t.DiscoveredLabels(lb).Map(),
				ScrapePool:       pool,
			})
		}
	}
	if dropped != nil {
		ls, counts := dropped.DroppedTargets()
		for pool, n := range counts {
			td.DroppedTargetCounts[pool] += n
		}
		for pool, l := range ls {
			for _, dl := range l {
				td.DroppedTargets = append(td.DroppedTargets, DroppedTarget{DiscoveredLabels: dl.Map(), ScrapePool: pool})
			}
		}
	}
	td.sort()
	return td
}

// apiResponse is Prometheus' HTTP API envelope.
type apiResponse struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
