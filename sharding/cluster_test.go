package sharding

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// startCluster creates and runs a loopback member; the returned function
// stops it gracefully (Run's leave) and waits for Run to return.
func startCluster(t *testing.T, cfg ClusterConfig) (*Cluster, func()) {
	t.Helper()
	if cfg.ListenAddress == "" {
		cfg.ListenAddress = "127.0.0.1:0"
	}
	var logger *slog.Logger
	if os.Getenv("SHARDING_TEST_DEBUG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", cfg.NodeName)
	}
	c, err := NewCluster(cfg, logger, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(t, <-done)
	}
	t.Cleanup(stop)
	return c, stop
}

func aliveNames(c *Cluster) []string {
	var out []string
	for _, m := range c.Members() {
		if m.State.Alive() {
			out = append(out, m.Name)
		}
	}
	return out
}

func stateOf(c *Cluster, name string) MemberState {
	for _, m := range c.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

// startThree starts a three-member cluster and waits until all see all.
func startThree(t *testing.T, base ClusterConfig) ([]*Cluster, []func()) {
	t.Helper()
	var cs []*Cluster
	var stops []func()
	for i, name := range []string{"n0", "n1", "n2"} {
		cfg := base
		cfg.NodeName = name
		if i > 0 {
			cfg.Join = []string{cs[0].Addr()}
		}
		c, stop := startCluster(t, cfg)
		cs, stops = append(cs, c), append(stops, stop)
	}
	for _, c := range cs {
		require.Eventually(t, func() bool { return len(aliveNames(c)) == 3 }, 10*time.Second, 50*time.Millisecond,
			"%s sees %v", c.Self(), c.Members())
	}
	return cs, stops
}

func TestClusterJoinAndGracefulLeave(t *testing.T) {
	cs, stops := startThree(t, ClusterConfig{ClusterName: "test", KubernetesNode: "node-a", Zone: "zone-1", WebURL: "https://127.0.0.1:9090"})
	require.Equal(t, []string{"n0", "n1", "n2"}, aliveNames(cs[1]))
	for _, m := range cs[0].Members() {
		require.Equal(t, "node-a", m.KubernetesNode, "node name travels in memberlist meta")
		require.Equal(t, "zone-1", m.Zone, "zone travels in memberlist meta")
		require.Equal(t, "https://127.0.0.1:9090", m.WebURL, "web URL travels in memberlist meta")
		require.Equal(t, StateJoining, m.State, "members start joining")
		require.True(t, strings.HasPrefix(m.Address, "127.0.0.1:"))
	}
	// Participation is gossiped.
	for _, c := range cs {
		c.Participate()
		require.True(t, c.Participant())
	}
	for _, c := range cs {
		require.Eventually(t, func() bool {
			for _, m := range c.Members() {
				if m.State != StateParticipant {
					return false
				}
			}
			return true
		}, 5*time.Second, 10*time.Millisecond, "%s sees %v", c.Self(), c.Members())
	}
	drain(cs[0].Changes())

	start := time.Now()
	stops[2]()
	require.Eventually(t, func() bool {
		return stateOf(cs[0], "n2") == StateLeft && stateOf(cs[1], "n2") == StateLeft
	}, 2*time.Second, 10*time.Millisecond, "n0 sees %v, n1 sees %v", cs[0].Members(), cs[1].Members())
	t.Logf("graceful leave seen by peers after %v", time.Since(start))
	require.False(t, cs[2].Participant(), "a member that left answers not ready")
	select {
	case <-cs[0].Changes():
	default:
		t.Fatal("no change signalled on leave")
	}
	require.Equal(t, []string{"n0", "n1"}, aliveNames(cs[0]))
}

func TestClusterKilledMemberDeclaredDead(t *testing.T) {
	cs, _ := startThree(t, ClusterConfig{})
	start := time.Now()
	cs[2].Close() // no leave message: peers must detect the failure
	require.Eventually(t, func() bool {
		return stateOf(cs[0], "n2") == StateDead && stateOf(cs[1], "n2") == StateDead
	}, 10*time.Second, 20*time.Millisecond)
	t.Logf("killed member declared dead after %v", time.Since(start))
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func writeKey(t *testing.T, key []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(p, key, 0o600))
	return p
}

func TestClustersNeverMerge(t *testing.T) {
	keyA := writeKey(t, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))+"\n"))
	keyB := writeKey(t, bytes.Repeat([]byte{2}, 16))
	for _, tc := range []struct {
		name string
		a, b ClusterConfig
	}{
		{"different secret keys", ClusterConfig{SecretKeyFile: keyA}, ClusterConfig{SecretKeyFile: keyB}},
		{"key and no key", ClusterConfig{SecretKeyFile: keyA}, ClusterConfig{}},
		{"different cluster names", ClusterConfig{ClusterName: "a"}, ClusterConfig{ClusterName: "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.a.NodeName, tc.b.NodeName = "a", "b"
			a, _ := startCluster(t, tc.a)
			tc.b.Join = []string{a.Addr()}
			b, _ := startCluster(t, tc.b)
			time.Sleep(2 * time.Second) // two join attempts
			require.Equal(t, []string{"a"}, aliveNames(a))
			require.Equal(t, []string{"b"}, aliveNames(b))
		})
	}
	t.Run("same key and name merge", func(t *testing.T) {
		cfg := ClusterConfig{SecretKeyFile: keyA, ClusterName: "a", NodeName: "a"}
		a, _ := startCluster(t, cfg)
		cfg.NodeName, cfg.Join = "b", []string{"dns+localhost:" + a.Addr()[len("127.0.0.1:"):]}
		b, _ := startCluster(t, cfg)
		require.Eventually(t, func() bool { return len(aliveNames(a)) == 2 && len(aliveNames(b)) == 2 },
			10*time.Second, 50*time.Millisecond)
	})
}

func TestClusterWaitForSize(t *testing.T) {
	t.Run("reached", func(t *testing.T) {
		a, _ := startCluster(t, ClusterConfig{NodeName: "a", WaitForSize: 2})
		require.False(t, a.Ready())
		time.Sleep(300 * time.Millisecond)
		require.False(t, a.Ready(), "a lone member must wait")
		startCluster(t, ClusterConfig{NodeName: "b", Join: []string{a.Addr()}})
		require.Eventually(t, a.Ready, 10*time.Second, 20*time.Millisecond)
	})
	t.Run("timed out", func(t *testing.T) {
		start := time.Now()
		a, _ := startCluster(t, ClusterConfig{NodeName: "a", WaitForSize: 3, WaitTimeout: 500 * time.Millisecond})
		require.False(t, a.Ready())
		deadline := time.After(5 * time.Second)
		for !a.Ready() {
			select {
			case <-a.Changes():
			case <-deadline:
				t.Fatal("readiness change not signalled")
			}
		}
		require.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond)
	})
}

func TestStandaloneCluster(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := NewCluster(ClusterConfig{NodeName: "solo", KubernetesNode: "n"}, nil, reg)
	require.NoError(t, err)
	require.True(t, c.Ready())
	require.Equal(t, []Member{{Name: "solo", State: StateJoining, KubernetesNode: "n", KeyVersion: LatestKeyVersion}}, c.Members())
	require.False(t, c.Participant())
	require.Empty(t, c.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan bool, 1)
	go func() {
		_ = c.ParticipateWhen(ctx, func() bool { return len(ready) > 0 }, time.Millisecond)
	}()
	time.Sleep(20 * time.Millisecond)
	require.False(t, c.Participant(), "not before the condition holds")
	ready <- true
	require.Eventually(t, c.Participant, 5*time.Second, time.Millisecond)
	require.Equal(t, StateParticipant, c.Members()[0].State)
	cancel()
	require.NoError(t, c.Run(ctx))
	require.NoError(t, testutil.CollectAndCompare(reg, strings.NewReader(`
# HELP promshard_cluster_gossip_keys Gossip encryption keys installed (the first encrypts, all decrypt); 0 means gossip is not encrypted.
# TYPE promshard_cluster_gossip_keys gauge
promshard_cluster_gossip_keys 0
# HELP promshard_cluster_keyring_reload_failures_total Times the gossip keyring file could not be read or installed (the previous keys stay).
# TYPE promshard_cluster_keyring_reload_failures_total counter
promshard_cluster_keyring_reload_failures_total 0
# HELP promshard_cluster_keyring_reloads_total Times a changed gossip keyring file was installed.
# TYPE promshard_cluster_keyring_reloads_total counter
promshard_cluster_keyring_reloads_total 0
# HELP promshard_cluster_members Cluster members known to this member, by state: joining (alive, not owning targets yet), participant, left, dead.
# TYPE promshard_cluster_members gauge
promshard_cluster_members{state="joining"} 0
promshard_cluster_members{state="participant"} 0
promshard_cluster_members{state="dead"} 0
promshard_cluster_members{state="left"} 1
# HELP promshard_cluster_ready 1 once the cluster reached its wait-for-size or its wait timeout passed.
# TYPE promshard_cluster_ready gauge
promshard_cluster_ready 1
# HELP promshard_cluster_stalls_total Times the process did not run for longer than the stall threshold (peers may have declared it dead); a participant then hands its targets off and participates again.
# TYPE promshard_cluster_stalls_total counter
promshard_cluster_stalls_total 0
`)))
}

func TestClusterConfigErrors(t *testing.T) {
	bad := writeKey(t, []byte("short"))
	for _, tc := range []struct {
		name string
		cfg  ClusterConfig
		err  string
	}{
		{"bad join", ClusterConfig{NodeName: "a", Join: []string{"no-port"}}, "join address"},
		{"bad listen", ClusterConfig{NodeName: "a", ListenAddress: "127.0.0.1"}, "listen address"},
		{"bad key", ClusterConfig{NodeName: "a", ListenAddress: "127.0.0.1:0", SecretKeyFile: bad}, "secret key"},
		{"missing key", ClusterConfig{NodeName: "a", ListenAddress: "127.0.0.1:0", SecretKeyFile: bad + "x"}, "read secret key"},
		{"negative wait", ClusterConfig{NodeName: "a", WaitForSize: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCluster(tc.cfg, nil, nil)
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestMemberlistLogWriter(t *testing.T) {
	var buf bytes.Buffer
	w := &memberlistLogWriter{logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	_, err := w.Write([]byte("[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n[WARN] memberlist: Was able to connect\n[ERR] memberlist: Failed\nplain line\n"))
	require.NoError(t, err)
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg=Memberlist detail="Stream connection from=127.0.0.1:1"`,
		`level=WARN msg=Memberlist detail="Was able to connect"`,
		`level=ERROR msg=Memberlist detail=Failed`,
		`level=INFO msg=Memberlist detail="plain line"`,
	} {
		require.Contains(t, out, want)
	}
}

func TestClusterJoinRetriesUntilPeerIsUp(t *testing.T) {
	// Reserve a port for a peer that starts later.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	b, _ := startCluster(t, ClusterConfig{NodeName: "b", Join: []string{addr}})
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, []string{"b"}, aliveNames(b))
	a, _ := startCluster(t, ClusterConfig{NodeName: "a", ListenAddress: addr})
	require.Eventually(t, func() bool { return len(aliveNames(a)) == 2 && len(aliveNames(b)) == 2 },
		10*time.Second, 50*time.Millisecond)
}

func TestClusterKilledMemberRestartsUnderSameName(t *testing.T) {
	cs, _ := startThree(t, ClusterConfig{})
	cs[2].Close()
	require.Eventually(t, func() bool { return stateOf(cs[0], "n2") == StateDead }, 10*time.Second, 20*time.Millisecond)
	// The replacement pod keeps the name but gets a new address.
	n2, _ := startCluster(t, ClusterConfig{NodeName: "n2", Join: []string{cs[0].Addr()}})
	require.Eventually(t, func() bool {
		return stateOf(cs[0], "n2").Alive() && stateOf(cs[1], "n2").Alive() && len(aliveNames(n2)) == 3
	}, 10*time.Second, 50*time.Millisecond, "n0 sees %v, n2 sees %v", cs[0].Members(), n2.Members())
	for _, m := range cs[0].Members() {
		if m.Name == "n2" {
			require.Equal(t, n2.Addr(), m.Address)
		}
	}
}

func TestClusterResolveJoin(t *testing.T) {
	c, _ := startCluster(t, ClusterConfig{NodeName: "a", Join: []string{
		"dns+nonexistent.invalid:7946", // resolves to nothing: not an error
		"dns+localhost:1234",
		"127.0.0.9:1",
	}})
	got := c.resolveJoin(context.Background())
	require.Contains(t, got, "127.0.0.1:1234")
	require.Contains(t, got, "127.0.0.9:1")
	for _, a := range got {
		require.NotContains(t, a, "7946")
	}
	require.Equal(t, []string{"a"}, aliveNames(c))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	self := l.Addr().String()
	require.NoError(t, l.Close())
	_, port, _ := net.SplitHostPort(self)
	b, _ := startCluster(t, ClusterConfig{NodeName: "b", ListenAddress: self, Join: []string{self, "dns+localhost:" + port}})
	for _, a := range b.resolveJoin(context.Background()) {
		require.NotEqual(t, self, a, "never joins itself")
	}
}

func TestAdvertisedWebURL(t *testing.T) {
	ip := net.ParseIP("10.0.0.5")
	for in, want := range map[string]string{
		"":                        "",
		"http://:9090":            "http://10.0.0.5:9090",
		"https://0.0.0.0:9090":    "https://10.0.0.5:9090",
		"http://[::]:9090":        "http://10.0.0.5:9090",
		"http://127.0.0.7:9090":   "http://127.0.0.7:9090",
		"https://promshard-0:443": "https://promshard-0:443",
	} {
		require.Equal(t, want, advertisedWebURL(in, ip), in)
	}
}

// TestClusterStallStepsDown: a participant told of a stall longer than the
// threshold stops participating (its filter hands its targets off), pulls
// the peers' state, and participates again; a joining member only counts
// it. Release announcements reach the peers.
func TestClusterStallStepsDown(t *testing.T) {
	cs, _ := startThree(t, ClusterConfig{HandoffDelay: 200 * time.Millisecond})
	for _, c := range cs[:2] {
		c.Participate()
	}
	c := cs[0]
	drain(c.Changes())
	done := make(chan struct{})
	go func() { c.stalled(context.Background(), 5*time.Second); close(done) }()
	<-c.Changes() // stepped down: its own state changed
	require.Equal(t, StateJoining, stateOf(c, "n0"), "a stalled member owns nothing until it participates again")
	<-done
	require.True(t, c.Participant())
	require.Equal(t, StateParticipant, stateOf(c, "n0"))
	require.Equal(t, int64(1), c.stalls.Load())

	cs[2].stalled(context.Background(), 5*time.Second) // not a participant: nothing to hand off
	require.False(t, cs[2].Participant())
	require.Equal(t, int64(1), cs[2].stalls.Load())

	c.AnnounceReleased(0xabc)
	require.Eventually(t, func() bool {
		for _, m := range cs[1].Members() {
			if m.Name == "n0" {
				return m.ConfirmsHandoffs && m.Released == 0xabc
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "n1 sees %v", cs[1].Members())
}
