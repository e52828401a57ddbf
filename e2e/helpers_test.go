//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promshard/promshard/e2e/testbed"
)

var (
	promshardOnce sync.Once
	promshardBin  string
	promshardErr  error
)

// promshardBinary builds cmd/promshard once per test binary.
func promshardBinary(t testing.TB) string {
	t.Helper()
	promshardOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		promshardBin, promshardErr = testbed.BuildPromshard(ctx, func(format string, args ...any) { fmt.Printf(format+"\n", args...) })
	})
	require.NoError(t, promshardErr, "building promshard")
	return promshardBin
}

// startPromshard starts a replica and, when the test fails, prints the tail
// of its log.
func startPromshard(t testing.TB, bed *testbed.Bed, opts testbed.PromshardOptions) *testbed.Promshard {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = promshardBinary(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := bed.StartPromshard(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of promshard %s (%s):\n%s", opts.Name, p.LogPath, p.LogTail(60))
		}
	})
	return p
}

// eventually polls cond every 100ms until it returns nil or d passes; it
// fails with the last error.
func eventually(t testing.TB, d time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = cond(cctx)
		ccancel()
		if last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not true after %s: %v", what, d, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// queryCount returns a condition that holds when query returns want series
// at the receiver.
func queryCount(rcv *testbed.Receiver, query string, want int) func(context.Context) error {
	return func(ctx context.Context) error {
		v, err := rcv.Query(ctx, query, time.Now())
		if err != nil {
			return err
		}
		if len(v) != want {
			return fmt.Errorf("query %s: %d series, want %d: %s", query, len(v), want, vectorString(v))
		}
		return nil
	}
}

func vectorString(v model.Vector) string {
	var parts []string
	for _, s := range v {
		parts = append(parts, s.Metric.String()+"="+s.Value.String())
	}
	if len(parts) > 5 {
		parts = append(parts[:5], fmt.Sprintf("... %d more", len(parts)-5))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// poolTargets returns the active targets of scrape pool pool.
func poolTargets(ctx context.Context, p *testbed.Promshard, pool string) ([]testbed.ActiveTarget, error) {
	ts, err := p.Targets(ctx)
	if err != nil {
		return nil, err
	}
	var out []testbed.ActiveTarget
	for _, t := range ts {
		if t.ScrapePool == pool {
			out = append(out, t)
		}
	}
	return out, nil
}

// healthyPool returns a condition that holds when pool has n targets, all up.
func healthyPool(p *testbed.Promshard, pool string, n int) func(context.Context) error {
	return func(ctx context.Context) error {
		ts, err := poolTargets(ctx, p, pool)
		if err != nil {
			return err
		}
		if len(ts) != n {
			return fmt.Errorf("pool %s has %d targets, want %d", pool, len(ts), n)
		}
		for _, t := range ts {
			if t.Health != "up" {
				return fmt.Errorf("target %s health %s: %s", t.ScrapeURL, t.Health, t.LastError)
			}
		}
		return nil
	}
}

// monitoredService creates namespace ns, n targets on a new network-namespace
// host behind Service ns/name (labelled app=name) and a ServiceMonitor
// ns/name selecting it, and returns the targets.
func monitoredService(t testing.TB, bed *testbed.Bed, ns, name string, n int) []*testbed.Target {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, bed.CreateNamespace(ctx, ns, nil))
	host, err := bed.Netns(ctx)
	require.NoError(t, err)
	ts, err := host.AddTargets(ctx, ns+"-"+name, n, testbed.TargetOptions{})
	require.NoError(t, err)
	require.NoError(t, bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: ns, Name: name, Labels: map[string]string{"app": name}, Targets: ts}))
	_, err = bed.ApplyMonitoring(ctx, serviceMonitor(ns, name))
	require.NoError(t, err)
	return ts
}

func secret(ns, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	return s
}

func applySecret(ctx context.Context, bed *testbed.Bed, s *corev1.Secret) error {
	cur, err := bed.Kube.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		_, err = bed.Kube.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		return err
	}
	s.ResourceVersion = cur.ResourceVersion
	_, err = bed.Kube.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
	return err
}
