package sharding

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// BenchmarkFilterRecompute measures the filter on 100k discovered pod
// targets and 20 members: "membership" is the re-filter on a membership
// change (hashing only, relabeling cached), "discovery" includes relabeling
// every target as on new discovery input.
func BenchmarkFilterRecompute(b *testing.B) {
	names := memberNames(20)
	tsets := podGroups(100_000, noNode)
	for _, tc := range []struct {
		name      string
		reprepare bool
	}{{"membership", false}, {"discovery", true}} {
		b.Run(fmt.Sprintf("%s/targets=100k/members=20", tc.name), func(b *testing.B) {
			members := newTestMembers(names...)
			f := newTestFilter(b, FilterOptions{Self: names[0], Members: members})
			filterOnce(f, tsets)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				// Alternate the member set so ownership really changes.
				if i%2 == 0 {
					members.set(names[:19]...)
				} else {
					members.set(names...)
				}
				if tc.reprepare {
					// New group values, as after a discovery update: all
					// targets are relabeled again.
					f.last = map[string][]*targetgroup.Group{}
					for job, groups := range tsets {
						for _, g := range groups {
							cp := *g
							f.last[job] = append(f.last[job], &cp)
						}
					}
				}
				f.recompute(tc.reprepare)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/recompute")
		})
	}
}

// ExampleFilter wires a standalone member's filter between a discovery
// channel and a scrape channel, as the agent does with
// discovery.Manager.SyncCh() and scrape.Manager.Run().
func ExampleFilter() {
	cluster, err := NewCluster(ClusterConfig{NodeName: "promshard-0"}, promslog.NewNopLogger(), prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	f, err := NewFilter(FilterOptions{Self: cluster.Self(), Members: cluster})
	if err != nil {
		panic(err)
	}
	// A member owns targets once it participates: in promshard after its
	// informers synced, its configuration was applied and f.Primed().
	cluster.Participate()
	cfgs, err := loadScrapeConfigs(testConfig)
	if err != nil {
		panic(err)
	}
	f.SetScrapeConfigs(cfgs)

	in := make(chan map[string][]*targetgroup.Group)
	out := make(chan map[string][]*targetgroup.Group)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx, in, out) }()

	in <- podGroups(10, noNode)
	owned := <-out
	fmt.Println(len(owned), len(owned[podJob][0].Targets), f.Stats().TotalTargets)
	cancel()
	fmt.Println(<-done)
	// Output:
	// 2 10 11
	// <nil>
}
