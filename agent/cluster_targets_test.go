package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// peerServer answers /api/v1/targets like a member owning the given pools.
func peerServer(t *testing.T, pools ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/api/v1/targets", r.URL.Path)
		require.Equal(t, "local", r.URL.Query().Get("scope"), "peers are asked for their own targets only")
		td := TargetDiscovery{DroppedTargets: []DroppedTarget{}, DroppedTargetCounts: map[string]int{}}
		for _, p := range pools {
			td.ActiveTargets = append(td.ActiveTargets, Target{ScrapePool: p, ScrapeURL: "http://" + p + "/metrics", Health: "up"})
			td.DroppedTargetCounts[p] = 1
		}
		writeJSON(rw, http.StatusOK, apiResponse{Status: "success", Data: td})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestClusterTargetsGather(t *testing.T) {
	a := newTestAgent(t)
	t.Cleanup(a.closeStorage)
	b, c := peerServer(t, "serviceMonitor/ns/b/0"), peerServer(t, "serviceMonitor/ns/a/0", "serviceMonitor/ns/c/0")
	down := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		http.Error(rw, "Unauthorized", http.StatusUnauthorized)
	}))
	defer down.Close()
	ct := NewClusterTargets(a, "self")
	ct.Peers = func() []Peer {
		return []Peer{{Name: "b", URL: b.URL}, {Name: "c", URL: c.URL + "/"}, {Name: "d", URL: down.URL}}
	}
	td, err := ct.Gather(context.Background())
	require.ErrorContains(t, err, "member d")
	require.ErrorContains(t, err, "401")
	var got []string
	for _, t := range td.ActiveTargets {
		got = append(got, t.Owner+" "+t.ScrapePool)
	}
	require.Equal(t, []string{"c serviceMonitor/ns/a/0", "b serviceMonitor/ns/b/0", "c serviceMonitor/ns/c/0"}, got)
	require.Equal(t, map[string]int{"serviceMonitor/ns/a/0": 1, "serviceMonitor/ns/b/0": 1, "serviceMonitor/ns/c/0": 1}, td.DroppedTargetCounts)

	// The HTTP surface: scope=cluster merges, with the failure as a warning.
	w := &Web{opts: WebOptions{Targets: ct}, agent: a}
	rec := httptest.NewRecorder()
	w.targetsHandler(rec, httptest.NewRequest(http.MethodGet, "/api/v1/targets?scope=cluster", nil))
	var resp struct {
		Status   string          `json:"status"`
		Data     TargetDiscovery `json:"data"`
		Warnings []string        `json:"warnings"`
	}
	require.NoError(t, json.NewDecoder(rec.Body).Decode(&resp))
	require.Equal(t, "success", resp.Status)
	require.Len(t, resp.Data.ActiveTargets, 3)
	require.Len(t, resp.Warnings, 1)

	rec = httptest.NewRecorder()
	w.targetsHandler(rec, httptest.NewRequest(http.MethodGet, "/api/v1/targets?scope=everything", nil))
	require.Equal(t, http.StatusBadRequest, rec.Code)
}

// droppedReporter is a TargetFilter's report of the targets it keeps out of
// the scrape manager.
type droppedReporter struct{}

func (droppedReporter) DroppedTargets() (map[string][]labels.Labels, map[string]int) {
	return map[string][]labels.Labels{"serviceMonitor/ns/a/0": {labels.FromStrings("__address__", "10.0.0.1:80", "job", "serviceMonitor/ns/a/0")}},
		map[string]int{"serviceMonitor/ns/a/0": 3}
}

// The targets API lists the dropped targets a filter reports with the scrape
// manager's, and their counts.
func TestTargetsAddFilterDropped(t *testing.T) {
	a := newTestAgent(t)
	t.Cleanup(func() {
		a.scrape.Stop()
		a.closeStorage()
	})
	td := targetsOf(a.ScrapeManager(), droppedReporter{})
	require.Equal(t, []DroppedTarget{{ScrapePool: "serviceMonitor/ns/a/0", DiscoveredLabels: map[string]string{"__address__": "10.0.0.1:80", "job": "serviceMonitor/ns/a/0"}}}, td.DroppedTargets)
	require.Equal(t, map[string]int{"serviceMonitor/ns/a/0": 3}, td.DroppedTargetCounts)
}
