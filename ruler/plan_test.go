package ruler

import (
	"fmt"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"go.yaml.in/yaml/v3"

	"github.com/promshard/promshard/config"
)

func group(name, expr string) rulefmt.RuleGroup {
	return rulefmt.RuleGroup{Name: name, Rules: []rulefmt.Rule{{Record: "r", Expr: expr}}}
}

func set(ns string, accepted bool, groups ...rulefmt.RuleGroup) config.RuleSet {
	return config.RuleSet{Result: config.Result{Kind: config.KindPrometheusRule, Accepted: accepted}, RulerNamespace: ns, Groups: groups}
}

func stateOf(t *testing.T, m map[string][]rulefmt.RuleGroup) state {
	t.Helper()
	return readState(m, "p")
}

func describe(ops []op) []string {
	var out []string
	for _, o := range ops {
		switch o.kind {
		case opSet:
			out = append(out, "set "+o.namespace+" "+o.group.Name)
		case opDeleteGroup:
			out = append(out, "delete "+o.namespace+" "+o.name)
		case opDeleteNamespace:
			out = append(out, "delete-ns "+o.namespace)
		}
	}
	return out
}

func TestPlan(t *testing.T) {
	a1, a2 := group("a", "up"), group("a", "up == 0")
	b := group("b", "sum(up)")
	for _, tc := range []struct {
		name  string
		sets  []config.RuleSet
		ruler map[string][]rulefmt.RuleGroup
		skip  map[string]bool
		want  []string
	}{
		{name: "create", sets: []config.RuleSet{set("p/ns/x", true, a1, b)},
			want: []string{"set p/ns/x a", "set p/ns/x b"}},
		{name: "in sync", sets: []config.RuleSet{set("p/ns/x", true, a1)},
			ruler: map[string][]rulefmt.RuleGroup{"p/ns/x": {a1}}},
		{name: "update one, delete another", sets: []config.RuleSet{set("p/ns/x", true, a2)},
			ruler: map[string][]rulefmt.RuleGroup{"p/ns/x": {a1, b}},
			want:  []string{"set p/ns/x a", "delete p/ns/x b"}},
		{name: "object gone", ruler: map[string][]rulefmt.RuleGroup{"p/ns/x": {a1}},
			want: []string{"delete-ns p/ns/x"}},
		{name: "outside the prefix left alone", ruler: map[string][]rulefmt.RuleGroup{"other/ns/x": {a1}, "p": {a1}, "px/y": {b}}},
		{name: "rejected object keeps its groups", sets: []config.RuleSet{set("p/ns/x", false)},
			ruler: map[string][]rulefmt.RuleGroup{"p/ns/x": {a1}}},
		{name: "refused object skipped", sets: []config.RuleSet{set("p/ns/x", true, a2), set("p/ns/y", true, b)},
			ruler: map[string][]rulefmt.RuleGroup{"p/ns/x": {a1}}, skip: map[string]bool{"p/ns/x": true},
			want: []string{"set p/ns/y b"}},
		{name: "empty object empties its namespace", sets: []config.RuleSet{set("p/ns/x", true)},
			ruler: map[string][]rulefmt.RuleGroup{"p/ns/x": {a1}},
			want:  []string{"delete p/ns/x a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := describe(plan(tc.sets, stateOf(t, tc.ruler), "p", tc.skip, &encoder{}))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("plan = %q, want %q", got, tc.want)
			}
		})
	}
}

// A group read back in another spelling (empty maps, explicit zero
// durations, other key order) is in sync.
func TestCanonicalReadBack(t *testing.T) {
	want := rulefmt.RuleGroup{Name: "g", Interval: model.Duration(30e9), Rules: []rulefmt.Rule{
		{Alert: "A", Expr: "up == 0", For: model.Duration(60e9), Labels: map[string]string{"severity": "page", "a": "b"}},
	}}
	readBack := `
name: g
interval: 30s
query_offset: 0s
labels: {}
rules:
  - expr: up == 0
    alert: A
    for: 1m
    keep_firing_for: 0s
    annotations: {}
    labels: {a: b, severity: page}
`
	var got rulefmt.RuleGroup
	if err := yaml.Unmarshal([]byte(readBack), &got); err != nil {
		t.Fatal(err)
	}
	if canonical(got) != canonical(want) {
		t.Errorf("canonical differs:\n%s\nvs\n%s", canonical(got), canonical(want))
	}
	changed := want
	changed.Rules = []rulefmt.Rule{{Alert: "A", Expr: "up == 1", For: model.Duration(60e9)}}
	if canonical(changed) == canonical(want) {
		t.Error("a changed expression encodes alike")
	}
}

func TestStateApply(t *testing.T) {
	st := state{}
	g := group("a", "up")
	st.apply(op{kind: opSet, namespace: "p/n/x", group: g, canonical: canonical(g)})
	if len(plan([]config.RuleSet{set("p/n/x", true, g)}, st, "p", nil, &encoder{})) != 0 {
		t.Error("a recorded set is not in sync")
	}
	st.apply(op{kind: opDeleteGroup, namespace: "p/n/x", name: "a"})
	if len(st) != 0 {
		t.Errorf("state after deleting the last group = %v", st)
	}
}

// An unchanged set (the same Groups slice) keeps its encoding across
// passes; an edited one (a new slice) is encoded again.
func TestEncoderReuse(t *testing.T) {
	var enc encoder
	rs := set("p/n/x", true, group("a", "up"))
	enc.next()
	first := enc.encode(rs)
	enc.next()
	if again := enc.encode(rs); &again[0] != &first[0] {
		t.Error("an unchanged set was encoded again")
	}
	edited := set("p/n/x", true, group("a", "up == 0"))
	enc.next()
	if got := enc.encode(edited); got[0] == first[0] {
		t.Error("an edited set kept its old encoding")
	}
}
