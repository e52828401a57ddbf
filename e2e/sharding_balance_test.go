//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/e2e/testbed"
)

// TestShardingBalanceSeries: 60 targets of 1,000, 200 and 20 series (6, 12
// and 42 of them) behind one ServiceMonitor, replicas balancing series: at
// 3 replicas and after a 4th joined, every target has exactly one owner and
// the series per replica are within 1.15 of the mean; the join moves at
// most 35% of the series.
func TestShardingBalanceSeries(t *testing.T) {
	ctx := context.Background()
	const ns, name = "balance", "sized"
	e := &shardEnv{bed: startBed(t), nextIP: 10}
	var err error
	e.rcv, err = e.bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	require.NoError(t, e.bed.CreateNamespace(ctx, ns, nil))
	host, err := e.bed.Netns(ctx)
	require.NoError(t, err)
	// What each target writes, by scrape URL: its series and the scrape
	// loop's 5 report series (up, scrape_duration_seconds, ...).
	series := map[string]int{}
	for _, c := range []struct{ n, series int }{{6, 1000}, {12, 200}, {42, 20}} {
		ts, err := host.AddTargets(ctx, fmt.Sprintf("%s-%d", name, c.series), c.n, testbed.TargetOptions{Series: c.series})
		require.NoError(t, err)
		for _, tg := range ts {
			series[tg.URL()] = c.series + 5
		}
		e.targets = append(e.targets, ts...)
	}
	require.NoError(t, e.bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: ns, Name: name, Labels: map[string]string{"app": name}, Targets: e.targets}))
	_, err = e.bed.ApplyMonitoring(ctx, serviceMonitor(ns, name))
	require.NoError(t, err)

	balanced := func(reps map[string]*testbed.Promshard, own *map[string]map[string]bool) func(context.Context) error {
		part := partitioned(e, reps, 1)
		return func(ctx context.Context) error {
			if err := part(ctx); err != nil {
				return err
			}
			o, err := owned(ctx, reps)
			if err != nil {
				return err
			}
			load, total, most := map[string]int{}, 0, 0
			for r, set := range o {
				for u := range set {
					load[r] += series[u]
					total += series[u]
				}
				most = max(most, load[r])
			}
			if ratio := float64(most) / (float64(total) / float64(len(reps))); ratio > 1.15 {
				return fmt.Errorf("series per replica %v: max/mean %.3f", load, ratio)
			}
			if !reflect.DeepEqual(*own, o) {
				t.Logf("series per replica %v", load)
			}
			*own = o
			return nil
		}
	}
	flag := "--sharding.balance=series"
	r1 := e.replica(t, "r1", "", flag)
	r2 := e.replica(t, "r2", r1.GossipAddr, flag)
	r3 := e.replica(t, "r3", r1.GossipAddr, flag)
	reps := map[string]*testbed.Promshard{"r1": r1, "r2": r2, "r3": r3}
	// steady holds once the replicas balance the series and owned the same
	// targets steadyFor earlier: the weights converged and nothing
	// oscillates.
	const steadyFor = 30 * time.Second
	steady := func(reps map[string]*testbed.Promshard, own *map[string]map[string]bool) func(context.Context) error {
		bal := balanced(reps, own)
		var last map[string]map[string]bool
		var lastAt time.Time
		return func(ctx context.Context) error {
			if err := bal(ctx); err != nil {
				return err
			}
			switch {
			case last == nil || !reflect.DeepEqual(last, *own):
				last, lastAt = *own, time.Now()
				return errors.New("ownership changed")
			case time.Since(lastAt) < steadyFor:
				return fmt.Errorf("ownership unchanged for less than %s", steadyFor)
			}
			return nil
		}
	}
	var before, after map[string]map[string]bool
	eventually(t, 120*time.Second, "3 replicas balance the series, steadily", steady(reps, &before))
	reps["r4"] = e.replica(t, "r4", r1.GossipAddr, flag)
	eventually(t, 120*time.Second, "4 replicas balance the series, steadily", steady(reps, &after))
	ownerBefore := map[string]string{}
	for r, set := range before {
		for u := range set {
			ownerBefore[u] = r
		}
	}
	moved, total := 0, 0
	for r, set := range after {
		for u := range set {
			total += series[u]
			if ownerBefore[u] != r {
				moved += series[u]
			}
		}
	}
	share := float64(moved) / float64(total)
	fmt.Printf("e2e: balancing series, the 4th replica's join moved %.1f%% of the series\n", 100*share)
	t.Logf("join moved %.1f%% of the series", 100*share)
	require.LessOrEqual(t, share, 0.35)
}
