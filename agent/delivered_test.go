package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	promconfig "github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"
)

// deliveryStep is one check of TestDeliveryCheck: after the stop, with
// these queues, the answer wanted.
type deliveryStep struct {
	after time.Duration
	qs    []QueueStatus
	want  bool
}

func TestDeliveryCheck(t *testing.T) {
	t0 := time.Unix(1000, 400*int64(time.Millisecond)) // rounded up: 1001
	q := func(enq, sent, shards float64) []QueueStatus {
		return []QueueStatus{{Name: "q", URL: "u", HighestEnqueued: enq, HighestSent: sent, Shards: shards}}
	}
	for _, tc := range []struct {
		name  string
		steps []deliveryStep
	}{
		{"one shard: a later sample sent", []deliveryStep{{0, q(1000, 999, 1), false}, {time.Second, q(1001, 1000, 1), false}, {2 * time.Second, q(1002, 1001, 1), true}}},
		{"several shards wait the batch deadline", []deliveryStep{{0, q(1001, 1001, 4), false}, {4 * time.Second, q(1003, 1002, 4), false}, {5 * time.Second, q(1003, 1002, 4), true}}},
		{"nothing written any more: settled, then the deadline", []deliveryStep{{0, q(1000, 999, 1), false}, {100 * time.Millisecond, q(1000, 1000, 1), false}, {300 * time.Millisecond, q(1000, 1000, 1), false}, {5400 * time.Millisecond, q(1000, 1000, 1), true}}},
		{"no queue", []deliveryStep{{0, nil, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &delivery{}
			d.setDeadline([]*promconfig.RemoteWriteConfig{&promconfig.DefaultRemoteWriteConfig}) // 5s
			now := t0
			for i, s := range tc.steps {
				require.Equal(t, s.want, d.check(t0, s.qs, now.Add(s.after)), "step %d", i)
			}
		})
	}
}

// TestDeliveredBefore drives the check through a real agent and remote
// write: once it reports true for the moment a job's loop stopped, the
// receiver holds every sample that job will ever send (proven by later
// samples of the job that goes on), and it is not true before. It pins
// Prometheus' per-queue metrics the check reads.
func TestDeliveredBefore(t *testing.T) {
	host, rcv, rwc := targetAndReceiver(t, "handoff_demo 1", 300*time.Millisecond)
	a := newTestAgent(t)
	gone, stays := scrapeJob("gone", host), scrapeJob("stays", host)
	require.NoError(t, a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{gone, stays}, RemoteWriteConfigs: []*promconfig.RemoteWriteConfig{rwc}}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	goneSeries := fmt.Sprintf(`handoff_demo{instance=%q, job="gone"}`, host)
	staysSeries := fmt.Sprintf(`handoff_demo{instance=%q, job="stays"}`, host)
	require.Eventually(t, func() bool { return rcv.has(goneSeries) && rcv.has(staysSeries) }, 20*time.Second, 20*time.Millisecond)

	require.NoError(t, a.ApplyConfig(&promconfig.Config{ScrapeConfigs: []*promconfig.ScrapeConfig{stays}, RemoteWriteConfigs: []*promconfig.RemoteWriteConfig{rwc}}))
	require.Eventually(t, func() bool { return len(a.ScrapeManager().TargetsActive()["gone"]) == 0 }, 10*time.Second, 10*time.Millisecond)
	stopped := time.Now().Add(100 * time.Millisecond)
	require.False(t, a.DeliveredBefore(stopped), "delivered before a later sample was even scraped")
	require.Eventually(t, func() bool { return a.DeliveredBefore(stopped) }, 20*time.Second, 20*time.Millisecond)
	took := time.Since(stopped)
	final := rcv.count(goneSeries)

	// Positive signal: the job that goes on delivered samples from two
	// seconds after the check; nothing more of the stopped one came.
	later := rcv.count(staysSeries)
	require.Eventually(t, func() bool { return rcv.count(staysSeries) >= later+15 }, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, final, rcv.count(goneSeries), "samples of the stopped job arrived after DeliveredBefore reported true")
	t.Logf("delivered %s after the stop (batch send deadline 300ms, whole-second timestamps)", took)
}
