package sharding

import (
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/stretchr/testify/require"
)

// A job's output lists only the groups with a target this member owns: a
// job owning nothing gets the shared empty list (no slot or group per job
// and discovered group), a job owning some of a group's targets gets that
// group with them. The fingerprints of discovered groups (for reporting
// relabel-dropped targets) are shared by the jobs reading them and dropped
// for groups no job holds any more when the table fills.
func TestFilterOutputsOwnedGroupsOnly(t *testing.T) {
	// Job a keeps every target, job b only those of s1: s2's are
	// relabel-dropped in b, so its participants need their fingerprints.
	scs, err := loadScrapeConfigs(`scrape_configs:
- job_name: a
- job_name: b
  relabel_configs:
  - source_labels: [g]
    regex: s1
    action: keep
`)
	require.NoError(t, err)
	group := func(source string, n int) *targetgroup.Group {
		tg := &targetgroup.Group{Source: source, Labels: model.LabelSet{"g": model.LabelValue(source)}}
		for i := range n {
			tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(source + ":" + string(rune('0'+i)))})
		}
		return tg
	}
	for _, tc := range []struct {
		name  string
		state MemberState
		owns  bool
	}{
		{"joining: owns nothing", StateJoining, false},
		{"only participant: owns everything", StateParticipant, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			members := newTestMembers("other")
			self := Member{Name: "self", State: tc.state, KeyVersion: LatestKeyVersion}
			if tc.owns {
				members = newTestMembers()
			}
			members.members = append(members.members, self)
			f, err := NewFilter(FilterOptions{Self: "self", Members: members})
			require.NoError(t, err)
			f.SetScrapeConfigs(scs)
			g1, g2 := group("s1", 3), group("s2", 2)
			in := map[string][]*targetgroup.Group{"a": {g1, g2}, "b": {g2, g1}}
			out := filterOnce(f, in)
			require.Len(t, out, 2, "every job is sent")
			for job, groups := range out {
				requireOwnedGroups(t, in[job], groups)
			}
			if !tc.owns {
				require.Empty(t, out["a"])
				require.Empty(t, out["b"])
				require.Empty(t, f.shares.byInput, "a member that reports no dropped target derives nothing per group")
				return
			}
			require.Equal(t, 5, ownedCount(out["a"]))
			require.Equal(t, []*targetgroup.Group{out["b"][0]}, out["b"], "b owns s1's targets only")
			require.Equal(t, "s1", out["b"][0].Source)
			dropped, _ := f.DroppedTargets()
			require.Len(t, dropped["b"], 2, "s2's targets, dropped in b, are reported")
			// Job b's s2 has relabel-dropped targets: its fingerprints
			// are shared. g2 gone from the input: they go at the next
			// prune.
			require.Len(t, f.shares.byInput, 1)
			require.NotNil(t, f.shares.byInput[g2])
			g3 := group("s3", 1)
			filterOnce(f, map[string][]*targetgroup.Group{"a": {g1}, "b": {g3}})
			require.Len(t, f.shares.byInput, 2)
			f.pruneShares()
			require.Len(t, f.shares.byInput, 1)
			require.NotNil(t, f.shares.byInput[g3])
			require.Equal(t, minShareLimit, f.shares.limit)
		})
	}
}
