package config

// PrometheusRule objects rendered for the ruler of a long-term store (Mimir,
// Cortex), the way prometheus-operator renders them into a Prometheus'
// rule files (pkg/operator/rules.go): the object's groups as they are
// (names, interval, query_offset, limit, group labels; rules with their
// labels and annotations), partial_response_strategy dropped (a Thanos
// field), empty durations left out, then validated with Prometheus' own
// rulefmt.Parse, strict, with UTF-8 names. An object prometheus-operator
// would refuse is refused here alone, with Prometheus' reasons. Each object
// becomes one ruler namespace, "<prefix>/<namespace>/<name>". With an
// enforced namespace label, every selector of every expression gets
// <label>="<namespace>" and every rule that label, as prometheus-operator
// does with enforcedNamespaceLabel.

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// KindPrometheusRule names the Results of PrometheusRule objects.
const KindPrometheusRule = "PrometheusRule"

// DefaultRuleNamespacePrefix is the default RuleOptions.NamespacePrefix.
const DefaultRuleNamespacePrefix = "promshard"

// maxRuleSize is prometheus-operator's limit of one object's rendered
// rules (half of a ConfigMap's 1 MiB).
const maxRuleSize = 1 << 19

// RuleOptions select and render PrometheusRule objects.
type RuleOptions struct {
	// Selector selects objects by label; nil selects every object.
	Selector k8slabels.Selector
	// NamespaceSelector selects the namespaces (by their labels) whose
	// objects are read; nil selects every namespace.
	NamespaceSelector k8slabels.Selector
	// NamespacePrefix starts every ruler namespace; empty means
	// DefaultRuleNamespacePrefix.
	NamespacePrefix string
	// EnforcedNamespaceLabel, when set, restricts every expression to the
	// object's namespace and labels every rule with it.
	EnforcedNamespaceLabel string
}

// RuleSet is one selected PrometheusRule, rendered. Result says whether it
// was accepted; a rejected object has no groups.
type RuleSet struct {
	Result Result
	// RulerNamespace is "<prefix>/<namespace>/<name>".
	RulerNamespace string
	Groups         []rulefmt.RuleGroup
}

// Prefix returns the effective namespace prefix.
func (o RuleOptions) Prefix() string {
	if o.NamespacePrefix == "" {
		return DefaultRuleNamespacePrefix
	}
	return o.NamespacePrefix
}

// RuleCache keeps the rendering of each PrometheusRule while its cached
// object (the informer's pointer) is unchanged, so that a snapshot with one
// edited object out of thousands renders one. The zero value is empty; it
// must be used with one RuleOptions and from one goroutine.
type RuleCache struct {
	m map[ObjectKey]cachedRule
}

type cachedRule struct {
	pr *monitoringv1.PrometheusRule
	rs RuleSet
}

// RenderRules selects the PrometheusRules of snap and renders each, sorted
// by namespace and name.
func RenderRules(snap *Snapshot, opts RuleOptions) []RuleSet {
	return RenderRulesCached(snap, opts, nil)
}

// RenderRulesCached is RenderRules reusing c (nil: no cache). Objects no
// longer in snap leave the cache.
func RenderRulesCached(snap *Snapshot, opts RuleOptions, c *RuleCache) []RuleSet {
	if snap == nil {
		return nil
	}
	var next map[ObjectKey]cachedRule
	if c != nil {
		next = make(map[ObjectKey]cachedRule, len(snap.PrometheusRules))
		defer func() { c.m = next }()
	}
	nsLabels := namespaceLabels(snap)
	out := make([]RuleSet, 0, len(snap.PrometheusRules))
	for _, pr := range sorted(snap.PrometheusRules) {
		if opts.Selector != nil && !opts.Selector.Matches(k8slabels.Set(pr.Labels)) {
			continue
		}
		if opts.NamespaceSelector != nil {
			l, known := nsLabels[pr.Namespace]
			if !known || !opts.NamespaceSelector.Matches(l) {
				continue
			}
		}
		if c == nil {
			out = append(out, RenderRule(pr, opts))
			continue
		}
		key := ObjectKey{Kind: KindPrometheusRule, Namespace: pr.Namespace, Name: pr.Name}
		cr, ok := c.m[key]
		if !ok || cr.pr != pr {
			cr = cachedRule{pr: pr, rs: RenderRule(pr, opts)}
		}
		next[key] = cr
		out = append(out, cr.rs)
	}
	return out
}

// RenderRule renders one PrometheusRule.
func RenderRule(pr *monitoringv1.PrometheusRule, opts RuleOptions) RuleSet {
	rs := RuleSet{
		Result:         Result{Kind: KindPrometheusRule, Namespace: pr.Namespace, Name: pr.Name, Generation: pr.Generation},
		RulerNamespace: opts.Prefix() + "/" + pr.Namespace + "/" + pr.Name,
	}
	groups, err := renderRuleGroups(pr, opts.EnforcedNamespaceLabel)
	if err != nil {
		rs.Result.Reason = err.Error()
		return rs
	}
	rs.Result.Accepted = true
	rs.Groups = groups
	return rs
}

// renderRuleGroups sanitizes, marshals and validates the spec as
// prometheus-operator does, and returns the parsed groups.
func renderRuleGroups(pr *monitoringv1.PrometheusRule, enforceLabel string) ([]rulefmt.RuleGroup, error) {
	spec := *pr.Spec.DeepCopy()
	for i := range spec.Groups {
		g := &spec.Groups[i]
		g.PartialResponseStrategy = ""
		if g.Interval != nil && *g.Interval == "" {
			g.Interval = nil
		}
		for j := range g.Rules {
			r := &g.Rules[j]
			if r.For != nil && *r.For == "" {
				r.For = nil
			}
			if enforceLabel != "" {
				if err := enforceRuleNamespace(r, enforceLabel, pr.Namespace); err != nil {
					return nil, fmt.Errorf("group %q rule %d: %w", g.Name, j, err)
				}
			}
		}
	}
	content, err := yaml.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("marshal rules: %w", err)
	}
	if len(content) > maxRuleSize {
		return nil, fmt.Errorf("the rendered rules are %d bytes, above the limit of %d bytes", len(content), maxRuleSize)
	}
	parsed, errs := rulefmt.Parse(content, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, errors.New("invalid rules: " + strings.Join(msgs, "; "))
	}
	if len(parsed.Groups) == 0 {
		return nil, nil
	}
	return parsed.Groups, nil
}

// enforceRuleNamespace restricts r's expression to namespace ns and labels
// r with it.
func enforceRuleNamespace(r *monitoringv1.Rule, label, ns string) error {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr.String())
	if err != nil {
		return err // rulefmt reports it too; this one names the rule
	}
	m, err := labels.NewMatcher(labels.MatchEqual, label, ns)
	if err != nil {
		return err
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			kept := vs.LabelMatchers[:0]
			for _, lm := range vs.LabelMatchers {
				if lm.Name != label {
					kept = append(kept, lm)
				}
			}
			vs.LabelMatchers = append(kept, m)
		}
		return nil
	})
	r.Expr = intstr.FromString(expr.String())
	if r.Labels == nil {
		r.Labels = map[string]string{}
	}
	r.Labels[label] = ns
	return nil
}
