package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/stretchr/testify/require"
)

// healthPeer is a member answering /api/v1/status/object-health with the
// counts it is given; it fails the test on any other request (the periodic
// exchange never asks for target lists).
type healthPeer struct {
	*httptest.Server
	mtx     sync.Mutex
	objects []ObjectHealth
	asked   int
}

func newHealthPeer(t *testing.T, objects ...ObjectHealth) *healthPeer {
	t.Helper()
	p := &healthPeer{objects: objects}
	p.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/status/object-health" || r.URL.Query().Get("scope") != "local" {
			t.Errorf("peer asked for %s, want /api/v1/status/object-health?scope=local", r.URL)
			http.NotFound(rw, r)
			return
		}
		p.mtx.Lock()
		defer p.mtx.Unlock()
		p.asked++
		writeJSON(rw, http.StatusOK, apiResponse{Status: "success", Data: objectHealthResponse{Objects: p.objects}})
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *healthPeer) set(objects ...ObjectHealth) {
	p.mtx.Lock()
	defer p.mtx.Unlock()
	p.objects = objects
}

// clock is a settable time for the gatherer.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestClusterHealth(t *testing.T, local *[]ObjectHealth, peers *[]Peer, c *clock) *ClusterHealth {
	t.Helper()
	ct := &ClusterTargets{Self: "self", Peers: func() []Peer { return *peers }}
	ch := &ClusterHealth{targets: ct, local: func() []ObjectHealth { return *local }, now: c.now, peers: map[string]*peerCounts{}}
	var err error
	ch.metrics, err = newClusterHealthMetrics(nil)
	require.NoError(t, err)
	return ch
}

func oh(object string, targets, up int, down string) ObjectHealth {
	return ObjectHealth{Object: object, Targets: targets, Up: up, Down: down}
}

func coh(h ObjectHealth, stale ...string) ClusterObjectHealth {
	return ClusterObjectHealth{ObjectHealth: h, Stale: stale}
}

// A member that does not answer leaves only the objects it had targets of
// stale (its last counts kept, marked with its name), and never holds up the
// updates of the others' objects: they change in the same gather. A member
// that never answered is missing; one that is gone is forgotten.
func TestClusterHealthUnreachablePeer(t *testing.T) {
	const api, web, db = "ServiceMonitor/a/api", "ServiceMonitor/a/web", "PodMonitor/a/db"
	b := newHealthPeer(t, oh(api, 2, 2, ""))
	c := newHealthPeer(t, oh(api, 1, 1, ""), oh(web, 3, 2, "10.0.0.7:80 connection refused"))
	hung := make(chan struct{})
	d := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hung }))
	t.Cleanup(func() { close(hung); d.Close() })
	local := []ObjectHealth{oh(db, 1, 1, "")}
	peers := []Peer{{Name: "b", URL: b.URL}, {Name: "c", URL: c.URL}, {Name: "d", URL: d.URL}}
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := &clock{t: t1}
	ch := newTestClusterHealth(t, &local, &peers, clk)
	gather := func() HealthReport {
		// d never answers: the gather is bounded by its context, not by d.
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		rep := ch.Gather(ctx)
		require.Less(t, time.Since(start), 2*time.Second)
		return rep
	}

	rep := gather()
	require.Equal(t, []ClusterObjectHealth{
		coh(oh(db, 1, 1, "")),
		coh(oh(api, 3, 3, "")),
		coh(oh(web, 3, 2, "10.0.0.7:80 connection refused")),
	}, rep.Objects)
	require.Equal(t, []string{"d"}, rep.Missing(), "d never answered: its targets are not counted")
	require.Len(t, rep.Warnings(), 1)
	require.Contains(t, rep.Warnings()[0], "member d has not answered yet")

	// c becomes unreachable; b's and this member's counts change.
	c.Close()
	b.set(oh(api, 2, 1, "10.0.0.9:80 timeout"))
	local = []ObjectHealth{oh(db, 2, 2, "")}
	clk.t = t1.Add(30 * time.Second)
	rep = gather()
	require.Equal(t, []ClusterObjectHealth{
		coh(oh(db, 2, 2, "")),                          // current: c had no target of it
		coh(oh(api, 3, 2, "10.0.0.9:80 timeout"), "c"), // b's new counts plus c's last
		coh(oh(web, 3, 2, "10.0.0.7:80 connection refused"), "c"),
	}, rep.Objects)
	require.Equal(t, "c", rep.Members[1].Name)
	require.True(t, rep.Members[1].Stale)
	require.Equal(t, t1, rep.Members[1].Answered, "the counts are those of c's last answer")
	require.Equal(t, 2, rep.Members[1].Objects)
	require.False(t, rep.Members[0].Stale)
	require.Contains(t, rep.Warnings()[0], "member c did not answer, the counts of its 2 objects are from 2026-01-02T03:04:05Z")

	// c leaves the cluster: its targets have new owners, its counts go.
	peers = peers[:1]
	rep = gather()
	require.Equal(t, []ClusterObjectHealth{coh(oh(db, 2, 2, "")), coh(oh(api, 2, 1, "10.0.0.9:80 timeout"))}, rep.Objects)
	require.Empty(t, rep.Warnings())
	require.Equal(t, 3, b.asked)

	// The HTTP surface: scope=cluster gives the sums, scope=local the
	// member's own counts.
	w := &Web{opts: WebOptions{Health: ch}, agent: newTestAgent(t)}
	t.Cleanup(w.agent.closeStorage)
	peers = append(peers, Peer{Name: "e", URL: "http://127.0.0.1:1"})
	rec := httptest.NewRecorder()
	w.objectHealthHandler(rec, httptest.NewRequest(http.MethodGet, "/api/v1/status/object-health?scope=cluster", nil))
	var resp struct {
		Data     HealthReport `json:"data"`
		Warnings []string     `json:"warnings"`
	}
	require.NoError(t, json.NewDecoder(rec.Body).Decode(&resp))
	require.Len(t, resp.Data.Objects, 2)
	require.Len(t, resp.Warnings, 1)
	require.Contains(t, resp.Warnings[0], "member e has not answered yet")
	rec = httptest.NewRecorder()
	w.objectHealthHandler(rec, httptest.NewRequest(http.MethodGet, "/api/v1/status/object-health", nil))
	require.JSONEq(t, `{"status":"success","data":{"objects":[]}}`, rec.Body.String())
	rec = httptest.NewRecorder()
	w.objectHealthHandler(rec, httptest.NewRequest(http.MethodGet, "/api/v1/status/object-health?scope=all", nil))
	require.Equal(t, http.StatusBadRequest, rec.Code)
}

// A member whose counts did not change since the last request answers
// 304 Not Modified to the ETag it gave with them: the counts held stay,
// and are current.
func TestClusterHealthNotModified(t *testing.T) {
	var mtx sync.Mutex
	objects := []ObjectHealth{oh("ServiceMonitor/a/api", 2, 2, "")}
	var codes []int
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mtx.Lock()
		defer mtx.Unlock()
		rec := httptest.NewRecorder()
		writeLocalHealth(rec, r, objects)
		codes = append(codes, rec.Code)
		for k, v := range rec.Header() {
			rw.Header()[k] = v
		}
		rw.WriteHeader(rec.Code)
		_, _ = rw.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	local := []ObjectHealth{}
	peers := []Peer{{Name: "b", URL: srv.URL}}
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	ch := newTestClusterHealth(t, &local, &peers, clk)
	want := []ClusterObjectHealth{coh(oh("ServiceMonitor/a/api", 2, 2, ""))}
	require.Equal(t, want, ch.Gather(context.Background()).Objects)
	clk.t = clk.t.Add(30 * time.Second)
	rep := ch.Gather(context.Background())
	require.Equal(t, want, rep.Objects, "304: the counts held stay")
	require.Equal(t, clk.t, rep.Members[0].Answered)
	mtx.Lock()
	objects = []ObjectHealth{oh("ServiceMonitor/a/api", 2, 1, "x:1 timeout")}
	mtx.Unlock()
	require.Equal(t, []ClusterObjectHealth{coh(oh("ServiceMonitor/a/api", 2, 1, "x:1 timeout"))}, ch.Gather(context.Background()).Objects)
	require.Equal(t, []int{http.StatusOK, http.StatusNotModified, http.StatusOK}, codes)
}

// A caller that gives up (a status page closed) does not mark the peers
// stale.
func TestClusterHealthCanceledGather(t *testing.T) {
	local := []ObjectHealth{}
	b := newHealthPeer(t, oh("ServiceMonitor/a/api", 1, 1, ""))
	peers := []Peer{{Name: "b", URL: b.URL}}
	ch := newTestClusterHealth(t, &local, &peers, &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	ch.Gather(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := ch.Gather(ctx)
	require.False(t, rep.Members[0].Stale)
	require.Equal(t, []ClusterObjectHealth{coh(oh("ServiceMonitor/a/api", 1, 1, ""))}, rep.Objects)
}

// A gather that started earlier but finished later does not overwrite a
// newer answer with an older failure.
func TestClusterHealthOlderGatherLoses(t *testing.T) {
	local := []ObjectHealth{}
	b := newHealthPeer(t, oh("ServiceMonitor/a/api", 1, 1, ""))
	peers := []Peer{{Name: "b", URL: b.URL}}
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := &clock{t: t1}
	ch := newTestClusterHealth(t, &local, &peers, clk)
	ch.Gather(context.Background())
	ch.peers["b"].asked = t1.Add(time.Minute) // as if a later gather had answered
	b.Close()
	rep := ch.Gather(context.Background())
	require.False(t, rep.Members[0].Stale)
}

func target(t *testing.T, job, addr string, scrapeErr error) *scrape.Target {
	t.Helper()
	tg := scrape.NewTarget(labels.FromStrings(model.AddressLabel, addr, model.SchemeLabel, "http", model.MetricsPathLabel, "/metrics",
		model.JobLabel, job, model.InstanceLabel, addr), nil, nil, nil)
	if scrapeErr != errNotScraped {
		tg.Report(time.Now(), time.Millisecond, scrapeErr)
	}
	return tg
}

var errNotScraped = errors.New("not scraped yet")

// Per object, one line: however many targets an object has, a member's
// answer holds its counts and one target that is not up (the smallest, so
// that it does not depend on the order targets are visited in).
func TestObjectHealthOf(t *testing.T) {
	pools := map[string][]*scrape.Target{
		"serviceMonitor/a/api/0": {
			target(t, "serviceMonitor/a/api/0", "10.0.0.2:80", nil),
			target(t, "serviceMonitor/a/api/0", "10.0.0.9:80", errors.New("timeout")),
		},
		"serviceMonitor/a/api/1": {target(t, "serviceMonitor/a/api/1", "10.0.0.3:80", errors.New("connection refused"))},
		"probe/b/ping":           {target(t, "probe/b/ping", "x:1", nil), target(t, "probe/b/ping", "x:2", errNotScraped)},
		"podMonitor/c/empty/0":   {},
		"additional-job":         {target(t, "additional-job", "y:1", errors.New("down"))},
		markerJob:                {},
	}
	require.Equal(t, []ObjectHealth{
		{Object: "Probe/b/ping", Targets: 2, Up: 1, Down: "x:2"},
		{Object: "ServiceMonitor/a/api", Targets: 3, Up: 1, Down: "10.0.0.3:80 connection refused"},
	}, objectHealthOf(pools))

	many := map[string][]*scrape.Target{}
	for i := range 2000 {
		job := fmt.Sprintf("serviceMonitor/a/big/%d", i%2)
		many[job] = append(many[job], target(t, job, fmt.Sprintf("10.1.%d.%d:80", i/250, i%250), nil))
	}
	b, err := json.Marshal(objectHealthResponse{Objects: objectHealthOf(many)})
	require.NoError(t, err)
	require.JSONEq(t, `{"objects":[{"object":"ServiceMonitor/a/big","targets":2000,"up":2000}]}`, string(b))
}
