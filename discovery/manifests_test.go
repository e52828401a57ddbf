package discovery

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadManifests(t *testing.T) {
	snap, err := LoadManifests([]string{filepath.Join("testdata", "manifests")})
	require.NoError(t, err)
	require.Nil(t, snap.Agent)
	require.Len(t, snap.ServiceMonitors, 1)
	require.Equal(t, "default", snap.ServiceMonitors[0].Namespace, "missing namespace defaults to default")
	require.Equal(t, "http", snap.ServiceMonitors[0].Spec.Endpoints[0].Port)
	require.Len(t, snap.PodMonitors, 1)
	require.Len(t, snap.Probes, 1)
	require.Len(t, snap.ScrapeConfigs, 1)
	require.Len(t, snap.Namespaces, 1)
	require.Equal(t, "a", snap.Namespaces[0].Labels["team"])
	require.Len(t, snap.Secrets, 1)
	require.Equal(t, "v", snap.Secrets[0].StringData["k"])
	require.Len(t, snap.ConfigMaps, 1)
}

func TestLoadManifestsForAgent(t *testing.T) {
	dir := filepath.Join("testdata", "manifests")
	snap, err := LoadManifestsForAgent([]string{dir}, "monitoring/agent")
	require.NoError(t, err)
	require.NotNil(t, snap.Agent)
	require.Equal(t, "agent", snap.Agent.Name)
	require.NotNil(t, snap.Agent.Spec.ServiceMonitorSelector)

	_, err = LoadManifestsForAgent([]string{dir}, "monitoring/other")
	require.ErrorContains(t, err, "PrometheusAgent monitoring/other not found")
	_, err = LoadManifestsForAgent([]string{dir}, "no-slash")
	require.ErrorContains(t, err, "want namespace/name")
}

func TestLoadManifestsErrors(t *testing.T) {
	_, err := LoadManifests([]string{filepath.Join("testdata", "bad.yaml")})
	require.ErrorContains(t, err, "bad.yaml")
	require.ErrorContains(t, err, "document 1")
	_, err = LoadManifests([]string{filepath.Join("testdata", "missing.yaml")})
	require.Error(t, err)
}
