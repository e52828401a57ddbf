//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/e2e/testbed"
)

// TestTrimmedDiscoveredLabels: with --discovery.trim-labels (the default)
// a target's discovered labels hold only the __meta_* labels its job's
// relabeling reads. A monitor edit that starts reading a Service label
// nobody read before (targetLabels) relists the shared discovery: the
// edited job's series get the label, and the other monitor's target, whose
// group the relist sends again, misses no scrape.
func TestTrimmedDiscoveredLabels(t *testing.T) {
	ctx := context.Background()
	bed := startBed(t)
	rcv, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	const ns = "trim"
	require.NoError(t, bed.CreateNamespace(ctx, ns, nil))
	host, err := bed.Netns(ctx)
	require.NoError(t, err)
	for _, name := range []string{"a", "b"} {
		ts, err := host.AddTargets(ctx, ns+"-"+name, 1, testbed.TargetOptions{})
		require.NoError(t, err)
		require.NoError(t, bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: ns, Name: name,
			Labels: map[string]string{"app": name, "team": "red"}, Targets: ts}))
		_, err = bed.ApplyMonitoring(ctx, serviceMonitor(ns, name))
		require.NoError(t, err)
	}
	ps := startPromshard(t, bed, testbed.PromshardOptions{Name: "trim", Args: []string{"--remote-write.url=" + rcv.WriteURL()}})
	eventually(t, 30*time.Second, "both targets at the receiver", queryCount(rcv, `up{namespace="trim"} == 1`, 2))

	const teamLabel = "__meta_kubernetes_service_label_team"
	discovered := func(pool, label string, want bool) func(context.Context) error {
		return func(ctx context.Context) error {
			ts, err := poolTargets(ctx, ps, pool)
			if err != nil {
				return err
			}
			if len(ts) != 1 {
				return fmt.Errorf("pool %s has %d targets", pool, len(ts))
			}
			dl := ts[0].DiscoveredLabels
			if dl["__meta_kubernetes_service_name"] == "" || dl["__address__"] == "" {
				return fmt.Errorf("labels relabeling reads are missing: %v", dl)
			}
			if _, ok := dl[label]; ok != want {
				return fmt.Errorf("pool %s: %s present %v, want %v: %v", pool, label, ok, want, dl)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "an unread label is trimmed", discovered("serviceMonitor/trim/a/0", teamLabel, false))
	require.NoError(t, discovered("serviceMonitor/trim/a/0", "__meta_kubernetes_endpointslice_endpoint_conditions_serving", false)(ctx))

	editAt := time.Now()
	sm := serviceMonitor(ns, "a")
	sm.Spec.TargetLabels = []string{"team"}
	_, err = bed.ApplyMonitoring(ctx, sm)
	require.NoError(t, err)
	eventually(t, 30*time.Second, "the edited job's series carry the Service label", queryCount(rcv, `up{namespace="trim",service="a",team="red"} == 1`, 1))
	t.Logf("label at the receiver %.2fs after the edit", time.Since(editAt).Seconds())
	eventually(t, 10*time.Second, "the label is discovered", discovered("serviceMonitor/trim/a/0", teamLabel, true))
	relists, _, err := ps.Metric(ctx, "promshard_discovery_relists_total")
	require.NoError(t, err)
	require.Equal(t, 1.0, relists, "one relist for the edit")

	// b's group was sent again by the relist: its target kept being scraped.
	to := time.Now()
	eventually(t, 10*time.Second, "a scrape of b after the window", queryCount(rcv,
		fmt.Sprintf(`timestamp(up{namespace="trim",service="b"}) > %d`, to.Unix()+1), 1))
	worst := maxMissedScrapes(t, rcv, `up{namespace="trim",service="b"}`, 1, editAt.Add(-2*time.Second), to.Add(-time.Second), time.Second)
	require.LessOrEqual(t, worst, 1, "b's target missed scrapes over the relist")
}
