package sharding

import (
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// emptyGroups are the groups without targets the filter outputs for a
// discovered group of which a job owns nothing: one per discovered group,
// shared by every job reading it (with prometheus-operator's configurations
// every job of a namespace reads all of its groups, and a member owns few
// of their targets), instead of one per job and group. Output groups are
// never modified, so sharing them is safe. Owned by Run.
type emptyGroups struct {
	byInput map[*targetgroup.Group]*targetgroup.Group
	// limit is the size at which entries for discovered groups no
	// prepared job holds any more are dropped.
	limit int
}

// minEmptyLimit is the smallest emptyGroups.limit.
const minEmptyLimit = 1024

// emptyGroup returns the output group for tg when a job owns none of its
// targets: tg's source and labels, no targets.
func (f *Filter) emptyGroup(tg *targetgroup.Group) *targetgroup.Group {
	e := &f.empty
	if g := e.byInput[tg]; g != nil {
		return g
	}
	if len(e.byInput) >= e.limit {
		f.pruneEmpty()
	}
	g := &targetgroup.Group{Source: tg.Source, Labels: tg.Labels, Targets: []model.LabelSet{}}
	e.byInput[tg] = g
	return g
}

// pruneEmpty keeps the empty groups of the discovered groups that a
// prepared job still holds; the limit doubles what is left, so pruning
// costs amortized constant time per new group.
func (f *Filter) pruneEmpty() {
	e := &f.empty
	live := make(map[*targetgroup.Group]*targetgroup.Group, len(e.byInput)/2)
	for _, pj := range f.prepared {
		for _, pg := range pj.groups {
			if g := e.byInput[pg.tg]; g != nil {
				live[pg.tg] = g
			}
		}
	}
	e.byInput, e.limit = live, max(2*len(live), minEmptyLimit)
}
