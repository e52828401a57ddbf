package sharding

import (
	"strings"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// nodeMeta is a memberlist.Delegate that only shares node metadata: the
// member's state flag, its Kubernetes node name, its zone and its web URL,
// encoded as flag byte, node, NUL, zone, NUL, web URL. memberlist's events
// do not tell a graceful leave from a failure, so a stopping member first gossips the leaving flag;
// peers then report it left (and stop giving it targets) before it is even
// gone. The joining and participant flags gate ownership.
type nodeMeta struct {
	node, zone string
	web        atomic.Pointer[string]
	state      atomic.Uint32 // one of the meta* flags
}

var _ memberlist.Delegate = (*nodeMeta)(nil)

const (
	metaLegacyAlive = 'a' // older promshard versions: counts as participant
	metaJoining     = 'j'
	metaParticipant = 'p'
	metaLeaving     = 'l'
)

// NodeMeta implements memberlist.Delegate: flag byte, node, NUL, zone and,
// when set, NUL and the web URL.
func (d *nodeMeta) NodeMeta(limit int) []byte {
	meta := append([]byte{byte(d.state.Load())}, d.node...)
	meta = append(append(meta, 0), d.zone...)
	if web := d.web.Load(); web != nil && *web != "" {
		meta = append(append(meta, 0), *web...)
	}
	if len(meta) > limit {
		return meta[:1]
	}
	return meta
}

// decodeMeta returns the state, Kubernetes node, zone and web URL of a
// peer's metadata. A peer without metadata counts as participant.
func decodeMeta(meta []byte) (state MemberState, node, zone, web string) {
	if len(meta) == 0 {
		return StateParticipant, "", "", ""
	}
	switch meta[0] {
	case metaJoining:
		state = StateJoining
	case metaLeaving:
		state = StateLeft
	default:
		state = StateParticipant
	}
	node, rest, _ := strings.Cut(string(meta[1:]), "\x00")
	zone, web, _ = strings.Cut(rest, "\x00")
	return state, node, zone, web
}

func (*nodeMeta) NotifyMsg([]byte)                           {}
func (*nodeMeta) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (*nodeMeta) LocalState(join bool) []byte                { return nil }
func (*nodeMeta) MergeRemoteState(buf []byte, join bool)     {}
