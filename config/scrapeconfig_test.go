package config

import (
	"net/url"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/aws"
	"github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/dns"
	"github.com/prometheus/prometheus/discovery/file"
	httpsd "github.com/prometheus/prometheus/discovery/http"
	promk8s "github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/moby"
	"github.com/prometheus/prometheus/discovery/ovhcloud"
	"github.com/prometheus/prometheus/discovery/scaleway"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func credsKey(key string) corev1.SecretKeySelector {
	return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: key}
}

func testScrapeConfig(spec monitoringv1alpha1.ScrapeConfigSpec) *monitoringv1alpha1.ScrapeConfig {
	return &monitoringv1alpha1.ScrapeConfig{ObjectMeta: metav1.ObjectMeta{Name: "sc", Namespace: "ns"}, Spec: spec}
}

// scrapeConfigJobFor translates spec in flags-only mode and returns the job.
func scrapeConfigJobFor(t *testing.T, opts Options, spec monitoringv1alpha1.ScrapeConfigSpec) *promconfig.ScrapeConfig {
	t.Helper()
	g := newProbeTestGenerator(t, &Snapshot{Secrets: []*corev1.Secret{probeTestSecret("ns")}}, opts)
	jobs, err := g.scrapeConfigJobs(testScrapeConfig(spec))
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	require.NoError(t, jobs[0].Validate(promconfig.DefaultGlobalConfig), "Prometheus accepts the job")
	return jobs[0]
}

func TestScrapeConfigScrapeFields(t *testing.T) {
	job := scrapeConfigJobFor(t, Options{}, monitoringv1alpha1.ScrapeConfigSpec{
		JobName:                  ptrOf("renamed"),
		StaticConfigs:            []monitoringv1alpha1.StaticConfig{{Targets: []monitoringv1alpha1.Target{"a:80"}, Labels: map[string]string{"l": "v"}}},
		MetricsPath:              ptrOf("/m"),
		ScrapeInterval:           ptrOf(monitoringv1.Duration("1m")),
		ScrapeTimeout:            ptrOf(monitoringv1.Duration("30s")),
		HonorLabels:              ptrOf(true),
		HonorTimestamps:          ptrOf(false),
		TrackTimestampsStaleness: ptrOf(true),
		Params:                   map[string][]string{"module": {"m"}},
		Scheme:                   ptrOf(monitoringv1.SchemeHTTPS),
		EnableCompression:        ptrOf(false),
		EnableHTTP2:              ptrOf(false),
		BasicAuth:                &monitoringv1.BasicAuth{Username: credsKey("user"), Password: credsKey("pass")},
		BodySizeLimit:            ptrOf(monitoringv1.ByteSize("1MB")),
		SampleLimit:              ptrOf(int64(10)),
		NameValidationScheme:     ptrOf(monitoringv1.LegacyNameValidationScheme),
		NameEscapingScheme:       ptrOf(monitoringv1.DotsNameEscapingScheme),
		ExtraScrapeMetrics:       ptrOf(true),
		FallbackScrapeProtocol:   ptrOf(monitoringv1.PrometheusText0_0_4),
	})
	require.Equal(t, "scrapeConfig/ns/sc", job.JobName)
	require.Equal(t, "/m", job.MetricsPath)
	require.Equal(t, model.Duration(time.Minute), job.ScrapeInterval)
	require.Equal(t, model.Duration(30*time.Second), job.ScrapeTimeout)
	require.True(t, job.HonorLabels)
	require.False(t, job.HonorTimestamps)
	require.True(t, job.TrackTimestampsStaleness)
	require.Equal(t, url.Values{"module": {"m"}}, job.Params)
	require.Equal(t, "https", job.Scheme)
	require.False(t, job.EnableCompression)
	require.False(t, job.HTTPClientConfig.EnableHTTP2)
	require.Equal(t, "alice", job.HTTPClientConfig.BasicAuth.Username)
	require.Equal(t, commoncfg.Secret("pw"), job.HTTPClientConfig.BasicAuth.Password)
	require.EqualValues(t, 1<<20, job.BodySizeLimit)
	require.EqualValues(t, 10, job.SampleLimit)
	require.Equal(t, model.LegacyValidation, job.MetricNameValidationScheme)
	require.Equal(t, model.EscapeDots, job.MetricNameEscapingScheme)
	require.True(t, *job.ExtraScrapeMetrics)
	require.Equal(t, promconfig.PrometheusText0_0_4, job.ScrapeFallbackProtocol)
	require.Equal(t, []string{
		"replace [job] -> __tmp_prometheus_job_name=$1",
		"replace [] -> job=renamed",
	}, relabelSummary(job.RelabelConfigs))
}

func TestScrapeConfigDefaults(t *testing.T) {
	job := scrapeConfigJobFor(t, Options{}, monitoringv1alpha1.ScrapeConfigSpec{
		StaticConfigs: []monitoringv1alpha1.StaticConfig{{Targets: []monitoringv1alpha1.Target{"a:80"}}},
	})
	require.True(t, job.HonorTimestamps)
	require.False(t, job.HonorLabels)
	require.True(t, job.EnableCompression)
	require.Equal(t, "/metrics", job.MetricsPath)
	require.Equal(t, "http", job.Scheme)
	require.Nil(t, job.MetricRelabelConfigs)
	require.Len(t, job.RelabelConfigs, 1)
}

func TestScrapeConfigSDs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		spec  monitoringv1alpha1.ScrapeConfigSpec
		check func(t *testing.T, c promdiscovery.Config)
	}{
		{"http", Options{}, monitoringv1alpha1.ScrapeConfigSpec{HTTPSDConfigs: []monitoringv1alpha1.HTTPSDConfig{{
			URL: "https://sd/x", RefreshInterval: ptrOf(monitoringv1.Duration("2m")),
			Authorization: &monitoringv1.SafeAuthorization{Credentials: ptrOf(credsKey("token"))},
		}}}, func(t *testing.T, c promdiscovery.Config) {
			h := c.(*httpsd.SDConfig)
			require.Equal(t, "https://sd/x", h.URL)
			require.Equal(t, model.Duration(2*time.Minute), h.RefreshInterval)
			require.Equal(t, commoncfg.Secret("tok"), h.HTTPClientConfig.Authorization.Credentials)
			require.True(t, h.HTTPClientConfig.FollowRedirects, "Prometheus default kept")
		}},
		{"kubernetes in-cluster", Options{KubeconfigFile: "/kc"}, monitoringv1alpha1.ScrapeConfigSpec{KubernetesSDConfigs: []monitoringv1alpha1.KubernetesSDConfig{{
			Role:           monitoringv1alpha1.KubernetesRoleEndpointSlice,
			Namespaces:     &monitoringv1alpha1.NamespaceDiscovery{Names: []string{"a"}},
			AttachMetadata: &monitoringv1alpha1.AttachMetadata{Node: ptrOf(true)},
			Selectors:      []monitoringv1alpha1.K8SSelectorConfig{{Role: "Service", Label: ptrOf("a=b")}},
		}}}, func(t *testing.T, c promdiscovery.Config) {
			k := c.(*promk8s.SDConfig)
			require.Equal(t, promk8s.RoleEndpointSlice, k.Role)
			require.Equal(t, "/kc", k.KubeConfig)
			require.Equal(t, []string{"a"}, k.NamespaceDiscovery.Names)
			require.True(t, k.AttachMetadata.Node)
			require.Equal(t, []promk8s.SelectorConfig{{Role: promk8s.RoleService, Label: "a=b"}}, k.Selectors)
		}},
		{"kubernetes attachMetadata ignored for service", Options{}, monitoringv1alpha1.ScrapeConfigSpec{KubernetesSDConfigs: []monitoringv1alpha1.KubernetesSDConfig{{
			Role: monitoringv1alpha1.KubernetesRoleService, AttachMetadata: &monitoringv1alpha1.AttachMetadata{Node: ptrOf(true)},
		}}}, func(t *testing.T, c promdiscovery.Config) {
			require.False(t, c.(*promk8s.SDConfig).AttachMetadata.Node)
		}},
		{"kubernetes api server", Options{KubeconfigFile: "/kc"}, monitoringv1alpha1.ScrapeConfigSpec{KubernetesSDConfigs: []monitoringv1alpha1.KubernetesSDConfig{{
			Role: monitoringv1alpha1.KubernetesRoleNode, APIServer: ptrOf("https://k8s:6443"),
			BasicAuth: &monitoringv1.BasicAuth{Username: credsKey("user"), Password: credsKey("pass")},
		}}}, func(t *testing.T, c promdiscovery.Config) {
			k := c.(*promk8s.SDConfig)
			require.Equal(t, "https://k8s:6443", k.APIServer.String())
			require.Empty(t, k.KubeConfig, "api_server and kubeconfig_file are exclusive")
			require.Equal(t, "alice", k.HTTPClientConfig.BasicAuth.Username)
		}},
		{"consul", Options{}, monitoringv1alpha1.ScrapeConfigSpec{ConsulSDConfigs: []monitoringv1alpha1.ConsulSDConfig{{
			Server: "consul:8500", TokenRef: ptrOf(credsKey("token")), Tags: []string{"t"}, NodeMeta: map[string]string{"k": "v"},
			Scheme: ptrOf(monitoringv1.SchemeHTTPS),
		}}}, func(t *testing.T, c promdiscovery.Config) {
			k := c.(*consul.SDConfig)
			require.Equal(t, commoncfg.Secret("tok"), k.Token)
			require.Equal(t, []string{"t"}, k.ServiceTags)
			require.Equal(t, map[string]string{"k": "v"}, k.NodeMeta)
			require.Equal(t, "https", k.Scheme)
			require.True(t, k.AllowStale, "Prometheus default kept")
			require.Equal(t, ",", k.TagSeparator, "Prometheus default kept")
		}},
		{"dns", Options{}, monitoringv1alpha1.ScrapeConfigSpec{DNSSDConfigs: []monitoringv1alpha1.DNSSDConfig{{
			Names: []string{"x"}, Type: ptrOf(monitoringv1alpha1.DNSRecordTypeAAAA), Port: ptrOf(int32(80)),
		}}}, func(t *testing.T, c promdiscovery.Config) {
			d := c.(*dns.SDConfig)
			require.Equal(t, "AAAA", d.Type)
			require.Equal(t, 80, d.Port)
		}},
		{"file with access", Options{AllowFileAccess: true}, monitoringv1alpha1.ScrapeConfigSpec{FileSDConfigs: []monitoringv1alpha1.FileSDConfig{{
			Files: []monitoringv1alpha1.SDFile{"/t/*.json"},
		}}}, func(t *testing.T, c promdiscovery.Config) {
			require.Equal(t, []string{"/t/*.json"}, c.(*file.SDConfig).Files)
		}},
		{"ec2", Options{}, monitoringv1alpha1.ScrapeConfigSpec{EC2SDConfigs: []monitoringv1alpha1.EC2SDConfig{{
			Region: ptrOf("r"), AccessKey: ptrOf(credsKey("user")), SecretKey: ptrOf(credsKey("pass")),
			Filters: monitoringv1alpha1.Filters{{Name: "z", Values: []string{"1"}}, {Name: "a", Values: []string{"2"}}},
		}}}, func(t *testing.T, c promdiscovery.Config) {
			e := c.(*aws.EC2SDConfig)
			require.Equal(t, "alice", e.AccessKey)
			require.Equal(t, commoncfg.Secret("pw"), e.SecretKey)
			require.Equal(t, "a", e.Filters[0].Name, "filters sorted by name")
			require.Equal(t, 80, e.Port, "Prometheus default kept")
		}},
		{"ovhcloud", Options{}, monitoringv1alpha1.ScrapeConfigSpec{OVHCloudSDConfigs: []monitoringv1alpha1.OVHCloudSDConfig{{
			ApplicationKey: "k", ApplicationSecret: credsKey("pass"), ConsumerKey: credsKey("token"),
			Service: monitoringv1alpha1.OVHServiceVPS,
		}}}, func(t *testing.T, c promdiscovery.Config) {
			o := c.(*ovhcloud.SDConfig)
			require.Equal(t, "vps", o.Service)
			require.Equal(t, commoncfg.Secret("tok"), o.ConsumerKey)
		}},
		{"scaleway", Options{}, monitoringv1alpha1.ScrapeConfigSpec{ScalewaySDConfigs: []monitoringv1alpha1.ScalewaySDConfig{{
			AccessKey: "SCWXXXXXXXXXXXXXXXXX", SecretKey: credsKey("uuid"), ProjectID: "11111111-2222-3333-4444-555555555555", Role: monitoringv1alpha1.ScalewayRoleInstance,
		}}}, func(t *testing.T, c promdiscovery.Config) {
			s := c.(*scaleway.SDConfig)
			require.Equal(t, commoncfg.Secret("11111111-2222-3333-4444-555555555555"), s.SecretKey)
			require.EqualValues(t, "instance", s.Role)
		}},
		{"dockerswarm", Options{}, monitoringv1alpha1.ScrapeConfigSpec{DockerSwarmSDConfigs: []monitoringv1alpha1.DockerSwarmSDConfig{{
			Host: "tcp://swarm:2376", Role: monitoringv1alpha1.DockerSwarmRoleNodes,
		}}}, func(t *testing.T, c promdiscovery.Config) {
			require.Equal(t, "nodes", c.(*moby.DockerSwarmSDConfig).Role)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := scrapeConfigJobFor(t, tc.opts, tc.spec)
			require.Len(t, job.ServiceDiscoveryConfigs, 1)
			tc.check(t, job.ServiceDiscoveryConfigs[0])
		})
	}
}

func TestScrapeConfigRejections(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    monitoringv1alpha1.ScrapeConfigSpec
		wantErr string
	}{
		{"nomad", monitoringv1alpha1.ScrapeConfigSpec{NomadSDConfigs: []monitoringv1alpha1.NomadSDConfig{{Server: "http://n:4646"}}},
			"nomadSDConfigs: Nomad service discovery is not supported by promshard"},
		{"file without access", monitoringv1alpha1.ScrapeConfigSpec{FileSDConfigs: []monitoringv1alpha1.FileSDConfig{{Files: []monitoringv1alpha1.SDFile{"/x"}}}},
			"fileSDConfigs: file references are not allowed"},
		{"empty static target", monitoringv1alpha1.ScrapeConfigSpec{StaticConfigs: []monitoringv1alpha1.StaticConfig{{Targets: []monitoringv1alpha1.Target{""}}}},
			"staticConfigs[0]: empty target"},
		{"bad static label", monitoringv1alpha1.ScrapeConfigSpec{StaticConfigs: []monitoringv1alpha1.StaticConfig{{Targets: []monitoringv1alpha1.Target{"a"}, Labels: map[string]string{"": "v"}}}},
			"staticConfigs[0]: invalid label name"},
		{"http url scheme", monitoringv1alpha1.ScrapeConfigSpec{HTTPSDConfigs: []monitoringv1alpha1.HTTPSDConfig{{URL: "ftp://x"}}},
			"httpSDConfigs[0]: url: invalid URL"},
		{"missing secret", monitoringv1alpha1.ScrapeConfigSpec{ConsulSDConfigs: []monitoringv1alpha1.ConsulSDConfig{{Server: "c", TokenRef: ptrOf(credsKey("nope"))}}},
			`consulSDConfigs[0]: tokenRef: secret ns/creds has no key "nope"`},
		{"dns without port", monitoringv1alpha1.ScrapeConfigSpec{DNSSDConfigs: []monitoringv1alpha1.DNSSDConfig{{Names: []string{"x"}, Type: ptrOf(monitoringv1alpha1.DNSRecordTypeA)}}},
			"dnsSDConfigs[0]: a port is required"},
		{"kubernetes auth without api server", monitoringv1alpha1.ScrapeConfigSpec{KubernetesSDConfigs: []monitoringv1alpha1.KubernetesSDConfig{{
			Role: monitoringv1alpha1.KubernetesRolePod, BasicAuth: &monitoringv1.BasicAuth{Username: credsKey("user"), Password: credsKey("pass")},
		}}}, "kubernetesSDConfigs[0]: to use custom HTTP client configuration please provide the 'api_server' URL explicitly"},
		{"kubernetes bad selector role", monitoringv1alpha1.ScrapeConfigSpec{KubernetesSDConfigs: []monitoringv1alpha1.KubernetesSDConfig{{
			Role: monitoringv1alpha1.KubernetesRoleService, Selectors: []monitoringv1alpha1.K8SSelectorConfig{{Role: "Pod"}},
		}}}, "kubernetesSDConfigs[0]: service role supports only service selectors"},
		{"ec2 half key pair", monitoringv1alpha1.ScrapeConfigSpec{EC2SDConfigs: []monitoringv1alpha1.EC2SDConfig{{AccessKey: ptrOf(credsKey("user"))}}},
			"ec2SDConfigs[0]: accessKey and secretKey must be set together"},
		{"azure auth method", monitoringv1alpha1.ScrapeConfigSpec{AzureSDConfigs: []monitoringv1alpha1.AzureSDConfig{{
			SubscriptionID: "s", AuthenticationMethod: ptrOf(monitoringv1alpha1.AuthenticationMethodType("Magic")),
		}}}, "azureSDConfigs[0]: unknown authentication_type"},
		{"scaleway role", monitoringv1alpha1.ScrapeConfigSpec{ScalewaySDConfigs: []monitoringv1alpha1.ScalewaySDConfig{{
			AccessKey: "a", SecretKey: credsKey("pass"), ProjectID: "p", Role: "Moon",
		}}}, `scalewaySDConfigs[0]: unknown role "Moon"`},
		{"ovh service", monitoringv1alpha1.ScrapeConfigSpec{OVHCloudSDConfigs: []monitoringv1alpha1.OVHCloudSDConfig{{
			ApplicationKey: "k", ApplicationSecret: credsKey("pass"), ConsumerKey: credsKey("token"), Service: "Cloud",
		}}}, `ovhcloudSDConfigs[0]: unknown service "Cloud"`},
		{"eureka url", monitoringv1alpha1.ScrapeConfigSpec{EurekaSDConfigs: []monitoringv1alpha1.EurekaSDConfig{{Server: "eureka"}}},
			"eurekaSDConfigs[0]: server: invalid URL"},
		{"refresh interval", monitoringv1alpha1.ScrapeConfigSpec{GCESDConfigs: []monitoringv1alpha1.GCESDConfig{{
			Project: "p", Zone: "z", RefreshInterval: ptrOf(monitoringv1.Duration("soon")),
		}}}, "gceSDConfigs[0]: refreshInterval: invalid duration"},
		{"relabel action", monitoringv1alpha1.ScrapeConfigSpec{RelabelConfigs: []monitoringv1.RelabelConfig{{Action: "explode"}}},
			"relabelings"},
		{"metric relabel regex", monitoringv1alpha1.ScrapeConfigSpec{MetricRelabelConfigs: []monitoringv1.RelabelConfig{{Regex: "(["}}},
			"metricRelabelings"},
		{"scrape interval", monitoringv1alpha1.ScrapeConfigSpec{ScrapeInterval: ptrOf(monitoringv1.Duration("often"))},
			"scrapeInterval: invalid duration"},
		{"name validation scheme", monitoringv1alpha1.ScrapeConfigSpec{NameValidationScheme: ptrOf(monitoringv1.NameValidationSchemeOptions("Klingon"))},
			"nameValidationScheme"},
		{"unknown scrape class", monitoringv1alpha1.ScrapeConfigSpec{ScrapeClassName: ptrOf("nope")},
			`unknown scrapeClass "nope"`},
		{"two credentials", monitoringv1alpha1.ScrapeConfigSpec{
			BasicAuth:     &monitoringv1.BasicAuth{Username: credsKey("user"), Password: credsKey("pass")},
			Authorization: &monitoringv1.SafeAuthorization{Credentials: ptrOf(credsKey("token"))},
		}, "cannot be configured at the same time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newProbeTestGenerator(t, &Snapshot{Secrets: []*corev1.Secret{probeTestSecret("ns")}}, Options{})
			_, err := g.scrapeConfigJobs(testScrapeConfig(tc.spec))
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestScrapeConfigAgentOverrides(t *testing.T) {
	agent := &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "mon"}}
	spec := &agent.Spec.CommonPrometheusFields
	spec.OverrideHonorLabels = true
	spec.OverrideHonorTimestamps = true
	spec.EnforcedNamespaceLabel = "tenant"
	spec.EnforcedBodySizeLimit = "1MB"
	spec.ScrapeClasses = []monitoringv1.ScrapeClass{{
		Name:              "cls",
		Relabelings:       []monitoringv1.RelabelConfig{{TargetLabel: "cluster", Replacement: ptrOf("c1")}},
		MetricRelabelings: []monitoringv1.RelabelConfig{{Action: "labeldrop", Regex: "tmp"}},
	}}
	g := newProbeTestGenerator(t, &Snapshot{Agent: agent}, Options{})
	jobs, err := g.scrapeConfigJobs(testScrapeConfig(monitoringv1alpha1.ScrapeConfigSpec{
		ScrapeClassName: ptrOf("cls"),
		JobName:         ptrOf("j"),
		HonorLabels:     ptrOf(true),
		HonorTimestamps: ptrOf(true),
		BodySizeLimit:   ptrOf(monitoringv1.ByteSize("2MB")),
		RelabelConfigs:  []monitoringv1.RelabelConfig{{TargetLabel: "tenant", Replacement: ptrOf("forged")}},
	}))
	require.NoError(t, err)
	job := jobs[0]
	require.False(t, job.HonorLabels)
	require.False(t, job.HonorTimestamps)
	require.EqualValues(t, 1<<20, job.BodySizeLimit, "enforced body size limit caps the object's")
	require.Equal(t, []string{
		"replace [job] -> __tmp_prometheus_job_name=$1",
		"replace [] -> cluster=c1",
		"replace [] -> job=j",
		"replace [] -> tenant=forged",
		"replace [] -> tenant=ns",
	}, relabelSummary(job.RelabelConfigs), "prometheus-operator's order; the enforced label wins")
	require.Equal(t, []string{"labeldrop [] -> =$1", "replace [] -> tenant=ns"}, relabelSummary(job.MetricRelabelConfigs))
}

func TestScrapeConfigStaticCoalesced(t *testing.T) {
	job := scrapeConfigJobFor(t, Options{}, monitoringv1alpha1.ScrapeConfigSpec{
		StaticConfigs: []monitoringv1alpha1.StaticConfig{
			{Targets: []monitoringv1alpha1.Target{"a:1", "b:2"}},
			{Targets: []monitoringv1alpha1.Target{"https://c/d"}, Labels: map[string]string{"x": "y"}},
		},
		DNSSDConfigs: []monitoringv1alpha1.DNSSDConfig{{Names: []string{"n"}}},
	})
	require.Len(t, job.ServiceDiscoveryConfigs, 2)
	_, isDNS := job.ServiceDiscoveryConfigs[0].(*dns.SDConfig)
	require.True(t, isDNS, "static configs come last, as after config.Load")
	static := job.ServiceDiscoveryConfigs[1].(promdiscovery.StaticConfig)
	require.Len(t, static, 2)
	require.Equal(t, "1", static[1].Source)
	require.Equal(t, model.LabelSet{"x": "y"}, static[1].Labels)
}
