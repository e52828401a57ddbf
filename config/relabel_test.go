package config

import (
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/stretchr/testify/require"
)

func ptrStr(s string) *string { return &s }

func TestRelabelConfigs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      monitoringv1.RelabelConfig
		check   func(t *testing.T, c *relabel.Config)
		wantErr string
	}{
		{
			name: "defaults",
			in:   monitoringv1.RelabelConfig{SourceLabels: []monitoringv1.LabelName{"a"}, TargetLabel: "b"},
			check: func(t *testing.T, c *relabel.Config) {
				require.Equal(t, relabel.Replace, c.Action)
				require.Equal(t, ";", c.Separator)
				require.Equal(t, "(.*)", c.Regex.String())
				require.Equal(t, "$1", c.Replacement)
			},
		},
		{
			name: "case-insensitive action and all fields",
			in: monitoringv1.RelabelConfig{
				Action: "HashMod", SourceLabels: []monitoringv1.LabelName{"a", "b"}, Separator: ptrStr("-"),
				Modulus: 3, TargetLabel: "t",
			},
			check: func(t *testing.T, c *relabel.Config) {
				require.Equal(t, relabel.HashMod, c.Action)
				require.Equal(t, "-", c.Separator)
				require.Equal(t, uint64(3), c.Modulus)
				require.Equal(t, model.LabelNames{"a", "b"}, c.SourceLabels)
			},
		},
		{
			name: "replacement empty string kept",
			in:   monitoringv1.RelabelConfig{TargetLabel: "x", Replacement: ptrStr("")},
			check: func(t *testing.T, c *relabel.Config) {
				require.Equal(t, "", c.Replacement)
			},
		},
		{name: "invalid regex", in: monitoringv1.RelabelConfig{Action: "keep", Regex: "("}, wantErr: "invalid regex"},
		{name: "unknown action", in: monitoringv1.RelabelConfig{Action: "explode"}, wantErr: `unknown relabel action "explode"`},
		{name: "replace without target", in: monitoringv1.RelabelConfig{Action: "replace"}, wantErr: "requires 'target_label'"},
		{name: "hashmod without modulus", in: monitoringv1.RelabelConfig{Action: "hashmod", TargetLabel: "x"}, wantErr: "non-zero modulus"},
		{name: "labeldrop with target", in: monitoringv1.RelabelConfig{Action: "labeldrop", Regex: "a", TargetLabel: "x"}, wantErr: "requires only 'regex'"},
		{name: "negative modulus", in: monitoringv1.RelabelConfig{Action: "hashmod", TargetLabel: "x", Modulus: -1}, wantErr: "negative modulus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := relabelConfigs([]monitoringv1.RelabelConfig{tc.in})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.ErrorContains(t, err, "relabeling 0")
				return
			}
			require.NoError(t, err)
			require.Len(t, out, 1)
			tc.check(t, out[0])
		})
	}
	out, err := relabelConfigs(nil)
	require.NoError(t, err)
	require.Nil(t, out)
}

func TestParseDuration(t *testing.T) {
	d, err := parseDuration("")
	require.NoError(t, err)
	require.Zero(t, d)
	d, err = parseDuration("1m30s")
	require.NoError(t, err)
	require.Equal(t, model.Duration(90*time.Second), d)
	_, err = parseDuration("5 minutes")
	require.ErrorContains(t, err, `invalid duration "5 minutes"`)
}
