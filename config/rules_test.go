package config

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

func loadRule(t *testing.T, path string) *monitoringv1.PrometheusRule {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	pr := &monitoringv1.PrometheusRule{}
	require.NoError(t, yaml.UnmarshalStrict(b, pr))
	return pr
}

// TestRenderRuleParity: the groups equal what Prometheus loads from the
// rule file prometheus-operator writes for the same object.
func TestRenderRuleParity(t *testing.T) {
	pr := loadRule(t, filepath.Join("testdata", "rules", "prometheusrule.yaml"))
	rs := RenderRule(pr, RuleOptions{})
	require.True(t, rs.Result.Accepted, rs.Result.Reason)
	require.Equal(t, Result{Kind: KindPrometheusRule, Namespace: "team-a", Name: "api", Generation: 4, Accepted: true}, rs.Result)
	require.Equal(t, "promshard/team-a/api", rs.RulerNamespace)

	operator, err := os.ReadFile(filepath.Join("testdata", "rules", "prometheusrule.operator.yaml"))
	require.NoError(t, err)
	want, errs := rulefmt.Parse(operator, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	require.Empty(t, errs)
	require.Equal(t, want.Groups, rs.Groups)
	require.Nil(t, rs.Groups[1].QueryOffset)
	require.Equal(t, 100, rs.Groups[0].Limit)
}

func TestRenderRuleRejected(t *testing.T) {
	rule := func(groups ...monitoringv1.RuleGroup) *monitoringv1.PrometheusRule {
		return &monitoringv1.PrometheusRule{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r"}, Spec: monitoringv1.PrometheusRuleSpec{Groups: groups}}
	}
	rec := func(name, expr string) monitoringv1.Rule {
		return monitoringv1.Rule{Record: name, Expr: intstr.FromString(expr)}
	}
	for _, tc := range []struct {
		name   string
		pr     *monitoringv1.PrometheusRule
		reason string
	}{
		{"expression does not parse", rule(monitoringv1.RuleGroup{Name: "g", Rules: []monitoringv1.Rule{rec("a:b", "sum(")}}), "could not parse expression"},
		{"repeated group", rule(monitoringv1.RuleGroup{Name: "g", Rules: []monitoringv1.Rule{rec("a:b", "up")}}, monitoringv1.RuleGroup{Name: "g", Rules: []monitoringv1.Rule{rec("a:c", "up")}}), `groupname: "g" is repeated in the same file`},
		{"record and alert", rule(monitoringv1.RuleGroup{Name: "g", Rules: []monitoringv1.Rule{{Record: "a:b", Alert: "A", Expr: intstr.FromString("up")}}}), "only one of 'record' and 'alert' must be set"},
		{"bad template", rule(monitoringv1.RuleGroup{Name: "g", Rules: []monitoringv1.Rule{{Alert: "A", Expr: intstr.FromString("up"), Annotations: map[string]string{"s": "{{ .Nope"}}}}), "template"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := RenderRule(tc.pr, RuleOptions{})
			require.False(t, rs.Result.Accepted)
			require.Empty(t, rs.Groups)
			require.Contains(t, rs.Result.Reason, tc.reason)
		})
	}
}

func TestRenderRuleEnforcedNamespace(t *testing.T) {
	pr := &monitoringv1.PrometheusRule{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "r"}, Spec: monitoringv1.PrometheusRuleSpec{Groups: []monitoringv1.RuleGroup{{
		Name: "g", Rules: []monitoringv1.Rule{{Alert: "A", Expr: intstr.FromString(`sum(rate(http_requests_total{job="a",namespace="other"}[5m])) / on() group_left up > 1`)}},
	}}}}
	rs := RenderRule(pr, RuleOptions{EnforcedNamespaceLabel: "namespace", NamespacePrefix: "c1"})
	require.True(t, rs.Result.Accepted, rs.Result.Reason)
	require.Equal(t, "c1/team-a/r", rs.RulerNamespace)
	r := rs.Groups[0].Rules[0]
	require.Equal(t, `sum(rate(http_requests_total{job="a",namespace="team-a"}[5m])) / on () group_left () up{namespace="team-a"} > 1`, r.Expr)
	require.Equal(t, map[string]string{"namespace": "team-a"}, r.Labels)
	require.Equal(t, `sum(rate(http_requests_total{job="a",namespace="other"}[5m])) / on() group_left up > 1`, pr.Spec.Groups[0].Rules[0].Expr.String(), "the object is not modified")
}

func TestRenderRulesSelection(t *testing.T) {
	pr := func(ns, name string, lbls map[string]string) *monitoringv1.PrometheusRule {
		return &monitoringv1.PrometheusRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls}}
	}
	snap := &Snapshot{
		PrometheusRules: []*monitoringv1.PrometheusRule{pr("b", "x", map[string]string{"rules": "yes"}), pr("a", "y", nil), pr("a", "x", map[string]string{"rules": "yes"}), pr("c", "x", map[string]string{"rules": "yes"})},
		Namespaces: []*corev1.Namespace{
			{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"team": "a"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{"team": "b"}}},
		},
	}
	keys := func(sets []RuleSet) []string {
		var out []string
		for _, s := range sets {
			out = append(out, s.RulerNamespace)
		}
		return out
	}
	require.Equal(t, []string{"promshard/a/x", "promshard/a/y", "promshard/b/x", "promshard/c/x"}, keys(RenderRules(snap, RuleOptions{})))
	sel, err := k8slabels.Parse("rules=yes")
	require.NoError(t, err)
	nsSel, err := k8slabels.Parse("team in (a,b)")
	require.NoError(t, err)
	require.Equal(t, []string{"promshard/a/x", "promshard/b/x"}, keys(RenderRules(snap, RuleOptions{Selector: sel, NamespaceSelector: nsSel})),
		"c has no Namespace object: not selected by a namespace selector")
	empty := RenderRules(snap, RuleOptions{})[1]
	require.True(t, empty.Result.Accepted, "an object without groups is accepted, with none")
	require.Empty(t, empty.Groups)
}
