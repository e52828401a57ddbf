package config

import (
	"net/url"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	promk8s "github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// probeTestSecret is the Secret the Probe and ScrapeConfig unit tests
// reference.
func probeTestSecret(ns string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns},
		Data: map[string][]byte{
			"user": []byte("alice"), "pass": []byte("pw"), "token": []byte("tok"),
			"uuid": []byte("11111111-2222-3333-4444-555555555555"),
		},
	}
}

// newProbeTestGenerator returns a flags-only generator over snap.
func newProbeTestGenerator(t *testing.T, snap *Snapshot, opts Options) *generator {
	t.Helper()
	g, err := newGenerator(snap, opts)
	require.NoError(t, err)
	return g
}

func staticProbe(mutate func(*monitoringv1.Probe)) *monitoringv1.Probe {
	p := &monitoringv1.Probe{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
		Spec: monitoringv1.ProbeSpec{
			ProberSpec: monitoringv1.ProberSpec{URL: "blackbox:9115"},
			Targets: monitoringv1.ProbeTargets{StaticConfig: &monitoringv1.ProbeTargetStaticConfig{
				Targets: []string{"https://example.com"},
			}},
		},
	}
	if mutate != nil {
		mutate(p)
	}
	return p
}

// relabelSummary renders the fields of rules that tests compare.
func relabelSummary(rcs []*relabel.Config) []string {
	out := make([]string, 0, len(rcs))
	for _, rc := range rcs {
		src := make([]string, 0, len(rc.SourceLabels))
		for _, l := range rc.SourceLabels {
			src = append(src, string(l))
		}
		out = append(out, string(rc.Action)+" ["+strings.Join(src, ",")+"] -> "+rc.TargetLabel+"="+rc.Replacement)
	}
	return out
}

func TestProbeStaticJob(t *testing.T) {
	g := newProbeTestGenerator(t, &Snapshot{}, Options{})
	jobs, err := g.probeJobs(staticProbe(func(p *monitoringv1.Probe) {
		p.Spec.JobName = "blackbox"
		p.Spec.Module = "http_2xx"
		p.Spec.Params = []monitoringv1.ProbeParam{{Name: "module", Values: []string{"x"}}, {Name: "debug", Values: []string{"true"}}}
		p.Spec.Targets.StaticConfig.Labels = map[string]string{"env": "prod"}
	}))
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	job := jobs[0]
	require.Equal(t, "probe/ns/p", job.JobName)
	require.Equal(t, defaultProberPath, job.MetricsPath)
	require.True(t, job.HonorTimestamps)
	require.Equal(t, url.Values{"module": {"http_2xx"}, "debug": {"true"}}, job.Params)

	require.Len(t, job.ServiceDiscoveryConfigs, 1)
	static, ok := job.ServiceDiscoveryConfigs[0].(promdiscovery.StaticConfig)
	require.True(t, ok)
	require.Equal(t, model.LabelSet{"namespace": "ns", "env": "prod"}, static[0].Labels)
	require.Equal(t, model.LabelValue("https://example.com"), static[0].Targets[0][model.AddressLabel])

	require.Equal(t, []string{
		"replace [job] -> __tmp_prometheus_job_name=$1",
		"replace [] -> job=blackbox",
		"replace [__address__] -> __param_target=$1",
		"replace [__param_target] -> instance=$1",
		"replace [] -> __address__=blackbox:9115",
	}, relabelSummary(job.RelabelConfigs))
	require.Nil(t, job.MetricRelabelConfigs)
}

func TestProbeStaticNamespaceLabelOverride(t *testing.T) {
	g := newProbeTestGenerator(t, &Snapshot{}, Options{})
	jobs, err := g.probeJobs(staticProbe(func(p *monitoringv1.Probe) {
		p.Spec.Targets.StaticConfig.Labels = map[string]string{"namespace": "elsewhere"}
	}))
	require.NoError(t, err)
	static := jobs[0].ServiceDiscoveryConfigs[0].(promdiscovery.StaticConfig)
	require.Equal(t, model.LabelValue("elsewhere"), static[0].Labels["namespace"])
}

func TestProbeIngressJob(t *testing.T) {
	g := newProbeTestGenerator(t, &Snapshot{}, Options{KubeconfigFile: "/kubeconfig"})
	p := staticProbe(func(p *monitoringv1.Probe) {
		p.Spec.Targets = monitoringv1.ProbeTargets{Ingress: &monitoringv1.ProbeTargetIngress{
			Selector: metav1.LabelSelector{
				MatchLabels: map[string]string{"app.kubernetes.io/name": "web"},
				MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"a", "b"}},
					{Key: "team", Operator: metav1.LabelSelectorOpExists},
				},
			},
			NamespaceSelector: monitoringv1.NamespaceSelector{MatchNames: []string{"x", "y"}},
			RelabelConfigs:    []monitoringv1.RelabelConfig{{TargetLabel: "extra", Replacement: ptrOf("1")}},
		}}
	})
	jobs, err := g.probeJobs(p)
	require.NoError(t, err)
	job := jobs[0]
	sd, ok := job.ServiceDiscoveryConfigs[0].(*promk8s.SDConfig)
	require.True(t, ok)
	require.Equal(t, promk8s.RoleIngress, sd.Role)
	require.Equal(t, []string{"x", "y"}, sd.NamespaceDiscovery.Names)
	require.Equal(t, "/kubeconfig", sd.KubeConfig)

	rcs := job.RelabelConfigs
	require.Equal(t, relabel.Keep, rcs[1].Action)
	require.Equal(t, model.LabelNames{"__meta_kubernetes_ingress_label_app_kubernetes_io_name", "__meta_kubernetes_ingress_labelpresent_app_kubernetes_io_name"}, rcs[1].SourceLabels)
	require.Equal(t, "(web);true", rcs[1].Regex.String())
	require.Equal(t, relabel.Drop, rcs[2].Action)
	require.Equal(t, "(a|b);true", rcs[2].Regex.String())
	require.Equal(t, relabel.Keep, rcs[3].Action)
	require.Equal(t, model.LabelNames{"__meta_kubernetes_ingress_labelpresent_team"}, rcs[3].SourceLabels)
	require.Equal(t, "${1}://${2}${3}", rcs[4].Replacement)
	require.Equal(t, "__param_target", rcs[4].TargetLabel)
	last := rcs[len(rcs)-1]
	require.Equal(t, "extra", last.TargetLabel, "user relabelings come last")
	require.Equal(t, "__address__", rcs[len(rcs)-2].TargetLabel)
	require.Equal(t, "blackbox:9115", rcs[len(rcs)-2].Replacement)
}

func TestProbeIngressAnyNamespace(t *testing.T) {
	g := newProbeTestGenerator(t, &Snapshot{}, Options{})
	jobs, err := g.probeJobs(staticProbe(func(p *monitoringv1.Probe) {
		p.Spec.Targets = monitoringv1.ProbeTargets{Ingress: &monitoringv1.ProbeTargetIngress{
			NamespaceSelector: monitoringv1.NamespaceSelector{Any: true},
		}}
	}))
	require.NoError(t, err)
	sd := jobs[0].ServiceDiscoveryConfigs[0].(*promk8s.SDConfig)
	require.Empty(t, sd.NamespaceDiscovery.Names, "any: true discovers all namespaces")
}

func TestProbeHTTPClient(t *testing.T) {
	snap := &Snapshot{Secrets: []*corev1.Secret{probeTestSecret("ns")}}
	g := newProbeTestGenerator(t, snap, Options{})
	jobs, err := g.probeJobs(staticProbe(func(p *monitoringv1.Probe) {
		p.Spec.BearerTokenSecret = &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "token"}
		p.Spec.ProberSpec.ProxyConfig.ProxyURL = ptrOf("http://proxy:3128")
		p.Spec.ProberSpec.Scheme = ptrOf(monitoringv1.SchemeHTTPS)
		p.Spec.FollowRedirects = ptrOf(false)
	}))
	require.NoError(t, err)
	hc := jobs[0].HTTPClientConfig
	require.Equal(t, "https", jobs[0].Scheme)
	require.Equal(t, "http://proxy:3128", hc.ProxyURL.String())
	require.False(t, hc.FollowRedirects)
	require.True(t, hc.EnableHTTP2)
	// Prometheus' own loader accepts the job and turns the bearer token into
	// an Authorization header.
	require.NoError(t, jobs[0].Validate(promconfig.DefaultGlobalConfig))
	require.Equal(t, "tok", string(jobs[0].HTTPClientConfig.Authorization.Credentials))
}

func TestProbeRejections(t *testing.T) {
	snap := &Snapshot{Secrets: []*corev1.Secret{probeTestSecret("ns")}}
	secretRef := func(key string) corev1.SecretKeySelector {
		return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: key}
	}
	for _, tc := range []struct {
		name    string
		mutate  func(*monitoringv1.Probe)
		wantErr string
	}{
		{"no targets", func(p *monitoringv1.Probe) { p.Spec.Targets = monitoringv1.ProbeTargets{} }, "at least one of"},
		{"no prober url", func(p *monitoringv1.Probe) { p.Spec.ProberSpec.URL = "" }, "prober.url: is required"},
		{"prober url with path", func(p *monitoringv1.Probe) { p.Spec.ProberSpec.URL = "http://bb:9115/probe" }, "prober.url"},
		{"bad interval", func(p *monitoringv1.Probe) { p.Spec.Interval = "1 minute" }, "interval: invalid duration"},
		{"bad timeout", func(p *monitoringv1.Probe) { p.Spec.ScrapeTimeout = "x" }, "scrapeTimeout: invalid duration"},
		{"unknown scrape class", func(p *monitoringv1.Probe) { p.Spec.ScrapeClassName = ptrOf("nope") }, `unknown scrapeClass "nope"`},
		{"missing secret key", func(p *monitoringv1.Probe) {
			p.Spec.BasicAuth = &monitoringv1.BasicAuth{Username: secretRef("nope"), Password: secretRef("pass")}
		}, `has no key "nope"`},
		{"two credentials", func(p *monitoringv1.Probe) {
			p.Spec.BasicAuth = &monitoringv1.BasicAuth{Username: secretRef("user"), Password: secretRef("pass")}
			p.Spec.BearerTokenSecret = ptrOf(secretRef("token"))
		}, "cannot be configured at the same time"},
		{"bad relabel regex", func(p *monitoringv1.Probe) {
			p.Spec.Targets.StaticConfig.RelabelConfigs = []monitoringv1.RelabelConfig{{Regex: "(["}}
		}, "targets.staticConfig.relabelingConfigs"},
		{"bad metric relabel action", func(p *monitoringv1.Probe) {
			p.Spec.MetricRelabelConfigs = []monitoringv1.RelabelConfig{{Action: "explode"}}
		}, "metricRelabelings"},
		{"bad static label", func(p *monitoringv1.Probe) {
			p.Spec.Targets.StaticConfig.Labels = map[string]string{"": "x"}
		}, "invalid label name"},
		{"empty static target", func(p *monitoringv1.Probe) {
			p.Spec.Targets.StaticConfig.Targets = []string{""}
		}, "empty target"},
		{"bad scrape protocol", func(p *monitoringv1.Probe) {
			p.Spec.ScrapeProtocols = []monitoringv1.ScrapeProtocol{"Gopher"}
		}, "scrapeProtocols"},
		{"negative limit", func(p *monitoringv1.Probe) { p.Spec.SampleLimit = ptrOf(int64(-1)) }, "sampleLimit"},
		{"bad ingress operator", func(p *monitoringv1.Probe) {
			p.Spec.Targets = monitoringv1.ProbeTargets{Ingress: &monitoringv1.ProbeTargetIngress{
				Selector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Like"}}},
			}}
		}, "invalid selector operator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newProbeTestGenerator(t, snap, Options{})
			_, err := g.probeJobs(staticProbe(tc.mutate))
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestProbeTimeoutLongerThanInterval(t *testing.T) {
	// The check is Prometheus' own, run by Generate on every job.
	snap := &Snapshot{Probes: []*monitoringv1.Probe{staticProbe(func(p *monitoringv1.Probe) {
		p.Spec.Interval, p.Spec.ScrapeTimeout = "10s", "30s"
	})}}
	_, results, err := Generate(snap, Options{})
	require.NoError(t, err)
	require.Len(t, results, 1)
	require.False(t, results[0].Accepted)
	require.Contains(t, results[0].Reason, "scrape timeout greater than scrape interval")
}

func TestProbeAgentSettings(t *testing.T) {
	agent := &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "mon"}}
	spec := &agent.Spec.CommonPrometheusFields
	spec.OverrideHonorTimestamps = true
	spec.EnforcedNamespaceLabel = "tenant"
	spec.EnforcedSampleLimit = ptrOf(int64(100))
	spec.ScrapeClasses = []monitoringv1.ScrapeClass{{
		Name: "std", Default: ptrOf(true),
		Relabelings:       []monitoringv1.RelabelConfig{{TargetLabel: "cluster", Replacement: ptrOf("c1")}},
		MetricRelabelings: []monitoringv1.RelabelConfig{{Action: "labeldrop", Regex: "tmp"}},
	}}
	g := newProbeTestGenerator(t, &Snapshot{Agent: agent}, Options{})
	jobs, err := g.probeJobs(staticProbe(func(p *monitoringv1.Probe) { p.Spec.SampleLimit = ptrOf(int64(1000)) }))
	require.NoError(t, err)
	job := jobs[0]
	require.False(t, job.HonorTimestamps, "overrideHonorTimestamps")
	require.Equal(t, uint(100), job.SampleLimit, "enforced limit caps the probe's")
	rcs := relabelSummary(job.RelabelConfigs)
	require.Equal(t, "replace [] -> cluster=c1", rcs[len(rcs)-2], "scrape class relabelings before the enforced label")
	require.Equal(t, "replace [] -> tenant=ns", rcs[len(rcs)-1])
	mrcs := relabelSummary(job.MetricRelabelConfigs)
	require.Equal(t, []string{"labeldrop [] -> =$1", "replace [] -> tenant=ns"}, mrcs)
}

func TestValidateProberURL(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"blackbox", true},
		{"blackbox:9115", true},
		{"blackbox.monitoring.svc.cluster.local:9115", true},
		{"10.0.0.1:9115", true},
		{"[::1]:9115", true},
		{"::1", true},
		{"", false},
		{"http://blackbox:9115", false},
		{"blackbox:99999", false},
		{"blackbox:0", false},
		{"black box:9115", false},
		{"blackbox:port", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			err := validateProberURL(tc.in)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func ptrOf[T any](v T) *T { return &v }
