package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestJobObject(t *testing.T) {
	for _, tc := range []struct {
		job  string
		want ObjectKey
		ok   bool
	}{
		{"serviceMonitor/team-a/api/0", ObjectKey{KindServiceMonitor, "team-a", "api"}, true},
		{"podMonitor/team-a/workers/3", ObjectKey{KindPodMonitor, "team-a", "workers"}, true},
		{"probe/default/blackbox", ObjectKey{KindProbe, "default", "blackbox"}, true},
		{"scrapeConfig/ops/static", ObjectKey{KindScrapeConfig, "ops", "static"}, true},
		{"serviceMonitor/only-ns", ObjectKey{}, false},
		{"prometheus", ObjectKey{}, false},
		{"other/a/b/0", ObjectKey{}, false},
		{"probe//b", ObjectKey{}, false},
	} {
		got, ok := JobObject(tc.job)
		require.Equal(t, tc.ok, ok, tc.job)
		require.Equal(t, tc.want, got, tc.job)
	}
	require.Equal(t, "Probe/default/blackbox", ObjectKey{KindProbe, "default", "blackbox"}.String())
}

// Every job Generate produces maps back to the object whose Result it is.
func TestJobObjectCoversGeneratedJobs(t *testing.T) {
	for _, in := range []string{"servicemonitor", "podmonitor", "probe_static", "scrapeconfig_core"} {
		snap, opts := loadTestInput(t, "testdata/"+in+".yaml")
		cfg, results, err := Generate(snap, opts)
		require.NoError(t, err)
		require.NotEmpty(t, cfg.ScrapeConfigs, in)
		accepted := map[ObjectKey]bool{}
		for _, r := range results {
			accepted[r.Key()] = r.Accepted
		}
		for _, sc := range cfg.ScrapeConfigs {
			key, ok := JobObject(sc.JobName)
			require.True(t, ok, sc.JobName)
			require.True(t, accepted[key], "%s maps to %v", sc.JobName, key)
		}
	}
}
