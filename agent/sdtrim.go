package agent

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
)

// Trimmed discovered labels.
//
// Kubernetes SD sets dozens of __meta_kubernetes_* labels on every target
// (each label and annotation of the pod and of the Service, twice, plus
// the endpoint, port, container and node fields), and Prometheus'
// discovery manager holds every target group a provider sent until the
// provider sends its next version. Every member discovers every target of
// the cluster, owned or not, so these maps are the largest part of what a
// discovered target costs: about 2.8 KB at 35 labels.
//
// Relabeling is the only reader of __meta_* labels: Prometheus drops every
// label starting with "__" once target relabeling is done, so a __meta_
// label that no job's relabeling reads changes nothing that is scraped or
// stored. With Options.TrimDiscoveredLabels, each shared Kubernetes
// discovery set (sdshare.go) therefore runs wrapped (trimConfig): the
// groups its discoverer sends are passed on holding only the __meta_*
// labels that a job reading the set reads (labelNeeds: every source label,
// the target label of keepequal/dropequal, every name a labelmap regex
// matches) or that Options.KeepDiscoveredLabels names (the ownership
// filter's node and zone labels); every other label is kept. The discovered
// labels the status page and the targets API show are then exactly those
// relabeling saw.
//
// A job that starts reading a label the set does not keep (a new or
// edited monitor) makes the set keep it from then on. The groups already
// held lack it, and discovery sends a group again only when its object
// changes, so the wrapper runs a second discoverer of the same
// configuration (a relist, see trimDiscoverer.Run) and switches to it once
// it has delivered everything: the groups it sends replace the old ones
// one by one, sources it never sends are deleted at the switch, and the
// first discoverer keeps delivering changes until then, so no group goes
// missing in between. Until a group is re-sent, the job that needs the new
// label relabels that group without it, as if the object lacked it.

// labelNeeds are the discovered labels the jobs reading one shared
// discovery set read. They only grow; a growth is signalled on grown.
type labelNeeds struct {
	mtx   sync.Mutex // serializes add
	cur   atomic.Pointer[needSet]
	grown chan struct{} // capacity 1
}

// needSet is one immutable version of a set's needs.
type needSet struct {
	version  uint64
	names    map[model.LabelName]struct{}
	patterns map[string]relabel.Regexp // labelmap regexes by their text
}

func newLabelNeeds(keep []string) *labelNeeds {
	n := &labelNeeds{grown: make(chan struct{}, 1)}
	s := &needSet{names: make(map[model.LabelName]struct{}, len(keep)), patterns: map[string]relabel.Regexp{}}
	for _, name := range keep {
		s.names[model.LabelName(name)] = struct{}{}
	}
	n.cur.Store(s)
	return n
}

// load returns the current needs.
func (n *labelNeeds) load() *needSet { return n.cur.Load() }

// add makes the needs cover what rules read and reports whether they grew
// (then grown is signalled).
func (n *labelNeeds) add(rules []*relabel.Config) bool {
	n.mtx.Lock()
	defer n.mtx.Unlock()
	old := n.cur.Load()
	var next *needSet
	grow := func() *needSet {
		if next == nil {
			next = &needSet{version: old.version + 1, names: maps.Clone(old.names), patterns: maps.Clone(old.patterns)}
		}
		return next
	}
	addName := func(name model.LabelName) {
		if !strings.HasPrefix(string(name), model.MetaLabelPrefix) {
			return // never trimmed
		}
		if _, ok := old.names[name]; !ok {
			grow().names[name] = struct{}{}
		}
	}
	for _, r := range rules {
		if r == nil {
			continue
		}
		for _, name := range r.SourceLabels {
			addName(name)
		}
		switch r.Action {
		case relabel.KeepEqual, relabel.DropEqual:
			addName(model.LabelName(r.TargetLabel))
		case relabel.LabelMap:
			if r.Regex.Regexp == nil {
				continue
			}
			if _, ok := old.patterns[r.Regex.String()]; !ok {
				grow().patterns[r.Regex.String()] = r.Regex
			}
		}
	}
	if next == nil {
		return false
	}
	n.cur.Store(next)
	select {
	case n.grown <- struct{}{}:
	default:
	}
	return true
}

// keeps reports whether a discovered label is passed on.
func (s *needSet) keeps(name model.LabelName) bool {
	if !strings.HasPrefix(string(name), model.MetaLabelPrefix) {
		return true
	}
	if _, ok := s.names[name]; ok {
		return true
	}
	for _, re := range s.patterns {
		if re.MatchString(string(name)) {
			return true
		}
	}
	return false
}

// trimmer trims groups under one needSet, caching its decision and one
// canonical string per label name (Kubernetes SD builds most names anew
// for every target). Owned by one goroutine.
type trimmer struct {
	needs *needSet
	names map[model.LabelName]model.LabelName // kept name -> canonical; dropped -> ""
}

// trim returns tg with only the labels its needs keep. tg is not modified;
// a label set that loses nothing is still copied, so that its names are
// the canonical ones and nothing of the discoverer's maps stays referenced.
//
// A kept label that every target of the group carries with the same value
// (the port of a one-port Service, the container, the pod phase) may move
// to the group's labels (hoisting): Prometheus merges a group's labels
// into each target's where the target lacks them (scrape.PopulateLabels),
// so every target's merged labels are unchanged. It pays only where a
// target's map would otherwise outgrow one slot group of a Go map
// (mapGroupSlots entries; 9 to 16 cost two groups plus a table, about
// twice as much), so just enough shared labels move to bring the largest
// target to mapGroupSlots. __address__ stays on the target.
func (t *trimmer) trim(needs *needSet, tg *targetgroup.Group) *targetgroup.Group {
	if tg == nil {
		return nil
	}
	if t.needs != needs {
		t.needs, t.names = needs, map[model.LabelName]model.LabelName{}
	}
	var kept []int // kept labels per target
	if len(tg.Targets) > 1 {
		kept = make([]int, len(tg.Targets))
		for i, ls := range tg.Targets {
			kept[i] = t.keptCount(ls)
		}
	}
	common := t.common(tg.Targets, kept)
	out := &targetgroup.Group{Source: tg.Source}
	if tg.Labels != nil || len(common) > 0 {
		out.Labels = t.copyKept(tg.Labels, nil, t.keptCount(tg.Labels)+len(common))
	}
	for name, v := range common {
		out.Labels[name] = v
	}
	if tg.Targets != nil {
		out.Targets = make([]model.LabelSet, len(tg.Targets))
		for i, ls := range tg.Targets {
			var n int
			if kept != nil {
				n = kept[i] - len(common) // every target carries the common labels
			} else {
				n = t.keptCount(ls)
			}
			out.Targets[i] = t.copyKept(ls, common, n)
		}
	}
	return out
}

// mapGroupSlots is the number of entries a Go map holds in its first slot
// group (Go 1.24's swiss tables): a heuristic for hoisting only, which
// BenchmarkTrimmedGroupsMemory measures.
const mapGroupSlots = 8

// common returns the labels trim hoists: of the kept labels, __address__
// aside, that all of at least two targets carry with the same value
// (canonical names), as many as the largest target's kept labels (kept,
// per target) exceed mapGroupSlots, in name order; nil when no target
// exceeds it.
func (t *trimmer) common(targets []model.LabelSet, kept []int) model.LabelSet {
	if len(targets) < 2 {
		return nil
	}
	excess := slices.Max(kept) - mapGroupSlots
	if excess <= 0 {
		return nil
	}
	common := model.LabelSet{}
	for name, v := range targets[0] {
		if c := t.canonical(name); c != "" && name != model.AddressLabel {
			common[c] = v
		}
	}
	for _, ls := range targets[1:] {
		if len(common) == 0 {
			return nil
		}
		for name, v := range common {
			if w, ok := ls[name]; !ok || w != v {
				delete(common, name)
			}
		}
	}
	if len(common) > excess {
		names := slices.Sorted(maps.Keys(common))
		for _, name := range names[excess:] {
			delete(common, name)
		}
	}
	return common
}

// keptCount returns how many labels of ls trim keeps.
func (t *trimmer) keptCount(ls model.LabelSet) int {
	n := 0
	for name := range ls {
		if t.canonical(name) != "" {
			n++
		}
	}
	return n
}

// copyKept returns the kept labels of ls other than those in skip, in a
// map made for size entries.
func (t *trimmer) copyKept(ls, skip model.LabelSet, size int) model.LabelSet {
	if ls == nil && size == 0 {
		return nil
	}
	out := make(model.LabelSet, size)
	for name, v := range ls {
		if c := t.canonical(name); c != "" {
			if _, ok := skip[c]; !ok {
				out[c] = v
			}
		}
	}
	return out
}

func (t *trimmer) canonical(name model.LabelName) model.LabelName {
	c, ok := t.names[name]
	if !ok {
		if t.needs.keeps(name) {
			c = name
		}
		t.names[name] = c
	}
	return c
}

// trimConfig runs a discovery configuration with trimmed labels. The
// discovery manager finds a running provider by comparing configurations
// (reflect.DeepEqual): a set keeps its one *trimConfig, so an apply that
// only adds needs restarts nothing.
type trimConfig struct {
	inner promdiscovery.Config
	needs *labelNeeds
	// quiet is how long the relisting discoverer must have sent nothing
	// after its first groups before the switch (default trimQuiet).
	quiet  time.Duration
	relist prometheus.Counter // may be nil
}

// Name is the inner mechanism's name: the discovery manager hands the
// discoverer that mechanism's metrics.
func (c *trimConfig) Name() string { return c.inner.Name() }

func (c *trimConfig) NewDiscovererMetrics(reg prometheus.Registerer, rmi promdiscovery.RefreshMetricsInstantiator) promdiscovery.DiscovererMetrics {
	return c.inner.NewDiscovererMetrics(reg, rmi)
}

func (c *trimConfig) NewDiscoverer(opts promdiscovery.DiscovererOptions) (promdiscovery.Discoverer, error) {
	d, err := c.inner.NewDiscoverer(opts) // fails now if the configuration does
	if err != nil {
		return nil, err
	}
	return &trimDiscoverer{cfg: c, opts: opts, first: d}, nil
}
