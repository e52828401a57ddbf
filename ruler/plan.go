package ruler

import (
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/rulefmt"
	"go.yaml.in/yaml/v3"

	"github.com/promshard/promshard/config"
)

// state is the ruler's rule groups under the prefix as last read and
// written: namespace → group name → canonical encoding.
type state map[string]map[string]string

// opKind is what one change does.
type opKind int

const (
	opSet             opKind = iota // create or replace a group
	opDeleteGroup                   // remove one group of a namespace that stays
	opDeleteNamespace               // remove a namespace no object wants any more
)

// op is one change to the ruler.
type op struct {
	kind      opKind
	namespace string
	group     rulefmt.RuleGroup // opSet
	name      string            // opDeleteGroup: the group's name
	canonical string            // opSet: the group's canonical encoding
}

// canonical encodes g so that two groups that mean the same encode alike:
// empty maps and zero values are left out, keys are sorted (yaml.v3 sorts
// map keys). A group read back from the ruler is compared in this form.
func canonical(g rulefmt.RuleGroup) string {
	if len(g.Labels) == 0 {
		g.Labels = nil
	}
	if g.QueryOffset != nil && *g.QueryOffset == 0 {
		g.QueryOffset = nil
	}
	g.Rules = slices.Clone(g.Rules)
	for i := range g.Rules {
		r := &g.Rules[i]
		if len(r.Labels) == 0 {
			r.Labels = nil
		}
		if len(r.Annotations) == 0 {
			r.Annotations = nil
		}
	}
	b, err := yaml.Marshal(g)
	if err != nil {
		return "unencodable: " + err.Error() // never equal to a real group
	}
	return string(b)
}

// readState keeps the namespaces of listed under prefix, canonically.
func readState(listed map[string][]rulefmt.RuleGroup, prefix string) state {
	st := state{}
	for ns, groups := range listed {
		if !underPrefix(ns, prefix) {
			continue
		}
		m := make(map[string]string, len(groups))
		for _, g := range groups {
			m[g.Name] = canonical(g)
		}
		st[ns] = m
	}
	return st
}

// underPrefix reports whether ruler namespace ns is promshard's to manage.
func underPrefix(ns, prefix string) bool { return strings.HasPrefix(ns, prefix+"/") }

// plan lists the changes that bring st to what sets want. A rejected set
// (its rendering failed) keeps whatever its namespace holds: an object
// broken by an edit leaves its last synced rules evaluating. skip names
// namespaces not to write to (the ruler refused their current content).
// Changes come sorted by namespace, sets before deletes within one.
func plan(sets []config.RuleSet, st state, prefix string, skip map[string]bool, enc *encoder) []op {
	var ops []op
	wanted := make(map[string]bool, len(sets))
	for _, rs := range sets {
		wanted[rs.RulerNamespace] = true
		if !rs.Result.Accepted || skip[rs.RulerNamespace] {
			continue
		}
		have := st[rs.RulerNamespace]
		names := make(map[string]bool, len(rs.Groups))
		canon := enc.encode(rs)
		for i, g := range rs.Groups {
			names[g.Name] = true
			c := canon[i]
			if have[g.Name] != c {
				ops = append(ops, op{kind: opSet, namespace: rs.RulerNamespace, group: g, canonical: c})
			}
		}
		for _, name := range slices.Sorted(maps.Keys(have)) {
			if !names[name] {
				ops = append(ops, op{kind: opDeleteGroup, namespace: rs.RulerNamespace, name: name})
			}
		}
	}
	for _, ns := range slices.Sorted(maps.Keys(st)) {
		if !wanted[ns] && underPrefix(ns, prefix) {
			ops = append(ops, op{kind: opDeleteNamespace, namespace: ns})
		}
	}
	return ops
}

// apply records a successful op in st.
func (st state) apply(o op) {
	switch o.kind {
	case opSet:
		if st[o.namespace] == nil {
			st[o.namespace] = map[string]string{}
		}
		st[o.namespace][o.group.Name] = o.canonical
	case opDeleteGroup:
		delete(st[o.namespace], o.name)
		if len(st[o.namespace]) == 0 {
			delete(st, o.namespace)
		}
	case opDeleteNamespace:
		delete(st, o.namespace)
	}
}

// fingerprint identifies the rendered content of a set, to tell whether a
// refused object changed since the ruler refused it.
func (e *encoder) fingerprint(rs config.RuleSet) string {
	return strings.Join(e.encode(rs), "\x00")
}

// encoder keeps the canonical encodings of each set's groups while the set
// is unchanged: config.RuleCache hands out the same Groups slice for an
// unchanged object, so a pass over thousands of objects encodes only the
// edited ones. Call next once per pass to drop sets no longer seen.
type encoder struct {
	cur, prev map[string]encoded
}

type encoded struct {
	first *rulefmt.RuleGroup
	n     int
	canon []string
}

func (e *encoder) encode(rs config.RuleSet) []string {
	var first *rulefmt.RuleGroup
	if len(rs.Groups) > 0 {
		first = &rs.Groups[0]
	}
	if e.cur == nil {
		e.cur = map[string]encoded{}
	}
	if c, ok := e.cur[rs.RulerNamespace]; ok && c.first == first && c.n == len(rs.Groups) {
		return c.canon
	}
	c, ok := e.prev[rs.RulerNamespace]
	if !ok || c.first != first || c.n != len(rs.Groups) || first == nil {
		c = encoded{first: first, n: len(rs.Groups), canon: make([]string, len(rs.Groups))}
		for i, g := range rs.Groups {
			c.canon[i] = canonical(g)
		}
	}
	e.cur[rs.RulerNamespace] = c
	return c.canon
}

// next starts a pass: encodings not used in the last one are dropped.
func (e *encoder) next() {
	e.prev, e.cur = e.cur, map[string]encoded{}
}
