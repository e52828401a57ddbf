//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math"
	"net"
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

	"github.com/promshard/promshard/e2e/testbed"
)

// TestShardingOperations runs what a StatefulSet goes through every week on
// one bed with 3 replicas and 60 pod-backed targets at 2 s: a rolling
// restart, prometheus-operator's __tmp_hash and __tmp_disable_sharding
// conventions, an interval edit.
func TestShardingOperations(t *testing.T) {
	ctx := context.Background()
	bed := startBed(t)
	rcv, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	require.NoError(t, bed.CreateNamespace(ctx, "ops", nil))
	host, err := bed.Netns(ctx)
	require.NoError(t, err)
	targets, err := host.AddTargets(ctx, "ops-fleet", 60, testbed.TargetOptions{})
	require.NoError(t, err)
	require.NoError(t, bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "ops", Name: "fleet", Labels: map[string]string{"app": "fleet"}, Targets: targets, Pods: true}))
	fleet := serviceMonitor("ops", "fleet")
	fleet.Spec.Endpoints[0].Interval = "2s"
	_, err = bed.ApplyMonitoring(ctx, fleet)
	require.NoError(t, err)

	e := &shardEnv{bed: bed, rcv: rcv, targets: targets}
	// Every member joins every member, as through a StatefulSet's headless
	// Service: a restarted member finds its peers whatever its rank.
	var peers []string
	for i := range 3 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", 31+i))
		require.NoError(t, err)
		peers = append(peers, ln.Addr().String())
		require.NoError(t, ln.Close())
	}
	reps := map[string]*testbed.Promshard{}
	for i, name := range []string{"r1", "r2", "r3"} {
		_, port, _ := net.SplitHostPort(peers[i])
		gp, _ := strconv.Atoi(port)
		args := []string{"--remote-write.url=" + rcv.WriteURL(), "--scrape.interval=1s", "--remote-write.batch-send-deadline=250ms"}
		for _, p := range peers {
			args = append(args, "--cluster.join="+p)
		}
		reps[name] = startPromshard(t, bed, testbed.PromshardOptions{Name: name, IP: fmt.Sprintf("127.0.0.%d", 31+i), Gossip: true, GossipPort: gp, Args: args})
	}
	r1, r2, r3 := reps["r1"], reps["r2"], reps["r3"]
	eventually(t, 60*time.Second, "3 replicas split the targets", partitioned(e, reps, 1))
	eventually(t, 30*time.Second, "every member participant", allParticipants(reps))

	t.Run("rolling restart misses at most 2 scrapes", func(t *testing.T) {
		eventually(t, 30*time.Second, "one up series per target", queryCount(rcv, `up{namespace="ops",service="fleet"} == 1`, 60))
		from := time.Now()
		for _, r := range []*testbed.Promshard{r3, r2, r1} {
			r.Signal(syscall.SIGTERM)
			require.Equal(t, 0, r.Wait(60*time.Second), "clean exit")
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			require.NoError(t, r.Restart(rctx), "restart and wait for /-/ready")
			cancel()
		}
		eventually(t, 30*time.Second, "every target has exactly one owner after the rollout", partitioned(e, reps, 1))
		to := time.Now()
		// Remote write batches for up to 5 s: wait until every series has
		// a sample after the rollout.
		eventually(t, 30*time.Second, "samples after the rollout delivered",
			queryCount(rcv, fmt.Sprintf(`timestamp(up{namespace="ops",service="fleet"}) > %d`, to.Unix()+1), 60))
		worst := maxMissedScrapes(t, rcv, `up{namespace="ops",service="fleet"}`, 60, from, to, 2*time.Second)
		fmt.Printf("e2e: rolling restart over %.1fs: worst target missed %d scrapes\n", to.Sub(from).Seconds(), worst)
		require.LessOrEqual(t, worst, 2)
	})

	t.Run("__tmp_disable_sharding and __tmp_hash", func(t *testing.T) {
		require.NoError(t, bed.CreateNamespace(ctx, "ops-conv", nil))
		conv, err := bed.Netns(ctx)
		require.NoError(t, err)
		everywhere, err := conv.AddTargets(ctx, "ops-everywhere", 2, testbed.TargetOptions{Port: 8081})
		require.NoError(t, err)
		pods, err := conv.AddTargets(ctx, "ops-pods", 12, testbed.TargetOptions{})
		require.NoError(t, err)
		require.NoError(t, bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "ops-conv", Name: "everywhere", Labels: map[string]string{"app": "everywhere"}, Targets: everywhere}))
		require.NoError(t, bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "ops-conv", Name: "pods", Labels: map[string]string{"app": "pods"}, Targets: pods, Pods: true}))
		_, err = bed.ApplyMonitoring(ctx, serviceMonitor("ops-conv", "everywhere", setLabel("__tmp_disable_sharding", "true")))
		require.NoError(t, err)
		byPod := monitoringv1.RelabelConfig{SourceLabels: []monitoringv1.LabelName{"__meta_kubernetes_pod_name"}, TargetLabel: "__tmp_hash"}
		podsMon := serviceMonitor("ops-conv", "pods", byPod)
		// A second endpoint on the same port: a second job, same pods.
		podsMon.Spec.Endpoints = append(podsMon.Spec.Endpoints, monitoringv1.Endpoint{Port: "metrics", Interval: "1s",
			Params: map[string][]string{"copy": {"2"}}, RelabelConfigs: []monitoringv1.RelabelConfig{byPod}})
		_, err = bed.ApplyMonitoring(ctx, podsMon)
		require.NoError(t, err)

		eventually(t, 30*time.Second, "every member scrapes the __tmp_disable_sharding targets, each copy labelled",
			queryCount(rcv, `up{namespace="ops-conv",service="everywhere",promshard_replica=~"r1|r2|r3"} == 1`, 6))
		v, err := rcv.Query(ctx, `count by (instance) (up{namespace="ops-conv",service="everywhere"})`, time.Now())
		require.NoError(t, err)
		require.Len(t, v, 2)
		for _, s := range v {
			require.EqualValues(t, 3, s.Value, "three copies of %s", s.Metric)
		}
		eventually(t, 30*time.Second, "all endpoints of a pod on one member", func(ctx context.Context) error {
			owners := map[string]map[string]bool{} // pod IP → members
			n := 0
			err := eachTarget(ctx, reps, func(name string, tg testbed.ActiveTarget) error {
				if strings.Contains(tg.ScrapePool, "ops-conv/pods/") {
					ip := strings.Split(tg.Labels["instance"], ":")[0]
					if owners[ip] == nil {
						owners[ip] = map[string]bool{}
					}
					owners[ip][name] = true
					n++
				}
				return nil
			})
			if err != nil {
				return err
			}
			if n != 24 || len(owners) != 12 {
				return fmt.Errorf("%d targets of %d pods owned, want 24 of 12", n, len(owners))
			}
			members := map[string]bool{}
			for ip, o := range owners {
				if len(o) != 1 {
					return fmt.Errorf("pod %s split over %v", ip, o)
				}
				for m := range o {
					members[m] = true
				}
			}
			if len(members) < 2 {
				return fmt.Errorf("all pods on %v: not sharded", members)
			}
			return nil
		})
		for _, obj := range []*monitoringv1.ServiceMonitor{serviceMonitor("ops-conv", "everywhere"), podsMon} {
			gvr, err := testbed.MonitoringGVR(obj)
			require.NoError(t, err)
			require.NoError(t, bed.Dynamic.Resource(gvr).Namespace(obj.Namespace).Delete(ctx, obj.Name, metav1.DeleteOptions{}))
		}
		eventually(t, 30*time.Second, "only the fleet is left", partitioned(e, reps, 1))
	})

	t.Run("interval edit moves no target", func(t *testing.T) {
		before, err := owned(ctx, reps)
		require.NoError(t, err)
		fleet.Spec.Endpoints[0].Interval = "3s"
		_, err = bed.ApplyMonitoring(ctx, fleet)
		require.NoError(t, err)
		eventually(t, 30*time.Second, "every target scraped at 3s", func(ctx context.Context) error {
			n := 0
			err := eachTarget(ctx, reps, func(name string, tg testbed.ActiveTarget) error {
				if iv := tg.DiscoveredLabels[model.ScrapeIntervalLabel]; iv != "3s" {
					return fmt.Errorf("%s: %s still at %q", name, tg.ScrapeURL, iv)
				}
				n++
				return nil
			})
			if err != nil {
				return err
			}
			if n != 60 {
				return fmt.Errorf("%d targets owned, want 60", n)
			}
			return nil
		})
		// Every member recomputed with the new configuration: watch the
		// owners for a few seconds.
		moved := 0
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			after, err := owned(ctx, reps)
			require.NoError(t, err)
			for name, set := range after {
				for u := range set {
					if !before[name][u] {
						moved++
					}
				}
			}
			require.Zero(t, moved, "owners before %v, after %v", sizes(before), sizes(after))
		}
		fmt.Printf("e2e: interval 2s -> 3s moved %d of 60 targets\n", moved)
	})
}

// eachTarget calls fn with every active target of every replica.
func eachTarget(ctx context.Context, reps map[string]*testbed.Promshard, fn func(name string, tg testbed.ActiveTarget) error) error {
	for name, r := range reps {
		ts, err := r.Targets(ctx)
		if err != nil {
			return err
		}
		for _, tg := range ts {
			if err := fn(name, tg); err != nil {
				return err
			}
		}
	}
	return nil
}

// allParticipants holds when every replica sees every replica as participant.
func allParticipants(reps map[string]*testbed.Promshard) func(context.Context) error {
	return func(ctx context.Context) error {
		for name, r := range reps {
			var resp struct {
				Data struct {
					Members []struct {
						Name  string `json:"name"`
						State string `json:"state"`
					} `json:"members"`
				} `json:"data"`
			}
			if err := r.GetJSON(ctx, "/api/v1/cluster", &resp); err != nil {
				return err
			}
			n := 0
			for _, m := range resp.Data.Members {
				if reps[m.Name] != nil && m.State == "participant" {
					n++
				}
			}
			if n != len(reps) {
				return fmt.Errorf("%s sees %d participants: %+v", name, n, resp.Data.Members)
			}
		}
		return nil
	}
}

// maxMissedScrapes returns the most scrapes any of the series of selector
// (there must be exactly series of them) missed between from and to at the
// receiver: from its raw samples, a gap of k intervals is k-1 missed scrapes
// (the window's edges count as samples).
func maxMissedScrapes(t *testing.T, rcv *testbed.Receiver, selector string, series int, from, to time.Time, interval time.Duration) int {
	t.Helper()
	window := int(math.Ceil(to.Sub(from).Seconds()))
	raw, _, _, err := rcv.API().Query(context.Background(), fmt.Sprintf(`%s[%ds]`, selector, window), to)
	require.NoError(t, err)
	mat, ok := raw.(model.Matrix)
	require.True(t, ok)
	require.Len(t, mat, series, "a series without any sample over the window missed every scrape")
	worst := 0
	var report []string
	for _, s := range mat {
		prev := model.TimeFromUnixNano(from.UnixNano())
		for _, p := range append(s.Values, model.SamplePair{Timestamp: model.TimeFromUnixNano(to.UnixNano())}) {
			missed := int(math.Round(float64(p.Timestamp.Sub(prev))/float64(interval))) - 1
			if missed > worst {
				worst = missed
			}
			if missed > 0 {
				report = append(report, fmt.Sprintf("%s missed %d at %s", s.Metric["instance"], missed, prev.Time().Format("15:04:05.000")))
			}
			prev = p.Timestamp
		}
	}
	sort.Strings(report)
	t.Logf("%d series; gaps: %v", len(mat), report)
	return worst
}
