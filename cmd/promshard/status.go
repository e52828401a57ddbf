package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"k8s.io/client-go/rest"

	"github.com/promshard/promshard/agent"
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
	if path == "" {
		return &http.Client{Timeout: agent.DefaultPeerTimeout}, nil
	}
	cfg, _, err := commoncfg.LoadHTTPConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("--web.peer-config-file: %w", err)
	}
	c, err := commoncfg.NewClientFromConfig(*cfg, "promshard_peer")
	if err != nil {
		return nil, fmt.Errorf("--web.peer-config-file: %w", err)
	}
	c.Timeout = agent.DefaultPeerTimeout
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
			if m.Name != cluster.Self() && m.State == sharding.StateAlive && m.WebURL != "" {
				out = append(out, agent.Peer{Name: m.Name, URL: m.WebURL})
			}
		}
		return out
	}
	return ct
}

// newStatusWriter wires status reporting: one member (the rendezvous owner
// of the object's key among alive members) writes each object's status.
func newStatusWriter(rc *rest.Config, agentName string, healthInterval time.Duration, cluster *sharding.Cluster, filter *sharding.Filter,
	ct *agent.ClusterTargets, logger *slog.Logger, reg prometheus.Registerer,
) (*discovery.StatusWriter, error) {
	self := cluster.Self()
	return discovery.NewStatusWriter(discovery.StatusOptions{
		RESTConfig: rc, Agent: agentName, HealthInterval: healthInterval, Logger: logger, Registerer: reg,
		Owns: func(key string) bool {
			return sharding.OwnerOf(sharding.StringKey(key), cluster.Members()) == self
		},
		Targets: func(ctx context.Context) ([]discovery.ClusterTarget, error) {
			td, err := ct.Gather(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]discovery.ClusterTarget, 0, len(td.ActiveTargets))
			for _, t := range td.ActiveTargets {
				instance := t.Labels["instance"]
				if u, err := url.Parse(t.ScrapeURL); err == nil && instance == "" {
					instance = u.Host
				}
				out = append(out, discovery.ClusterTarget{Job: t.ScrapePool, Instance: instance, Health: t.Health, LastError: t.LastError})
			}
			return out, nil
		},
		Replicas: func() (int, int) {
			members, available := 0, 0
			ready := filter.Stats().Ready
			for _, m := range cluster.Members() {
				if m.State == sharding.StateAlive {
					members++
					if ready {
						available++
					}
				}
			}
			return members, available
		},
	})
}
