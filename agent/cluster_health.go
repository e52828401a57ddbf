package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ClusterHealth gathers every member's per-object target counts
// (/api/v1/status/object-health) for the objects' statuses and the status
// page. A request carries one line per object the member has targets of,
// not its targets, so the periodic exchange grows with the objects, not
// with targets times members (the full lists, /api/v1/targets, are fetched
// only when a person asks for them).
//
// It keeps each peer's last answer: a member that does not answer leaves
// only the objects it reported targets of stale (its last counts stay in
// the sums, marked stale), never everyone's counts. A member that never
// answered is reported as missing: none of its targets is counted.
type ClusterHealth struct {
	targets *ClusterTargets // Self, Peers and Client
	local   func() []ObjectHealth
	now     func() time.Time
	metrics clusterHealthMetrics

	mtx   sync.Mutex
	peers map[string]*peerCounts // by member name; members gone are dropped
}

// peerCounts is what a peer last answered and how its last request went.
type peerCounts struct {
	objects  []ObjectHealth
	etag     string    // of the answer objects came with
	answered time.Time // zero: never answered
	asked    time.Time // start of the request that set this entry last
	err      string    // of the last request; "" when it answered
}

// PeerHealthState is one peer's part in a HealthReport.
type PeerHealthState struct {
	Name string `json:"name"`
	// Answered is when the member last answered; zero: never, and none of
	// its targets is counted.
	Answered time.Time `json:"answered"`
	// Stale is true when the member did not answer the last request: the
	// sums hold its counts as of Answered.
	Stale bool `json:"stale"`
	// Error says why the last request failed.
	Error string `json:"error,omitempty"`
	// Objects is the number of objects it reported targets of.
	Objects int `json:"objects"`
}

// ClusterObjectHealth is one object's counts summed over the members.
type ClusterObjectHealth struct {
	ObjectHealth
	// Stale names the members, sorted, whose counts of this object are
	// from an earlier answer (see HealthReport.Members for when).
	Stale []string `json:"stale,omitempty"`
}

// HealthReport is the cluster's target health per object.
type HealthReport struct {
	// Objects holds every object with targets on some member, sorted.
	Objects []ClusterObjectHealth `json:"objects"`
	// Members holds the peers asked, sorted by name (this member is never
	// stale and not listed).
	Members []PeerHealthState `json:"members,omitempty"`
}

// NewClusterHealth returns the gatherer of a's counts and those of the
// peers ct names (ct's Peers and Client are used). reg (nil: none)
// registers promshard_object_health_* metrics.
func NewClusterHealth(a *Agent, ct *ClusterTargets, reg prometheus.Registerer) (*ClusterHealth, error) {
	m, err := newClusterHealthMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &ClusterHealth{targets: ct, local: a.objectHealth, now: time.Now, metrics: m, peers: map[string]*peerCounts{}}, nil
}

// Gather asks every peer for its counts at once and returns the sums with
// this member's. It does not fail: a peer that does not answer within
// DefaultPeerTimeout (or ctx's deadline) contributes its last counts,
// marked stale; when ctx is canceled the peers' states stay as they were.
func (c *ClusterHealth) Gather(ctx context.Context) HealthReport {
	peers, client := c.targets.peersAndClient()
	asked := c.now()
	answers := make([]healthAnswer, len(peers))
	errs := make([]error, len(peers))
	etags := make([]string, len(peers))
	c.mtx.Lock()
	for i, p := range peers {
		if pc := c.peers[p.Name]; pc != nil {
			etags[i] = pc.etag
		}
	}
	c.mtx.Unlock()
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() { answers[i], errs[i] = fetchObjectHealth(ctx, client, p, etags[i]) })
	}
	local := c.local()
	wg.Wait()

	c.mtx.Lock()
	defer c.mtx.Unlock()
	alive := make(map[string]bool, len(peers))
	for i, p := range peers {
		alive[p.Name] = true
		pc := c.peers[p.Name]
		if pc == nil {
			pc = &peerCounts{}
			c.peers[p.Name] = pc
		}
		if asked.Before(pc.asked) {
			continue // a later Gather already recorded a newer answer
		}
		pc.asked = asked
		if errs[i] != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				continue // the caller gave up (a page closed): not the peer's failure
			}
			pc.err = errs[i].Error()
			c.metrics.requests.WithLabelValues("error").Inc()
			continue
		}
		if answers[i].notModified {
			if answers[i].etag == pc.etag { // the counts pc holds are current
				c.metrics.requests.WithLabelValues("not_modified").Inc()
				pc.answered, pc.err = c.now(), ""
			}
			continue
		}
		c.metrics.requests.WithLabelValues("success").Inc()
		pc.objects, pc.etag, pc.answered, pc.err = answers[i].objects, answers[i].etag, c.now(), ""
	}
	for name := range c.peers {
		if !alive[name] {
			delete(c.peers, name) // left or dead: its targets have new owners
		}
	}
	rep := c.report(local)
	stale := 0
	for _, m := range rep.Members {
		if m.Stale {
			stale++
		}
	}
	c.metrics.stale.Set(float64(stale))
	return rep
}

// report sums local and the peers' last counts; c.mtx is held.
func (c *ClusterHealth) report(local []ObjectHealth) HealthReport {
	byObject := map[string]*ClusterObjectHealth{}
	add := func(hs []ObjectHealth, stale string) {
		for _, h := range hs {
			o := byObject[h.Object]
			if o == nil {
				o = &ClusterObjectHealth{ObjectHealth: ObjectHealth{Object: h.Object}}
				byObject[h.Object] = o
			}
			o.merge(h)
			if stale != "" {
				o.Stale = append(o.Stale, stale)
			}
		}
	}
	add(local, "")
	var rep HealthReport
	for name, pc := range c.peers {
		st := PeerHealthState{Name: name, Answered: pc.answered, Stale: pc.err != "", Error: pc.err, Objects: len(pc.objects)}
		rep.Members = append(rep.Members, st)
		if st.Stale {
			add(pc.objects, name)
		} else {
			add(pc.objects, "")
		}
	}
	sort.Slice(rep.Members, func(i, j int) bool { return rep.Members[i].Name < rep.Members[j].Name })
	rep.Objects = make([]ClusterObjectHealth, 0, len(byObject))
	for _, o := range byObject {
		sort.Strings(o.Stale)
		rep.Objects = append(rep.Objects, *o)
	}
	sort.Slice(rep.Objects, func(i, j int) bool { return rep.Objects[i].Object < rep.Objects[j].Object })
	return rep
}

// Missing returns the members that never answered, sorted: none of their
// targets is in any count.
func (r HealthReport) Missing() []string {
	var out []string
	for _, m := range r.Members {
		if m.Answered.IsZero() {
			out = append(out, m.Name)
		}
	}
	return out
}

// Warnings describes the stale and missing members for people.
func (r HealthReport) Warnings() []string {
	var out []string
	for _, m := range r.Members {
		switch {
		case !m.Stale:
		case m.Answered.IsZero():
			out = append(out, fmt.Sprintf("member %s has not answered yet, its targets are not counted: %s", m.Name, m.Error))
		default:
			out = append(out, fmt.Sprintf("member %s did not answer, the counts of its %d objects are from %s: %s",
				m.Name, m.Objects, m.Answered.UTC().Format(time.RFC3339), m.Error))
		}
	}
	return out
}

// healthAnswer is a peer's answer: its counts and their ETag, or that the
// counts of the ETag asked with are still current.
type healthAnswer struct {
	objects     []ObjectHealth
	etag        string
	notModified bool
}

// fetchObjectHealth asks one peer for the counts of its own targets;
// etag (if not empty) is that of the counts already held.
func fetchObjectHealth(ctx context.Context, client *http.Client, p Peer, etag string) (healthAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultPeerTimeout)
	defer cancel()
	u, err := url.JoinPath(p.URL, "/api/v1/status/object-health")
	if err != nil {
		return healthAnswer{}, fmt.Errorf("member %s: %w", p.Name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"?scope=local", nil)
	if err != nil {
		return healthAnswer{}, fmt.Errorf("member %s: %w", p.Name, err)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := client.Do(req)
	if err != nil {
		return healthAnswer{}, fmt.Errorf("member %s: %w", p.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && etag != "" {
		return healthAnswer{etag: resp.Header.Get("ETag"), notModified: true}, nil
	}
	if resp.StatusCode != http.StatusOK {
		return healthAnswer{}, fmt.Errorf("member %s: %s answered %s", p.Name, u, resp.Status)
	}
	var body struct {
		Data objectHealthResponse `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return healthAnswer{}, fmt.Errorf("member %s: decoding %s: %w", p.Name, u, err)
	}
	return healthAnswer{objects: body.Data.Objects, etag: resp.Header.Get("ETag")}, nil
}

// clusterHealthMetrics describe the exchange.
type clusterHealthMetrics struct {
	requests *prometheus.CounterVec
	stale    prometheus.Gauge
}

func newClusterHealthMetrics(reg prometheus.Registerer) (clusterHealthMetrics, error) {
	m := clusterHealthMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promshard_object_health_requests_total",
			Help: "Requests to other members for their per-object target counts, by result (success; not_modified: the counts held are current; error).",
		}, []string{"result"}),
		stale: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promshard_object_health_stale_members",
			Help: "Members that did not answer the last request for their per-object target counts (their objects' counts are stale).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.stale} {
			if err := reg.Register(c); err != nil {
				return m, err
			}
		}
	}
	return m, nil
}
