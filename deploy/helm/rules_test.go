package helm_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/promshard/promshard/agent"
	"github.com/promshard/promshard/config"
)

// pendingMetrics are promshard metrics the alerts may use before the code
// that exports them has landed; accepted while absent from the source
// tree. Empty: every alert reads a metric that exists.
var pendingMetrics = map[string]bool{}

// syntheticMetrics are written by the scrape loop itself, not by a registry.
var syntheticMetrics = map[string]bool{"up": true}

// wantAlerts are the alerts the chart promises (values.yaml, README).
var wantAlerts = []string{
	"PromshardAPIServerUnreachable", "PromshardClusterSmallerThanExpected", "PromshardHandoffsTimingOut",
	"PromshardObjectsRejected", "PromshardRemoteWriteBehind", "PromshardRemoteWriteFailing", "PromshardTargetsUnowned",
}

// sourceMetrics are the promshard_ metric names written as string literals
// in the repository's non-test Go code.
func sourceMetrics(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"(promshard_[a-z0-9_]+)"`)
	out := map[string]bool{}
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != root || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllSubmatch(b, -1) {
			out[string(m[1])] = true
		}
		return nil
	})
	require.NoError(t, err)
	require.Contains(t, out, "promshard_cluster_members", "the walk found the sharding package")
	return out
}

// agentMetrics are the metric families the agent registers once it runs a
// remote write: Prometheus' remote storage and agent WAL metrics included.
func agentMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := agent.New(agent.Options{StoragePath: t.TempDir(), Registerer: reg, RemoteFlushDeadline: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = a.Run(ctx)
	})
	// Nothing is ever sent: there are no samples.
	u, err := url.Parse("http://127.0.0.1:1/api/v1/write")
	require.NoError(t, err)
	rw := promconfig.DefaultRemoteWriteConfig
	rw.URL = &commoncfg.URL{URL: u}
	require.NoError(t, a.ApplyConfig(&promconfig.Config{RemoteWriteConfigs: []*promconfig.RemoteWriteConfig{&rw}}))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	require.Contains(t, out, "promshard_config_apply_duration_seconds")
	return out
}

// metricNames lists the metric names expr selects.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	require.NoError(t, err, "%s", expr)
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		require.NotEmpty(t, name, "%s: a selector without a metric name", expr)
		out = append(out, name)
		return nil
	})
	require.NotEmpty(t, out, "%s selects no metric", expr)
	return out
}

// checkKnown fails for a metric name neither the code nor the agent's
// registry knows (histogram series by their family name).
func checkKnown(t *testing.T, where, name string, source, registry map[string]bool) {
	t.Helper()
	family := name
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if f, ok := strings.CutSuffix(name, suffix); ok && (source[f] || registry[f]) {
			family = f
		}
	}
	switch {
	case syntheticMetrics[family], registry[family]:
	case strings.HasPrefix(family, "promshard_") && source[family]:
	case pendingMetrics[family]:
		t.Logf("%s: %s is not in the source tree yet (pending)", where, family)
	default:
		t.Errorf("%s: metric %s exists neither in the Go source nor in the agent's registry", where, name)
	}
}

func prometheusRule(t *testing.T, objs []obj) *monitoringv1.PrometheusRule {
	t.Helper()
	j, err := json.Marshal(find(t, objs, "PrometheusRule/promshard"))
	require.NoError(t, err)
	pr := &monitoringv1.PrometheusRule{}
	require.NoError(t, yaml.UnmarshalStrict(j, pr))
	return pr
}

// TestChartAlerts: in both modes the PrometheusRule is accepted by
// promshard's own rule rendering (prometheus-operator's, validated with
// Prometheus' rule parser, templates included), has the promised alerts,
// each with a severity, a `for`, a summary and a description, and every
// metric it reads exists.
func TestChartAlerts(t *testing.T) {
	source, registry := sourceMetrics(t), agentMetrics(t)
	for _, mode := range []string{"statefulset", "daemonset"} {
		t.Run(mode, func(t *testing.T) {
			pr := prometheusRule(t, decode(t, []byte(render(t, map[string]any{"mode": mode}))))
			rs := config.RenderRule(pr, config.RuleOptions{})
			require.True(t, rs.Result.Accepted, "PrometheusRule refused: %s", rs.Result.Reason)
			var names []string
			for _, g := range pr.Spec.Groups {
				for _, r := range g.Rules {
					require.NotEmpty(t, r.Alert, "only alerts: %s", r.Expr.String())
					names = append(names, r.Alert)
					require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], r.Alert)
					require.NotNil(t, r.For, r.Alert)
					d, err := model.ParseDuration(string(*r.For))
					require.NoError(t, err, r.Alert)
					require.Greater(t, time.Duration(d), time.Duration(0), "%s: a `for` keeps one bad scrape from alerting", r.Alert)
					require.NotEmpty(t, r.Annotations["summary"], r.Alert)
					require.NotEmpty(t, r.Annotations["description"], r.Alert)
					expr := r.Expr.String()
					require.Contains(t, expr, `job="promshard",namespace="promshard"`, "%s: only promshard's own series", r.Alert)
					for _, n := range metricNames(t, expr) {
						checkKnown(t, r.Alert, n, source, registry)
					}
				}
			}
			sort.Strings(names)
			require.Equal(t, wantAlerts, names)
		})
	}
	// The expected cluster size follows the mode.
	sts := prometheusRule(t, decode(t, []byte(render(t, map[string]any{"replicas": 7}))))
	ds := prometheusRule(t, decode(t, []byte(render(t, map[string]any{"mode": "daemonset"}))))
	require.Contains(t, alertExpr(t, sts, "PromshardClusterSmallerThanExpected"), "< 7")
	require.Contains(t, alertExpr(t, ds, "PromshardClusterSmallerThanExpected"), "count by (namespace, job) (up{")
}

func alertExpr(t *testing.T, pr *monitoringv1.PrometheusRule, alert string) string {
	t.Helper()
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == alert {
				return r.Expr.String()
			}
		}
	}
	require.Failf(t, "alert missing", "%s", alert)
	return ""
}

// grafanaVars are the dashboard's variables, replaced before parsing.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$job", "promshard")

// TestChartDashboard: the dashboard ConfigMap carries the sidecar label and
// valid JSON whose every query parses and reads existing metrics.
func TestChartDashboard(t *testing.T) {
	source, registry := sourceMetrics(t), agentMetrics(t)
	cm := find(t, decode(t, []byte(render(t, nil))), "ConfigMap/promshard-dashboard")
	require.Equal(t, "1", cm["metadata"].(obj)["labels"].(obj)["grafana_dashboard"])
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal([]byte(cm["data"].(obj)["promshard.json"].(string)), &dash))
	require.Equal(t, "promshard", dash.Title)
	var titles []string
	for _, p := range dash.Panels {
		titles = append(titles, p.Title)
		require.NotEmpty(t, p.Targets, p.Title)
		for _, q := range p.Targets {
			for _, n := range metricNames(t, grafanaVars.Replace(q.Expr)) {
				checkKnown(t, p.Title, n, source, registry)
			}
		}
	}
	all := strings.Join(titles, "\n")
	for _, want := range []string{"members", "Targets owned per member", "series per member", "apply latency", "Remote-write lag"} {
		require.Contains(t, all, want)
	}
}
