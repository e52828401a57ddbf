package sharding

import (
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/stretchr/testify/require"
)

// The jobs owning none of a discovered group's targets share one empty
// output group for it; a job owning some gets its own. Empty groups of
// discovered groups no job holds any more are dropped when the table fills.
func TestFilterSharesEmptyGroups(t *testing.T) {
	scs, err := loadScrapeConfigs("scrape_configs:\n- job_name: a\n- job_name: b\n")
	require.NoError(t, err)
	group := func(source string, n int) *targetgroup.Group {
		tg := &targetgroup.Group{Source: source, Labels: model.LabelSet{"g": model.LabelValue(source)}}
		for i := range n {
			tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(source + ":" + string(rune('0'+i)))})
		}
		return tg
	}
	for _, tc := range []struct {
		name   string
		owns   bool
		shared bool
	}{
		{"owning nothing: shared", false, true},
		{"owning everything: own groups", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			members := newTestMembers("other")
			self := Member{Name: "self", State: StateJoining, KeyVersion: LatestKeyVersion}
			if tc.owns {
				members = newTestMembers("self")
			} else {
				members.members = append(members.members, self)
			}
			f, err := NewFilter(FilterOptions{Self: "self", Members: members})
			require.NoError(t, err)
			f.SetScrapeConfigs(scs)
			g1, g2 := group("s1", 3), group("s2", 2)
			out := filterOnce(f, map[string][]*targetgroup.Group{"a": {g1, g2}, "b": {g2, g1}})
			require.Len(t, out["a"], 2)
			require.Len(t, out["b"], 2)
			require.Equal(t, tc.shared, out["a"][0] == out["b"][1])
			require.Equal(t, tc.shared, out["a"][1] == out["b"][0])
			for _, g := range append(out["a"], out["b"]...) {
				require.Equal(t, model.LabelSet{"g": model.LabelValue(g.Source)}, g.Labels)
				require.NotNil(t, g.Targets, "an empty group has an empty, non-nil target list")
				if tc.owns {
					require.NotEmpty(t, g.Targets)
				} else {
					require.Empty(t, g.Targets)
				}
			}
			if tc.owns {
				return
			}
			// g1 is gone from the input: its empty group goes at the
			// next prune, g2's stays.
			filterOnce(f, map[string][]*targetgroup.Group{"a": {g2}, "b": {g2}})
			require.Len(t, f.empty.byInput, 2)
			f.pruneEmpty()
			require.Len(t, f.empty.byInput, 1)
			require.NotNil(t, f.empty.byInput[g2])
			require.Equal(t, minEmptyLimit, f.empty.limit)
		})
	}
}
