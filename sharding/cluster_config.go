package sharding

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// Defaults of ClusterConfig. Each applies when the field is left at its zero value.
const (
	// DefaultListenAddress is where memberlist listens (TCP and UDP) when a
	// join list is given but no listen address.
	DefaultListenAddress = "0.0.0.0:7946"
	// DefaultRejoinInterval is how often the join list is re-resolved and
	// re-joined, so that a healed partition merges again.
	DefaultRejoinInterval = 15 * time.Second
	// DefaultProbeInterval is memberlist's failure-probe period (LAN: 1 s).
	DefaultProbeInterval = time.Second
	// DefaultProbeTimeout is how long a direct probe waits for an ack (LAN: 500 ms).
	DefaultProbeTimeout = 500 * time.Millisecond
	// DefaultSuspicionMult scales the suspicion timeout: a suspected member is
	// declared dead after SuspicionMult × ProbeInterval (× log10(N) above 10
	// members). LAN uses 4; 3 gives 3 s below 10 members.
	DefaultSuspicionMult = 3
	// DefaultSuspicionMaxTimeoutMult caps the suspicion timeout before
	// confirmations from other members shorten it (LAN: 6). 2 caps it at
	// 6 s below 10 members.
	DefaultSuspicionMaxTimeoutMult = 2
	// DefaultGossipInterval is how often state is gossiped to random members
	// (LAN: 200 ms).
	DefaultGossipInterval = 100 * time.Millisecond
	// DefaultHandoffDelay is how long a member that starts participating
	// waits, after gossiping it, before it owns targets: peers learn of it
	// (gossip), recompute and stop the targets it takes over (scrape reload)
	// in well under this time.
	DefaultHandoffDelay = 500 * time.Millisecond
	// DefaultLeaveTimeout bounds how long a graceful leave waits for its
	// broadcast to go out.
	DefaultLeaveTimeout = 5 * time.Second
	// DefaultKeyringReloadInterval is how often the gossip keyring file is
	// re-read. Kubernetes takes up to about a minute to update a mounted
	// Secret; a reload costs one small file read.
	DefaultKeyringReloadInterval = 10 * time.Second
	// nodeMetaLimit is memberlist's limit for node metadata.
	nodeMetaLimit = memberlist.MetaMaxSize
)

// ClusterConfig configures membership. The zero value, or any value with
// neither ListenAddress nor Join set, is a standalone member that is always
// ready and alone, so it owns every target.
//
// Failure detection is derived from memberlist.DefaultLANConfig with shorter
// timings: a killed member is suspected after one failed probe round
// (ProbeInterval + ProbeTimeout, ~1.5 s) and declared dead after the
// suspicion timeout (3 s when other members confirm the suspicion, at most
// 6 s), so below 10 members its targets move within ~8 s, gossip included.
// The trade-off: a member stalled (GC, CPU starvation) for longer than that is
// declared dead too and its targets move away and back, costing duplicate
// scrapes but never lost ones. Raise SuspicionMult on noisy networks.
type ClusterConfig struct {
	// NodeName is this member's unique name in the cluster (the pod name in
	// Kubernetes). Default: the hostname.
	NodeName string
	// ListenAddress is the host:port memberlist binds (TCP and UDP). Port 0
	// picks a free port. Default: DefaultListenAddress when Join is set.
	ListenAddress string
	// AdvertiseAddress is the host:port peers use to reach this member.
	// Default: derived from ListenAddress by memberlist (first private IP
	// when listening on 0.0.0.0).
	AdvertiseAddress string
	// Join lists peers as "host:port" or "dns+name:port". A dns+ name is
	// resolved (A/AAAA) again on every join attempt; one that resolves to
	// nothing is not an error (e.g. a headless Service with no ready pod).
	Join []string
	// SecretKeyFile is a gossip keyring file: one or more keys of 16, 24 or
	// 32 bytes, base64-encoded, one per line (or a single raw key). The first
	// key encrypts, all are accepted; members sharing no key never merge.
	// The file is re-read every KeyringReloadInterval, so the key can be
	// rotated without a restart (see keyring.go for the three steps).
	// Empty: gossip is not encrypted (a warning is logged).
	SecretKeyFile string
	// KeyringReloadInterval is how often SecretKeyFile is re-read.
	// Default: DefaultKeyringReloadInterval. Negative: never.
	KeyringReloadInterval time.Duration
	// ClusterName is sent as memberlist's label with every packet; members
	// with different names never merge. Empty: no label.
	ClusterName string
	// KubernetesNode is the name of the Kubernetes node this member runs on,
	// shared with peers in memberlist node metadata for the "node" sharding
	// strategy. Empty: this member claims no node.
	KubernetesNode string
	// Zone is this member's zone, shared with peers in memberlist node
	// metadata for the "zone" sharding strategy. Empty: no zone.
	Zone string
	// WebURL is the base URL of this member's HTTP endpoints as peers reach
	// them (e.g. "https://10.0.0.5:9090"), shared in node metadata for the
	// cluster-wide targets view. Empty: peers cannot query this member.
	WebURL string
	// WaitForSize is the number of alive members (this one included) the
	// cluster must reach before Ready reports true. 0 or 1: ready at once.
	// Readiness latches: a cluster that shrinks again stays ready.
	WaitForSize int
	// WaitTimeout ends the wait for WaitForSize: after it the member is ready
	// whatever the size. 0: wait without limit.
	WaitTimeout time.Duration
	// RejoinInterval is the period of re-resolving and re-joining Join.
	// Joins are retried every second until a first peer answers, and
	// repeated every second for 10 s after it.
	// Default: DefaultRejoinInterval. Negative: join only at start-up.
	RejoinInterval time.Duration
	// ProbeInterval, ProbeTimeout, SuspicionMult, SuspicionMaxTimeoutMult and
	// GossipInterval tune failure detection (see the type comment).
	// Defaults: the Default* constants of the same names.
	ProbeInterval           time.Duration
	ProbeTimeout            time.Duration
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	GossipInterval          time.Duration
	// LeaveTimeout bounds the graceful leave on shutdown.
	// Default: DefaultLeaveTimeout.
	LeaveTimeout time.Duration
	// HandoffDelay is how long Participate waits between announcing the
	// participation and owning targets (see Participate). Longer leaves the
	// taken-over targets unscraped longer; shorter risks two members
	// writing the same series at once. Default: DefaultHandoffDelay.
	HandoffDelay time.Duration
	// StallThreshold is how long the process may not run (a GC pause, CPU
	// starvation, SIGSTOP) before it assumes its peers declared it dead and
	// took its targets over: it then hands them off and participates again
	// through the confirmed handoff (cluster_release.go). Default: the
	// shortest suspicion timeout, SuspicionMult × ProbeInterval, the
	// earliest the peers can declare it dead. Negative: never.
	StallThreshold time.Duration
	// KeyVersion is the newest ownership-key version this member announces
	// (and its Filter must be given the same). KeyJobLabels makes it
	// announce no metadata extensions, as promshard before key versions:
	// tests use it to run a mixed cluster. Default: LatestKeyVersion.
	KeyVersion KeyVersion
	// BalanceSeries announces that this member's filter balances series
	// (FilterOptions.Balance = BalanceSeries), as the token "b" in its
	// metadata. Filters balance series only while every alive member
	// announces it, so that switching --sharding.balance member by member
	// never has two members computing owners differently. Default false.
	BalanceSeries bool
}

// Standalone reports whether the config describes a member without a
// cluster: no listen address and no join list.
func (c ClusterConfig) Standalone() bool {
	return c.ListenAddress == "" && len(c.Join) == 0
}

func (c ClusterConfig) withDefaults() (ClusterConfig, error) {
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("default node name: %w", err)
		}
		c.NodeName = h
	}
	if c.ListenAddress == "" {
		c.ListenAddress = DefaultListenAddress
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = DefaultRejoinInterval
	}
	if c.KeyringReloadInterval == 0 {
		c.KeyringReloadInterval = DefaultKeyringReloadInterval
	}
	setDefault(&c.ProbeInterval, DefaultProbeInterval)
	setDefault(&c.ProbeTimeout, DefaultProbeTimeout)
	setDefault(&c.SuspicionMult, DefaultSuspicionMult)
	setDefault(&c.SuspicionMaxTimeoutMult, DefaultSuspicionMaxTimeoutMult)
	setDefault(&c.GossipInterval, DefaultGossipInterval)
	setDefault(&c.LeaveTimeout, DefaultLeaveTimeout)
	setDefault(&c.HandoffDelay, DefaultHandoffDelay)
	setDefault(&c.StallThreshold, time.Duration(c.SuspicionMult)*c.ProbeInterval)
	setDefault(&c.KeyVersion, LatestKeyVersion)
	if !c.KeyVersion.Valid() {
		return c, fmt.Errorf("key version %d unknown, want %d to %d", c.KeyVersion, KeyJobLabels, LatestKeyVersion)
	}
	if c.WaitForSize < 0 || c.WaitTimeout < 0 {
		return c, errors.New("wait-for-size and wait-timeout must not be negative")
	}
	if len(c.KubernetesNode)+len(c.Zone)+len(c.WebURL)+3+metaExtensionsSize > nodeMetaLimit {
		return c, fmt.Errorf("kubernetes node, zone and web URL longer than %d bytes together", nodeMetaLimit-3-metaExtensionsSize)
	}
	if strings.ContainsRune(c.KubernetesNode, 0) || strings.ContainsRune(c.Zone, 0) || strings.ContainsRune(c.WebURL, 0) {
		return c, errors.New("kubernetes node, zone and web URL must not contain NUL")
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(j, dnsPrefix)); err != nil {
			return c, fmt.Errorf("join address %q: %w", j, err)
		}
	}
	return c, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// memberlistConfig derives memberlist's configuration from c (defaults applied).
func (c ClusterConfig) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.NodeName
	host, port, err := splitHostPort(c.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("listen address: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if c.AdvertiseAddress != "" {
		host, port, err := splitHostPort(c.AdvertiseAddress)
		if err != nil {
			return nil, fmt.Errorf("advertise address: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = host, port
	}
	mc.ProbeInterval = c.ProbeInterval
	mc.ProbeTimeout = c.ProbeTimeout
	mc.SuspicionMult = c.SuspicionMult
	mc.SuspicionMaxTimeoutMult = c.SuspicionMaxTimeoutMult
	mc.GossipInterval = c.GossipInterval
	// TCP is the fallback probe and the push/pull channel; 10 s (LAN) would
	// outlast the whole failure-detection budget.
	mc.TCPTimeout = 2 * time.Second
	// A restarted pod keeps its name but not its IP: let it reclaim the name
	// of its dead or departed predecessor at once.
	mc.DeadNodeReclaimTime = time.Millisecond
	mc.Label = c.ClusterName
	if c.SecretKeyFile != "" {
		keys, err := readKeyring(c.SecretKeyFile)
		if err != nil {
			return nil, err
		}
		if mc.Keyring, err = newKeyring(keys); err != nil {
			return nil, err
		}
	}
	return mc, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("parse %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("parse %q: invalid port", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }
