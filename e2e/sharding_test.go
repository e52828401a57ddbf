//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/promshard/promshard/e2e/testbed"
)

const shardTargets = 64

// shardEnv is a bed with shardTargets targets behind one ServiceMonitor and a
// receiver; replicas are added per subtest.
type shardEnv struct {
	bed     *testbed.Bed
	rcv     *testbed.Receiver
	targets []*testbed.Target
	nextIP  int
}

func newShardEnv(t *testing.T, ns string) *shardEnv {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e := &shardEnv{bed: startBed(t), nextIP: 10}
	var err error
	e.rcv, err = e.bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	e.targets = monitoredService(t, e.bed, ns, "fleet", shardTargets)
	return e
}

// replica starts a clustered replica on its own loopback address, joining
// join (if any).
func (e *shardEnv) replica(t *testing.T, name string, join string, extra ...string) *testbed.Promshard {
	e.nextIP++
	args := []string{"--remote-write.url=" + e.rcv.WriteURL(), "--scrape.interval=1s", "--remote-write.batch-send-deadline=250ms"}
	if join != "" {
		args = append(args, "--cluster.join="+join)
	}
	return startPromshard(t, e.bed, testbed.PromshardOptions{
		Name: name, IP: "127.0.0." + strconv.Itoa(e.nextIP), Gossip: true, Args: append(args, extra...),
	})
}

// owned maps each replica to the scrape URLs of its active targets.
func owned(ctx context.Context, replicas map[string]*testbed.Promshard) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	for name, r := range replicas {
		ts, err := r.Targets(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = map[string]bool{}
		for _, t := range ts {
			out[name][t.ScrapeURL] = true
		}
	}
	return out, nil
}

// partitioned returns a condition: every target has exactly `copies` owners
// among replicas, each scraped successfully.
func partitioned(e *shardEnv, replicas map[string]*testbed.Promshard, copies int) func(context.Context) error {
	return func(ctx context.Context) error {
		own, err := owned(ctx, replicas)
		if err != nil {
			return err
		}
		counts := map[string]int{}
		for _, set := range own {
			for u := range set {
				counts[u]++
			}
		}
		for _, tg := range e.targets {
			if counts[tg.URL()] != copies {
				return fmt.Errorf("target %s has %d owners, want %d (owned per replica: %v)", tg.URL(), counts[tg.URL()], copies, sizes(own))
			}
		}
		if len(counts) != len(e.targets) {
			return fmt.Errorf("%d distinct targets owned, want %d", len(counts), len(e.targets))
		}
		return nil
	}
}

func sizes(own map[string]map[string]bool) map[string]int {
	out := map[string]int{}
	for n, s := range own {
		out[n] = len(s)
	}
	return out
}

func TestShardingThreeReplicasThenJoinAndFailures(t *testing.T) {
	e := newShardEnv(t, "shard")
	// A second monitor selects the same Service port, as a platform
	// team's beside the owners': its targets write the very same series.
	platform := serviceMonitor("shard", "fleet")
	platform.Name = "fleet-platform"
	_, err := e.bed.ApplyMonitoring(context.Background(), platform)
	require.NoError(t, err)
	r1 := e.replica(t, "r1", "")
	r2 := e.replica(t, "r2", r1.GossipAddr)
	r3 := e.replica(t, "r3", r1.GossipAddr)
	reps := map[string]*testbed.Promshard{"r1": r1, "r2": r2, "r3": r3}

	// partitioned counts scrape URLs per replica: the two monitors' targets
	// of one endpoint count once only if one replica owns both.
	eventually(t, 30*time.Second, "3 replicas split the targets", partitioned(e, reps, 1))
	eventually(t, 30*time.Second, "one up series per target at the receiver", queryCount(e.rcv, `up{namespace="shard"} == 1`, shardTargets))
	steadyAt := time.Now() // every target's series at the receiver from here on

	// Steady state: the strict receiver refuses no write, although two
	// jobs write every series (one member writes both, its WAL drops the
	// copy). The positive signal first: more writes accepted.
	ctx := context.Background()
	acc0, ref0, err := e.rcv.WriteRequests(ctx)
	require.NoError(t, err)
	eventually(t, 30*time.Second, "receiver accepts writes", func(ctx context.Context) error {
		acc, _, err := e.rcv.WriteRequests(ctx)
		if err == nil && acc < acc0+9 {
			err = fmt.Errorf("%.0f writes accepted since the steady point, want 9 (three per replica)", acc-acc0)
		}
		return err
	})
	acc1, ref1, err := e.rcv.WriteRequests(ctx)
	require.NoError(t, err)
	t.Logf("steady: %.0f writes accepted, %.0f refused (since start: %.0f refused)", acc1-acc0, ref1-ref0, ref1)
	require.Equal(t, ref0, ref1, "writes refused by the receiver in steady state")

	before, err := owned(ctx, reps)
	require.NoError(t, err)
	t.Logf("3 replicas own %v", sizes(before))

	// A 4th replica joins.
	joinAt := time.Now()
	r4 := e.replica(t, "r4", r1.GossipAddr)
	reps["r4"] = r4
	eventually(t, 30*time.Second, "4 replicas split the targets", partitioned(e, reps, 1))
	after, err := owned(ctx, reps)
	require.NoError(t, err)
	var moved []string
	for _, name := range []string{"r1", "r2", "r3"} {
		for u := range after[name] {
			require.True(t, before[name][u], "target %s moved to %s, which stayed", u, name)
		}
		for u := range before[name] {
			if !after[name][u] {
				moved = append(moved, u)
			}
		}
	}
	share := len(after["r4"])
	mean, sd := shardTargets/4.0, math.Sqrt(shardTargets*0.25*0.75)
	t.Logf("newcomer owns %d of %d (expected %.1f ± %.1f); moved %d", share, shardTargets, mean, 3*sd, len(moved))
	require.InDelta(t, mean, float64(share), 3*sd)
	require.Len(t, moved, share, "only targets taken by the newcomer moved")

	// No moved target's series has a hole (a staleness marker or a gap of
	// more than one interval) at the receiver.
	time.Sleep(8 * time.Second)
	from := joinAt.Add(-3 * time.Second)
	if from.Before(steadyAt) {
		from = steadyAt
	}
	checkNoHoles(t, e.rcv, moved, from, time.Now().Add(-3*time.Second))

	// SIGKILL one replica: every target is scraped again within 10 s.
	killed := r2
	lost := after["r2"]
	delete(reps, "r2")
	killAt := time.Now()
	killed.Kill()
	eventually(t, 20*time.Second, "targets of the killed replica taken over", partitioned(e, reps, 1))
	eventually(t, 20*time.Second, "taken-over targets scraped", scrapedSince(reps, lost, killAt))
	took := time.Since(killAt)
	fmt.Printf("e2e: SIGKILLed replica's %d targets scraped again after %.2fs\n", len(lost), took.Seconds())
	t.Logf("SIGKILL: %d targets scraped again after %.2fs", len(lost), took.Seconds())
	require.Less(t, took, 10*time.Second)

	// SIGTERM one replica: its targets move within 2 s, after it delivered
	// its last samples, so the strict receiver refuses nothing.
	_, refTerm, err := e.rcv.WriteRequests(ctx)
	require.NoError(t, err)
	t.Logf("writes refused so far: %.0f (join and kill included)", refTerm)
	now, err := owned(ctx, reps)
	require.NoError(t, err)
	lost = now["r3"]
	delete(reps, "r3")
	termAt := time.Now()
	r3.Signal(syscall.SIGTERM)
	eventually(t, 10*time.Second, "targets of the stopped replica taken over", partitioned(e, reps, 1))
	took = time.Since(termAt)
	fmt.Printf("e2e: SIGTERMed replica's %d targets moved after %.2fs\n", len(lost), took.Seconds())
	t.Logf("SIGTERM: %d targets moved after %.2fs", len(lost), took.Seconds())
	require.Less(t, took, 2*time.Second)
	require.Equal(t, 0, r3.Wait(30*time.Second))
	accTerm, _, err := e.rcv.WriteRequests(ctx)
	require.NoError(t, err)
	eventually(t, 30*time.Second, "receiver accepts the new owners' writes", func(ctx context.Context) error {
		acc, _, err := e.rcv.WriteRequests(ctx)
		if err == nil && acc < accTerm+6 {
			err = fmt.Errorf("%.0f writes accepted since the leave, want 6", acc-accTerm)
		}
		return err
	})
	_, ref, err := e.rcv.WriteRequests(ctx)
	require.NoError(t, err)
	require.Equal(t, refTerm, ref, "writes refused by the receiver around the SIGTERM handoff")
}

// scrapedSince holds when every URL in urls is active and up on some replica
// with a last scrape after t0.
func scrapedSince(reps map[string]*testbed.Promshard, urls map[string]bool, t0 time.Time) func(context.Context) error {
	return func(ctx context.Context) error {
		ok := map[string]bool{}
		for _, r := range reps {
			ts, err := r.Targets(ctx)
			if err != nil {
				return err
			}
			for _, tg := range ts {
				if tg.Health == "up" && tg.LastScrape.After(t0) {
					ok[tg.ScrapeURL] = true
				}
			}
		}
		for u := range urls {
			if !ok[u] {
				return fmt.Errorf("%s not scraped since %s", u, t0.Format(time.RFC3339Nano))
			}
		}
		return nil
	}
}

// checkNoHoles asserts, for every moved target, that up has a value at every
// 250ms step between from and to (a staleness marker would leave steps
// empty, since the 5m lookback bridges mere gaps) and that its raw samples
// are never further apart than one missed 1s scrape interval.
func checkNoHoles(t *testing.T, rcv *testbed.Receiver, urls []string, from, to time.Time) {
	t.Helper()
	ctx := context.Background()
	step := 250 * time.Millisecond
	wantPoints := int(to.Sub(from)/step) + 1
	for _, u := range urls {
		inst := instanceOf(u)
		m, err := rcv.QueryRange(ctx, fmt.Sprintf(`up{instance=%q}`, inst), from, to, step)
		require.NoError(t, err)
		require.Len(t, m, 1, "series of %s", inst)
		raw, _, _, err := rcv.API().Query(ctx, fmt.Sprintf(`up{instance=%q}[%ds]`, inst, int(to.Sub(from).Seconds())), to)
		require.NoError(t, err)
		mat, ok := raw.(model.Matrix)
		require.True(t, ok)
		require.Len(t, mat, 1)
		if len(m[0].Values) < wantPoints-1 {
			t.Logf("range points of %s: %v", inst, m[0].Values)
			t.Logf("raw samples of %s: %v", inst, mat[0].Values)
		}
		require.GreaterOrEqual(t, len(m[0].Values), wantPoints-1, "staleness hole in up{instance=%q}", inst)
		var prev model.Time
		for _, s := range mat[0].Values {
			if prev != 0 {
				gap := s.Timestamp.Sub(prev)
				require.LessOrEqual(t, gap, 2*time.Second+500*time.Millisecond, "gap of %s in up{instance=%q}", gap, inst)
			}
			prev = s.Timestamp
		}
	}
}

func instanceOf(scrapeURL string) string {
	// http://ip:port/metrics -> ip:port
	s := scrapeURL[len("http://"):]
	return s[:len(s)-len("/metrics")]
}

// TestShardingReplicationAndZones shares one bed: replication factor 2
// under a user labeldrop of the replica label, then the zone strategy.
func TestShardingReplicationAndZones(t *testing.T) {
	ctx := context.Background()
	e := newShardEnv(t, "repl")
	// A user relabeling that would drop the replica label: promshard adds it
	// after the monitor's relabelings.
	_, err := e.bed.ApplyMonitoring(ctx, serviceMonitor("repl", "fleet", monitoringv1.RelabelConfig{Action: "labeldrop", Regex: "promshard_replica"}))
	require.NoError(t, err)
	r1 := e.replica(t, "a1", "", "--sharding.replication-factor=2")
	r2 := e.replica(t, "a2", r1.GossipAddr, "--sharding.replication-factor=2")
	r3 := e.replica(t, "a3", r1.GossipAddr, "--sharding.replication-factor=2")
	reps := map[string]*testbed.Promshard{"a1": r1, "a2": r2, "a3": r3}
	eventually(t, 30*time.Second, "every target has two owners", partitioned(e, reps, 2))
	eventually(t, 30*time.Second, "two copies of every target, each labelled with its rank",
		queryCount(e.rcv, `count by (instance) (up{namespace="repl",promshard_replica=~"0|1"} == 1) == 2`, shardTargets))
	require.NoError(t, queryCount(e.rcv, `up{namespace="repl",promshard_replica=""}`, 0)(ctx), "no copy without the replica label")
	for _, r := range reps {
		r.Signal(syscall.SIGTERM)
	}
	for _, r := range reps {
		require.Equal(t, 0, r.Wait(30*time.Second))
	}

	t.Run("zone strategy", func(t *testing.T) { testZones(t, e) })
}

// testZones runs 4 zone-strategy members, two in zone a and two in zone b,
// over targets in zone a, zone b and without zone.
func testZones(t *testing.T, e *shardEnv) {
	ctx := context.Background()
	require.NoError(t, e.bed.CreateNamespace(ctx, "zones", nil))
	host, err := e.bed.Netns(ctx)
	require.NoError(t, err)
	zoneOf := map[string]string{} // target URL → zone
	var all []*testbed.Target
	for _, z := range []string{"a", "b", ""} {
		ts, err := host.AddTargets(ctx, "zone-"+z, 8, testbed.TargetOptions{Zone: z})
		require.NoError(t, err)
		for _, tg := range ts {
			zoneOf[tg.URL()] = z
		}
		all = append(all, ts...)
	}
	require.NoError(t, e.bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "zones", Name: "zoned", Labels: map[string]string{"app": "zoned"}, Targets: all}))
	_, err = e.bed.ApplyMonitoring(ctx, serviceMonitor("zones", "zoned"))
	require.NoError(t, err)

	memberZone := map[string]string{"za1": "a", "za2": "a", "zb1": "b", "zb2": "b"}
	reps := map[string]*testbed.Promshard{}
	var first string
	for _, name := range []string{"za1", "za2", "zb1", "zb2"} {
		r := e.replica(t, name, first, "--sharding.strategy=zone", "--sharding.zone="+memberZone[name])
		if first == "" {
			first = r.GossipAddr
		}
		reps[name] = r
	}
	// inZone holds when every zoned target has exactly one owner, in
	// wantZone(its zone), and zone-less ones have one owner anywhere.
	inZone := func(wantZone func(z string) string) func(context.Context) error {
		return func(ctx context.Context) error {
			own, err := owned(ctx, reps)
			if err != nil {
				return err
			}
			owners := map[string][]string{}
			for name, set := range own {
				for u := range set {
					owners[u] = append(owners[u], name)
				}
			}
			for u, z := range zoneOf {
				o := owners[u]
				if len(o) != 1 {
					return fmt.Errorf("%s (zone %q) owned by %v", u, z, o)
				}
				if z != "" && memberZone[o[0]] != wantZone(z) {
					return fmt.Errorf("%s (zone %q) owned by %s in zone %s", u, z, o[0], memberZone[o[0]])
				}
			}
			return nil
		}
	}
	same := func(z string) string { return z }
	eventually(t, 60*time.Second, "every zoned target owned in its zone", inZone(same))

	zoneB := map[string]bool{}
	for u, z := range zoneOf {
		if z == "b" {
			zoneB[u] = true
		}
	}
	killAt := time.Now()
	reps["zb1"].Kill()
	reps["zb2"].Kill()
	alive := map[string]*testbed.Promshard{"za1": reps["za1"], "za2": reps["za2"]}
	eventually(t, 20*time.Second, "zone b targets scraped by zone a", scrapedSince(alive, zoneB, killAt))
	took := time.Since(killAt)
	fmt.Printf("e2e: zone b's targets scraped in zone a %.2fs after both zone b members were killed\n", took.Seconds())
	// Memberlist probes one peer per interval, so the second killed member
	// is suspected about one probe after the first and declared dead up to
	// a suspicion timeout later; targets gained from the first stay held
	// until the second is dead too (it is a participant until then, and
	// every participant must release the view). Each detection takes ~5 to
	// 8 s (README, Failure detection), the two together up to ~12 s.
	require.Less(t, took, 15*time.Second)
	v, ok, err := reps["za1"].Metric(ctx, "promshard_sharding_targets_cross_zone")
	require.NoError(t, err)
	require.True(t, ok)
	v2, _, err := reps["za2"].Metric(ctx, "promshard_sharding_targets_cross_zone")
	require.NoError(t, err)
	require.EqualValues(t, 8, v+v2, "zone b's 8 targets counted cross-zone")

	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	require.NoError(t, reps["zb1"].Restart(rctx))
	delete(reps, "zb2")
	eventually(t, 30*time.Second, "zone b targets back in zone b", inZone(same))
}

func TestShardingNodeStrategy(t *testing.T) {
	ctx := context.Background()
	e := newShardEnv(t, "nodes") // its 64 targets have no node: hashed
	lo, err := e.bed.Loopback(ctx)
	require.NoError(t, err)
	nodes := []string{"node-a", "node-b", "node-c"}
	podsOn := map[string][]string{}
	for i := 0; i < 9; i++ {
		node := nodes[i%3]
		tg, err := lo.AddTarget(ctx, fmt.Sprintf("pod-%d", i), testbed.TargetOptions{NodeName: node})
		require.NoError(t, err)
		_, err = e.bed.CreatePod(ctx, testbed.PodSpec{Namespace: "nodes", Name: fmt.Sprintf("p%d", i), Labels: map[string]string{"app": "daemon"}, Target: tg})
		require.NoError(t, err)
		podsOn[node] = append(podsOn[node], tg.URL())
	}
	_, err = e.bed.ApplyMonitoring(ctx, &monitoringv1.PodMonitor{
		ObjectMeta: metav1.ObjectMeta{Namespace: "nodes", Name: "daemon"},
		Spec: monitoringv1.PodMonitorSpec{
			Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": "daemon"}},
			PodMetricsEndpoints: []monitoringv1.PodMetricsEndpoint{{Port: ptr.To("metrics"), Interval: "1s"}},
		},
	})
	require.NoError(t, err)

	reps := map[string]*testbed.Promshard{}
	var first string
	for _, n := range nodes {
		args := []string{"--sharding.strategy=node", "--node-name=" + n}
		r := e.replica(t, "d-"+n, first, args...)
		if first == "" {
			first = r.GossipAddr
		}
		reps[n] = r
	}
	eventually(t, 40*time.Second, "node-local pods and split node-less targets", func(ctx context.Context) error {
		own, err := owned(ctx, reps)
		if err != nil {
			return err
		}
		counts := map[string]int{}
		for n, set := range own {
			for u := range set {
				counts[u]++
			}
			for _, u := range podsOn[n] {
				if !set[u] {
					return fmt.Errorf("%s does not scrape its pod %s", n, u)
				}
			}
		}
		for _, n := range nodes {
			for _, u := range podsOn[n] {
				if counts[u] != 1 {
					return fmt.Errorf("pod %s scraped %d times", u, counts[u])
				}
			}
		}
		for _, tg := range e.targets {
			if counts[tg.URL()] != 1 {
				return fmt.Errorf("node-less target %s scraped %d times", tg.URL(), counts[tg.URL()])
			}
		}
		for n, set := range own {
			if len(set) <= len(podsOn[n]) {
				return fmt.Errorf("%s got no node-less target (%d)", n, len(set))
			}
		}
		return nil
	})

	// Pods on a node without a member, behind a Service every member
	// discovers: nobody scrapes them, every member counts and shows them.
	remoteHost, err := e.bed.Netns(ctx)
	require.NoError(t, err)
	remote, err := remoteHost.AddTargets(ctx, "remote", 3, testbed.TargetOptions{NodeName: "node-d"})
	require.NoError(t, err)
	require.NoError(t, e.bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "nodes", Name: "remote", Labels: map[string]string{"app": "remote"}, Targets: remote, Pods: true}))
	_, err = e.bed.ApplyMonitoring(ctx, serviceMonitor("nodes", "remote"))
	require.NoError(t, err)
	eventually(t, 30*time.Second, "pods on node-d unowned, counted and shown", func(ctx context.Context) error {
		for n, r := range reps {
			v, ok, err := r.Metric(ctx, `promshard_sharding_targets_unowned{node="node-d"}`)
			if err != nil || !ok || v != 3 {
				return fmt.Errorf("%s: unowned{node-d} = %v (found %v, err %v)", n, v, ok, err)
			}
			page, err := r.Get(ctx, "/")
			if err != nil {
				return err
			}
			if !strings.Contains(string(page), "<tr><td>node-d</td><td>3</td></tr>") {
				return fmt.Errorf("%s: status page does not list node-d with 3 targets", n)
			}
		}
		own, err := owned(ctx, reps)
		if err != nil {
			return err
		}
		for n, set := range own {
			for _, tg := range remote {
				if set[tg.URL()] {
					return fmt.Errorf("%s scrapes %s on node-d, which it does not discover as a node-local member", n, tg.URL())
				}
			}
		}
		return nil
	})
}

func TestShardingWaitForSize(t *testing.T) {
	e := newShardEnv(t, "wait")
	lone := e.replica(t, "w1", "", "--cluster.wait-for-size=2", "--cluster.wait-timeout=1h")
	time.Sleep(3 * time.Second)
	ts, err := lone.Targets(context.Background())
	require.NoError(t, err)
	require.Empty(t, ts, "a lone member owned targets before the cluster reached its size")
	w2 := e.replica(t, "w2", lone.GossipAddr, "--cluster.wait-for-size=2", "--cluster.wait-timeout=1h")
	eventually(t, 30*time.Second, "both own targets once the size is reached",
		partitioned(e, map[string]*testbed.Promshard{"w1": lone, "w2": w2}, 1))

	// The timeout ends the wait of a member that stays alone.
	timed := e.replica(t, "w3", "", "--cluster.wait-for-size=5", "--cluster.wait-timeout=3s")
	eventually(t, 20*time.Second, "wait-timeout ends the wait", func(ctx context.Context) error {
		ts, err := timed.Targets(ctx)
		if err != nil || len(ts) != shardTargets {
			return fmt.Errorf("%d targets, err %v", len(ts), err)
		}
		return nil
	})
}

func TestShardingGossipKey(t *testing.T) {
	e := newShardEnv(t, "keys")
	dir := t.TempDir()
	key := func(name string, b byte) string {
		k := make([]byte, 32)
		for i := range k {
			k[i] = b + byte(i)
		}
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(k)), 0o600))
		return p
	}
	k1, k2 := key("k1", 1), key("k2", 100)
	r1 := e.replica(t, "k1", "", "--cluster.secret-key-file="+k1)
	r2 := e.replica(t, "k2", r1.GossipAddr, "--cluster.secret-key-file="+k1)
	intruder := e.replica(t, "k3", r1.GossipAddr, "--cluster.secret-key-file="+k2)
	eventually(t, 30*time.Second, "same-key members form a cluster", partitioned(e, map[string]*testbed.Promshard{"k1": r1, "k2": r2}, 1))
	time.Sleep(3 * time.Second)
	for _, r := range []*testbed.Promshard{r1, r2, intruder} {
		var resp struct {
			Data struct {
				Members []struct {
					Name  string `json:"name"`
					State string `json:"state"`
				} `json:"members"`
			} `json:"data"`
		}
		require.NoError(t, r.GetJSON(context.Background(), "/api/v1/cluster", &resp))
		var names []string
		for _, m := range resp.Data.Members {
			if m.State == "participant" || m.State == "joining" {
				names = append(names, m.Name)
			}
		}
		sort.Strings(names)
		if r == intruder {
			require.Equal(t, []string{"k3"}, names)
		} else {
			require.Equal(t, []string{"k1", "k2"}, names)
		}
	}
}
