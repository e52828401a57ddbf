package config

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	promk8s "github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newTestSM(ns, name string, lbls map[string]string, eps ...monitoringv1.Endpoint) *monitoringv1.ServiceMonitor {
	return &monitoringv1.ServiceMonitor{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls, Generation: 3},
		Spec:       monitoringv1.ServiceMonitorSpec{Endpoints: eps},
	}
}

func newTestAgent(mod func(*monitoringv1.CommonPrometheusFields)) *monitoringv1alpha1.PrometheusAgent {
	a := &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Namespace: "mon", Name: "a"}}
	if mod != nil {
		mod(&a.Spec.CommonPrometheusFields)
	}
	return a
}

func testJobNames(cfg *promconfig.Config) []string {
	var out []string
	for _, sc := range cfg.ScrapeConfigs {
		out = append(out, sc.JobName)
	}
	return out
}

func TestSelection(t *testing.T) {
	web := monitoringv1.Endpoint{Port: "web"}
	monitors := []*monitoringv1.ServiceMonitor{
		newTestSM("mon", "own", map[string]string{"team": "a"}, web),
		newTestSM("apps", "other-ns", map[string]string{"team": "a"}, web),
		newTestSM("mon", "other-team", map[string]string{"team": "b"}, web),
	}
	namespaces := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"env": "prod"}}}}
	teamA := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	for _, tc := range []struct {
		name  string
		agent *monitoringv1alpha1.PrometheusAgent
		flags FlagSettings
		want  []string
	}{
		{"agent nil selector selects nothing", newTestAgent(nil), FlagSettings{}, nil},
		{"agent empty selector, nil namespace selector: own namespace", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ServiceMonitorSelector = &metav1.LabelSelector{}
		}), FlagSettings{}, []string{"serviceMonitor/mon/other-team/0", "serviceMonitor/mon/own/0"}},
		{"agent label selector, all namespaces", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ServiceMonitorSelector = teamA
			s.ServiceMonitorNamespaceSelector = &metav1.LabelSelector{}
		}), FlagSettings{}, []string{"serviceMonitor/apps/other-ns/0", "serviceMonitor/mon/own/0"}},
		{"agent namespace label selector", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ServiceMonitorSelector = &metav1.LabelSelector{}
			s.ServiceMonitorNamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
		}), FlagSettings{}, []string{"serviceMonitor/apps/other-ns/0"}},
		{"agent matchExpressions", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ServiceMonitorSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "team", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"a"}},
			}}
			s.ServiceMonitorNamespaceSelector = &metav1.LabelSelector{}
		}), FlagSettings{}, []string{"serviceMonitor/mon/other-team/0"}},
		{"flags nil selects all", nil, FlagSettings{}, []string{"serviceMonitor/apps/other-ns/0", "serviceMonitor/mon/other-team/0", "serviceMonitor/mon/own/0"}},
		{"flags selectors", nil, FlagSettings{MonitorSelector: teamA, NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{"kubernetes.io/metadata.name": "mon"},
		}}, []string{"serviceMonitor/mon/own/0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := &Snapshot{Agent: tc.agent, ServiceMonitors: monitors, Namespaces: namespaces}
			cfg, results, err := Generate(snap, Options{Flags: tc.flags})
			require.NoError(t, err)
			require.Equal(t, tc.want, testJobNames(cfg))
			require.Len(t, results, len(tc.want))
			for _, r := range results {
				require.True(t, r.Accepted)
				require.Equal(t, int64(3), r.Generation)
			}
		})
	}
}

func TestGlobalSettings(t *testing.T) {
	empty := ""
	custom := "source"
	for _, tc := range []struct {
		name     string
		agent    *monitoringv1alpha1.PrometheusAgent
		flags    FlagSettings
		interval model.Duration
		timeout  model.Duration
		labels   map[string]string
		wantErr  string
	}{
		{"flags defaults", nil, FlagSettings{}, model.Duration(30 * time.Second), model.Duration(10 * time.Second), map[string]string{}, ""},
		{"flags short interval caps timeout", nil, FlagSettings{ScrapeInterval: model.Duration(5 * time.Second), ExternalLabels: map[string]string{"c": "x"}},
			model.Duration(5 * time.Second), model.Duration(5 * time.Second), map[string]string{"c": "x"}, ""},
		{"agent defaults add prometheus label", newTestAgent(nil), FlagSettings{}, model.Duration(30 * time.Second), model.Duration(10 * time.Second),
			map[string]string{"prometheus": "mon/a"}, ""},
		{"agent custom label name and user labels", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.PrometheusExternalLabelName = &custom
			s.ExternalLabels = map[string]string{"cluster": "c1"}
			s.ScrapeInterval = "1m"
			s.ScrapeTimeout = "20s"
		}), FlagSettings{}, model.Duration(time.Minute), model.Duration(20 * time.Second), map[string]string{"source": "mon/a", "cluster": "c1"}, ""},
		{"agent empty label name disables it", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.PrometheusExternalLabelName = &empty
		}), FlagSettings{}, model.Duration(30 * time.Second), model.Duration(10 * time.Second), map[string]string{}, ""},
		{"agent external label cannot replace the reserved one", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ExternalLabels = map[string]string{"prometheus": "spoofed", "cluster": "c1"}
		}), FlagSettings{}, model.Duration(30 * time.Second), model.Duration(10 * time.Second), map[string]string{"prometheus": "mon/a", "cluster": "c1"}, ""},
		{"agent utf-8 escaping with legacy validation", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			legacy, utf8 := monitoringv1.LegacyNameValidationScheme, monitoringv1.AllowUTF8NameEscapingScheme
			s.NameValidationScheme, s.NameEscapingScheme = &legacy, &utf8
		}), FlagSettings{}, 0, 0, nil, "needs nameValidationScheme"},
		{"agent bad interval", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) { s.ScrapeInterval = "often" }), FlagSettings{}, 0, 0, nil, "scrapeInterval"},
		{"agent timeout > interval", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ScrapeInterval = "10s"
			s.ScrapeTimeout = "20s"
		}), FlagSettings{}, 0, 0, nil, "longer than scrapeInterval"},
		{"agent two default classes", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			yes := true
			s.ScrapeClasses = []monitoringv1.ScrapeClass{{Name: "a", Default: &yes}, {Name: "b", Default: &yes}}
		}), FlagSettings{}, 0, 0, nil, "both default"},
		{"agent scrape class with caFile and ca", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ScrapeClasses = []monitoringv1.ScrapeClass{{Name: "a", TLSConfig: &monitoringv1.TLSConfig{
				SafeTLSConfig:  monitoringv1.SafeTLSConfig{CA: monitoringv1.SecretOrConfigMap{Secret: &corev1.SecretKeySelector{Key: "ca"}}},
				TLSFilesConfig: monitoringv1.TLSFilesConfig{CAFile: "/ca"},
			}}}
		}), FlagSettings{}, 0, 0, nil, `scrapeClass "a" tlsConfig: cannot specify both 'caFile' and 'ca'`},
		{"agent scrape class basic authorization", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ScrapeClasses = []monitoringv1.ScrapeClass{{Name: "a", Authorization: &monitoringv1.Authorization{
				SafeAuthorization: monitoringv1.SafeAuthorization{Type: "Basic"}, CredentialsFile: "/t",
			}}}
		}), FlagSettings{}, 0, 0, nil, `scrapeClass "a" authorization`},
		{"agent bad remote write URL", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.RemoteWrite = []monitoringv1.RemoteWriteSpec{{URL: "ftp://x"}}
		}), FlagSettings{}, 0, 0, nil, "remoteWrite[0]"},
		{"agent bad selector", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ServiceMonitorSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}
		}), FlagSettings{}, 0, 0, nil, "invalid serviceMonitorSelector"},
		{"agent duplicate remote write name", newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			n := "x"
			s.RemoteWrite = []monitoringv1.RemoteWriteSpec{{URL: "http://a", Name: &n}, {URL: "http://b", Name: &n}}
		}), FlagSettings{}, 0, 0, nil, `duplicate name "x"`},
		{"flags bad remote write", nil, FlagSettings{RemoteWriteURLs: []string{"no-scheme"}}, 0, 0, nil, "remote write 0"},
		{"flags bad role", nil, FlagSettings{ServiceDiscoveryRole: "Pods"}, 0, 0, nil, "unknown serviceDiscoveryRole"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Generate(&Snapshot{Agent: tc.agent}, Options{Flags: tc.flags})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.interval, cfg.GlobalConfig.ScrapeInterval)
			require.Equal(t, tc.timeout, cfg.GlobalConfig.ScrapeTimeout)
			require.Equal(t, tc.labels, cfg.GlobalConfig.ExternalLabels.Map())
			require.NotContains(t, cfg.GlobalConfig.ExternalLabels.Map(), "prometheus_replica")
			_, err = Check(cfg)
			require.NoError(t, err)
		})
	}
}

func TestServiceDiscoveryRoleDefaults(t *testing.T) {
	mon := newTestSM("mon", "m", nil, monitoringv1.Endpoint{Port: "web"})
	all := func(s *monitoringv1.CommonPrometheusFields) { s.ServiceMonitorSelector = &metav1.LabelSelector{} }
	for _, tc := range []struct {
		name  string
		agent *monitoringv1alpha1.PrometheusAgent
		want  promk8s.Role
	}{
		{"agent unset: endpoints", newTestAgent(all), promk8s.RoleEndpoint},
		{"flags unset: endpointslice", nil, promk8s.RoleEndpointSlice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Generate(&Snapshot{Agent: tc.agent, ServiceMonitors: []*monitoringv1.ServiceMonitor{mon}}, Options{})
			require.NoError(t, err)
			require.Len(t, cfg.ScrapeConfigs, 1)
			sd := cfg.ScrapeConfigs[0].ServiceDiscoveryConfigs[0].(*promk8s.SDConfig)
			require.Equal(t, tc.want, sd.Role)
			require.Equal(t, []string{"mon"}, sd.NamespaceDiscovery.Names)
		})
	}
}

func TestEffectiveLimit(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		user, enforced *int64
		want           int64
	}{
		{nil, nil, 0}, {i(5), nil, 5}, {nil, i(7), 7}, {i(0), i(7), 7}, {i(5), i(7), 5}, {i(9), i(7), 7}, {i(9), i(0), 9},
	} {
		got, err := effectiveLimit(tc.user, tc.enforced)
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
	_, err := effectiveLimit(i(-1), nil)
	require.Error(t, err)
}

func TestServiceMonitorRelabelOrder(t *testing.T) {
	mon := newTestSM("ns", "m", nil, monitoringv1.Endpoint{
		Port:           "web",
		RelabelConfigs: []monitoringv1.RelabelConfig{{TargetLabel: "user", Replacement: ptrStr("x")}},
	})
	mon.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}
	mon.Spec.TargetLabels = []string{"tl"}
	mon.Spec.JobLabel = "jl"
	yes := true
	a := newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
		s.ServiceMonitorSelector = &metav1.LabelSelector{}
		s.ServiceMonitorNamespaceSelector = &metav1.LabelSelector{}
		s.EnforcedNamespaceLabel = "tenant"
		s.PodTargetLabels = []string{"ptl"}
		s.ScrapeClasses = []monitoringv1.ScrapeClass{{Name: "c", Default: &yes, Relabelings: []monitoringv1.RelabelConfig{{TargetLabel: "class", Replacement: ptrStr("c")}}}}
	})
	cfg, results, err := Generate(&Snapshot{Agent: a, ServiceMonitors: []*monitoringv1.ServiceMonitor{mon}}, Options{})
	require.NoError(t, err)
	require.True(t, results[0].Accepted, results[0].Reason)
	var got []string
	for _, rc := range cfg.ScrapeConfigs[0].RelabelConfigs {
		got = append(got, fmt.Sprintf("%s %s>%s", rc.Action, rc.SourceLabels, rc.TargetLabel))
	}
	require.Equal(t, []string{
		"replace job>__tmp_prometheus_job_name",
		"keep __meta_kubernetes_service_label_app, __meta_kubernetes_service_labelpresent_app>",
		"keep __meta_kubernetes_endpoint_port_name>",
		"replace __meta_kubernetes_endpoint_address_target_kind, __meta_kubernetes_endpoint_address_target_name>node",
		"replace __meta_kubernetes_endpoint_address_target_kind, __meta_kubernetes_endpoint_address_target_name>pod",
		"replace __meta_kubernetes_namespace>namespace",
		"replace __meta_kubernetes_service_name>service",
		"replace __meta_kubernetes_pod_name>pod",
		"replace __meta_kubernetes_pod_container_name>container",
		"drop __meta_kubernetes_pod_phase>",
		"replace __meta_kubernetes_service_label_tl>tl",
		"replace __meta_kubernetes_pod_label_ptl>ptl",
		"replace __meta_kubernetes_service_name>job",
		"replace __meta_kubernetes_service_label_jl>job",
		"replace >endpoint",
		"replace >class",
		"replace >user",
		"replace >tenant",
	}, got)
	for _, rc := range cfg.ScrapeConfigs[0].RelabelConfigs {
		require.NotEqual(t, "hashmod", string(rc.Action), "no sharding rules")
	}
}

func TestMarshalRedactsSecrets(t *testing.T) {
	snap, opts := loadTestInput(t, "testdata/servicemonitor.yaml")
	cfg, _, err := Generate(snap, opts)
	require.NoError(t, err)
	redacted, err := Marshal(cfg, false)
	require.NoError(t, err)
	require.NotContains(t, string(redacted), "s3cret")
	require.Contains(t, string(redacted), "<secret>")
	shown, err := Marshal(cfg, true)
	require.NoError(t, err)
	require.Contains(t, string(shown), "s3cret")
	_, err = LoadYAML(redacted)
	require.NoError(t, err)
}

func TestDeterminism(t *testing.T) {
	snap, opts := loadTestInput(t, "testdata/servicemonitor.yaml")
	first := renderGolden(t, snap, opts)
	for i := 0; i < 50; i++ {
		// Shuffle the input order: the output must not depend on it.
		s := *snap
		s.ServiceMonitors = append([]*monitoringv1.ServiceMonitor(nil), snap.ServiceMonitors...)
		for j := range s.ServiceMonitors {
			k := (j*7 + i) % len(s.ServiceMonitors)
			s.ServiceMonitors[j], s.ServiceMonitors[k] = s.ServiceMonitors[k], s.ServiceMonitors[j]
		}
		require.True(t, bytes.Equal(first, renderGolden(t, &s, opts)), "render %d differs", i)
	}
}

func FuzzGenerate(f *testing.F) {
	f.Add("web", "/metrics", "30s", "10s", "(.*)", "replace", "app", "web", "target")
	f.Add("", "metrics", "1m", "2m", "(", "explode", "a/b", "x y", "")
	f.Add("p", "/", "0s", "", "a|b", "labeldrop", "", "", "__name__")
	f.Fuzz(func(t *testing.T, port, path, interval, timeout, regex, action, labelKey, labelValue, target string) {
		mon := newTestSM("ns", "fuzz", nil, monitoringv1.Endpoint{
			Port: port, Path: path, Interval: monitoringv1.Duration(interval), ScrapeTimeout: monitoringv1.Duration(timeout),
			RelabelConfigs:       []monitoringv1.RelabelConfig{{Regex: regex, Action: action, TargetLabel: target}},
			MetricRelabelConfigs: []monitoringv1.RelabelConfig{{SourceLabels: []monitoringv1.LabelName{monitoringv1.LabelName(labelKey)}, Regex: regex}},
		})
		mon.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{labelKey: labelValue}}
		mon.Spec.TargetLabels = []string{labelKey}
		mon.Spec.JobLabel = labelValue
		cfg, results, err := Generate(&Snapshot{ServiceMonitors: []*monitoringv1.ServiceMonitor{mon}}, Options{})
		require.NoError(t, err)
		require.Len(t, results, 1)
		if results[0].Accepted {
			// An accepted object must always give a loadable configuration.
			_, err := Check(cfg)
			require.NoError(t, err)
		} else {
			require.NotEmpty(t, results[0].Reason)
			require.Empty(t, cfg.ScrapeConfigs)
		}
	})
}

func BenchmarkGenerate5000ServiceMonitors(b *testing.B) {
	snap := &Snapshot{}
	for i := 0; i < 5000; i++ {
		mon := newTestSM(fmt.Sprintf("ns-%d", i%50), fmt.Sprintf("mon-%d", i), map[string]string{"team": "a"},
			monitoringv1.Endpoint{Port: "web", Interval: "30s", RelabelConfigs: []monitoringv1.RelabelConfig{{TargetLabel: "x", Replacement: ptrStr("y")}}},
			monitoringv1.Endpoint{Port: "metrics", Path: "/m", MetricRelabelConfigs: []monitoringv1.RelabelConfig{{Action: "drop", SourceLabels: []monitoringv1.LabelName{"__name__"}, Regex: "go_.*"}}},
		)
		mon.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", i)}}
		snap.ServiceMonitors = append(snap.ServiceMonitors, mon)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cfg, _, err := Generate(snap, Options{})
		if err != nil || len(cfg.ScrapeConfigs) != 10000 {
			b.Fatalf("err=%v jobs=%d", err, len(cfg.ScrapeConfigs))
		}
	}
}

func ExampleGenerate() {
	snap := &Snapshot{
		ServiceMonitors: []*monitoringv1.ServiceMonitor{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec: monitoringv1.ServiceMonitorSpec{
				Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Endpoints: []monitoringv1.Endpoint{{Port: "http"}},
			},
		}, {
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "broken"},
			Spec:       monitoringv1.ServiceMonitorSpec{Endpoints: []monitoringv1.Endpoint{{Port: "http", Path: "metrics"}}},
		}},
	}
	opts := Options{Flags: FlagSettings{RemoteWriteURLs: []string{"http://receiver:9090/api/v1/write"}}}
	cfg, results, err := Generate(snap, opts)
	if err != nil {
		panic(err)
	}
	fmt.Println("remote writes:", len(cfg.RemoteWriteConfigs))
	for _, sc := range cfg.ScrapeConfigs {
		fmt.Println("job:", sc.JobName, sc.ScrapeInterval)
	}
	for _, r := range results {
		if r.Accepted {
			fmt.Printf("accepted %s %s/%s\n", r.Kind, r.Namespace, r.Name)
		} else {
			fmt.Printf("rejected %s %s/%s: %s\n", r.Kind, r.Namespace, r.Name, r.Reason)
		}
	}
	// Output:
	// remote writes: 1
	// job: serviceMonitor/shop/web/0 30s
	// rejected ServiceMonitor shop/broken: endpoint 0: invalid path "metrics": must start with /
	// accepted ServiceMonitor shop/web
}

func TestFileAccess(t *testing.T) {
	mon := newTestSM("mon", "files", nil, monitoringv1.Endpoint{Port: "web", BearerTokenFile: "/var/token"})
	all := func(deny bool) *monitoringv1alpha1.PrometheusAgent {
		return newTestAgent(func(s *monitoringv1.CommonPrometheusFields) {
			s.ServiceMonitorSelector = &metav1.LabelSelector{}
			s.ArbitraryFSAccessThroughSMs.Deny = deny
		})
	}
	for _, tc := range []struct {
		name  string
		agent *monitoringv1alpha1.PrometheusAgent
		allow bool
		want  bool
	}{
		{"flags default rejects", nil, false, false},
		{"flags allow", nil, true, true},
		{"agent deny=false allows, like prometheus-operator", all(false), false, true},
		{"agent deny=true rejects", all(true), false, false},
		{"agent deny=true but flag allows", all(true), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, results, err := Generate(&Snapshot{Agent: tc.agent, ServiceMonitors: []*monitoringv1.ServiceMonitor{mon}}, Options{AllowFileAccess: tc.allow})
			require.NoError(t, err)
			require.Len(t, results, 1)
			require.Equal(t, tc.want, results[0].Accepted, results[0].Reason)
			if tc.want {
				// Validate moves bearer_token_file into authorization, as config.Load does.
				require.Equal(t, "/var/token", cfg.ScrapeConfigs[0].HTTPClientConfig.Authorization.CredentialsFile)
			} else {
				require.Contains(t, results[0].Reason, "file access is not allowed")
			}
		})
	}
}

// TestGenerateResultsSorted: the results come sorted by kind, namespace and
// name whatever the kinds present, also where a namespace is a prefix of
// another one ("team-a/x" sorts before "team/x" among objects, after it
// among results).
func TestGenerateResultsSorted(t *testing.T) {
	meta := func(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
	ep := monitoringv1.Endpoint{Port: "web"}
	for _, nss := range [][]string{{"a", "b"}, {"team", "team-a"}} {
		snap := &Snapshot{}
		for _, ns := range nss {
			snap.ServiceMonitors = append(snap.ServiceMonitors, newTestSM(ns, "x", nil, ep))
			snap.PodMonitors = append(snap.PodMonitors, &monitoringv1.PodMonitor{ObjectMeta: meta(ns, "x"),
				Spec: monitoringv1.PodMonitorSpec{PodMetricsEndpoints: []monitoringv1.PodMetricsEndpoint{{Port: ptrTo("web")}}}})
			snap.Probes = append(snap.Probes, &monitoringv1.Probe{ObjectMeta: meta(ns, "x")})
			snap.ScrapeConfigs = append(snap.ScrapeConfigs, &monitoringv1alpha1.ScrapeConfig{ObjectMeta: meta(ns, "x")})
		}
		_, results, err := Generate(snap, Options{})
		require.NoError(t, err)
		require.Len(t, results, 8)
		var got []string
		for _, r := range results {
			got = append(got, r.Kind+" "+r.Namespace)
		}
		a, b := nss[0], nss[1]
		require.Equal(t, []string{
			KindPodMonitor + " " + a, KindPodMonitor + " " + b, KindProbe + " " + a, KindProbe + " " + b,
			KindScrapeConfig + " " + a, KindScrapeConfig + " " + b, KindServiceMonitor + " " + a, KindServiceMonitor + " " + b,
		}, got)
	}
}
