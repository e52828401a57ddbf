package sharding

import (
	"strconv"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// weightGossip carries a WeightBoard over memberlist: broadcast steps
// piggybacked on gossip, the full board on push/pull. nodeMeta forwards
// its Delegate calls here; a nil *weightGossip gossips nothing.
type weightGossip struct {
	board *WeightBoard
	queue *memberlist.TransmitLimitedQueue
	// sent counts the bytes handed to memberlist (broadcasts and
	// push/pull states), for promshard_cluster_weight_gossip_bytes_total.
	sent atomic.Int64
	seq  atomic.Uint64
}

func newWeightGossip(board *WeightBoard, numNodes func() int) *weightGossip {
	return &weightGossip{board: board, queue: &memberlist.TransmitLimitedQueue{NumNodes: numNodes, RetransmitMult: 3}}
}

// weightBroadcast is one step; steps never invalidate each other (a
// receiver needs every one of them in order).
type weightBroadcast struct {
	name string
	msg  []byte
}

func (b *weightBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *weightBroadcast) Message() []byte                       { return b.msg }
func (b *weightBroadcast) Finished()                             {}
func (b *weightBroadcast) Name() string                          { return b.name }

var _ memberlist.NamedBroadcast = (*weightBroadcast)(nil)

func (g *weightGossip) notifyMsg(msg []byte) {
	if g == nil || len(msg) == 0 {
		return
	}
	_ = g.board.applyStep(msg) // a malformed message is dropped
}

func (g *weightGossip) getBroadcasts(overhead, limit int) [][]byte {
	if g == nil {
		return nil
	}
	for _, step := range g.board.takeSteps() {
		g.queue.QueueBroadcast(&weightBroadcast{name: "w" + strconv.FormatUint(g.seq.Add(1), 10), msg: step})
	}
	out := g.queue.GetBroadcasts(overhead, limit)
	for _, b := range out {
		g.sent.Add(int64(len(b) + overhead))
	}
	return out
}

func (g *weightGossip) localState() []byte {
	if g == nil {
		return nil
	}
	b := g.board.encodeState()
	g.sent.Add(int64(len(b)))
	return b
}

func (g *weightGossip) mergeRemoteState(buf []byte) {
	if g == nil || len(buf) == 0 {
		return
	}
	_ = g.board.mergeState(buf) // a malformed state is dropped
}

// Weights returns the cluster's gossiped series weights, for
// FilterOptions.Weights.
func (c *Cluster) Weights() *WeightBoard { return c.weights }

// WeightGossipBytes returns the bytes of series weights this member handed
// to memberlist so far (broadcast steps and push/pull states).
func (c *Cluster) WeightGossipBytes() int64 {
	if c.meta == nil || c.meta.weights == nil {
		return 0
	}
	return c.meta.weights.sent.Load()
}
