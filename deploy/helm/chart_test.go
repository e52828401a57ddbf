package helm_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/promshard/promshard/deploy/helm"
)

var update = flag.Bool("update", false, "rewrite testdata/default.golden.yaml from the chart")

// obj is one rendered or kustomize-base object, decoded as the API machinery
// decodes YAML (strictly, through JSON).
type obj = map[string]any

// render renders the chart as `helm template promshard -n promshard` with
// the given values.
func render(t *testing.T, values map[string]any) string {
	t.Helper()
	dir, err := helm.ChartDir()
	require.NoError(t, err)
	out, err := helm.Render(dir, "promshard", "promshard", values)
	require.NoError(t, err)
	return out
}

// decode splits a multi-document YAML stream into objects.
func decode(t *testing.T, manifests []byte) []obj {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifests)))
	var out []obj
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		j, err := yaml.YAMLToJSONStrict(doc)
		require.NoError(t, err, "%s", doc)
		var o obj
		require.NoError(t, yaml.Unmarshal(j, &o))
		if len(o) > 0 {
			out = append(out, o)
		}
	}
}

func kindName(o obj) string {
	md, _ := o["metadata"].(obj)
	return o["kind"].(string) + "/" + md["name"].(string)
}

func find(t *testing.T, objs []obj, kn string) obj {
	t.Helper()
	for _, o := range objs {
		if kindName(o) == kn {
			return o
		}
	}
	require.Failf(t, "object missing", "%s not rendered", kn)
	return nil
}

func kinds(objs []obj) []string {
	var out []string
	for _, o := range objs {
		out = append(out, kindName(o))
	}
	sort.Strings(out)
	return out
}

// readBase reads the kustomize files of deploy/<dir> (plain manifests: the
// kustomizations only list them, set the namespace they already carry and,
// in the overlay, delete two objects).
func readBase(t *testing.T, dir string, files ...string) []obj {
	t.Helper()
	var out []obj
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("..", dir, f))
		require.NoError(t, err)
		out = append(out, decode(t, b)...)
	}
	return out
}

var baseFiles = []string{"namespace.yaml", "serviceaccount.yaml", "clusterrole.yaml", "clusterrolebinding.yaml",
	"service-gossip.yaml", "service-web.yaml", "poddisruptionbudget.yaml", "prometheusagent.yaml"}

// helmLabels are the labels the chart adds to deploy/base's one label
// (app.kubernetes.io/name); normalize drops them for the comparison.
var helmLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/version", "helm.sh/chart", "app.kubernetes.io/component"}

// normalize removes the chart's extra labels everywhere in v, and
// managed-by=Helm (the PrometheusAgent's managed-by=promshard stays).
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for _, l := range helmLabels {
			delete(x, l)
		}
		if x["app.kubernetes.io/managed-by"] == "Helm" {
			delete(x, "app.kubernetes.io/managed-by")
		}
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}

// TestChartEqualsKustomize: with the defaults, the chart renders the objects
// of deploy/base (mode statefulset) and deploy/daemonset (mode daemonset),
// field for field, up to the chart's extra labels; plus the self-monitoring
// objects and a generated gossip key.
func TestChartEqualsKustomize(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		workload []obj
		skip     string // the base object the mode does not render
	}{
		{"statefulset", readBase(t, "base", "statefulset.yaml"), ""},
		{"daemonset", readBase(t, "daemonset", "daemonset.yaml"), "PodDisruptionBudget/promshard"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			got := decode(t, []byte(render(t, map[string]any{"mode": tc.mode, "namespace": obj{"create": true}})))
			want := append(readBase(t, "base", baseFiles...), tc.workload...)
			var wantKinds []string
			for _, w := range want {
				if kindName(w) == tc.skip {
					continue
				}
				wantKinds = append(wantKinds, kindName(w))
				require.Equal(t, normalize(w), normalize(find(t, got, kindName(w))), "%s differs from deploy/", kindName(w))
			}
			wantKinds = append(wantKinds, "Secret/promshard-gossip-key", "ServiceMonitor/promshard",
				"PrometheusRule/promshard", "ConfigMap/promshard-dashboard")
			sort.Strings(wantKinds)
			require.Equal(t, wantKinds, kinds(got))

			secret := find(t, got, "Secret/promshard-gossip-key")
			file, err := base64.StdEncoding.DecodeString(secret["data"].(obj)["key"].(string))
			require.NoError(t, err)
			key, err := base64.StdEncoding.DecodeString(string(file))
			require.NoError(t, err, "the keyring file holds one base64 key")
			require.Len(t, key, 32, "an AES-256 key")
		})
	}
}

// TestChartValues: the values that change objects do what values.yaml says.
func TestChartValues(t *testing.T) {
	objs := decode(t, []byte(render(t, map[string]any{
		"replicas":  5,
		"gossip":    obj{"existingSecret": "mine", "secretKey": "keyring"},
		"extraArgs": []any{"--log.level=debug"},
		"resources": obj{"limits": obj{"memory": "4Gi"}},
		"statefulset": obj{"zoneAware": true, "waitForSize": 0,
			"persistence": obj{"enabled": false}},
		"selfMonitoring": obj{"serviceMonitor": obj{"enabled": false}, "dashboard": obj{"enabled": false}},
	})))
	require.NotContains(t, kinds(objs), "Secret/promshard-gossip-key", "an existing Secret is not generated")
	require.NotContains(t, kinds(objs), "ServiceMonitor/promshard")
	require.NotContains(t, kinds(objs), "ConfigMap/promshard-dashboard")
	sts := find(t, objs, "StatefulSet/promshard")
	spec := sts["spec"].(obj)
	require.EqualValues(t, 5, spec["replicas"])
	require.NotContains(t, spec, "volumeClaimTemplates")
	pod := spec["template"].(obj)["spec"].(obj)
	c := pod["containers"].([]any)[0].(obj)
	args := strings.Join(toStrings(c["args"]), " ")
	require.Contains(t, args, "--cluster.secret-key-file=/etc/promshard/gossip/keyring")
	require.Contains(t, args, "--sharding.strategy=zone")
	require.Contains(t, args, "--log.level=debug")
	require.NotContains(t, args, "--cluster.wait-for-size")
	require.Equal(t, obj{"cpu": "2", "memory": "4Gi"}, c["resources"].(obj)["limits"], "Helm merges the given map into the default")
	vols, _ := yaml.Marshal(pod["volumes"])
	require.Contains(t, string(vols), "secretName: mine")
	require.Contains(t, string(vols), "name: data")

	_, err := helmRender(map[string]any{"mode": "deployment"})
	require.ErrorContains(t, err, "mode must be statefulset or daemonset")
}

func helmRender(values map[string]any) (string, error) {
	dir, err := helm.ChartDir()
	if err != nil {
		return "", err
	}
	return helm.Render(dir, "promshard", "promshard", values)
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// gossipKey matches the generated key, different on every rendering.
var gossipKey = regexp.MustCompile(`(?m)^(  key: )[A-Za-z0-9+/=]{40,}$`)

// TestChartGolden compares the default `helm template promshard -n
// promshard` output with testdata/default.golden.yaml (go test -update
// rewrites it); the generated gossip key is masked.
func TestChartGolden(t *testing.T) {
	out := render(t, nil)
	require.Len(t, gossipKey.FindAllString(out, -1), 1, "one generated key")
	out = gossipKey.ReplaceAllString(out, "${1}GENERATED")
	// The dashboard is files/dashboard.json verbatim; the golden file
	// leaves it out.
	dash, err := os.ReadFile(filepath.Join("promshard", "files", "dashboard.json"))
	require.NoError(t, err)
	indented := "    " + strings.ReplaceAll(strings.TrimSpace(string(dash)), "\n", "\n    ")
	require.Equal(t, 1, strings.Count(out, indented), "the dashboard ConfigMap holds files/dashboard.json")
	out = strings.Replace(out, indented, "    <files/dashboard.json>", 1)
	golden := filepath.Join("testdata", "default.golden.yaml")
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(out), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test ./deploy/helm -update")
	require.Equal(t, string(want), out, "the chart's default rendering changed: review, then go test ./deploy/helm -update")
}
