package sharding

import (
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// groupShares hold what the filter derives from a discovered group for
// every job reading it (with prometheus-operator's configurations every
// job of a namespace reads all of its groups): the group without targets
// it outputs for a job owning none of the group's targets, and the
// fingerprints of the targets' discovered labels, from which the key of a
// relabel-dropped target is derived per job (see reportedDropped). Each is
// made when first needed, once per discovered group instead of once per
// job and group. Output groups are never modified, so sharing them is
// safe. Owned by Run.
type groupShares struct {
	byInput map[*targetgroup.Group]*groupShare
	// limit is the size at which entries for discovered groups no
	// prepared job holds any more are dropped.
	limit int
}

// groupShare is what the filter derives from one discovered group, tg.
type groupShare struct {
	// empty is tg's source and labels without targets; its Targets are
	// nil until it is made.
	empty targetgroup.Group
	// fps are, per target of tg, the fingerprint of its discovered labels
	// (discoveredFingerprint); nil until needed.
	fps []uint64
}

// minEmptyLimit is the smallest groupShares.limit.
const minEmptyLimit = 1024

// share returns tg's groupShare.
func (f *Filter) share(tg *targetgroup.Group) *groupShare {
	e := &f.empty
	if s := e.byInput[tg]; s != nil {
		return s
	}
	if len(e.byInput) >= e.limit {
		f.pruneEmpty()
	}
	s := &groupShare{}
	e.byInput[tg] = s
	return s
}

// emptyGroup returns the output group for tg, s's group, when a job owns
// none of its targets: tg's source and labels, no targets.
func (s *groupShare) emptyGroup(tg *targetgroup.Group) *targetgroup.Group {
	if s.empty.Targets == nil {
		s.empty = targetgroup.Group{Source: tg.Source, Labels: tg.Labels, Targets: []model.LabelSet{}}
	}
	return &s.empty
}

// fingerprints returns the fingerprints of the discovered labels of the
// targets of tg, s's group.
func (s *groupShare) fingerprints(tg *targetgroup.Group) []uint64 {
	if s.fps == nil || len(s.fps) != len(tg.Targets) {
		s.fps = make([]uint64, len(tg.Targets))
		for i, tl := range tg.Targets {
			s.fps[i] = discoveredFingerprint(tl, tg.Labels)
		}
	}
	return s.fps
}

// pruneEmpty keeps the shares of the discovered groups that a prepared job
// still holds; the limit doubles what is left, so pruning costs amortized
// constant time per new group.
func (f *Filter) pruneEmpty() {
	e := &f.empty
	live := make(map[*targetgroup.Group]*groupShare, len(e.byInput)/2)
	for _, pj := range f.prepared {
		for _, tg := range pj.src {
			if s := e.byInput[tg]; s != nil {
				live[tg] = s
			}
		}
	}
	e.byInput, e.limit = live, max(2*len(live), minEmptyLimit)
}
