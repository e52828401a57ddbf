package sharding

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
)

// MemberState is a member's state as this member sees it.
type MemberState string

// Member states. memberlist's events do not expose suspicion, so a suspected
// member is reported (and keeps owning targets) as alive until it is declared
// dead. A member that stops gracefully is reported left as soon as it
// announces its leave.
const (
	StateAlive MemberState = "alive"
	StateDead  MemberState = "dead"
	StateLeft  MemberState = "left"
)

// Member is one cluster member.
type Member struct {
	// Name is the member's unique node name.
	Name string `json:"name"`
	// Address is the member's gossip host:port ("" when standalone).
	Address string `json:"address"`
	// State is alive, dead or left.
	State MemberState `json:"state"`
	// KubernetesNode is the Kubernetes node the member runs on, if it said.
	KubernetesNode string `json:"kubernetesNode,omitempty"`
	// WebURL is the base URL of the member's HTTP endpoints, if it said.
	WebURL string `json:"webURL,omitempty"`
}

// departedRetention is how long dead and left members stay listed.
const departedRetention = 5 * time.Minute

// Cluster is this process' membership in a memberlist cluster of replicas.
// Create it with NewCluster and run it with Run.
type Cluster struct {
	cfg     ClusterConfig
	logger  *slog.Logger
	ml      *memberlist.Memberlist // nil when standalone
	keys    *keyringState          // nil when gossip is not encrypted
	meta    *nodeMeta
	changes chan struct{}
	ready   atomic.Bool

	life   sync.Mutex // serialises leave and shutdown
	closed bool
	done   chan struct{} // closed on shutdown

	mtx      sync.Mutex
	members  map[string]Member
	departed map[string]time.Time
}

// NewCluster validates cfg and, unless it is standalone, creates the
// memberlist and binds its listen address. Run must then be called (or
// Close, if Run never will be) to release the sockets. A nil logger logs
// nothing; a nil registerer registers no metrics.
func NewCluster(cfg ClusterConfig, logger *slog.Logger, reg prometheus.Registerer) (*Cluster, error) {
	if logger == nil {
		logger = promslog.NewNopLogger()
	}
	c := &Cluster{
		logger:   logger,
		changes:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		members:  map[string]Member{},
		departed: map[string]time.Time{},
	}
	standalone := cfg.Standalone()
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	c.cfg = cfg
	if standalone {
		c.members[cfg.NodeName] = Member{Name: cfg.NodeName, State: StateAlive, KubernetesNode: cfg.KubernetesNode}
		c.ready.Store(true)
	} else {
		mc, err := cfg.memberlistConfig()
		if err != nil {
			return nil, fmt.Errorf("cluster config: %w", err)
		}
		mc.Logger = log.New(&memberlistLogWriter{logger: logger}, "", 0)
		if mc.Keyring != nil {
			c.keys = &keyringState{path: cfg.SecretKeyFile, ring: mc.Keyring}
		} else {
			logger.Warn("Gossip is not encrypted: set --cluster.secret-key-file so that only members holding the key can join and read membership traffic")
		}
		c.meta = &nodeMeta{node: cfg.KubernetesNode}
		mc.Delegate = c.meta
		mc.Events = (*clusterEvents)(c)
		if c.ml, err = memberlist.Create(mc); err != nil {
			return nil, fmt.Errorf("create memberlist: %w", err)
		}
		if web := advertisedWebURL(cfg.WebURL, c.ml.LocalNode().Addr); web != "" {
			// Set after Create: an unspecified host becomes the address
			// memberlist advertises. Nobody has joined yet, so the
			// update only changes the local node's state.
			c.meta.web.Store(&web)
			if err := c.ml.UpdateNode(time.Second); err != nil {
				c.Close()
				return nil, fmt.Errorf("announce web URL: %w", err)
			}
		}
		c.checkReady()
	}
	if reg != nil {
		if err := reg.Register(newClusterCollector(c)); err != nil {
			c.Close()
			return nil, fmt.Errorf("register cluster metrics: %w", err)
		}
	}
	return c, nil
}

// Run joins the cluster, keeps re-joining every RejoinInterval and blocks
// until ctx is done; it then leaves gracefully (peers drop this member at
// once) and shuts memberlist down. It also returns, without leaving, once
// Close was called. It has the oklog/run actor shape.
func (c *Cluster) Run(ctx context.Context) error {
	if c.ml == nil {
		<-ctx.Done()
		return nil
	}
	defer c.leave()

	var waitTimeout <-chan time.Time
	if !c.ready.Load() && c.cfg.WaitTimeout > 0 {
		t := time.NewTimer(c.cfg.WaitTimeout)
		defer t.Stop()
		waitTimeout = t.C
	}
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	var reloadKeys <-chan time.Time
	if c.keys != nil && c.cfg.KeyringReloadInterval > 0 {
		t := time.NewTicker(c.cfg.KeyringReloadInterval)
		defer t.Stop()
		reloadKeys = t.C
	}
	join := time.NewTimer(0)
	defer join.Stop()
	joined, fast := false, fastJoins

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.done:
			return nil // closed without a leave
		case <-waitTimeout:
			if !c.ready.Load() {
				c.logger.Warn("Cluster wait-for-size timed out, owning targets anyway",
					"want", c.cfg.WaitForSize, "have", c.ml.NumMembers())
				c.markReady()
			}
		case <-prune.C:
			c.pruneDeparted(time.Now())
		case <-reloadKeys:
			c.keys.reload(c.logger)
		case <-join.C:
			joined = c.join(ctx, joined) || joined
			if joined {
				fast--
			}
			switch {
			case !joined || fast > 0:
				join.Reset(time.Second)
			case c.cfg.RejoinInterval > 0:
				join.Reset(c.cfg.RejoinInterval)
			}
		}
	}
}

// join resolves the join list and joins every address found. It reports
// whether some peer answered.
func (c *Cluster) join(ctx context.Context, joinedBefore bool) bool {
	addrs := c.resolveJoin(ctx)
	if len(addrs) == 0 {
		return false
	}
	n, err := c.ml.Join(addrs)
	switch {
	case err != nil && n == 0 && joinedBefore:
		c.logger.Warn("Cluster re-join failed", "addresses", addrs, "err", err)
	case err != nil && n == 0:
		c.logger.Debug("Cluster join failed, retrying", "addresses", addrs, "err", err)
	default:
		c.logger.Debug("Cluster joined", "contacted", n, "members", c.ml.NumMembers())
	}
	return n > 0
}

const dnsPrefix = "dns+"

// fastJoins is how many joins, one a second, follow the first successful
// one. A member restarted under its old name with a new address (a
// replacement pod) is refused by peers that have not yet declared its
// previous incarnation dead (up to ~8 s); repeating the join's push/pull
// gets it accepted as soon as they have.
const fastJoins = 10

// resolveJoin expands dns+ entries into host:port pairs and drops this
// member's own address. A name that resolves to nothing is skipped quietly.
func (c *Cluster) resolveJoin(ctx context.Context) []string {
	self := c.ml.LocalNode().Address()
	var out []string
	for _, j := range c.cfg.Join {
		name, ok := strings.CutPrefix(j, dnsPrefix)
		if !ok {
			if j != self {
				out = append(out, j)
			}
			continue
		}
		host, port, _ := net.SplitHostPort(name) // validated by withDefaults
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err := net.DefaultResolver.LookupHost(rctx, host)
		cancel()
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			c.logger.Debug("Cluster join name resolves to nothing", "name", host)
		case err != nil:
			c.logger.Warn("Cluster join name lookup failed", "name", host, "err", err)
		}
		for _, ip := range ips {
			if a := net.JoinHostPort(ip, port); a != self {
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (c *Cluster) leave() {
	c.life.Lock()
	defer c.life.Unlock()
	if c.closed {
		return // memberlist panics on a leave after shutdown
	}
	c.meta.leaving.Store(true)
	if err := c.ml.UpdateNode(c.cfg.LeaveTimeout); err != nil {
		c.logger.Warn("Cluster leave announcement failed", "err", err)
	}
	if err := c.ml.Leave(c.cfg.LeaveTimeout); err != nil {
		c.logger.Warn("Cluster leave failed", "err", err)
	}
	c.shutdownLocked()
}

// Close shuts memberlist down without a graceful leave, as if the process
// were killed. Run leaves and closes on its own; call Close only when Run
// will never run. It is idempotent.
func (c *Cluster) Close() {
	if c.ml == nil {
		return
	}
	c.life.Lock()
	defer c.life.Unlock()
	c.shutdownLocked()
}

func (c *Cluster) shutdownLocked() {
	if c.closed {
		return
	}
	c.closed = true
	close(c.done)
	if err := c.ml.Shutdown(); err != nil {
		c.logger.Warn("Cluster shutdown failed", "err", err)
	}
}

// advertisedWebURL returns webURL with an empty or unspecified host
// (0.0.0.0, ::) replaced by ip, or webURL unchanged.
func advertisedWebURL(webURL string, ip net.IP) string {
	u, err := url.Parse(webURL)
	if err != nil || webURL == "" {
		return webURL
	}
	host := u.Hostname()
	if h := net.ParseIP(host); host == "" || (h != nil && h.IsUnspecified()) {
		u.Host = net.JoinHostPort(ip.String(), u.Port())
	}
	return u.String()
}

// ReloadKeyring re-reads the gossip keyring file now (it is also re-read
// every KeyringReloadInterval). It does nothing when gossip is not encrypted.
func (c *Cluster) ReloadKeyring() {
	if c.keys != nil {
		c.keys.reload(c.logger)
	}
}

// Self returns this member's name.
func (c *Cluster) Self() string { return c.cfg.NodeName }

// Addr returns the host:port peers reach this member at ("" when standalone).
func (c *Cluster) Addr() string {
	if c.ml == nil {
		return ""
	}
	return c.ml.LocalNode().Address()
}

// Members returns every known member, alive ones and those that died or left
// in the last few minutes, sorted by name.
func (c *Cluster) Members() []Member {
	c.mtx.Lock()
	defer c.mtx.Unlock()
	out := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Changes returns a channel that receives a value after membership or
// readiness changes. Signals coalesce: one pending value stands for any
// number of changes, so read Members again after each receive.
func (c *Cluster) Changes() <-chan struct{} { return c.changes }

// Ready reports whether the cluster reached WaitForSize or WaitTimeout
// passed. It never turns false again.
func (c *Cluster) Ready() bool { return c.ready.Load() }

func (c *Cluster) signal() {
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

func (c *Cluster) markReady() {
	if c.ready.CompareAndSwap(false, true) {
		c.logger.Info("Cluster ready")
		c.signal()
	}
}

// checkReady marks the cluster ready once enough members are alive.
func (c *Cluster) checkReady() {
	if c.ready.Load() {
		return
	}
	c.mtx.Lock()
	alive := 0
	for _, m := range c.members {
		if m.State == StateAlive {
			alive++
		}
	}
	c.mtx.Unlock()
	if alive >= c.cfg.WaitForSize {
		c.markReady()
	}
}

func (c *Cluster) pruneDeparted(now time.Time) {
	c.mtx.Lock()
	defer c.mtx.Unlock()
	for name, at := range c.departed {
		if now.Sub(at) > departedRetention {
			delete(c.departed, name)
			delete(c.members, name)
		}
	}
}

// setMember records a memberlist event: departed reports a NotifyLeave. It
// runs inside memberlist with its locks held: it must not call back into
// memberlist.
func (c *Cluster) setMember(n *memberlist.Node, departed bool) {
	node, web, leaving := decodeMeta(n.Meta)
	m := Member{Name: n.Name, Address: n.Address(), State: StateAlive, KubernetesNode: node, WebURL: web}
	c.mtx.Lock()
	old, had := c.members[n.Name]
	switch {
	case leaving || (departed && had && old.State == StateLeft):
		m.State = StateLeft
	case departed:
		m.State = StateDead
	}
	c.members[n.Name] = m
	if m.State == StateAlive {
		delete(c.departed, n.Name)
	} else if !had || old.State == StateAlive {
		c.departed[n.Name] = time.Now()
	}
	c.mtx.Unlock()
	if had && old == m {
		return
	}
	c.logger.Info("Cluster member changed", "member", m.Name, "address", m.Address, "state", m.State)
	c.signal()
	c.checkReady()
}

// clusterEvents receives memberlist's events for a Cluster.
type clusterEvents Cluster

var _ memberlist.EventDelegate = (*clusterEvents)(nil)

func (e *clusterEvents) NotifyJoin(n *memberlist.Node)   { (*Cluster)(e).setMember(n, false) }
func (e *clusterEvents) NotifyUpdate(n *memberlist.Node) { (*Cluster)(e).setMember(n, false) }
func (e *clusterEvents) NotifyLeave(n *memberlist.Node)  { (*Cluster)(e).setMember(n, true) }

// nodeMeta is a memberlist.Delegate that only shares node metadata: a
// leaving flag and the member's Kubernetes node name. memberlist's events do
// not tell a graceful leave from a failure, so a stopping member first
// gossips the flag; peers then report it left (and stop giving it targets)
// before it is even gone.
type nodeMeta struct {
	node    string
	web     atomic.Pointer[string]
	leaving atomic.Bool
}

var _ memberlist.Delegate = (*nodeMeta)(nil)

const (
	metaAlive   = 'a'
	metaLeaving = 'l'
)

// NodeMeta implements memberlist.Delegate. The metadata is the flag byte,
// the Kubernetes node name, and, after a NUL byte, the web URL.
func (d *nodeMeta) NodeMeta(limit int) []byte {
	flag := byte(metaAlive)
	if d.leaving.Load() {
		flag = metaLeaving
	}
	meta := append([]byte{flag}, d.node...)
	if web := d.web.Load(); web != nil && *web != "" {
		meta = append(append(meta, 0), *web...)
	}
	if len(meta) > limit {
		return meta[:1]
	}
	return meta
}

// decodeMeta returns the Kubernetes node, web URL and leaving flag of a
// peer's metadata.
func decodeMeta(meta []byte) (node, web string, leaving bool) {
	if len(meta) == 0 {
		return "", "", false
	}
	node, web, _ = strings.Cut(string(meta[1:]), "\x00")
	return node, web, meta[0] == metaLeaving
}

func (*nodeMeta) NotifyMsg([]byte)                           {}
func (*nodeMeta) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (*nodeMeta) LocalState(join bool) []byte                { return nil }
func (*nodeMeta) MergeRemoteState(buf []byte, join bool)     {}
