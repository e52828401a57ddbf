package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/config"
)

func TestRunRender(t *testing.T) {
	objects := filepath.Join("testdata", "render", "objects.yaml")
	rejected := filepath.Join("testdata", "render", "rejected.yaml")
	additional := filepath.Join("testdata", "render", "additional.yaml")
	for _, tc := range []struct {
		name        string
		manifests   []string
		agent       string
		showSecrets bool
		wantCode    int
		wantOut     []string
		notOut      []string
		wantErr     string
	}{
		{
			name: "agent settings, secrets hidden", manifests: []string{objects}, agent: "monitoring/agent",
			wantCode: 0,
			wantOut:  []string{"serviceMonitor/apps/web/0", "prometheus: monitoring/agent", "cluster: test", "password: <secret>"},
			notOut:   []string{"topsecret", "prometheus_replica"},
		},
		{
			name: "show secrets", manifests: []string{objects}, agent: "monitoring/agent", showSecrets: true,
			wantCode: 0, wantOut: []string{"password: topsecret"},
		},
		{
			name: "flags-only selects every monitor", manifests: []string{objects, rejected},
			wantCode: 1, wantOut: []string{"serviceMonitor/apps/web/0"}, notOut: []string{"serviceMonitor/apps/broken"},
			wantErr: `rejected ServiceMonitor apps/broken: endpoint 0: interval: invalid duration "soon"`,
		},
		{
			name: "additional scrape configs, ignored pod settings", manifests: []string{additional}, agent: "myproject/prometheus",
			wantCode: 0, wantOut: []string{"job_name: kubernetes-nodes-kubelet", "role: node"},
			wantErr: "warning: PrometheusAgent fields ignored (pod settings, which promshard takes from its own StatefulSet or DaemonSet and flags: replicas, resources, serviceAccountName)",
		},
		{
			name: "additional scrape configs without their Secret", manifests: []string{filepath.Join("testdata", "render", "additional_nosecret.yaml")},
			agent: "myproject/prometheus", wantCode: 1, notOut: []string{"kubernetes-nodes-kubelet"},
			wantErr: `rejected AdditionalScrapeConfigs myproject/additional-scrape-configs: additionalScrapeConfigs (secret myproject/additional-scrape-configs key "prometheus-additional.yaml"): secret myproject/additional-scrape-configs not found`,
		},
		{name: "unknown agent", manifests: []string{objects}, agent: "monitoring/nope", wantCode: 2, wantErr: "not found"},
		{name: "missing file", manifests: []string{"testdata/render/none.yaml"}, wantCode: 2, wantErr: "render:"},
		{name: "no manifests", wantCode: 2, wantErr: "no --manifests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runRender(&out, &errOut, tc.manifests, tc.agent, tc.showSecrets, config.Options{})
			require.Equal(t, tc.wantCode, code, errOut.String())
			for _, s := range tc.wantOut {
				require.Contains(t, out.String(), s)
			}
			for _, s := range tc.notOut {
				require.NotContains(t, out.String(), s)
			}
			if tc.wantErr != "" {
				require.Contains(t, errOut.String(), tc.wantErr)
			}
			if code < 2 {
				_, err := promconfig.Load(out.String(), promslog.NewNopLogger())
				require.NoError(t, err, "printed YAML must load with config.Load")
			} else {
				require.Empty(t, out.String())
			}
		})
	}
}
