//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/e2e/testbed"
)

// TestShardingPartitionAndStall: three replicas, each in its own network
// namespace. The link of one is cut: each side owns every target (the
// isolated one all of them, the other two split them), so no target goes
// unscraped by either side; healed, every target has one owner again
// within 10 s. Then one replica is stopped (SIGSTOP) for longer than its
// peers need to declare it dead: resumed, it notices the stall, hands its
// targets off and takes its share back through the confirmed handoff, and
// every target has one owner again.
func TestShardingPartitionAndStall(t *testing.T) {
	ctx := context.Background()
	e := newShardEnv(t, "part")
	hosts := make([]*testbed.Host, 3)
	reps := map[string]*testbed.Promshard{}
	names := []string{"p1", "p2", "p3"}
	for i, name := range names {
		h, err := e.bed.Netns(ctx)
		require.NoError(t, err)
		hosts[i] = h
		rw, err := h.ForwardURL(e.rcv.WriteURL())
		require.NoError(t, err)
		args := []string{"--remote-write.url=" + rw, "--scrape.interval=1s", "--remote-write.batch-send-deadline=250ms"}
		if i > 0 {
			args = append(args, "--cluster.join="+hosts[0].GossipAddrIn())
		}
		reps[name] = startPromshard(t, e.bed, testbed.PromshardOptions{Name: name, Host: h, Gossip: true, Args: args})
	}
	eventually(t, 30*time.Second, "3 replicas in namespaces split the targets", partitioned(e, reps, 1))

	// Cut p3 off.
	require.NoError(t, hosts[2].SetLink(ctx, false))
	cutAt := time.Now()
	majority := map[string]*testbed.Promshard{"p1": reps["p1"], "p2": reps["p2"]}
	eventually(t, 30*time.Second, "p1 and p2 split every target", partitioned(e, majority, 1))
	fmt.Printf("e2e: partition: p1 and p2 own every target %.2fs after the cut\n", time.Since(cutAt).Seconds())
	eventually(t, 30*time.Second, "p3, alone, owns every target", func(ctx context.Context) error {
		n, err := activeInNetns(ctx, hosts[2], reps["p3"])
		if err == nil && n != len(e.targets) {
			err = fmt.Errorf("p3 owns %d of %d targets", n, len(e.targets))
		}
		return err
	})
	t.Logf("partition: both sides own every target %.2fs after the cut", time.Since(cutAt).Seconds())

	// Heal: one owner per target again within 10 s.
	require.NoError(t, hosts[2].SetLink(ctx, true))
	healAt := time.Now()
	eventually(t, 30*time.Second, "one owner per target after healing", partitioned(e, reps, 1))
	healed := time.Since(healAt)
	fmt.Printf("e2e: partition healed: one owner per target after %.2fs\n", healed.Seconds())
	t.Logf("healed: one owner per target after %.2fs", healed.Seconds())
	require.Less(t, healed, 10*time.Second)

	// A stall longer than the failure detection.
	stalled := reps["p2"]
	stalled.Signal(syscall.SIGSTOP)
	others := map[string]*testbed.Promshard{"p1": reps["p1"], "p3": reps["p3"]}
	eventually(t, 30*time.Second, "p1 and p3 take the stalled replica's targets", partitioned(e, others, 1))
	stalled.Signal(syscall.SIGCONT)
	resumeAt := time.Now()
	eventually(t, 20*time.Second, "the resumed replica noticed its stall", func(ctx context.Context) error {
		v, ok, err := stalled.Metric(ctx, "promshard_cluster_stalls_total")
		if err == nil && (!ok || v < 1) {
			err = fmt.Errorf("promshard_cluster_stalls_total %v", v)
		}
		return err
	})
	eventually(t, 30*time.Second, "one owner per target after the stall", partitioned(e, reps, 1))
	back := time.Since(resumeAt)
	fmt.Printf("e2e: stall: one owner per target %.2fs after the resume\n", back.Seconds())
	t.Logf("stall: one owner per target %.2fs after the resume", back.Seconds())
	require.Contains(t, stalled.Log(), "Process stalled for longer than peers need to declare it dead")
	_, refused, err := e.rcv.WriteRequests(ctx)
	require.NoError(t, err)
	t.Logf("writes refused over the run (the isolated side's queued samples after healing included): %.0f", refused)
}

// activeInNetns counts the distinct scrape URLs p, running in h's
// namespace, has active, asking from inside the namespace.
func activeInNetns(ctx context.Context, h *testbed.Host, p *testbed.Promshard) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := h.Exec(cctx, "curl", "-sf", "--max-time", "4", p.WebURL+"/api/v1/targets?state=active")
	if err != nil {
		return 0, fmt.Errorf("targets of %s from its namespace: %w", p.WebURL, err)
	}
	var resp struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return 0, err
	}
	urls := map[string]bool{}
	for _, t := range resp.Data.ActiveTargets {
		urls[t.ScrapeURL] = true
	}
	return len(urls), nil
}
