package config

import (
	"bytes"
	"strconv"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzProbeAndScrapeConfig translates a Probe and a ScrapeConfig built from
// arbitrary strings. It must never panic, and an accepted object must always
// give a configuration that Prometheus' own loader accepts.
func FuzzProbeAndScrapeConfig(f *testing.F) {
	f.Add("blackbox:9115", "https://example.com", "http_2xx", "30s", "10s", "(.*)", "app", "web", "https://sd/x", "SRV", "Pod")
	f.Add("", "", "", "1m", "2m", "(", "a/b", "x y", "ftp://x", "A", "Moon")
	f.Add("[::1]:9115", "x:80", "m", "0s", "", "a|b", "", "", "http://", "MX", "EndpointSlice")
	f.Fuzz(func(t *testing.T, prober, target, module, interval, timeout, regex, key, value, sdURL, dnsType, role string) {
		probe := &monitoringv1.Probe{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
			Spec: monitoringv1.ProbeSpec{
				ProberSpec: monitoringv1.ProberSpec{URL: prober},
				Module:     module,
				Interval:   monitoringv1.Duration(interval), ScrapeTimeout: monitoringv1.Duration(timeout),
				Targets: monitoringv1.ProbeTargets{StaticConfig: &monitoringv1.ProbeTargetStaticConfig{
					Targets:        []string{target},
					Labels:         map[string]string{key: value},
					RelabelConfigs: []monitoringv1.RelabelConfig{{Regex: regex, TargetLabel: key}},
				}},
				MetricRelabelConfigs: []monitoringv1.RelabelConfig{{Regex: regex, Action: "drop"}},
			},
		}
		ingress := probe.DeepCopy()
		ingress.Name = "ingress"
		ingress.Spec.Targets = monitoringv1.ProbeTargets{Ingress: &monitoringv1.ProbeTargetIngress{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{key: value}},
		}}
		sc := &monitoringv1alpha1.ScrapeConfig{
			ObjectMeta: metav1.ObjectMeta{Name: "sc", Namespace: "ns"},
			Spec: monitoringv1alpha1.ScrapeConfigSpec{
				ScrapeInterval: ptrOf(monitoringv1.Duration(interval)),
				ScrapeTimeout:  ptrOf(monitoringv1.Duration(timeout)),
				StaticConfigs: []monitoringv1alpha1.StaticConfig{{
					Targets: []monitoringv1alpha1.Target{monitoringv1alpha1.Target(target)},
					Labels:  map[string]string{key: value},
				}},
				HTTPSDConfigs:       []monitoringv1alpha1.HTTPSDConfig{{URL: monitoringv1alpha1.URL(sdURL)}},
				DNSSDConfigs:        []monitoringv1alpha1.DNSSDConfig{{Names: []string{value}, Type: ptrOf(monitoringv1alpha1.DNSRecordType(dnsType))}},
				KubernetesSDConfigs: []monitoringv1alpha1.KubernetesSDConfig{{Role: monitoringv1alpha1.KubernetesRole(role)}},
				RelabelConfigs:      []monitoringv1.RelabelConfig{{Regex: regex, TargetLabel: key}},
				Params:              map[string][]string{key: {value}},
			},
		}
		snap := &Snapshot{Probes: []*monitoringv1.Probe{probe, ingress}, ScrapeConfigs: []*monitoringv1alpha1.ScrapeConfig{sc}}
		cfg, results, err := Generate(snap, Options{})
		require.NoError(t, err)
		require.Len(t, results, 3)
		for _, r := range results {
			if !r.Accepted {
				require.NotEmpty(t, r.Reason)
			}
		}
		_, err = Check(cfg)
		require.NoError(t, err, "accepted objects must give a loadable configuration")
	})
}

// TestProbeAndScrapeConfigDeterminism renders the Probe and ScrapeConfig
// golden inputs many times, in shuffled input order, and expects identical
// bytes.
func TestProbeAndScrapeConfigDeterminism(t *testing.T) {
	for _, in := range []string{"testdata/probe_static.yaml", "testdata/probe_agent.yaml", "testdata/scrapeconfig_core.yaml", "testdata/scrapeconfig_cloud.yaml"} {
		t.Run(in, func(t *testing.T) {
			snap, opts := loadTestInput(t, in)
			first := renderGolden(t, snap, opts)
			for i := 0; i < 20; i++ {
				s := *snap
				s.Probes = append([]*monitoringv1.Probe(nil), snap.Probes...)
				s.ScrapeConfigs = append([]*monitoringv1alpha1.ScrapeConfig(nil), snap.ScrapeConfigs...)
				for j := range s.Probes {
					k := (j*5 + i) % len(s.Probes)
					s.Probes[j], s.Probes[k] = s.Probes[k], s.Probes[j]
				}
				for j := range s.ScrapeConfigs {
					k := (j*3 + i) % len(s.ScrapeConfigs)
					s.ScrapeConfigs[j], s.ScrapeConfigs[k] = s.ScrapeConfigs[k], s.ScrapeConfigs[j]
				}
				require.True(t, bytes.Equal(first, renderGolden(t, &s, opts)), "render %d differs", i)
			}
		})
	}
}

// BenchmarkGenerateProbesAndScrapeConfigs translates 1,000 Probes and 1,000
// ScrapeConfigs (static, HTTP, Kubernetes and DNS discovery each).
func BenchmarkGenerateProbesAndScrapeConfigs(b *testing.B) {
	snap := &Snapshot{}
	for i := 0; i < 1000; i++ {
		p := staticProbe(nil)
		p.Name = "p" + strconv.Itoa(i)
		p.Spec.Module = "http_2xx"
		snap.Probes = append(snap.Probes, p)
		snap.ScrapeConfigs = append(snap.ScrapeConfigs, &monitoringv1alpha1.ScrapeConfig{
			ObjectMeta: metav1.ObjectMeta{Name: "sc" + strconv.Itoa(i), Namespace: "ns"},
			Spec: monitoringv1alpha1.ScrapeConfigSpec{
				StaticConfigs:       []monitoringv1alpha1.StaticConfig{{Targets: []monitoringv1alpha1.Target{"a:80", "b:80"}}},
				HTTPSDConfigs:       []monitoringv1alpha1.HTTPSDConfig{{URL: "https://sd.example.com/targets"}},
				KubernetesSDConfigs: []monitoringv1alpha1.KubernetesSDConfig{{Role: monitoringv1alpha1.KubernetesRolePod}},
				DNSSDConfigs:        []monitoringv1alpha1.DNSSDConfig{{Names: []string{"_m._tcp.example.com"}}},
				RelabelConfigs:      []monitoringv1.RelabelConfig{{SourceLabels: []monitoringv1.LabelName{"__meta_kubernetes_pod_name"}, TargetLabel: "pod"}},
			},
		})
	}
	b.ReportAllocs()
	for b.Loop() {
		cfg, _, err := Generate(snap, Options{})
		if err != nil || len(cfg.ScrapeConfigs) != 2000 {
			b.Fatalf("err=%v jobs=%d", err, len(cfg.ScrapeConfigs))
		}
	}
}
