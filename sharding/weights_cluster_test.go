package sharding

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestClusterGossipsWeights: over real loopback sockets, a report published
// before the others joined reaches them with the join's push/pull, later
// changes (larger than one broadcast step) through broadcasts, and every
// member ends with the same table.
func TestClusterGossipsWeights(t *testing.T) {
	a, _ := startCluster(t, ClusterConfig{NodeName: "n0", ClusterName: "weights"})
	rng := rand.New(rand.NewPCG(4, 4))
	a.Weights().Publish(randomReport(rng, 300))
	b, _ := startCluster(t, ClusterConfig{NodeName: "n1", ClusterName: "weights", Join: []string{a.Addr()}})
	c, _ := startCluster(t, ClusterConfig{NodeName: "n2", ClusterName: "weights", Join: []string{a.Addr()}})
	names := []string{"n0", "n1", "n2"}
	same := func() bool {
		want := a.Weights().table(names).digest
		return b.Weights().table(names).digest == want && c.Weights().table(names).digest == want
	}
	require.Eventually(t, same, 10*time.Second, 20*time.Millisecond, "the joiners got n0's report")
	b.Weights().Publish(randomReport(rng, 250))
	a.Weights().Publish(randomReport(rng, 450)) // three steps
	require.Eventually(t, same, 10*time.Second, 20*time.Millisecond, "the changes reached everyone")
	require.Len(t, c.Weights().table(names).classes, 700)
	require.Positive(t, a.WeightGossipBytes())
}

func TestNodeMetaBalanceToken(t *testing.T) {
	for _, on := range []bool{false, true} {
		d := &nodeMeta{keyVersion: LatestKeyVersion, balanceSeries: on}
		d.state.Store(metaParticipant)
		d.released.Store(^uint64(0)) // the longest release token
		meta := d.NodeMeta(nodeMetaLimit)
		require.LessOrEqual(t, len(meta)-4, metaExtensionsSize, "extensions %q", meta)
		p := decodeMeta(meta)
		require.Equal(t, on, p.balanceSeries)
		require.Equal(t, ^uint64(0), p.released)
	}
}
