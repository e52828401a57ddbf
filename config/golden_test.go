package config

// Golden tests: every testdata/<name>.yaml (multi-document Kubernetes
// objects, optionally a PrometheusAgent and one `kind: GenerateOptions`
// document) is translated and compared with testdata/<name>.golden. Add an
// input file and run `go test ./config -update` to create its golden file.
// Each golden file is also loaded with Prometheus' config.Load.

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testOptions is the `kind: GenerateOptions` document of a golden input.
type testOptions struct {
	Kind                 string                `json:"kind"`
	AllowFileAccess      bool                  `json:"allowFileAccess"`
	KubeconfigFile       string                `json:"kubeconfigFile"`
	NodeName             string                `json:"nodeName"`
	RemoteWriteURLs      []string              `json:"remoteWriteURLs"`
	ScrapeInterval       string                `json:"scrapeInterval"`
	ExternalLabels       map[string]string     `json:"externalLabels"`
	ServiceDiscoveryRole string                `json:"serviceDiscoveryRole"`
	MonitorSelector      *metav1.LabelSelector `json:"monitorSelector"`
	NamespaceSelector    *metav1.LabelSelector `json:"namespaceSelector"`
}

// loadTestInput reads a golden input file into a snapshot and options.
func loadTestInput(t testing.TB, path string) (*Snapshot, Options) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	snap := &Snapshot{}
	var opts Options
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		var tm metav1.TypeMeta
		require.NoError(t, yaml.Unmarshal(doc, &tm))
		require.NoError(t, addTestObject(snap, &opts, tm.Kind, doc), "%s: %s", path, tm.Kind)
	}
	return snap, opts
}

func addTestObject(snap *Snapshot, opts *Options, kind string, doc []byte) error {
	var err error
	switch kind {
	case "":
		return nil
	case "GenerateOptions":
		var to testOptions
		if err = yaml.UnmarshalStrict(doc, &to); err != nil {
			return err
		}
		opts.AllowFileAccess, opts.KubeconfigFile, opts.NodeName = to.AllowFileAccess, to.KubeconfigFile, to.NodeName
		opts.Flags.RemoteWriteURLs, opts.Flags.ExternalLabels = to.RemoteWriteURLs, to.ExternalLabels
		opts.Flags.ServiceDiscoveryRole = monitoringv1.ServiceDiscoveryRole(to.ServiceDiscoveryRole)
		opts.Flags.MonitorSelector, opts.Flags.NamespaceSelector = to.MonitorSelector, to.NamespaceSelector
		if to.ScrapeInterval != "" {
			opts.Flags.ScrapeInterval, err = parseDuration(monitoringv1.Duration(to.ScrapeInterval))
		}
	case "ServiceMonitor":
		o := &monitoringv1.ServiceMonitor{}
		err = yaml.Unmarshal(doc, o)
		snap.ServiceMonitors = append(snap.ServiceMonitors, o)
	case "PodMonitor":
		o := &monitoringv1.PodMonitor{}
		err = yaml.Unmarshal(doc, o)
		snap.PodMonitors = append(snap.PodMonitors, o)
	case "Probe":
		o := &monitoringv1.Probe{}
		err = yaml.Unmarshal(doc, o)
		snap.Probes = append(snap.Probes, o)
	case "ScrapeConfig":
		o := &monitoringv1alpha1.ScrapeConfig{}
		err = yaml.Unmarshal(doc, o)
		snap.ScrapeConfigs = append(snap.ScrapeConfigs, o)
	case "PrometheusAgent":
		o := &monitoringv1alpha1.PrometheusAgent{}
		err = yaml.Unmarshal(doc, o)
		snap.Agent = o
	case "Namespace":
		o := &corev1.Namespace{}
		err = yaml.Unmarshal(doc, o)
		snap.Namespaces = append(snap.Namespaces, o)
	case "Secret":
		o := &corev1.Secret{}
		err = yaml.Unmarshal(doc, o)
		snap.Secrets = append(snap.Secrets, o)
	case "ConfigMap":
		o := &corev1.ConfigMap{}
		err = yaml.Unmarshal(doc, o)
		snap.ConfigMaps = append(snap.ConfigMaps, o)
	default:
		return fmt.Errorf("unknown kind %q in test input", kind)
	}
	return err
}

// renderGolden renders results as comments followed by the configuration.
func renderGolden(t testing.TB, snap *Snapshot, opts Options) []byte {
	t.Helper()
	cfg, results, err := Generate(snap, opts)
	require.NoError(t, err)
	out, err := Marshal(cfg, true)
	require.NoError(t, err)
	var buf bytes.Buffer
	for _, r := range results {
		if r.Accepted {
			fmt.Fprintf(&buf, "# accepted %s %s/%s\n", r.Kind, r.Namespace, r.Name)
		} else {
			fmt.Fprintf(&buf, "# rejected %s %s/%s: %s\n", r.Kind, r.Namespace, r.Name, strings.ReplaceAll(r.Reason, "\n", " "))
		}
	}
	buf.Write(out)
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			snap, opts := loadTestInput(t, in)
			got := renderGolden(t, snap, opts)
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(golden, got, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./config -update to create it")
			require.Equal(t, string(want), string(got))
			_, err = LoadYAML(want)
			require.NoError(t, err, "golden file must load with config.Load")
		})
	}
}
