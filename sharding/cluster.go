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

// Member states. A member starts joining: alive, but owning no target, so
// that its peers keep its share while its informers sync, its first
// configuration is applied and discovery delivers its first result. It then
// calls Participate and owns its share (participant). memberlist's events do
// not expose suspicion, so a suspected member is reported (and keeps owning
// targets) as before until it is declared dead. A member that stops
// gracefully is reported left as soon as it announces its leave.
const (
	StateJoining     MemberState = "joining"
	StateParticipant MemberState = "participant"
	StateDead        MemberState = "dead"
	StateLeft        MemberState = "left"
)

// Alive reports whether the member is joining or participating.
func (s MemberState) Alive() bool { return s == StateJoining || s == StateParticipant }

// Member is one cluster member.
type Member struct {
	// Name is the member's unique node name.
	Name string `json:"name"`
	// Address is the member's gossip host:port ("" when standalone).
	Address string `json:"address"`
	// State is joining, participant, dead or left.
	State MemberState `json:"state"`
	// KubernetesNode is the Kubernetes node the member runs on, if it said.
	KubernetesNode string `json:"kubernetesNode,omitempty"`
	// Zone is the member's zone (--sharding.zone), if it said.
	Zone string `json:"zone,omitempty"`
	// WebURL is the base URL of the member's HTTP endpoints, if it said.
	WebURL string `json:"webURL,omitempty"`
	// KeyVersion is the newest ownership-key version the member supports;
	// 0 when it did not say (an older promshard: KeyJobLabels only).
	KeyVersion KeyVersion `json:"keyVersion,omitempty"`
	// ConfirmsHandoffs: the member announces the handoff views it released
	// (handoff.go); an older promshard does not, and nobody waits for it.
	ConfirmsHandoffs bool `json:"confirmsHandoffs,omitempty"`
	// Released is the handoff view the member last released, 0: none yet.
	Released uint64 `json:"released,omitempty"`
	// BalancesSeries: the member balances series (ClusterConfig.BalanceSeries).
	BalancesSeries bool `json:"balancesSeries,omitempty"`
}

// departedRetention is how long dead and left members stay listed.
const departedRetention = 5 * time.Minute

// Cluster is this process' membership in a memberlist cluster of replicas.
// Create it with NewCluster and run it with Run.
type Cluster struct {
	cfg     ClusterConfig
	logger  *slog.Logger
	ml      *memberlist.Memberlist // nil when standalone
	addr    string                 // this member's gossip address
	keys    *keyringState          // nil when gossip is not encrypted
	meta    *nodeMeta
	weights *WeightBoard // gossiped series weights (weights.go)
	changes chan struct{}
	ready   atomic.Bool
	// participating is set by Participate, leaving by Leave.
	announced     atomic.Bool
	participating atomic.Bool
	leaving       atomic.Bool
	// announce wakes the announcer (cluster_release.go); stalls counts the
	// stalls the watchdog saw.
	announce chan struct{}
	stalls   atomic.Int64

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
		announce: make(chan struct{}, 1),
		members:  map[string]Member{},
		departed: map[string]time.Time{},
	}
	standalone := cfg.Standalone()
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	c.cfg = cfg
	c.weights = NewWeightBoard(cfg.NodeName, c.signal)
	if standalone {
		c.members[cfg.NodeName] = Member{Name: cfg.NodeName, State: StateJoining, KubernetesNode: cfg.KubernetesNode, Zone: cfg.Zone, KeyVersion: cfg.KeyVersion}
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
		c.meta = &nodeMeta{node: cfg.KubernetesNode, zone: cfg.Zone, keyVersion: cfg.KeyVersion, balanceSeries: cfg.BalanceSeries}
		c.meta.state.Store(metaJoining)
		c.meta.weights = newWeightGossip(c.weights, func() int { return len(c.Members()) })
		mc.Delegate = c.meta
		mc.Events = (*clusterEvents)(c)
		if c.ml, err = memberlist.Create(mc); err != nil {
			return nil, fmt.Errorf("create memberlist: %w", err)
		}
		// LocalNode's fields are rewritten by UpdateNode: read them once.
		c.addr = c.ml.LocalNode().Address()
		if web := advertisedWebURL(cfg.WebURL, net.ParseIP(c.ml.LocalNode().Addr.String())); web != "" {
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
// once) and shuts memberlist down, unless Leave did so before. It also
// returns, without leaving, once Close was called. It has the oklog/run
// actor shape.
func (c *Cluster) Run(ctx context.Context) error {
	defer c.Leave()
	if c.ml == nil {
		<-ctx.Done()
		return nil
	}
	go c.announcer(ctx)
	if c.cfg.StallThreshold > 0 {
		go c.watchStalls(ctx)
	}

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
			if c.leaving.Load() {
				// Left gracefully (Leave): the process keeps scraping
				// until it stops; returning would stop it at once.
				<-ctx.Done()
			}
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
	self := c.addr
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

// Participate makes this member own its share of the targets: its state
// turns from joining to participant. It gossips the change first and flips
// its own ownership HandoffDelay later, so that the peers have stopped
// scraping the targets it takes over before it starts: two members writing
// the same series at once make a remote-write 1.0 receiver (Prometheus)
// reject whole batches as out of order. Call it once the member can scrape:
// informers synced, configuration applied, first discovery result filtered.
// It blocks for the delay and is idempotent.
func (c *Cluster) Participate() {
	if c.leaving.Load() || !c.announced.CompareAndSwap(false, true) {
		return
	}
	if c.ml != nil {
		c.meta.state.Store(metaParticipant)
		c.life.Lock()
		if !c.closed {
			if err := c.ml.UpdateNode(c.cfg.LeaveTimeout); err != nil {
				c.logger.Warn("Cluster participation announcement failed", "err", err)
			}
		}
		c.life.Unlock()
		if c.ml.NumMembers() > 1 {
			time.Sleep(c.cfg.HandoffDelay)
		}
	}
	if c.leaving.Load() {
		return
	}
	c.logger.Info("Cluster member participating: owning targets from now on")
	c.participating.Store(true)
	c.setSelf(StateParticipant)
}

// Participant reports whether this member owns targets: it participates and
// has not left. /-/ready answers 200 only then.
func (c *Cluster) Participant() bool {
	return c.participating.Load() && !c.leaving.Load()
}

// ParticipateWhen polls ready every interval and calls Participate once it
// returns true; it then blocks until ctx is done. It has the oklog/run actor
// shape.
func (c *Cluster) ParticipateWhen(ctx context.Context, ready func() bool, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for !ready() {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	c.Participate()
	<-ctx.Done()
	return nil
}

// setSelf records this member's own state and signals the change.
func (c *Cluster) setSelf(state MemberState) {
	c.mtx.Lock()
	m, ok := c.members[c.cfg.NodeName]
	if !ok {
		m = Member{Name: c.cfg.NodeName, KubernetesNode: c.cfg.KubernetesNode, Zone: c.cfg.Zone, KeyVersion: c.cfg.KeyVersion}
	}
	m.State = state
	c.members[c.cfg.NodeName] = m
	c.mtx.Unlock()
	c.signal()
}

// Leave announces a graceful leave: peers take this member's targets over at
// once, while this member keeps scraping what it had (the filter sends no
// more changes) until the process stops. Run calls it on its way out too; it
// is idempotent.
func (c *Cluster) Leave() {
	if c.leaving.Swap(true) {
		return
	}
	c.setSelf(StateLeft)
	if c.ml != nil {
		c.leave()
	}
}

func (c *Cluster) leave() {
	c.leaving.Store(true)
	c.life.Lock()
	defer c.life.Unlock()
	if c.closed {
		return // memberlist panics on a leave after shutdown
	}
	c.meta.state.Store(metaLeaving)
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
	return c.addr
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
		if m.State.Alive() {
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
			c.weights.Forget(name)
		}
	}
}

// setMember records a memberlist event: departed reports a NotifyLeave. It
// runs inside memberlist with its locks held: it must not call back into
// memberlist.
func (c *Cluster) setMember(n *memberlist.Node, departed bool) {
	p := decodeMeta(n.Meta)
	state := p.state
	m := Member{Name: n.Name, Address: n.Address(), State: state, KubernetesNode: p.node, Zone: p.zone, WebURL: p.web, KeyVersion: p.keyVersion,
		ConfirmsHandoffs: p.confirms, Released: p.released, BalancesSeries: p.balanceSeries}
	c.mtx.Lock()
	old, had := c.members[n.Name]
	switch {
	case n.Name == c.cfg.NodeName && c.leaving.Load():
		m.State = StateLeft
	case n.Name == c.cfg.NodeName:
		// This member's own state is what it does, not what it gossips:
		// Participate announces before it owns targets.
		m.State = StateJoining
		if c.participating.Load() {
			m.State = StateParticipant
		}
	case departed && had && old.State == StateLeft:
		m.State = StateLeft
	case departed && state != StateLeft:
		m.State = StateDead
	}
	c.members[n.Name] = m
	if m.State.Alive() {
		delete(c.departed, n.Name)
	} else if !had || old.State.Alive() {
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
