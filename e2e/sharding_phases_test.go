//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/e2e/testbed"
)

// TestShardingNoRefusedWriteInAnyPhase: a strict Prometheus receiver (remote
// write 1.0, no out-of-order window), 60 targets at 2 s selected by two
// ServiceMonitors that write the very same series, 3 replicas. Steady, a
// 4th joins, it leaves on SIGTERM, one is SIGKILLed and restarted with its
// WAL, all are restarted one by one: the receiver refuses no write in any
// phase (its own prometheus_http_requests_total), holds exactly one up
// series per target, and no target misses more than 6 scrapes over the run.
func TestShardingNoRefusedWriteInAnyPhase(t *testing.T) {
	const (
		ns       = "phases"
		targets  = 60
		interval = 2 * time.Second
	)
	ctx := context.Background()
	bed := startBed(t)
	rcv, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	require.NoError(t, bed.CreateNamespace(ctx, ns, nil))
	host, err := bed.Netns(ctx)
	require.NoError(t, err)
	tgs, err := host.AddTargets(ctx, ns+"-fleet", targets, testbed.TargetOptions{})
	require.NoError(t, err)
	require.NoError(t, bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: ns, Name: "fleet", Labels: map[string]string{"app": "fleet"}, Targets: tgs, Pods: true}))
	for _, name := range []string{"fleet", "fleet-platform"} {
		m := serviceMonitor(ns, "fleet")
		m.Name = name
		m.Spec.Endpoints[0].Interval = "2s"
		_, err = bed.ApplyMonitoring(ctx, m)
		require.NoError(t, err)
	}
	e := &shardEnv{bed: bed, rcv: rcv, targets: tgs}

	// Every member joins every member, as through a StatefulSet's headless
	// Service; the 4th address is the one that joins later.
	var peers []string
	for i := range 4 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", 41+i))
		require.NoError(t, err)
		peers = append(peers, ln.Addr().String())
		require.NoError(t, ln.Close())
	}
	start := func(i int) *testbed.Promshard {
		_, port, _ := net.SplitHostPort(peers[i])
		gp, _ := strconv.Atoi(port)
		args := []string{"--remote-write.url=" + rcv.WriteURL(), "--remote-write.batch-send-deadline=250ms"}
		for _, p := range peers {
			args = append(args, "--cluster.join="+p)
		}
		return startPromshard(t, bed, testbed.PromshardOptions{Name: fmt.Sprintf("s%d", i+1), IP: fmt.Sprintf("127.0.0.%d", 41+i), Gossip: true, GossipPort: gp, Args: args})
	}
	reps := map[string]*testbed.Promshard{}
	for i := range 3 {
		reps[fmt.Sprintf("s%d", i+1)] = start(i)
	}
	eventually(t, 60*time.Second, "3 replicas split the targets", partitioned(e, reps, 1))
	eventually(t, 30*time.Second, "one up series per target", queryCount(rcv, fmt.Sprintf(`up{namespace=%q} == 1`, ns), targets))

	from := time.Now()
	_, refused0, err := rcv.WriteRequests(ctx)
	require.NoError(t, err)
	// noRefusal waits for writes accepted after the phase (the positive
	// signal), then checks that none was refused since the run began.
	noRefusal := func(phase string) {
		t.Helper()
		acc0, _, err := rcv.WriteRequests(ctx)
		require.NoError(t, err)
		eventually(t, 30*time.Second, "writes accepted after "+phase, func(ctx context.Context) error {
			acc, _, err := rcv.WriteRequests(ctx)
			if err == nil && acc < acc0+12 {
				err = fmt.Errorf("%.0f writes accepted since the phase, want 12", acc-acc0)
			}
			return err
		})
		acc, refused, err := rcv.WriteRequests(ctx)
		require.NoError(t, err)
		fmt.Printf("e2e: phases: %s: %.0f writes accepted so far, %.0f refused\n", phase, acc, refused-refused0)
		require.Equal(t, refused0, refused, "writes refused by the receiver in phase %q", phase)
	}
	noRefusal("steady")

	reps["s4"] = start(3)
	eventually(t, 60*time.Second, "4 replicas split the targets", partitioned(e, reps, 1))
	noRefusal("a 4th joins")

	s4 := reps["s4"]
	delete(reps, "s4")
	s4.Signal(syscall.SIGTERM)
	require.Equal(t, 0, s4.Wait(60*time.Second), "clean exit")
	eventually(t, 30*time.Second, "3 replicas split the targets again", partitioned(e, reps, 1))
	noRefusal("the 4th leaves on SIGTERM")

	s2 := reps["s2"]
	delete(reps, "s2")
	s2.Kill()
	eventually(t, 30*time.Second, "the killed replica's targets taken over", partitioned(e, reps, 1))
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	require.NoError(t, s2.Restart(rctx), "restart with its WAL")
	cancel()
	reps["s2"] = s2
	eventually(t, 60*time.Second, "the restarted replica owns its share", partitioned(e, reps, 1))
	noRefusal("one SIGKILLed and restarted with its WAL")

	for _, name := range []string{"s3", "s2", "s1"} {
		r := reps[name]
		r.Signal(syscall.SIGTERM)
		require.Equal(t, 0, r.Wait(60*time.Second), "clean exit of %s", name)
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		require.NoError(t, r.Restart(rctx), "restart %s", name)
		cancel()
	}
	eventually(t, 60*time.Second, "every target has one owner after the rollout", partitioned(e, reps, 1))
	noRefusal("rolling restart")
	to := time.Now()

	eventually(t, 30*time.Second, "samples after the run delivered",
		queryCount(rcv, fmt.Sprintf(`timestamp(up{namespace=%q}) > %d`, ns, to.Unix()+1), targets))
	eventually(t, 10*time.Second, "exactly one up series per target", queryCount(rcv, fmt.Sprintf(`count by (instance) (up{namespace=%q}) == 1`, ns), targets))
	worst := maxMissedScrapes(t, rcv, fmt.Sprintf(`up{namespace=%q}`, ns), targets, from, to, interval)
	fmt.Printf("e2e: phases over %.0fs: worst target missed %d scrapes\n", to.Sub(from).Seconds(), worst)
	require.LessOrEqual(t, worst, 6)
}
