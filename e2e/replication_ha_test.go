//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/e2e/testbed"
	"github.com/promshard/promshard/sharding"
)

// TestReplicationHATracker runs three rank-mode members with replication
// factor 2 into Cortex with its HA tracker (cluster = the members' external
// label cluster, replica = promshard_replica): Cortex stores one series
// per target without the replica label, and after a SIGKILL the killed
// member's rank-0 targets resume once their rank-1 owner is promoted,
// while every other target misses nothing.
func TestReplicationHATracker(t *testing.T) {
	ctx := context.Background()
	e := &shardEnv{bed: startBed(t), nextIP: 60}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // a cold build of Cortex takes ~3 min
	cortex, err := e.bed.StartCortex(cctx, testbed.CortexOptions{ExtraArgs: []string{
		"-auth.enabled=false", // one tenant, no header needed
		"-distributor.ha-tracker.enable=true",
		"-distributor.ha-tracker.enable-for-all-users=true",
		"-distributor.ha-tracker.store=etcd", // the HA tracker has no in-memory store
		"-distributor.ha-tracker.etcd.endpoints=" + strings.TrimPrefix(e.bed.EtcdURL(), "http://"),
		"-distributor.ha-tracker.cluster=cluster",
		"-distributor.ha-tracker.replica=" + sharding.DefaultReplicaLabel,
		// The default failover timeout (30 s): a shorter one than the
		// remote-write batch deadline (5 s) flips the elected rank between
		// two requests of one rank and loses samples at each flip.
	}})
	cancel()
	require.NoError(t, err)
	client, err := promapi.NewClient(promapi.Config{Address: cortex.URL() + "/prometheus"})
	require.NoError(t, err)
	api := promv1.NewAPI(client)
	e.targets = monitoredService(t, e.bed, "ha", "fleet", replTargets)

	reps := map[string]*testbed.Promshard{}
	var first string
	for _, name := range []string{"h1", "h2", "h3"} {
		e.nextIP++
		// A batch deadline below the scrape interval, as
		// --remote-write.batch-send-deadline advises: a promotion waits
		// for the peers' deliveries (confirmed handoff).
		args := []string{"--remote-write.url=" + cortex.URL() + "/api/v1/push", "--scrape.interval=1s", "--external-label=cluster=prod",
			"--remote-write.batch-send-deadline=500ms",
			"--sharding.replication-factor=2", "--sharding.replication-mode=rank"}
		if first != "" {
			args = append(args, "--cluster.join="+first)
		}
		r := startPromshard(t, e.bed, testbed.PromshardOptions{Name: name, IP: "127.0.0." + strconv.Itoa(e.nextIP), Gossip: true, Args: args})
		if first == "" {
			first = r.GossipAddr
		}
		reps[name] = r
	}
	eventually(t, 30*time.Second, "every target has two owners", partitioned(e, reps, 2))
	eventually(t, 30*time.Second, "one stored up series per target, without the replica label", func(ctx context.Context) error {
		v, _, _, err := api.Query(ctx, `up{namespace="ha"} == 1`, time.Now())
		if err != nil {
			return err
		}
		vec := v.(model.Vector)
		for _, s := range vec {
			if _, ok := s.Metric[sharding.DefaultReplicaLabel]; ok {
				return fmt.Errorf("stored with the replica label: %s", s.Metric)
			}
		}
		if len(vec) != replTargets {
			return fmt.Errorf("%d up series, want %d", len(vec), replTargets)
		}
		return nil
	})

	// The killed member's rank-0 targets, by instance.
	victim := reps["h2"]
	ts, err := victim.Targets(ctx)
	require.NoError(t, err)
	rank0 := map[string]bool{}
	for _, tg := range ts {
		if tg.Labels[sharding.DefaultReplicaLabel] == "0" {
			rank0[tg.Labels["instance"]] = true
		}
	}
	from := time.Now()
	time.Sleep(4 * time.Second) // the window's part before the kill
	delete(reps, "h2")
	killAt := time.Now()
	victim.Kill()
	eventually(t, 20*time.Second, "the killed member's copies taken over", partitioned(e, reps, 2))
	to := killAt.Add(12 * time.Second)
	// Remote write delivers a batch within 5 s: wait until every series
	// has a sample past the window.
	eventually(t, 30*time.Second, "samples stored past the window", func(ctx context.Context) error {
		v, _, _, err := api.Query(ctx, `timestamp(up{namespace="ha"})`, time.Now())
		if err != nil {
			return err
		}
		past := 0
		for _, s := range v.(model.Vector) {
			if float64(s.Value) > float64(to.UnixMilli())/1000 {
				past++
			}
		}
		if past != replTargets {
			return fmt.Errorf("%d series with samples past the window", past)
		}
		return nil
	})

	v, _, _, err := api.Query(ctx, fmt.Sprintf(`up{namespace="ha"}[%dms]`, to.Sub(from).Milliseconds()), to)
	require.NoError(t, err)
	mat := v.(model.Matrix)
	require.Len(t, mat, replTargets, "one stored series per target")
	var promotedGap, otherGap time.Duration
	otherMissed := 0
	for _, s := range mat {
		stamps := []model.Time{model.TimeFromUnixNano(from.UnixNano())}
		for _, p := range s.Values {
			stamps = append(stamps, p.Timestamp)
		}
		stamps = append(stamps, model.TimeFromUnixNano(to.UnixNano()))
		worst := time.Duration(0)
		missed := 0
		for i := 1; i < len(stamps); i++ {
			gap := stamps[i].Sub(stamps[i-1])
			worst = max(worst, gap)
			if gap > replInterval*3/2 {
				missed += int((gap+replInterval/2)/replInterval) - 1
				t.Logf("%s: gap of %s ending %s after the kill (rank 0 on the killed member: %v)", s.Metric["instance"], gap,
					stamps[i].Time().Sub(killAt).Round(time.Millisecond), rank0[string(s.Metric["instance"])])
			}
		}
		if rank0[string(s.Metric["instance"])] {
			promotedGap = max(promotedGap, worst)
		} else {
			otherGap = max(otherGap, worst)
			otherMissed += missed
		}
	}
	deduped := cortexMetricSum(t, cortex.URL(), "cortex_distributor_deduped_samples_total")
	fmt.Printf("e2e: rank mode into Cortex's HA tracker, SIGKILL of 1 of 3 members: %d stored up series; the killed member's %d rank-0 targets: longest gap %s; the other %d: %d missed samples, longest gap %s; %.0f samples of non-elected ranks deduplicated\n",
		len(mat), len(rank0), promotedGap, replTargets-len(rank0), otherMissed, otherGap, deduped)
	require.NotEmpty(t, rank0)
	require.Zero(t, otherMissed, "targets whose rank 0 survived miss nothing (longest gap %s)", otherGap)
	require.Less(t, promotedGap, 12*time.Second, "the killed member's rank-0 targets resume once their rank-1 owner is promoted")
	require.Positive(t, deduped, "the HA tracker drops the non-elected rank")
}

// cortexMetricSum sums every sample of metric name on Cortex's /metrics.
func cortexMetricSum(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			require.NoError(t, err, line)
			sum += v
		}
	}
	return sum
}
