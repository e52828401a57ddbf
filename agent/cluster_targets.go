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
)

// Peer is another member's HTTP endpoint, for the cluster-wide views.
type Peer struct {
	// Name is the member's name, shown as the owner of its targets.
	Name string
	// URL is the member's base URL, e.g. "https://10.0.0.5:9090".
	URL string
}

// DefaultPeerTimeout bounds one request to a peer.
const DefaultPeerTimeout = 5 * time.Second

// ClusterTargets gathers the targets of every member: its own from the
// scrape manager, the others' from their /api/v1/targets. Every replica
// can so answer for the whole cluster.
type ClusterTargets struct {
	// Self is this member's name.
	Self string
	// Peers returns the other members to ask (alive ones). Nil: none.
	Peers func() []Peer
	// Client makes the peer requests; it carries the TLS and credentials
	// the peers' --web.config.file demands. Nil: a client with
	// DefaultPeerTimeout.
	Client *http.Client

	agent *Agent
}

// NewClusterTargets returns the gatherer for a; set its fields before use.
func NewClusterTargets(a *Agent, self string) *ClusterTargets {
	return &ClusterTargets{Self: self, agent: a}
}

// Gather returns all members' targets, each marked with its owner. The
// error lists the members that did not answer; their targets are missing
// from the result, everyone else's are there.
func (c *ClusterTargets) Gather(ctx context.Context) (TargetDiscovery, error) {
	local := c.agent.targets()
	local.setOwner(c.Self)
	peers, client := c.peersAndClient()
	results := make([]TargetDiscovery, len(peers))
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			results[i], errs[i] = fetchTargets(ctx, client, p)
			results[i].setOwner(p.Name)
		})
	}
	wg.Wait()
	all := local
	for _, r := range results {
		all.ActiveTargets = append(all.ActiveTargets, r.ActiveTargets...)
		all.DroppedTargets = append(all.DroppedTargets, r.DroppedTargets...)
		for pool, n := range r.DroppedTargetCounts {
			all.DroppedTargetCounts[pool] += n
		}
	}
	all.sort()
	return all, errors.Join(errs...)
}

// fetchTargets asks one peer for its own targets.
func fetchTargets(ctx context.Context, client *http.Client, p Peer) (TargetDiscovery, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultPeerTimeout)
	defer cancel()
	u, err := url.JoinPath(p.URL, "/api/v1/targets")
	if err != nil {
		return TargetDiscovery{}, fmt.Errorf("member %s: %w", p.Name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"?scope=local", nil)
	if err != nil {
		return TargetDiscovery{}, fmt.Errorf("member %s: %w", p.Name, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return TargetDiscovery{}, fmt.Errorf("member %s: %w", p.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return TargetDiscovery{}, fmt.Errorf("member %s: %s answered %s", p.Name, u, resp.Status)
	}
	var body struct {
		Data TargetDiscovery `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return TargetDiscovery{}, fmt.Errorf("member %s: decoding %s: %w", p.Name, u, err)
	}
	return body.Data, nil
}

// targetsHandler serves /api/v1/targets: this member's targets, or with
// scope=cluster every member's, in Prometheus' shape plus an "owner" field.
// Members that did not answer are named in the response's warnings.
func (w *Web) targetsHandler(rw http.ResponseWriter, r *http.Request) {
	switch scope := r.URL.Query().Get("scope"); scope {
	case "", "local":
		td := w.agent.targets()
		td.setOwner(w.opts.Targets.self())
		writeJSON(rw, http.StatusOK, apiResponse{Status: "success", Data: td})
	case "cluster":
		if w.opts.Targets == nil {
			writeJSON(rw, http.StatusOK, apiResponse{Status: "success", Data: w.agent.targets()})
			return
		}
		td, err := w.opts.Targets.Gather(r.Context())
		resp := apiResponse{Status: "success", Data: td}
		if err != nil {
			resp.Warnings = []string{err.Error()}
		}
		writeJSON(rw, http.StatusOK, resp)
	default:
		writeJSON(rw, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data",
			Error: fmt.Sprintf("scope %q: want local or cluster", scope)})
	}
}

func (c *ClusterTargets) self() string {
	if c == nil {
		return ""
	}
	return c.Self
}

func (td *TargetDiscovery) setOwner(owner string) {
	for i := range td.ActiveTargets {
		td.ActiveTargets[i].Owner = owner
	}
	for i := range td.DroppedTargets {
		td.DroppedTargets[i].Owner = owner
	}
}

func (td *TargetDiscovery) sort() {
	sort.SliceStable(td.ActiveTargets, func(i, j int) bool {
		a, b := td.ActiveTargets[i], td.ActiveTargets[j]
		if a.ScrapePool != b.ScrapePool {
			return a.ScrapePool < b.ScrapePool
		}
		if a.ScrapeURL != b.ScrapeURL {
			return a.ScrapeURL < b.ScrapeURL
		}
		return a.Owner < b.Owner
	})
	sort.SliceStable(td.DroppedTargets, func(i, j int) bool {
		return td.DroppedTargets[i].ScrapePool < td.DroppedTargets[j].ScrapePool
	})
}

// peersAndClient returns the peers to ask and the client to ask them with.
func (c *ClusterTargets) peersAndClient() ([]Peer, *http.Client) {
	var peers []Peer
	if c.Peers != nil {
		peers = c.Peers()
	}
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: DefaultPeerTimeout}
	}
	return peers, client
}
