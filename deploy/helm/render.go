// Package helm renders the promshard Helm chart (deploy/helm/promshard) with
// the Helm SDK exactly as `helm template` does, for the chart's unit test
// and the e2e test that applies the output to a real API server.
package helm

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/client-go/rest"
)

// KubeVersion is the Kubernetes version the chart is rendered for, that of
// the k8s.io modules go.mod pins (and of the test bed's kube-apiserver).
// The SDK's own default, without the CLI's link-time flags, is v1.20.
const KubeVersion = "v1.37.2"

// ChartDir is the directory of the promshard chart in this source tree.
func ChartDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the chart: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "promshard"), nil
}

// Render renders the chart in dir as `helm template <release> <dir> -n
// <namespace>` with values over the chart's values.yaml (nil: defaults) and
// returns the manifests. Nothing talks to a cluster: `lookup` finds nothing,
// so the gossip key is freshly generated each time.
func Render(dir, release, namespace string, values map[string]any) (string, error) {
	ch, kv, err := load(dir)
	if err != nil {
		return "", err
	}
	inst := action.NewInstall(action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler)))
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = release
	inst.Namespace = namespace
	inst.Replace = true
	inst.KubeVersion = kv
	if values == nil {
		values = map[string]any{}
	}
	r, err := inst.Run(ch, values)
	if err != nil {
		return "", fmt.Errorf("render chart %s: %w", dir, err)
	}
	rel, ok := r.(*releasev1.Release)
	if !ok {
		return "", fmt.Errorf("render chart %s: unexpected release type %T", dir, r)
	}
	return rel.Manifest, nil
}

// RenderUpgrade renders the chart's templates as `helm upgrade` does against
// the cluster of cfg: `lookup` reads that cluster (so an existing gossip key
// is kept). It returns the rendered text of each template by path, e.g.
// "promshard/templates/secret-gossip.yaml".
func RenderUpgrade(dir, release, namespace string, values map[string]any, cfg *rest.Config) (map[string]string, error) {
	ch, kv, err := load(dir)
	if err != nil {
		return nil, err
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	opts := common.ReleaseOptions{Name: release, Namespace: namespace, Revision: 2, IsUpgrade: true}
	vals, err := util.ToRenderValues(ch, values, opts, caps)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	return engine.RenderWithClient(ch, vals, cfg)
}

// load loads the chart in dir and parses KubeVersion.
func load(dir string) (*chartv2.Chart, *common.KubeVersion, error) {
	ch, err := loader.LoadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	kv, err := common.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, nil, err
	}
	return ch, kv, nil
}
