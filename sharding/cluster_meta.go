package sharding

import (
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// nodeMeta is a memberlist.Delegate that only shares node metadata: the
// member's state flag, its Kubernetes node name, its zone, its web URL and
// its extensions, encoded as flag byte, node, NUL, zone, NUL, web URL, NUL,
// extensions. memberlist's events do not tell a graceful leave from a
// failure, so a stopping member first gossips the leaving flag; peers then
// report it left (and stop giving it targets) before it is even gone. The
// joining and participant flags gate ownership.
//
// Extensions are space-separated tokens, each a letter and a value:
//   - "k<n>": the newest ownership-key version the member supports
//     (KeyVersion); a member without it supports KeyJobLabels only.
//   - "r<hex>": the handoff view (handoff.go) the member last released: it
//     applied that view and delivered what it scraped from the targets it
//     gave up. A member without the token does not confirm handoffs (an
//     older promshard, or one whose filter announced nothing yet: it
//     announces its first view before it participates): nobody waits for
//     it.
//   - "b": the member balances series (ClusterConfig.BalanceSeries);
//     filters balance series only while every alive member says so.
//
// Tokens a member does not know are ignored, so that later versions can add
// some. promshard before extensions reads the web URL up to the end of the
// metadata: during a rolling upgrade from it, its peer-targets requests to
// upgraded members fail (their health shows as stale on its status page)
// until it is upgraded; ownership is unaffected.
type nodeMeta struct {
	node, zone string
	web        atomic.Pointer[string]
	state      atomic.Uint32 // one of the meta* flags
	// keyVersion is announced as "k<n>"; KeyJobLabels announces no
	// extensions at all, as promshard before key versions did.
	keyVersion KeyVersion
	// released is the handoff view last released, announced as "r<hex>"
	// (0: nothing yet, no token); only with keyVersion above KeyJobLabels.
	released atomic.Uint64
	// weights gossips the series weights; nil: none.
	weights *weightGossip
	// balanceSeries is announced as "b".
	balanceSeries bool
}

var _ memberlist.Delegate = (*nodeMeta)(nil)

const (
	metaLegacyAlive = 'a' // older promshard versions: counts as participant
	metaJoining     = 'j'
	metaParticipant = 'p'
	metaLeaving     = 'l'
)

// metaExtensionsSize bounds the extensions NodeMeta appends.
const metaExtensionsSize = 24

// peerMeta is what a peer's metadata says.
type peerMeta struct {
	state           MemberState
	node, zone, web string
	keyVersion      KeyVersion // 0: not said (KeyJobLabels)
	// confirms: the peer announces releases; released is the last one.
	confirms bool
	released uint64
	// balanceSeries: the peer balances series.
	balanceSeries bool
}

// NodeMeta implements memberlist.Delegate.
func (d *nodeMeta) NodeMeta(limit int) []byte {
	meta := append([]byte{byte(d.state.Load())}, d.node...)
	meta = append(append(meta, 0), d.zone...)
	web := d.web.Load()
	if d.keyVersion > KeyJobLabels {
		if web != nil {
			meta = append(append(meta, 0), *web...)
		} else {
			meta = append(meta, 0)
		}
		meta = append(append(meta, 0, 'k'), strconv.Itoa(int(d.keyVersion))...)
		if r := d.released.Load(); r != 0 {
			meta = strconv.AppendUint(append(meta, ' ', 'r'), r, 16)
		}
		if d.balanceSeries {
			meta = append(meta, ' ', 'b')
		}
	} else if web != nil && *web != "" {
		meta = append(append(meta, 0), *web...)
	}
	if len(meta) > limit {
		return meta[:1]
	}
	return meta
}

// decodeMeta returns what a peer's metadata says. A peer without metadata
// counts as participant.
func decodeMeta(meta []byte) peerMeta {
	var p peerMeta
	if len(meta) == 0 {
		p.state = StateParticipant
		return p
	}
	switch meta[0] {
	case metaJoining:
		p.state = StateJoining
	case metaLeaving:
		p.state = StateLeft
	default:
		p.state = StateParticipant
	}
	var rest, ext string
	p.node, rest, _ = strings.Cut(string(meta[1:]), "\x00")
	p.zone, rest, _ = strings.Cut(rest, "\x00")
	p.web, ext, _ = strings.Cut(rest, "\x00")
	for tok := range strings.FieldsSeq(ext) {
		switch tok[0] {
		case 'k':
			if n, err := strconv.Atoi(tok[1:]); err == nil && n > 0 {
				p.keyVersion = KeyVersion(n)
			}
		case 'b':
			p.balanceSeries = true
		case 'r':
			p.confirms = true
			if n, err := strconv.ParseUint(tok[1:], 16, 64); err == nil {
				p.released = n
			}
		}
	}
	return p
}

// The Delegate's messages and push/pull states carry the gossiped series
// weights (weights.go), when balancing by series.
func (d *nodeMeta) NotifyMsg(msg []byte) { d.weights.notifyMsg(msg) }
func (d *nodeMeta) GetBroadcasts(overhead, limit int) [][]byte {
	return d.weights.getBroadcasts(overhead, limit)
}
func (d *nodeMeta) LocalState(join bool) []byte            { return d.weights.localState() }
func (d *nodeMeta) MergeRemoteState(buf []byte, join bool) { d.weights.mergeRemoteState(buf) }
