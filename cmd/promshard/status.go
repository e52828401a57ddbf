package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"k8s.io/client-go/rest"

	"github.com/promshard/promshard/agent"
	"github.com/promshard/promshard/config"
	"github.com/promshard/promshard/discovery"
	"github.com/promshard/promshard/sharding"
)

// webURL is the base URL peers reach this member's HTTP endpoints at: https
// when --web.config.file enables TLS, the listen address's host (an empty or
// unspecified host is replaced by the gossip advertise address) and port.
func webURL(listenAddress, webConfigFile string) (string, error) {
	scheme := "http"
	if webConfigFile != "" {
		b, err := os.ReadFile(webConfigFile)
		if err != nil {
			return "", err
		}
		var c web.Config
		if err := yaml.Unmarshal(b, &c); err != nil {
			return "", fmt.Errorf("%s: %w", webConfigFile, err)
		}
		if c.TLSConfig.IsEnabled() {
			scheme = "https"
		}
	}
	host, port, err := net.SplitHostPort(listenAddress)
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}).String(), nil
}

// peerClient is the HTTP client for requests to other members, configured
// by --web.peer-config-file (Prometheus' http_config format).
func peerClient(path string) (*http.Client, error) {
	return httpClientFromFile("--web.peer-config-file", path, "promshard_peer", agent.DefaultPeerTimeout)
}

// httpClientFromFile builds the client an http_config file (the flag's
// value; empty: a plain client) describes, with a timeout per request.
func httpClientFromFile(flag, path, name string, timeout time.Duration) (*http.Client, error) {
	if path == "" {
		return &http.Client{Timeout: timeout}, nil
	}
	cfg, _, err := commoncfg.LoadHTTPConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	c, err := commoncfg.NewClientFromConfig(*cfg, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	c.Timeout = timeout
	return c, nil
}

// clusterTargets wires the cluster-wide targets view: peers are the alive
// members that announced a web URL.
func clusterTargets(a *agent.Agent, cluster *sharding.Cluster, client *http.Client) *agent.ClusterTargets {
	ct := agent.NewClusterTargets(a, cluster.Self())
	ct.Client = client
	ct.Peers = func() []agent.Peer {
		var out []agent.Peer
		for _, m := range cluster.Members() {
			if m.Name != cluster.Self() && m.State.Alive() && m.WebURL != "" {
				out = append(out, agent.Peer{Name: m.Name, URL: m.WebURL})
			}
		}
		return out
	}
	return ct
}

// participants returns the members that own targets (a joining member has
// applied no configuration yet, so it writes no status either).
func participants(cluster *sharding.Cluster) []sharding.Member {
	var out []sharding.Member
	for _, m := range cluster.Members() {
		if m.State == sharding.StateParticipant {
			out = append(out, m)
		}
	}
	return out
}

// newStatusWriter wires status reporting: one member (the rendezvous owner
// of the object's key among the participants) writes each object's status.
func newStatusWriter(rc *rest.Config, agentName string, healthInterval time.Duration, cluster *sharding.Cluster,
	filter *sharding.Filter, health *agent.ClusterHealth, logger *slog.Logger, reg prometheus.Registerer,
) (*discovery.StatusWriter, error) {
	self := cluster.Self()
	return discovery.NewStatusWriter(discovery.StatusOptions{
		RESTConfig: rc, Agent: agentName, HealthInterval: healthInterval, Logger: logger, Registerer: reg,
		Owns: func(key string) bool {
			return sharding.OwnerOf(sharding.StringKey(key), participants(cluster)) == self
		},
		Health: func(ctx context.Context) (discovery.ClusterHealth, error) {
			return statusHealth(health.Gather(ctx)), nil
		},
		// replicas: live members; available: those owning targets.
		Replicas: func() (int, int) {
			members := 0
			for _, m := range cluster.Members() {
				if m.State.Alive() {
					members++
				}
			}
			return members, len(participants(cluster))
		},
		Capacity: func() string { return capacityMessage(filter.Stats()) },
	})
}

// statusHealth adapts the members' per-object counts to the status writer.
func statusHealth(rep agent.HealthReport) discovery.ClusterHealth {
	answered := make(map[string]time.Time, len(rep.Members))
	for _, m := range rep.Members {
		answered[m.Name] = m.Answered
	}
	out := discovery.ClusterHealth{Objects: make(map[config.ObjectKey]*discovery.TargetHealth, len(rep.Objects)), Missing: rep.Missing()}
	for _, o := range rep.Objects {
		parts := strings.SplitN(o.Object, "/", 3)
		if len(parts) != 3 {
			continue // not an object key: never sent by a member
		}
		h := &discovery.TargetHealth{Targets: o.Targets, Up: o.Up, Down: o.Down}
		for _, name := range o.Stale {
			h.Stale = append(h.Stale, discovery.StaleCounts{Member: name, As: answered[name]})
		}
		out.Objects[config.ObjectKey{Kind: parts[0], Namespace: parts[1], Name: parts[2]}] = h
	}
	return out
}

// capacityMessage says, for the PrometheusAgent's status, when the series
// do not fit --sharding.max-series-per-member; "" when they do.
func capacityMessage(st sharding.Stats) string {
	if !st.OverLimit {
		return ""
	}
	return fmt.Sprintf("series exceed --sharding.max-series-per-member=%d on some member: %d members needed for %d series", st.MaxSeriesPerMember, st.MembersNeeded, st.TotalSeries)
}
