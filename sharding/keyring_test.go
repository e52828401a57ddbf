package sharding

import (
	"bytes"
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func b64(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

func TestReadKeyring(t *testing.T) {
	k16, k24, k32 := bytes.Repeat([]byte{9}, 16), bytes.Repeat([]byte{0xff}, 24), bytes.Repeat([]byte{7}, 32)
	for _, tc := range []struct {
		name    string
		content []byte
		want    [][]byte
		err     string
	}{
		{"raw 16", bytes.Repeat([]byte{0xfe}, 16), [][]byte{bytes.Repeat([]byte{0xfe}, 16)}, ""},
		{"raw 24", k24, [][]byte{k24}, ""},
		{"base64 32 with newline", []byte(b64(k32) + "\n"), [][]byte{k32}, ""},
		{"base64 16", []byte(b64(k16)), [][]byte{k16}, ""},
		{"several keys, comments, blanks, duplicates", []byte("# primary first\n" + b64(k32) + "\n\n  " + b64(k16) + "  \n" + b64(k32) + "\n"), [][]byte{k32, k16}, ""},
		{"bad length", []byte(b64([]byte("12345"))), nil, "line 1 decodes to 5 bytes"},
		{"bad second line", []byte(b64(k16) + "\nnot base64!\n"), nil, "line 2 is not base64"},
		{"empty", []byte("# nothing\n\n"), nil, "holds no key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readKeyring(writeKey(t, tc.content))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestUpdateKeyring(t *testing.T) {
	a, b, c := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16), bytes.Repeat([]byte{3}, 32)
	kr, err := newKeyring([][]byte{a})
	require.NoError(t, err)
	for _, step := range []struct {
		keys    [][]byte
		changed bool
	}{
		{[][]byte{a}, false},
		{[][]byte{a, b}, true},
		{[][]byte{a, b}, false},
		{[][]byte{b, a}, true},
		{[][]byte{b}, true},
		{[][]byte{c, b}, true},
		{[][]byte{c}, true},
	} {
		changed, err := updateKeyring(kr, step.keys)
		require.NoError(t, err)
		require.Equal(t, step.changed, changed, "%v", step.keys)
		require.Equal(t, step.keys, kr.GetKeys())
	}
	_, err = updateKeyring(kr, nil)
	require.Error(t, err)
}

// TestKeyRotationNeverSplits rotates the gossip key of a three-member
// cluster in the documented three steps, one member at a time, reloading
// the file as a running member does, and checks after every single change
// that every member still sees all three alive, for longer than failure
// detection needs to declare an unreachable member dead. It then shows the
// check can fail: a member that skips to a key its peers do not hold is cut
// off.
func TestKeyRotationNeverSplits(t *testing.T) {
	oldKey, newKey, otherKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	files := make([]string, 3)
	for i := range files {
		files[i] = writeKey(t, []byte(b64(oldKey)+"\n"))
	}
	var cs []*Cluster
	for i, name := range []string{"n0", "n1", "n2"} {
		cfg := fastDetection(ClusterConfig{NodeName: name, SecretKeyFile: files[i], KeyringReloadInterval: -1})
		if i > 0 {
			cfg.Join = []string{cs[0].Addr()}
		}
		c, _ := startCluster(t, cfg)
		cs = append(cs, c)
	}
	for _, c := range cs {
		require.Eventually(t, func() bool { return len(aliveNames(c)) == 3 }, 10*time.Second, 20*time.Millisecond)
	}
	write := func(i int, keys ...[]byte) {
		var lines []string
		for _, k := range keys {
			lines = append(lines, b64(k))
		}
		require.NoError(t, os.WriteFile(files[i], []byte(strings.Join(lines, "\n")+"\n"), 0o600))
		cs[i].keys.reload(cs[i].logger)
		require.Equal(t, keys, cs[i].keys.ring.GetKeys())
	}
	// holdsTogether fails as soon as some member no longer sees all three
	// alive; it watches for longer than a suspicion timeout.
	holdsTogether := func(step string) {
		deadline := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(deadline) {
			for _, c := range cs {
				require.Len(t, aliveNames(c), 3, "%s: %s sees %v", step, c.Self(), c.Members())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range cs {
		write(i, oldKey, newKey)
		holdsTogether("add the new key as the second line")
	}
	for i := range cs {
		write(i, newKey, oldKey)
		holdsTogether("make the new key primary")
	}
	for i := range cs {
		write(i, newKey)
		holdsTogether("remove the old key")
	}
	require.EqualValues(t, 3, cs[0].keys.reloads.Load())

	// Negative control: a member that encrypts with a key nobody else has
	// is declared dead by its peers.
	write(2, otherKey)
	require.Eventually(t, func() bool { return stateOf(cs[0], "n2") == StateDead }, 10*time.Second, 20*time.Millisecond)

	// A broken file leaves the keys alone and is counted.
	require.NoError(t, os.WriteFile(files[0], []byte("garbage\n"), 0o600))
	cs[0].keys.reload(cs[0].logger)
	require.Equal(t, [][]byte{newKey}, cs[0].keys.ring.GetKeys())
	require.EqualValues(t, 1, cs[0].keys.failures.Load())
}

// fastDetection shortens failure detection so a cut-off member is declared
// dead within about a second.
func fastDetection(cfg ClusterConfig) ClusterConfig {
	cfg.ProbeInterval = 200 * time.Millisecond
	cfg.ProbeTimeout = 100 * time.Millisecond
	cfg.GossipInterval = 50 * time.Millisecond
	return cfg
}
