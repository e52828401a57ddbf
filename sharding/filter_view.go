package sharding

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// memberView is membership frozen for one recompute.
type memberView struct {
	ready  bool                   // wait-for-size reached
	self   MemberState            // this member's state
	names  []string               // participants, self included when it is one; sorted
	byNode map[string]*Rendezvous // StrategyNode: members per node
	byZone map[string]*Rendezvous // StrategyZone: participants per zone
	// key is the ownership-key version in use: the newest every alive
	// member supports.
	key KeyVersion
	// handoff is the handoff view (handoff.go); released: every other
	// participant released it; confirmed: gained targets may be scraped.
	handoff             uint64
	released, confirmed bool
	// weights is the gossiped weight table and bal the balanced
	// assignment (BalanceSeries; nil otherwise).
	weights weightTable
	bal     *balanceState
	// series: this member balances series and every alive peer announces
	// that it does too (Member.BalancesSeries); otherwise targets are.
	series bool
	// version identifies the view: it changes whenever anything ownership
	// depends on does (readiness, this member's state or release, the
	// participants, their nodes or zones as the strategy uses them).
	version uint64
}

func (f *Filter) memberView(now time.Time) memberView {
	v := memberView{ready: f.opts.Members.Ready(), self: StateParticipant, series: f.balancing()}
	nodes, zones := map[string][]string{}, map[string][]string{}
	v.key = f.opts.KeyVersion
	members := f.opts.Members.Members()
	peers := members[:0:0]
	for _, m := range members {
		if m.Name == f.opts.Self {
			v.self = m.State
			continue
		}
		if m.State.Alive() {
			v.key = negotiate(v.key, m.KeyVersion)
			v.series = v.series && m.BalancesSeries
		}
		if m.State != StateParticipant {
			continue
		}
		peers = append(peers, m)
		v.names = append(v.names, m.Name)
		if m.KubernetesNode != "" {
			nodes[m.KubernetesNode] = append(nodes[m.KubernetesNode], m.Name)
		}
		if m.Zone != "" {
			zones[m.Zone] = append(zones[m.Zone], m.Name)
		}
	}
	if f.releasing.Load() {
		v.self = StateLeft // stopping: own nothing, hand everything off
	}
	if v.self == StateParticipant {
		v.names = append(v.names, f.opts.Self)
		if f.opts.Zone != "" {
			zones[f.opts.Zone] = append(zones[f.opts.Zone], f.opts.Self)
		}
	}
	// Nobody else discovers this node's pods: a joining member owns them at
	// once rather than leaving them unscraped.
	if f.opts.NodeName != "" && (v.self == StateParticipant || v.self == StateJoining) {
		nodes[f.opts.NodeName] = append(nodes[f.opts.NodeName], f.opts.Self)
	}
	slices.Sort(v.names)
	if f.opts.Strategy == StrategyZone {
		v.handoff = handoffView(v.key, v.names, zones)
	} else {
		v.handoff = handoffView(v.key, v.names, nil)
	}
	if v.series {
		// Members start on gained targets only once every participant
		// released the same weights.
		v.weights = f.opts.Weights.table(v.names)
		v.handoff = combine(v.handoff, v.weights.digest)
		if v.handoff == 0 {
			v.handoff = 1
		}
	}
	f.confirm(&v, peers, now)
	switch f.opts.Strategy {
	case StrategyNode:
		v.byNode = groupsOf(nodes)
		zones = nil
	case StrategyZone:
		v.byZone = groupsOf(zones)
		nodes = nil
	default:
		nodes, zones = nil, nil
	}
	if key := viewKey(&v, nodes, zones); key != f.viewKey || f.viewVersion == 0 {
		f.viewKey = key
		f.viewVersion++
		f.sharder.SetMembers(v.names)
	}
	v.version = f.viewVersion
	return v
}

// viewKey spells out everything of a view ownership depends on, so that
// equal keys mean equal owners for every target.
func viewKey(v *memberView, nodes, zones map[string][]string) string {
	var b strings.Builder
	if v.ready {
		b.WriteString("ready")
	}
	b.WriteString("\x00")
	b.WriteString(string(v.self))
	b.WriteString("\x00k")
	b.WriteString(strconv.Itoa(int(v.key)))
	if v.confirmed {
		b.WriteString("c")
	}
	if v.series {
		b.WriteString("s")
	}
	for _, n := range v.names {
		b.WriteString("\x00")
		b.WriteString(n)
	}
	for _, m := range []map[string][]string{nodes, zones} {
		b.WriteString("\x01")
		for _, k := range slices.Sorted(maps.Keys(m)) {
			b.WriteString("\x02")
			b.WriteString(k)
			names := slices.Sorted(slices.Values(m[k]))
			for _, n := range names {
				b.WriteString("\x00")
				b.WriteString(n)
			}
		}
	}
	return b.String()
}

func groupsOf(m map[string][]string) map[string]*Rendezvous {
	out := make(map[string]*Rendezvous, len(m))
	for k, names := range m {
		out[k] = NewRendezvous(names...)
	}
	return out
}

// owners appends the owners of e to dst, best rank first.
func (f *Filter) owners(v *memberView, e *preparedEntry, dst []string) []string {
	if !v.ready {
		return dst
	}
	r := f.opts.ReplicationFactor
	switch {
	case e.all:
		return append(dst, v.names...)
	case f.opts.Strategy == StrategyNode && e.node != "":
		if g := v.byNode[e.node]; g != nil {
			return g.Owners(e.key, 1, dst)
		}
		return dst // nobody on its node discovers all of its pods
	case v.bal != nil:
		if out, ok := f.balancedOwners(v, e.key, dst); ok {
			return out
		}
	case f.opts.Strategy == StrategyZone && e.zone != "":
		if g := v.byZone[e.zone]; g != nil {
			return f.fillUp(g.Owners(e.key, r, dst), len(dst), e.key)
		}
	}
	return f.sharder.Owners(e.key, r, dst)
}

// fillUp completes the owners dst[start:] chosen in a zone to the
// replication factor with the best-ranked participants of other zones.
func (f *Filter) fillUp(dst []string, start int, key uint64) []string {
	r := f.opts.ReplicationFactor
	if len(dst)-start >= r {
		return dst
	}
	for _, o := range f.sharder.Owners(key, r+len(dst)-start, nil) {
		if len(dst)-start < r && !slices.Contains(dst[start:], o) {
			dst = append(dst, o)
		}
	}
	return dst
}
