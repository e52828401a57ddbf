package agent

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// fanout is the stage between discovery.Manager.SyncCh, which sends the
// target groups of every shared discovery set (sdshare.go), and the
// ownership filter, which takes target groups per job.
//
// It passes on changes, as TargetFilter.RunChanges takes them: each message
// names only the jobs whose groups changed since the previous message, and
// maps a job to nil once it is gone; a job appears once every set it reads
// was delivered by discovery. Work is proportional to the change: a set's
// groups are compared with the last ones by pointer (the discovery manager
// passes a provider's group on until the provider sends a new one), and
// only the jobs reading a changed group's namespace (or the whole set) are
// rebuilt and, if their groups differ, sent with a new slice. Nothing is
// sent when no job changed.
type fanout struct {
	mtx     sync.Mutex
	pending map[string][]jobSource // sources changed since run took them (nil: job gone); guarded by mtx
	changed chan struct{}

	// Owned by run.
	sets  map[string]*fanoutSet
	cur   map[string][]jobSource                    // every job's sources
	index map[string]map[string]map[string]struct{} // set -> namespace ("": all) -> jobs
	jobs  map[string][]*targetgroup.Group           // last slice per built job
}

// fanoutSet is the last delivered state of one shared set.
type fanoutSet struct {
	bySource map[string]*targetgroup.Group
	byNS     map[string]map[string]*targetgroup.Group // namespace label -> source -> group
}

func newFanout() *fanout {
	return &fanout{changed: make(chan struct{}, 1), sets: map[string]*fanoutSet{}, cur: map[string][]jobSource{},
		index: map[string]map[string]map[string]struct{}{}, jobs: map[string][]*targetgroup.Group{}}
}

// setSources changes the sources of the jobs in changes (nil: the job is
// gone) and makes run send again. The map is not kept.
func (f *fanout) setSources(changes map[string][]jobSource) {
	f.mtx.Lock()
	if f.pending == nil {
		f.pending = make(map[string][]jobSource, len(changes))
	}
	maps.Copy(f.pending, changes)
	f.mtx.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *fanout) run(ctx context.Context, in <-chan map[string][]*targetgroup.Group, out chan<- map[string][]*targetgroup.Group) {
	seen := false
	for {
		var dirty map[string]map[string]bool // set -> changed namespaces ("" without one); nil map value: whole set
		select {
		case <-ctx.Done():
			return
		case tsets, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			seen = true
			dirty = f.update(tsets)
		case <-f.changed:
		}
		if !seen {
			continue
		}
		f.mtx.Lock()
		changes := f.pending
		f.pending = nil
		f.mtx.Unlock()
		res := f.build(changes, dirty)
		if len(res) == 0 {
			continue
		}
		select {
		case out <- res:
		case <-ctx.Done():
			return
		}
	}
}

// update stores the delivered sets and returns, per set, the namespaces
// whose groups changed (nil: the whole set). A set's state is updated in
// place: one lookup per delivered group when nothing changed.
func (f *fanout) update(tsets map[string][]*targetgroup.Group) map[string]map[string]bool {
	dirty := map[string]map[string]bool{}
	for set, groups := range tsets {
		st := f.sets[set]
		if st == nil {
			st = &fanoutSet{bySource: make(map[string]*targetgroup.Group, len(groups)), byNS: map[string]map[string]*targetgroup.Group{}}
			f.sets[set] = st
			dirty[set] = nil
		}
		var changed map[string]bool
		mark := func(ns string) {
			if changed == nil {
				changed = map[string]bool{}
			}
			changed[ns] = true
		}
		matched, added := 0, 0
		for _, tg := range groups {
			if tg == nil {
				continue
			}
			old, ok := st.bySource[tg.Source]
			if ok && old == tg {
				matched++
				continue
			}
			if ok {
				matched++
				st.remove(old)
				mark(groupNamespace(old))
			} else {
				added++
			}
			st.add(tg)
			mark(groupNamespace(tg))
		}
		if len(st.bySource) > matched+added {
			// Groups gone: keep only the delivered sources.
			delivered := make(map[string]struct{}, len(groups))
			for _, tg := range groups {
				if tg != nil {
					delivered[tg.Source] = struct{}{}
				}
			}
			for src, tg := range st.bySource {
				if _, ok := delivered[src]; !ok {
					st.remove(tg)
					mark(groupNamespace(tg))
				}
			}
		}
		if _, isNew := dirty[set]; !isNew && changed != nil {
			dirty[set] = changed
		}
	}
	for set := range f.sets {
		if _, ok := tsets[set]; !ok {
			delete(f.sets, set) // no job reads it any more
			dirty[set] = nil
		}
	}
	return dirty
}

func (st *fanoutSet) add(tg *targetgroup.Group) {
	st.bySource[tg.Source] = tg
	ns := groupNamespace(tg)
	if st.byNS[ns] == nil {
		st.byNS[ns] = map[string]*targetgroup.Group{}
	}
	st.byNS[ns][tg.Source] = tg
}

func (st *fanoutSet) remove(tg *targetgroup.Group) {
	delete(st.bySource, tg.Source)
	ns := groupNamespace(tg)
	delete(st.byNS[ns], tg.Source)
	if len(st.byNS[ns]) == 0 {
		delete(st.byNS, ns)
	}
}

// groupNamespace is the namespace of a Kubernetes SD group, "" for others.
func groupNamespace(tg *targetgroup.Group) string {
	if ns, ok := tg.Labels[model.LabelName(namespaceLabel)]; ok {
		return string(ns)
	}
	return ""
}

// build returns the jobs whose groups changed, with nil for those gone. It
// rebuilds the slices of jobs whose sources changed and of jobs that read
// a dirty namespace of a set; every other job keeps its slice.
func (f *fanout) build(sources map[string][]jobSource, dirty map[string]map[string]bool) map[string][]*targetgroup.Group {
	changes := map[string][]*targetgroup.Group{}
	drop := func(job string) {
		if _, built := f.jobs[job]; built {
			changes[job] = nil
			delete(f.jobs, job)
		}
	}
	rebuild := map[string]struct{}{}
	for job, srcs := range sources {
		old, had := f.cur[job]
		if had && srcs != nil && sameSources(old, srcs) {
			continue
		}
		if had {
			f.unindex(job, old)
		}
		if srcs == nil {
			delete(f.cur, job)
			drop(job)
			continue
		}
		f.indexJob(job, srcs)
		f.cur[job] = srcs
		rebuild[job] = struct{}{}
	}
	for set, nss := range dirty {
		byNS := f.index[set]
		if nss == nil {
			for _, jobs := range byNS {
				for job := range jobs {
					rebuild[job] = struct{}{}
				}
			}
			continue
		}
		for job := range byNS[""] {
			rebuild[job] = struct{}{}
		}
		for ns := range nss {
			for job := range byNS[ns] {
				rebuild[job] = struct{}{}
			}
		}
	}
	for job := range rebuild {
		groups, ok := f.groups(f.cur[job])
		if !ok {
			drop(job) // a set not delivered yet: not sent, as before discovery saw it
			continue
		}
		if prev, had := f.jobs[job]; had && slices.Equal(prev, groups) {
			continue
		}
		f.jobs[job] = groups
		changes[job] = groups
	}
	return changes
}

func (f *fanout) indexJob(job string, srcs []jobSource) {
	for _, s := range srcs {
		byNS := f.index[s.set]
		if byNS == nil {
			byNS = map[string]map[string]struct{}{}
			f.index[s.set] = byNS
		}
		add := func(ns string) {
			if byNS[ns] == nil {
				byNS[ns] = map[string]struct{}{}
			}
			byNS[ns][job] = struct{}{}
		}
		if s.namespaces == nil {
			add("")
		}
		for ns := range s.namespaces {
			add(ns)
		}
	}
}

func (f *fanout) unindex(job string, srcs []jobSource) {
	for _, s := range srcs {
		byNS := f.index[s.set]
		del := func(ns string) {
			delete(byNS[ns], job)
			if len(byNS[ns]) == 0 {
				delete(byNS, ns)
			}
		}
		if s.namespaces == nil {
			del("")
		}
		for ns := range s.namespaces {
			del(ns)
		}
		if len(byNS) == 0 {
			delete(f.index, s.set)
		}
	}
}

// groups concatenates the groups a job reads, sorted by source, or reports
// that one of its sets was not delivered yet.
func (f *fanout) groups(srcs []jobSource) ([]*targetgroup.Group, bool) {
	out := []*targetgroup.Group{}
	for _, s := range srcs {
		st := f.sets[s.set]
		if st == nil {
			return nil, false
		}
		start := len(out)
		if s.namespaces == nil {
			out = slices.AppendSeq(out, maps.Values(st.bySource))
		} else {
			for ns := range s.namespaces {
				out = slices.AppendSeq(out, maps.Values(st.byNS[ns]))
			}
		}
		slices.SortFunc(out[start:], func(a, b *targetgroup.Group) int { return strings.Compare(a.Source, b.Source) })
	}
	return out, true
}

func sameSources(a, b []jobSource) bool {
	return slices.EqualFunc(a, b, func(x, y jobSource) bool {
		return x.set == y.set && (x.namespaces == nil) == (y.namespaces == nil) && maps.Equal(x.namespaces, y.namespaces)
	})
}
