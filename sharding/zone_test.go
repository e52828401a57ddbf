package sharding

import (
	"fmt"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/stretchr/testify/require"
)

// zonedMembers returns participants named z<zone>-<i>, perZone in each zone.
func zonedMembers(zones []string, perZone int) []Member {
	var out []Member
	for _, z := range zones {
		for i := range perZone {
			out = append(out, Member{Name: fmt.Sprintf("%s-%d", z, i), State: StateParticipant, Zone: z})
		}
	}
	return out
}

// zonedGroups returns n pod targets spread over zones (zone "" = none),
// the zone given by the EndpointSlice endpoint label.
func zonedGroups(n int, zones []string) map[string][]*targetgroup.Group {
	tsets := podGroups(n, noNode)
	for i, tl := range tsets[podJob][0].Targets {
		if z := zones[i%len(zones)]; z != "" {
			tl["__meta_kubernetes_endpointslice_endpoint_zone"] = model.LabelValue(z)
		}
	}
	return tsets
}

// zoneOwners runs one zone-strategy filter per member and returns, per pod
// name, its owners.
func zoneOwners(t testing.TB, members []Member, tsets map[string][]*targetgroup.Group, r int) (map[string][]string, map[string]Stats) {
	t.Helper()
	src := &testMembers{ready: true, changes: make(chan struct{}, 1), members: members}
	owners, stats := map[string][]string{}, map[string]Stats{}
	for _, m := range members {
		if m.State != StateParticipant {
			continue
		}
		f := newTestFilter(t, FilterOptions{Self: m.Name, Members: src, Strategy: StrategyZone, Zone: m.Zone, ReplicationFactor: r})
		for _, tl := range groupTargets(filterOnce(f, tsets)[podJob]) {
			pod := string(tl["__meta_kubernetes_pod_name"])
			owners[pod] = append(owners[pod], m.Name)
		}
		stats[m.Name] = f.Stats()
	}
	return owners, stats
}

func zoneOf(members []Member, name string) string {
	for _, m := range members {
		if m.Name == name {
			return m.Zone
		}
	}
	return ""
}

func TestFilterZoneStrategy(t *testing.T) {
	zones := []string{"a", "b", "c", ""} // zone c has no member, "" no zone
	tsets := zonedGroups(400, zones)
	members := zonedMembers([]string{"a", "b"}, 2)
	owners, stats := zoneOwners(t, members, tsets, 1)
	require.Len(t, owners, 400)
	spilled := map[string]int{}
	for i := range 400 {
		o := owners[fmt.Sprintf("app-%d", i)]
		require.Len(t, o, 1)
		switch z := zones[i%len(zones)]; z {
		case "a", "b":
			require.Equal(t, z, zoneOf(members, o[0]), "app-%d owned in its zone", i)
		default:
			spilled[zoneOf(members, o[0])]++
		}
	}
	require.Len(t, spilled, 2, "zone-less and member-less zone targets spill over both zones: %v", spilled)
	cross := 0
	for _, st := range stats {
		cross += st.CrossZone
	}
	require.Equal(t, 100, cross, "zone c targets are owned cross-zone, zone-less ones are not counted")

	// Zone b's members die: its targets spill over to zone a, and come back
	// when one member of b participates again.
	members[2].State, members[3].State = StateDead, StateDead
	owners, _ = zoneOwners(t, members, tsets, 1)
	require.Len(t, owners, 400)
	for i := 1; i < 400; i += 4 {
		require.Equal(t, "a", zoneOf(members, owners[fmt.Sprintf("app-%d", i)][0]))
	}
	members[3].State = StateParticipant
	owners, _ = zoneOwners(t, members, tsets, 1)
	for i := 1; i < 400; i += 4 {
		require.Equal(t, []string{"b-1"}, owners[fmt.Sprintf("app-%d", i)])
	}

	// R=2 with one member in zone b: the second copy comes from zone a.
	owners, _ = zoneOwners(t, members, tsets, 2)
	for i := 1; i < 400; i += 4 {
		o := owners[fmt.Sprintf("app-%d", i)]
		require.Len(t, o, 2)
		require.Contains(t, o, "b-1")
	}
}

// zoneMoved is the fraction of zone-a targets whose owner changes when the
// members of zone a change from before to after (zone b unchanged).
func zoneMoved(t testing.TB, tsets map[string][]*targetgroup.Group, before, after []Member) float64 {
	ob, _ := zoneOwners(t, before, tsets, 1)
	oa, _ := zoneOwners(t, after, tsets, 1)
	moved, inA := 0, 0
	for pod, o := range ob {
		if zoneOf(before, o[0]) != "a" {
			continue
		}
		inA++
		if oa[pod][0] != o[0] {
			moved++
		}
	}
	return float64(moved) / float64(inA)
}

func TestZoneMovedFraction(t *testing.T) {
	tsets := zonedGroups(6000, []string{"a", "b"})
	base := zonedMembers([]string{"a", "b"}, 3)
	joined := append(zonedMembers([]string{"a"}, 4), zonedMembers([]string{"b"}, 3)...)
	// A fourth member joins zone a: ~1/4 of zone a's targets move to it, zone
	// b's targets do not move at all.
	require.InDelta(t, 0.25, zoneMoved(t, tsets, base, joined), 0.05)
	ob, _ := zoneOwners(t, base, tsets, 1)
	oj, _ := zoneOwners(t, joined, tsets, 1)
	for pod, o := range ob {
		if zoneOf(base, o[0]) == "b" {
			require.Equal(t, o, oj[pod], "zone b target %s moved", pod)
		}
	}
	// It leaves again: the same fraction moves back.
	require.InDelta(t, 0.25, zoneMoved(t, tsets, joined, base), 0.05)
}

// BenchmarkZoneAssignment reports, for 6000 targets in 2 zones with 3
// members each: the fraction of zone a's targets that move when a member
// joins or leaves zone a (ideal 1/4 and 1/4), the balance within zone a
// (max/mean owned) and the recompute time of one member's filter on a
// membership change.
func BenchmarkZoneAssignment(b *testing.B) {
	tsets := zonedGroups(6000, []string{"a", "b"})
	base := zonedMembers([]string{"a", "b"}, 3)
	joined := append(zonedMembers([]string{"a"}, 4), zonedMembers([]string{"b"}, 3)...)
	b.Run("moved/join", func(b *testing.B) {
		var f float64
		for b.Loop() {
			f = zoneMoved(b, tsets, base, joined)
		}
		b.ReportMetric(f, "moved")
	})
	b.Run("moved/leave", func(b *testing.B) {
		var f float64
		for b.Loop() {
			f = zoneMoved(b, tsets, joined, base)
		}
		b.ReportMetric(f, "moved")
	})
	b.Run("balance", func(b *testing.B) {
		var ratio float64
		for b.Loop() {
			_, stats := zoneOwners(b, base, tsets, 1)
			maxOwned, sum := 0, 0
			for _, m := range base[:3] {
				n := stats[m.Name].Owned[m.Name]
				sum += n
				maxOwned = max(maxOwned, n)
			}
			ratio = float64(maxOwned) / (float64(sum) / 3)
		}
		b.ReportMetric(ratio, "max/mean")
	})
	b.Run("recompute/targets=100k/members=20", func(b *testing.B) {
		big := zonedGroups(100_000, []string{"a", "b", "c", ""})
		members := zonedMembers([]string{"a", "b"}, 10)
		src := &testMembers{ready: true, changes: make(chan struct{}, 1), members: members}
		f := newTestFilter(b, FilterOptions{Self: members[0].Name, Members: src, Strategy: StrategyZone, Zone: "a"})
		filterOnce(f, big)
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			st := StateParticipant
			if i%2 == 0 {
				st = StateDead
			}
			src.mtx.Lock()
			src.members[5].State = st
			src.mtx.Unlock()
			recomputeAll(f, false)
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/recompute")
	})
}
