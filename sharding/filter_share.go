package sharding

import "github.com/prometheus/prometheus/discovery/targetgroup"

// groupShares hold what the filter derives from a discovered group for
// every job reading it (with prometheus-operator's configurations every
// job of a namespace reads all of its groups): the fingerprints of the
// targets' discovered labels, from which the key of a relabel-dropped
// target is derived per job (see reportedDropped). Each is made when first
// needed, once per discovered group instead of once per job and group.
// Owned by Run.
type groupShares struct {
	byInput map[*targetgroup.Group]*groupShare
	// limit is the size at which entries for discovered groups no
	// prepared job holds any more are dropped.
	limit int
}

// groupShare is what the filter derives from one discovered group.
type groupShare struct {
	// fps are, per target of the group, the fingerprint of its discovered
	// labels (discoveredFingerprint); nil until needed.
	fps []uint64
}

// minShareLimit is the smallest groupShares.limit.
const minShareLimit = 1024

// share returns tg's groupShare.
func (f *Filter) share(tg *targetgroup.Group) *groupShare {
	e := &f.shares
	if s := e.byInput[tg]; s != nil {
		return s
	}
	if len(e.byInput) >= e.limit {
		f.pruneShares()
	}
	s := &groupShare{}
	e.byInput[tg] = s
	return s
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

// pruneShares keeps the shares of the discovered groups that a prepared job
// still holds; the limit doubles what is left, so pruning costs amortized
// constant time per new group.
func (f *Filter) pruneShares() {
	e := &f.shares
	live := make(map[*targetgroup.Group]*groupShare, len(e.byInput)/2)
	for _, pj := range f.prepared {
		for _, tg := range pj.src {
			if s := e.byInput[tg]; s != nil {
				live[tg] = s
			}
		}
	}
	e.byInput, e.limit = live, max(2*len(live), minShareLimit)
}
