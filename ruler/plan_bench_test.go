package ruler

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/model/rulefmt"

	"github.com/promshard/promshard/config"
)

// BenchmarkPlan5000 is one sync pass's diff at 5,000 objects of 3 groups
// each, in sync except one edited object, after a pass that encoded them
// all: what a change costs the syncing member besides its one request.
func BenchmarkPlan5000(b *testing.B) {
	sets := make([]config.RuleSet, 5000)
	st := state{}
	for i := range sets {
		ns := fmt.Sprintf("p/team-%d/rules", i)
		var groups []rulefmt.RuleGroup
		for g := range 3 {
			groups = append(groups, rulefmt.RuleGroup{Name: fmt.Sprintf("g%d", g), Rules: []rulefmt.Rule{
				{Record: "job:up:sum", Expr: "sum by (job) (up)"},
				{Alert: "Down", Expr: `up{job="x"} == 0`, Labels: map[string]string{"severity": "page"}, Annotations: map[string]string{"summary": "down"}},
			}})
		}
		sets[i] = set(ns, true, groups...)
		for _, g := range groups {
			st.apply(op{kind: opSet, namespace: ns, group: g, canonical: canonical(g)})
		}
	}
	sets[42].Groups = []rulefmt.RuleGroup{group("g0", "up")}
	var enc encoder
	enc.next()
	plan(sets, st, "p", nil, &enc) // the previous pass encoded every object
	b.ReportAllocs()
	for b.Loop() {
		enc.next()
		if ops := plan(sets, st, "p", nil, &enc); len(ops) != 3 {
			b.Fatalf("%d ops, want 3 (one set, two deletes)", len(ops))
		}
	}
}
