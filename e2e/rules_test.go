//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/promshard/promshard/e2e/testbed"
)

const (
	rulesNS     = "team-rules"
	rulesTenant = "cluster-a"
)

func prometheusRule(name string, groups ...monitoringv1.RuleGroup) *monitoringv1.PrometheusRule {
	return &monitoringv1.PrometheusRule{ObjectMeta: metav1.ObjectMeta{Namespace: rulesNS, Name: name, Labels: map[string]string{"team": "a"}},
		Spec: monitoringv1.PrometheusRuleSpec{Groups: groups}}
}

func recordGroup(name, record, expr string) monitoringv1.RuleGroup {
	return monitoringv1.RuleGroup{Name: name, Rules: []monitoringv1.Rule{{Record: record, Expr: intstr.FromString(expr)}}}
}

// rulerHas waits for the ruler namespace to hold exactly the groups named,
// each with its first rule's expression (nil: the namespace is gone).
func rulerHas(c *testbed.Cortex, ns string, want map[string]string) func(context.Context) error {
	return func(ctx context.Context) error {
		all, err := c.RuleGroups(ctx, rulesTenant)
		if err != nil {
			return err
		}
		groups, ok := all[ns]
		if want == nil {
			if ok {
				return fmt.Errorf("ruler namespace %s still has %d groups", ns, len(groups))
			}
			return nil
		}
		got := map[string]string{}
		for _, g := range groups {
			if len(g.Rules) > 0 {
				got[g.Name] = g.Rules[0].Expr
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("ruler namespace %s has %v, want %v", ns, got, want)
		}
		return nil
	}
}

// TestRulesCortex: PrometheusRules kept in sync with a real Cortex ruler —
// create, edit, a broken object refused alone, a group the ruler refuses,
// hand edits repaired at the resync (only under the prefix), delete, and a
// ruler outage.
func TestRulesCortex(t *testing.T) {
	buildCtx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	_, err := testbed.CortexBinary(buildCtx, t.Logf)
	require.NoError(t, err)
	ctx := context.Background()
	bed := startBed(t)
	// A limit of Cortex' own, so that the ruler refuses a group (400).
	cortex, err := bed.StartCortex(ctx, testbed.CortexOptions{ExtraArgs: []string{"-ruler.max-rules-per-rule-group=3"}})
	require.NoError(t, err)
	require.NoError(t, bed.CreateNamespace(ctx, rulesNS, map[string]string{"rules": "on"}))
	_, err = bed.ApplyMonitoring(ctx, prometheusAgent(rulesNS, "agent", nil))
	require.NoError(t, err)
	ps := startPromshard(t, bed, testbed.PromshardOptions{Name: "rules", Args: []string{
		"--prometheus-agent=" + rulesNS + "/agent",
		"--rules.url=" + cortex.URL(), "--rules.api=cortex", "--rules.tenant=" + rulesTenant,
		"--rules.selector=team=a", "--rules.namespace-selector=rules=on", "--rules.resync-interval=3s",
	}})
	const first = "promshard/" + rulesNS + "/first"

	// Created → in the ruler within 5 s.
	start := time.Now()
	_, err = bed.ApplyMonitoring(ctx, prometheusRule("first", recordGroup("a", "job:up:sum", "sum by (job) (up)"),
		monitoringv1.RuleGroup{Name: "b", Interval: ptr.To(monitoringv1.Duration("30s")), Rules: []monitoringv1.Rule{{
			Alert: "Down", Expr: intstr.FromString("up == 0"), For: ptr.To(monitoringv1.Duration("1m")),
			Labels: map[string]string{"severity": "page"}, Annotations: map[string]string{"summary": "{{ $labels.instance }} down"},
		}}}))
	require.NoError(t, err)
	eventually(t, 5*time.Second, "the object's groups in the ruler", rulerHas(cortex, first, map[string]string{"a": "sum by (job) (up)", "b": "up == 0"}))
	t.Logf("created → in the ruler in %s", time.Since(start).Round(time.Millisecond))
	all, err := cortex.RuleGroups(ctx, rulesTenant)
	require.NoError(t, err)
	alert := all[first][slices.IndexFunc(all[first], func(g rulefmt.RuleGroup) bool { return g.Name == "b" })]
	require.Equal(t, rulefmt.RuleGroup{Name: "b", Interval: model.Duration(30 * time.Second), Rules: []rulefmt.Rule{{
		Alert: "Down", Expr: "up == 0", For: model.Duration(time.Minute),
		Labels: map[string]string{"severity": "page"}, Annotations: map[string]string{"summary": "{{ $labels.instance }} down"},
	}}}, alert, "the alerting group as read back from the ruler")
	eventually(t, 10*time.Second, "synced on the object's status", ruleCondition(bed, "first", monitoringv1.ConditionTrue, "2 rule groups synced to ruler namespace "+first))

	// Edited → updated within 5 s.
	start = time.Now()
	_, err = bed.ApplyMonitoring(ctx, prometheusRule("first", recordGroup("a", "job:up:sum", "sum by (job, instance) (up)")))
	require.NoError(t, err)
	eventually(t, 5*time.Second, "the edited groups in the ruler", rulerHas(cortex, first, map[string]string{"a": "sum by (job, instance) (up)"}))
	t.Logf("edited → updated in %s", time.Since(start).Round(time.Millisecond))

	// A broken object is refused alone, with the reason; the first is untouched.
	_, err = bed.ApplyMonitoring(ctx, prometheusRule("broken", recordGroup("c", "bad:sum", "sum(")))
	require.NoError(t, err)
	eventually(t, 10*time.Second, "the broken object refused on its status", ruleCondition(bed, "broken", monitoringv1.ConditionFalse, "parse error"))
	eventually(t, 10*time.Second, "a Warning Event for the broken object", func(ctx context.Context) error {
		evs, err := bed.Kube.CoreV1().Events(rulesNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=broken,type=Warning"})
		if err != nil || len(evs.Items) == 0 {
			return fmt.Errorf("no Warning Event (err %v)", err)
		}
		return nil
	})
	require.NoError(t, rulerHas(cortex, first, map[string]string{"a": "sum by (job, instance) (up)"})(ctx))
	require.NoError(t, rulerHas(cortex, "promshard/"+rulesNS+"/broken", nil)(ctx))
	page, err := ps.Get(ctx, "/")
	require.NoError(t, err)
	require.Contains(t, string(page), first)
	require.Contains(t, string(page), "<code>promshard/"+rulesNS+"/broken</code>", "the refused object on the status page")

	// A group the ruler refuses (above its rules-per-group limit) marks
	// its object alone; the object's other group is synced.
	huge := recordGroup("huge", "r:1", "up")
	for i := 2; i <= 4; i++ {
		huge.Rules = append(huge.Rules, monitoringv1.Rule{Record: fmt.Sprintf("r:%d", i), Expr: intstr.FromString("up")})
	}
	_, err = bed.ApplyMonitoring(ctx, prometheusRule("big", recordGroup("small", "r:0", "up"), huge))
	require.NoError(t, err)
	eventually(t, 10*time.Second, "the refused object on its status", ruleCondition(bed, "big", monitoringv1.ConditionFalse, "the ruler answered 400"))
	require.NoError(t, rulerHas(cortex, "promshard/"+rulesNS+"/big", map[string]string{"small": "up"})(ctx))
	require.NoError(t, rulerHas(cortex, first, map[string]string{"a": "sum by (job, instance) (up)"})(ctx))
	require.NoError(t, bed.Dynamic.Resource(prometheusRulesGVR).Namespace(rulesNS).Delete(ctx, "big", metav1.DeleteOptions{}))
	eventually(t, 5*time.Second, "the refused object's namespace gone with it", rulerHas(cortex, "promshard/"+rulesNS+"/big", nil))

	// Hand edits: under the prefix they are undone at the next resync,
	// outside it they stay.
	hand := rulefmt.RuleGroup{Name: "hand", Rules: []rulefmt.Rule{{Record: "hand:up", Expr: "up"}}}
	require.NoError(t, cortex.SetRuleGroup(ctx, rulesTenant, first, hand))
	require.NoError(t, cortex.SetRuleGroup(ctx, rulesTenant, "promshard/gone/old", hand))
	require.NoError(t, cortex.SetRuleGroup(ctx, rulesTenant, "other-cluster/keep", hand))
	eventually(t, 10*time.Second, "the hand-added group under the object's namespace removed", rulerHas(cortex, first, map[string]string{"a": "sum by (job, instance) (up)"}))
	eventually(t, 10*time.Second, "the hand-added namespace under the prefix removed", rulerHas(cortex, "promshard/gone/old", nil))
	require.NoError(t, rulerHas(cortex, "other-cluster/keep", map[string]string{"hand": "up"})(ctx), "outside the prefix")

	// Deleted → gone within 5 s.
	start = time.Now()
	require.NoError(t, bed.Dynamic.Resource(prometheusRulesGVR).Namespace(rulesNS).Delete(ctx, "first", metav1.DeleteOptions{}))
	eventually(t, 5*time.Second, "the deleted object's groups gone", rulerHas(cortex, first, nil))
	t.Logf("deleted → gone in %s", time.Since(start).Round(time.Millisecond))

	// The ruler down for 30 s while an object changes → in sync within
	// 10 s once it is back.
	cortex.Stop()
	down := time.Now()
	const third = "promshard/" + rulesNS + "/third"
	_, err = bed.ApplyMonitoring(ctx, prometheusRule("third", recordGroup("d", "job:up:count", "count by (job) (up)")))
	require.NoError(t, err)
	eventually(t, 10*time.Second, "the object pending on its status while the ruler is down", ruleCondition(bed, "third", monitoringv1.ConditionTrue, "not synced to ruler namespace "+third+" yet"))
	time.Sleep(30*time.Second - time.Since(down)) // the outage's length is the scenario
	require.NoError(t, cortex.Start(ctx))
	start = time.Now()
	eventually(t, 10*time.Second, "in sync after the ruler is back", rulerHas(cortex, third, map[string]string{"d": "count by (job) (up)"}))
	t.Logf("ruler back → in sync in %s", time.Since(start).Round(time.Millisecond))
	require.NoError(t, rulerHas(cortex, "other-cluster/keep", map[string]string{"hand": "up"})(ctx), "outside the prefix")
	failures, _, err := ps.Metric(ctx, "promshard_rules_sync_failures_total")
	require.NoError(t, err)
	require.Positive(t, failures, "failed sync passes during the outage")
	eventually(t, 10*time.Second, "synced objects counted", func(ctx context.Context) error {
		if v, _, err := ps.Metric(ctx, `promshard_rules_objects{state="synced"}`); err != nil || v != 1 {
			return fmt.Errorf("promshard_rules_objects{state=synced} = %v (err %v), want 1", v, err)
		}
		return nil
	})
}

var prometheusRulesGVR = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "prometheusrules"}

// ruleCondition waits for the PrometheusRule's Accepted condition of its
// binding to the PrometheusAgent.
func ruleCondition(bed *testbed.Bed, name string, status monitoringv1.ConditionStatus, message string) func(context.Context) error {
	return func(ctx context.Context) error {
		u, err := bed.Dynamic.Resource(prometheusRulesGVR).Namespace(rulesNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var pr monitoringv1.PrometheusRule
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &pr); err != nil {
			return err
		}
		for _, b := range pr.Status.Bindings {
			for _, c := range b.Conditions {
				if c.Type == monitoringv1.Accepted && b.Name == "agent" {
					if c.Status != status || !strings.Contains(c.Message, message) {
						return fmt.Errorf("%s: %s %q, want %s containing %q", name, c.Status, c.Message, status, message)
					}
					return nil
				}
			}
		}
		return fmt.Errorf("%s has no binding yet", name)
	}
}
