package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClusterFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"node strategy with replication", []string{"--sharding.strategy=node", "--node-name=n1", "--sharding.replication-factor=2"},
			"--sharding.replication-factor above 1 cannot be combined with --sharding.strategy=node"},
		{"identical copies without replication", []string{"--sharding.replication-mode=identical"},
			"--sharding.replication-mode=identical needs --sharding.replication-factor above 1"},
		{"unknown replication mode", []string{"--sharding.replication-factor=2", "--sharding.replication-mode=name"}, "enum value must be one of rank,identical"},
		{"zone strategy without zone", []string{"--sharding.strategy=zone", "--sharding.zone="}, "--sharding.strategy=zone needs --sharding.zone"},
		{"reserved replica label", []string{"--sharding.replica-label=__replica"}, `--sharding.replica-label "__replica" is not a valid label name`},
		{"GC headroom of the whole way", []string{"--runtime.gc-headroom=1"}, "--runtime.gc-headroom 1: want a fraction from 0 (off) to below 1"},
		{"negative GC headroom", []string{"--runtime.gc-headroom=-0.1"}, "--runtime.gc-headroom -0.1: want a fraction"},
		{"memory ratio above 1", []string{"--auto-gomemlimit.ratio=1.5"}, "--auto-gomemlimit.ratio 1.5: want a share above 0 and at most 1"},
		{"zero handoff timeout", []string{"--sharding.handoff-timeout=0s"}, "--sharding.handoff-timeout 0s: want a positive duration"},
		{"zero batch send deadline", []string{"--remote-write.batch-send-deadline=0s"}, "--remote-write.batch-send-deadline 0s: want a positive duration"},
		{"zero API rate", []string{"--kubernetes.qps=0"}, "--kubernetes.qps 0: want a positive rate"},
		{"zero API burst", []string{"--kubernetes.burst=0"}, "--kubernetes.burst 0: want at least 1"},
		{"zero unreachable timeout", []string{"--kubernetes.unreachable-timeout=0s"}, "--kubernetes.unreachable-timeout 0s: want a positive duration"},
		{"negative unreachable timeout", []string{"--kubernetes.unreachable-timeout=-1s"}, "--kubernetes.unreachable-timeout -1s: want a positive duration"},
		{"unreachable timeout without unit", []string{"--kubernetes.unreachable-timeout=30"}, `missing unit in duration "30"`},
		{"ruler URL without scheme", []string{"--rules.url=mimir:8080"}, `--rules.url: ruler URL "mimir:8080": want http(s)://host[:port][/path]`},
		{"unknown ruler API", []string{"--rules.url=http://mimir", "--rules.api=thanos"}, "enum value must be one of mimir,cortex"},
		{"bad rule selector", []string{"--rules.url=http://mimir", "--rules.selector=a in"}, "--rules.selector:"},
		{"prefix with slash", []string{"--rules.url=http://mimir", "--rules.namespace-prefix=a/"}, `--rules.namespace-prefix "a/": want a non-empty prefix`},
		{"bad enforced label", []string{"--rules.url=http://mimir", "--rules.enforced-namespace-label=a\xffb"}, `--rules.enforced-namespace-label "a\xffb" is not a valid label name`},
		{"zero resync", []string{"--rules.url=http://mimir", "--rules.resync-interval=0s"}, "--rules.resync-interval must be positive"},
		{"missing ruler http config", []string{"--rules.url=http://mimir", "--rules.http-config-file=/nonexistent"}, "--rules.http-config-file:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			t.Setenv("ZONE", "")
			code := runMain(append([]string{"run", "--remote-write.url=http://127.0.0.1:1/api/v1/write"}, tc.args...), &stdout, &stderr)
			require.Equal(t, 2, code)
			require.Contains(t, stderr.String(), tc.want)
			require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr.String()), "\n")+1, "one line: %s", stderr.String())
		})
	}
}
