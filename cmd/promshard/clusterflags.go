package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/promshard/promshard/sharding"
)

// clusterFlags are the --cluster.* and --sharding.* flags. With none of the
// --cluster.* flags set promshard runs alone and owns every target.
type clusterFlags struct {
	nodeName          string
	listenAddress     string
	advertiseAddress  string
	join              []string
	secretKeyFile     string
	name              string
	waitForSize       int
	waitTimeout       time.Duration
	replicationFactor int
	replicaLabel      string
	replicationMode   string
	strategy          string
	localNode         string
	zone              string
	handoffTimeout    time.Duration
	// balance and maxSeriesPerMember: see sharding.FilterOptions.
	balance            string
	maxSeriesPerMember int
}

func registerClusterFlags(cmd *kingpin.CmdClause, f *clusterFlags) {
	host, _ := os.Hostname()
	cmd.Flag("cluster.node-name", "Unique name of this member (the pod name). Default: the hostname.").Default(host).StringVar(&f.nodeName)
	cmd.Flag("cluster.listen-address", "host:port for gossip (TCP and UDP). Empty with no --cluster.join: run alone.").StringVar(&f.listenAddress)
	cmd.Flag("cluster.advertise-address", "host:port peers use to reach this member. Default: derived from the listen address.").StringVar(&f.advertiseAddress)
	cmd.Flag("cluster.join", "Peer to join: host:port, or dns+name:port re-resolved periodically (e.g. a headless Service). Repeatable.").StringsVar(&f.join)
	cmd.Flag("cluster.secret-key-file", "Gossip keyring file: keys of 16, 24 or 32 bytes, base64, one per line (or one raw key). The first key encrypts, all are accepted; members sharing no key never join. Re-read every 10s, so keys rotate without a restart: add the new key as second line, then put it first, then remove the old one. Empty: gossip is not encrypted (logged as a warning).").StringVar(&f.secretKeyFile)
	cmd.Flag("cluster.name", "Cluster name; members of clusters with different names never merge.").Default("promshard").StringVar(&f.name)
	cmd.Flag("cluster.wait-for-size", "Own no target until the cluster has at least this many members (or --cluster.wait-timeout passes). 0 or 1: no wait.").Default("0").IntVar(&f.waitForSize)
	cmd.Flag("cluster.wait-timeout", "Longest wait for --cluster.wait-for-size; after it the member owns its share anyway.").Default("5m").DurationVar(&f.waitTimeout)
	cmd.Flag("sharding.replication-factor", "How many members scrape each target; --sharding.replication-mode says how the copies differ. Not with --sharding.strategy=node.").Default("1").IntVar(&f.replicationFactor)
	cmd.Flag("sharding.replication-mode", "How the copies of a target differ when --sharding.replication-factor is above 1. "+
		"rank: every series gets --sharding.replica-label = its owner's rank for the target (0 to factor-1), and every remote write is split into one queue per rank (<name>-rank<r>, plus <name>-members for targets with __tmp_disable_sharding), so that a request carries one rank only: "+
		"for Mimir or Cortex with the HA tracker, set its cluster label to an external label of yours (e.g. the PrometheusAgent's externalLabels cluster) and its replica label (ha_replica_label, default __replica__) to --sharding.replica-label; one queue per rank reads the WAL each. "+
		"identical: the copies carry identical labels, for storage that deduplicates identical series (VictoriaMetrics with -dedup.minScrapeInterval = the scrape interval, Thanos with vertical compaction); a strict remote-write receiver such as Prometheus refuses the second copy's writes.").
		Default(string(sharding.ReplicationRank)).EnumVar(&f.replicationMode, string(sharding.ReplicationRank), string(sharding.ReplicationIdentical))
	cmd.Flag("sharding.replica-label", "Label telling copies apart: with --sharding.replication-mode=rank and a replication factor above 1 on every series (value: the owner's rank), and on targets whose relabeling sets __tmp_disable_sharding (value: the member's --cluster.node-name). Added after the monitors' relabelings, so they cannot drop it.").Default(sharding.DefaultReplicaLabel).StringVar(&f.replicaLabel)
	cmd.Flag("sharding.strategy", "hash: rendezvous hashing of every target over the members (StatefulSet). node: members own the targets on their --node-name, targets on a node without a member are reported unowned, node-less targets are hashed (DaemonSet). zone: targets are hashed over the members of their zone (--sharding.zone), spilling over to all members when their zone has none or they have no zone.").Default("hash").EnumVar(&f.strategy, "hash", "node", "zone")
	cmd.Flag("sharding.zone", "Zone this member runs in, for --sharding.strategy=zone (the pod's topology.kubernetes.io/zone label through the downward API). Empty: the member takes only spill-over targets.").Envar("ZONE").StringVar(&f.zone)
	cmd.Flag("sharding.handoff-timeout", "Longest time a member holds a target it gained (a member joined, left or died) while a previous owner has not confirmed that it stopped the target and that its remote write delivered the target's last samples; after it the member scrapes anyway (promshard_sharding_handoffs_timed_out_total). The confirmation normally takes the batch send deadline plus a gossip round: keep this above the remote-write queues' batch_send_deadline.").Default(sharding.DefaultHandoffTimeout.String()).DurationVar(&f.handoffTimeout)
	cmd.Flag("sharding.balance", "What ownership spreads evenly. targets: target counts (rendezvous hashing). series: the series each target delivered at its last scrape, measured by its owner and gossiped (bounded-load rendezvous hashing: max/mean series per member below 1.15 whatever the target sizes; a join moves about the newcomer's share; a few percent of drift moves nothing). Within each zone under --sharding.strategy=zone, node-less targets only under node.").Default(string(sharding.BalanceTargets)).EnumVar(&f.balance, string(sharding.BalanceTargets), string(sharding.BalanceSeries))
	cmd.Flag("sharding.max-series-per-member", "With --sharding.balance=series, the series one member should hold (its memory is sized for it); 0: no limit. When the cluster cannot fit its series within it, promshard_sharding_series_over_limit is 1, promshard_sharding_members_needed says how many members it takes and the status page shows it; no target is dropped.").Default("0").IntVar(&f.maxSeriesPerMember)
	cmd.Flag("node-name", "Kubernetes node this member runs on, for --sharding.strategy=node.").Envar("NODE_NAME").StringVar(&f.localNode)
}

// enabled reports whether clustering was asked for.
func (f *clusterFlags) enabled() bool {
	return f.listenAddress != "" || len(f.join) > 0
}

func (f *clusterFlags) validate() error {
	if f.maxSeriesPerMember < 0 {
		return fmt.Errorf("--sharding.max-series-per-member %d: want 0 or more", f.maxSeriesPerMember)
	}
	if f.maxSeriesPerMember > 0 && f.balance != string(sharding.BalanceSeries) {
		return errors.New("--sharding.max-series-per-member needs --sharding.balance=series")
	}
	if f.nodeName == "" {
		return errors.New("--cluster.node-name is empty and the hostname is unknown")
	}
	if f.listenAddress != "" {
		if _, _, err := net.SplitHostPort(f.listenAddress); err != nil {
			return fmt.Errorf("--cluster.listen-address %q: %w", f.listenAddress, err)
		}
	}
	if f.advertiseAddress != "" {
		if _, _, err := net.SplitHostPort(f.advertiseAddress); err != nil {
			return fmt.Errorf("--cluster.advertise-address %q: %w", f.advertiseAddress, err)
		}
	}
	for _, j := range f.join {
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(j, "dns+")); err != nil {
			return fmt.Errorf("--cluster.join %q: want host:port or dns+name:port", j)
		}
	}
	if f.secretKeyFile != "" {
		if _, err := os.Stat(f.secretKeyFile); err != nil {
			return fmt.Errorf("--cluster.secret-key-file: %w", err)
		}
	}
	if f.handoffTimeout <= 0 {
		return fmt.Errorf("--sharding.handoff-timeout %s: want a positive duration", f.handoffTimeout)
	}
	if f.waitForSize < 0 {
		return errors.New("--cluster.wait-for-size must not be negative")
	}
	if f.replicationFactor < 1 {
		return errors.New("--sharding.replication-factor must be at least 1")
	}
	if f.strategy == "node" && f.localNode == "" {
		return errors.New("--sharding.strategy=node needs --node-name (or $NODE_NAME)")
	}
	if f.strategy == "node" && f.replicationFactor > 1 {
		return errors.New("--sharding.replication-factor above 1 cannot be combined with --sharding.strategy=node: only the member on a target's node discovers its pods")
	}
	if f.replicationMode == string(sharding.ReplicationIdentical) && f.replicationFactor < 2 {
		return errors.New("--sharding.replication-mode=identical needs --sharding.replication-factor above 1: with one copy per target there is nothing to make identical")
	}
	if f.strategy == "zone" && f.zone == "" {
		return errors.New("--sharding.strategy=zone needs --sharding.zone (or $ZONE)")
	}
	if !model.LabelName(f.replicaLabel).IsValid() || strings.HasPrefix(f.replicaLabel, "__") {
		return fmt.Errorf("--sharding.replica-label %q is not a valid label name", f.replicaLabel)
	}
	return nil
}
