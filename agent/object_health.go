package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/scrape"

	"github.com/promshard/promshard/config"
)

// ObjectHealth counts the active targets one monitored object produced (all
// its jobs), on one member or summed over the cluster. It is what members
// exchange for the objects' statuses: its size grows with the objects, not
// with their targets.
type ObjectHealth struct {
	// Object is the object's config.ObjectKey.String(), e.g.
	// "ServiceMonitor/team-a/api".
	Object string `json:"object"`
	// Targets counts the object's active targets, Up those whose last
	// scrape succeeded.
	Targets int `json:"targets"`
	Up      int `json:"up"`
	// Down is one target that is not up, "<instance> <last error>": the
	// smallest such string, so that it does not depend on the order
	// members answer in. Empty when all are up.
	Down string `json:"down,omitempty"`
}

// maxDown bounds ObjectHealth.Down: an error may quote a whole response.
const maxDown = 256

// add counts one target.
func (h *ObjectHealth) add(up bool, instance, lastErr string) {
	h.Targets++
	if up {
		h.Up++
		return
	}
	h.noteDown(truncateString(strings.TrimSpace(instance+" "+lastErr), maxDown))
}

// merge adds o's counts to h.
func (h *ObjectHealth) merge(o ObjectHealth) {
	h.Targets += o.Targets
	h.Up += o.Up
	h.noteDown(o.Down)
}

func (h *ObjectHealth) noteDown(down string) {
	if down != "" && (h.Down == "" || down < h.Down) {
		h.Down = down
	}
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}

// objectHealth returns this member's counts per object, sorted by object.
func (a *Agent) objectHealth() []ObjectHealth {
	return objectHealthOf(a.ScrapeManager().TargetsActive())
}

// objectHealthOf counts the active targets of each object in pools (the
// scrape manager's TargetsActive). Pools that belong to no monitored object
// (additional scrape configs, the marker pool) are not counted.
func objectHealthOf(pools map[string][]*scrape.Target) []ObjectHealth {
	byObject := map[string]*ObjectHealth{}
	for pool, ts := range pools {
		key, ok := config.JobObject(pool)
		if !ok || len(ts) == 0 {
			continue
		}
		obj := key.String()
		h := byObject[obj]
		if h == nil {
			h = &ObjectHealth{Object: obj}
			byObject[obj] = h
		}
		for _, t := range ts {
			up := t.Health() == scrape.HealthGood
			var instance, lastErr string
			if !up {
				if instance = t.GetValue("instance"); instance == "" {
					instance = t.URL().Host
				}
				if err := t.LastError(); err != nil {
					lastErr = config.RedactURLs(err.Error())
				}
			}
			h.add(up, instance, lastErr)
		}
	}
	out := make([]ObjectHealth, 0, len(byObject))
	for _, h := range byObject {
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Object < out[j].Object })
	return out
}

// objectHealthResponse is the data of /api/v1/status/object-health with
// scope=local: the counts of the objects with at least one target here.
type objectHealthResponse struct {
	Objects []ObjectHealth `json:"objects"`
}

// objectHealthHandler serves /api/v1/status/object-health: per monitored
// object, the counts of the targets this member scrapes (scope=local, the
// default; what members ask each other for), or with scope=cluster the sums
// over every member (a HealthReport) with the stale members as warnings.
func (w *Web) objectHealthHandler(rw http.ResponseWriter, r *http.Request) {
	switch scope := r.URL.Query().Get("scope"); scope {
	case "", "local":
		writeLocalHealth(rw, r, w.agent.objectHealth())
	case "cluster":
		if w.opts.Health == nil {
			writeJSON(rw, http.StatusOK, apiResponse{Status: "success", Data: objectHealthResponse{Objects: w.agent.objectHealth()}})
			return
		}
		rep := w.opts.Health.Gather(r.Context())
		writeJSON(rw, http.StatusOK, apiResponse{Status: "success", Data: rep, Warnings: rep.Warnings()})
	default:
		writeJSON(rw, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data",
			Error: fmt.Sprintf("scope %q: want local or cluster", scope)})
	}
}

// writeLocalHealth answers with this member's counts and their ETag, or
// 304 Not Modified when the request's If-None-Match names it: between two
// periodic requests the counts rarely change, and the answer is then only
// headers.
func writeLocalHealth(rw http.ResponseWriter, r *http.Request, objects []ObjectHealth) {
	body, err := json.Marshal(apiResponse{Status: "success", Data: objectHealthResponse{Objects: objects}})
	if err != nil {
		writeJSON(rw, http.StatusInternalServerError, apiResponse{Status: "error", ErrorType: "internal", Error: err.Error()})
		return
	}
	etag := fmt.Sprintf(`"%016x"`, xxhash.Sum64(body))
	rw.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		rw.WriteHeader(http.StatusNotModified)
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	_, _ = rw.Write(append(body, '\n'))
}
