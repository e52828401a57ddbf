package testbed

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSubnet(t *testing.T) {
	cases := []struct {
		idx  int
		host byte
		want string
	}{
		{0, 1, "198.18.0.1"},
		{7, 10, "198.18.7.10"},
		{255, 254, "198.18.255.254"},
		{256, 1, "198.19.0.1"},
		{511, 2, "198.19.255.2"},
	}
	for _, tc := range cases {
		ip := withHost(subnet(tc.idx), tc.host)
		require.Equal(t, tc.want, ip.String())
		_, bench, _ := net.ParseCIDR("198.18.0.0/15")
		require.True(t, bench.Contains(ip), "addresses stay in the benchmarking range")
	}
}

func TestVethLinks(t *testing.T) {
	out := `1: lo: <LOOPBACK,UP> mtu 65536 qdisc noqueue state UNKNOWN
7: pshv3h@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500
8: pshv12h@pshv12n: <BROADCAST,MULTICAST> mtu 1500
9: pshv4n: <BROADCAST> mtu 1500
10: eth0@if11: <BROADCAST> mtu 1500`
	require.Equal(t, []string{"pshv3h", "pshv12h"}, vethLinks(out))
}

func TestOwnerPID(t *testing.T) {
	cases := []struct {
		in   string
		pid  int
		isOK bool
	}{
		{"123-abc", 123, true},
		{"42-7", 42, true},
		{"x-1", 0, false},
		{"-1", 0, false},
	}
	for _, tc := range cases {
		pid, ok := ownerPID(tc.in)
		require.Equal(t, tc.isOK, ok, tc.in)
		if ok {
			require.Equal(t, tc.pid, pid)
		}
	}
}

func TestMonitoringGVR(t *testing.T) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("monitoring.coreos.com/v1")
	u.SetKind("PodMonitor")
	cases := []struct {
		obj     runtime.Object
		want    string
		wantErr bool
	}{
		{&monitoringv1.ServiceMonitor{}, "monitoring.coreos.com/v1, Resource=servicemonitors", false},
		{&monitoringv1.Probe{}, "monitoring.coreos.com/v1, Resource=probes", false},
		{&monitoringv1alpha1.ScrapeConfig{}, "monitoring.coreos.com/v1alpha1, Resource=scrapeconfigs", false},
		{&monitoringv1alpha1.PrometheusAgent{}, "monitoring.coreos.com/v1alpha1, Resource=prometheusagents", false},
		{u, "monitoring.coreos.com/v1, Resource=podmonitors", false},
		{&corev1.Pod{}, "", true},
	}
	for _, tc := range cases {
		gvr, err := MonitoringGVR(tc.obj)
		if tc.wantErr {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, gvr.String())
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	require.NoError(t, err)
	require.True(t, isMainModule(filepath.Join(root, "go.mod")))
	require.FileExists(t, filepath.Join(root, "e2e", "testbed", "doc.go"))
	require.False(t, isMainModule(filepath.Join(root, "e2e", "tools", "etcd", "go.mod")))
}

func TestToolStampChangesWithGoSum(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	write("go.mod", "module x\n")
	write("go.sum", "a v1\n")
	s := binSpec{pkg: "example.com/cmd"}
	first, err := toolStamp(dir, s)
	require.NoError(t, err)
	again, err := toolStamp(dir, s)
	require.NoError(t, err)
	require.Equal(t, first, again)
	write("go.sum", "a v2\n")
	changed, err := toolStamp(dir, s)
	require.NoError(t, err)
	require.NotEqual(t, first, changed)
	s.tags = "netgo"
	tagged, err := toolStamp(dir, s)
	require.NoError(t, err)
	require.NotEqual(t, changed, tagged)
}

// TestCleanupLeftovers: a process recorded by a dead owner is killed and
// the owner's run directory removed; a live owner's processes stay.
func TestCleanupLeftovers(t *testing.T) {
	runRoot := t.TempDir()
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	deadPID := dead.Process.Pid

	sleeper := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		require.NoError(t, cmd.Start())
		// Start returns once the exec began; the new command line shows in
		// /proc only a moment later (empty until then, which
		// killRecorded takes for another process). Leftovers of a dead
		// owner are long past that.
		require.Eventually(t, func() bool {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
			return err == nil && string(b) == "sleep\x0060\x00"
		}, 5*time.Second, time.Millisecond)
		return cmd
	}
	orphan, kept := sleeper(), sleeper()
	defer func() { _ = kept.Process.Kill(); _ = kept.Wait() }()

	record := func(owner int, cmd *exec.Cmd) string {
		dir := filepath.Join(runRoot, fmt.Sprintf("%d-x", owner))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		body := pidRecord(cmd.Process.Pid, cmd.Args)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "p.pid"), []byte(body), 0o644))
		return dir
	}
	deadDir := record(deadPID, orphan)
	liveDir := record(os.Getpid(), kept)

	cleanupLeftovers(runRoot)

	waited := make(chan error, 1)
	go func() { waited <- orphan.Wait() }()
	select {
	case err := <-waited:
		require.Error(t, err, "the orphan was killed")
	case <-time.After(5 * time.Second):
		_ = orphan.Process.Kill()
		<-waited
		t.Fatal("the orphan of a dead owner still runs")
	}
	require.NoDirExists(t, deadDir)
	require.DirExists(t, liveDir)
	require.True(t, pidAlive(kept.Process.Pid))
}

func TestStripDescriptions(t *testing.T) {
	schema := map[string]any{
		"description": "top",
		"type":        "object",
		"properties": map[string]any{
			"description": map[string]any{"type": "string", "description": "a field named description"},
			"items":       []any{map[string]any{"description": "in a list", "type": "integer"}},
		},
	}
	stripDescriptions(schema)
	require.Equal(t, map[string]any{
		"type": "object",
		"properties": map[string]any{
			"description": map[string]any{"type": "string"},
			"items":       []any{map[string]any{"type": "integer"}},
		},
	}, schema)
}

// Without network namespaces (here: no ip command) the bed fails with one
// clear sentence, never a skip.
func TestCheckNetnsExplains(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := checkNetns(context.Background())
	require.Error(t, err)
	require.Contains(t, err.Error(), "the test bed needs network namespaces")
	require.Contains(t, err.Error(), "run the e2e tests as root on Linux with iproute2 installed")
	require.NotContains(t, err.Error(), "\n")
}
