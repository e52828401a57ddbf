package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/agent"
	"github.com/promshard/promshard/config"
	"github.com/promshard/promshard/discovery"
	"github.com/promshard/promshard/sharding"
)

// The members' report reaches the status writer per object, a stale
// member's objects with the time of its last answer, a member that never
// answered as missing.
func TestStatusHealth(t *testing.T) {
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	api := config.ObjectKey{Kind: config.KindServiceMonitor, Namespace: "a", Name: "api"}
	web := config.ObjectKey{Kind: config.KindPodMonitor, Namespace: "a", Name: "web"}
	for _, tc := range []struct {
		name string
		rep  agent.HealthReport
		want discovery.ClusterHealth
	}{
		{"empty", agent.HealthReport{}, discovery.ClusterHealth{Objects: map[config.ObjectKey]*discovery.TargetHealth{}}},
		{"stale and missing", agent.HealthReport{
			Objects: []agent.ClusterObjectHealth{
				{ObjectHealth: agent.ObjectHealth{Object: api.String(), Targets: 3, Up: 2, Down: "x:1 timeout"}, Stale: []string{"b"}},
				{ObjectHealth: agent.ObjectHealth{Object: web.String(), Targets: 1, Up: 1}},
				{ObjectHealth: agent.ObjectHealth{Object: "not-a-key", Targets: 1}},
			},
			Members: []agent.PeerHealthState{{Name: "b", Answered: t1, Stale: true}, {Name: "c", Stale: true}, {Name: "d", Answered: t1}},
		}, discovery.ClusterHealth{
			Objects: map[config.ObjectKey]*discovery.TargetHealth{
				api: {Targets: 3, Up: 2, Down: "x:1 timeout", Stale: []discovery.StaleCounts{{Member: "b", As: t1}}},
				web: {Targets: 1, Up: 1},
			},
			Missing: []string{"c"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, statusHealth(tc.rep))
		})
	}
}

func TestCapacityMessage(t *testing.T) {
	require.Empty(t, capacityMessage(sharding.Stats{MaxSeriesPerMember: 1000, MembersNeeded: 2, TotalSeries: 1500}))
	require.Equal(t, "series exceed --sharding.max-series-per-member=1000 on some member: 4 members needed for 3600 series",
		capacityMessage(sharding.Stats{OverLimit: true, MaxSeriesPerMember: 1000, MembersNeeded: 4, TotalSeries: 3600}))
}
