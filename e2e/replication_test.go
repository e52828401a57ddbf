//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/promshard/promshard/e2e/testbed"
	"github.com/promshard/promshard/sharding"
)

const (
	replTargets  = 16
	replInterval = time.Second // the monitors' scrape interval
)

// replicate starts replica name of a replicated cluster writing to
// writeURL, joining join (if any).
func (e *shardEnv) replicate(t *testing.T, name, join, writeURL, mode string) *testbed.Promshard {
	e.nextIP++
	args := []string{"--remote-write.url=" + writeURL, "--scrape.interval=1s",
		"--sharding.replication-factor=2", "--sharding.replication-mode=" + mode}
	if join != "" {
		args = append(args, "--cluster.join="+join)
	}
	return startPromshard(t, e.bed, testbed.PromshardOptions{Name: name, IP: "127.0.0." + strconv.Itoa(e.nextIP), Gossip: true, Args: args})
}

// TestReplicationDeduplicated runs three members with replication factor 2
// on one bed: in identical mode into a deduplicating VictoriaMetrics, where
// SIGKILLing a member loses no sample and every target series is stored
// once; then in rank mode into a strict Prometheus receiver behind a
// recording proxy, where every request carries one rank and none is
// refused.
func TestReplicationDeduplicated(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	e := &shardEnv{bed: startBed(t), nextIP: 40}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // a cold build of VictoriaMetrics takes ~30 s
	vm, err := e.bed.StartVictoriaMetrics(vctx, testbed.VictoriaMetricsOptions{Dedup: replInterval})
	cancel()
	require.NoError(t, err)
	e.targets = monitoredService(t, e.bed, "vmrepl", "fleet", replTargets)

	r1 := e.replicate(t, "v1", "", vm.WriteURL(), "identical")
	r2 := e.replicate(t, "v2", r1.GossipAddr, vm.WriteURL(), "identical")
	r3 := e.replicate(t, "v3", r1.GossipAddr, vm.WriteURL(), "identical")
	reps := map[string]*testbed.Promshard{"v1": r1, "v2": r2, "v3": r3}
	eventually(t, 30*time.Second, "every target has two owners", partitioned(e, reps, 2))
	eventually(t, 30*time.Second, "every target's up stored", func(ctx context.Context) error {
		s, err := vm.Export(ctx, `up{namespace="vmrepl"}`, time.Now().Add(-3*time.Second), time.Now())
		if err == nil && len(s) != replTargets {
			err = fmt.Errorf("%d up series, want %d", len(s), replTargets)
		}
		return err
	})

	// SIGKILL one member in the middle of a window: its targets keep their
	// second copy, and get a new one within seconds.
	from := time.Now()
	time.Sleep(5 * time.Second) // the window's part before the kill
	own, err := owned(ctx, reps)
	require.NoError(t, err)
	lost := own["v2"]
	delete(reps, "v2")
	killAt := time.Now()
	r2.Kill()
	eventually(t, 20*time.Second, "the killed member's copies taken over", partitioned(e, reps, 2))
	fmt.Printf("e2e: identical mode: the killed member's %d copies scraped elsewhere again after %.2fs\n", len(lost), time.Since(killAt).Seconds())
	to := killAt.Add(10 * time.Second)
	eventually(t, 30*time.Second, "samples stored past the window", func(ctx context.Context) error {
		s, err := vm.Export(ctx, `up{namespace="vmrepl"}`, to, time.Now())
		if err == nil && (time.Now().Before(to.Add(2*time.Second)) || len(s) != replTargets) {
			err = fmt.Errorf("%d series after the window end", len(s))
		}
		return err
	})

	ups, err := vm.Export(ctx, `up{namespace="vmrepl"}`, from, to)
	require.NoError(t, err)
	require.Len(t, ups, replTargets, "one stored up series per target")
	missed, worst, samples := 0, time.Duration(0), 0
	for _, s := range ups {
		require.NotContains(t, s.Metric, sharding.DefaultReplicaLabel, "identical copies carry no replica label")
		ts := s.Timestamps
		require.NotEmpty(t, ts, s.Metric["instance"])
		// The window's edges count as samples: no gap there either.
		edges := append(append([]int64{from.UnixMilli()}, ts...), to.UnixMilli())
		for i := 1; i < len(edges); i++ {
			gap := time.Duration(edges[i]-edges[i-1]) * time.Millisecond
			worst = max(worst, gap)
			if gap > replInterval*3/2 {
				missed += int((gap+replInterval/2)/replInterval) - 1
			}
		}
		samples += len(ts)
		for _, v := range s.Values {
			require.Equal(t, 1.0, v, "up of %s", s.Metric["instance"])
		}
	}
	perTarget := float64(samples) / replTargets / to.Sub(from).Seconds()
	// Every metric of the targets (and the scrape's own series) is stored
	// once per target: no copy differs by a label.
	all, err := vm.Export(ctx, `{namespace="vmrepl"}`, from, to)
	require.NoError(t, err)
	perName := map[string]int{}
	for _, s := range all {
		require.NotContains(t, s.Metric, sharding.DefaultReplicaLabel)
		perName[s.Metric["__name__"]]++
	}
	fmt.Printf("e2e: identical mode into VictoriaMetrics, SIGKILL of 1 of 3 members: %d up series, %d series of %d names in all, over %.1fs: %d missed samples, longest gap %s, %.2f samples per target and second after dedup\n",
		len(ups), len(all), len(perName), to.Sub(from).Seconds(), missed, worst, perTarget)
	for name, n := range perName {
		require.Equal(t, replTargets, n, "stored series of %s: one per target", name)
	}
	require.Zero(t, missed, "missed samples (longest gap %s)", worst)
	require.InDelta(t, 1.0, perTarget, 0.15, "VictoriaMetrics keeps one sample per interval of the two copies")

	for _, r := range reps {
		r.Signal(syscall.SIGTERM)
	}
	for _, r := range reps {
		require.Equal(t, 0, r.Wait(30*time.Second))
	}
	t.Run("rank mode", func(t *testing.T) { testRankQueues(t, e) })
	fmt.Printf("e2e: TestReplicationDeduplicated: %.1fs before the bed stops\n", time.Since(start).Seconds())
}

// testRankQueues runs three rank-mode members with replication factor 2
// writing to a Prometheus receiver through a proxy that records the ranks
// of every request.
func testRankQueues(t *testing.T, e *shardEnv) {
	ctx := context.Background()
	rcv, err := e.bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	proxy := newRankProxy(t, rcv.WriteURL())
	r1 := e.replicate(t, "k1", "", proxy.url, "rank")
	r2 := e.replicate(t, "k2", r1.GossipAddr, proxy.url, "rank")
	r3 := e.replicate(t, "k3", r1.GossipAddr, proxy.url, "rank")
	reps := map[string]*testbed.Promshard{"k1": r1, "k2": r2, "k3": r3}
	eventually(t, 30*time.Second, "every target has two owners", partitioned(e, reps, 2))
	eventually(t, 30*time.Second, "one copy of each rank per target",
		queryCount(rcv, `count by (instance) (up{namespace="vmrepl",promshard_replica=~"0|1"} == 1) == 2`, replTargets))
	require.NoError(t, queryCount(rcv, `up{namespace="vmrepl",promshard_replica="0"}`, replTargets)(ctx))
	require.NoError(t, queryCount(rcv, `up{namespace="vmrepl",promshard_replica="1"}`, replTargets)(ctx))

	// Steady state from here on; while members joined, a rank's series
	// moved between members as on any handoff.
	acc0, ref0, err := rcv.WriteRequests(ctx)
	require.NoError(t, err)
	eventually(t, 30*time.Second, "receiver accepts writes of both ranks", func(ctx context.Context) error {
		acc, _, err := rcv.WriteRequests(ctx)
		if err == nil && acc < acc0+12 {
			err = fmt.Errorf("%.0f writes accepted, want 12 (two rank queues per member)", acc-acc0)
		}
		return err
	})
	reqs, mixed, byRank := proxy.stats()
	acc, refused, err := rcv.WriteRequests(ctx)
	require.NoError(t, err)
	fmt.Printf("e2e: rank mode into Prometheus: %d requests (by rank: %v), %d mixing ranks; steady state: %.0f writes accepted, %.0f refused (%.0f refused while members joined)\n",
		reqs, byRank, mixed, acc-acc0, refused-ref0, ref0)
	require.Zero(t, mixed, "requests carrying series of several ranks")
	require.Positive(t, byRank["0"])
	require.Positive(t, byRank["1"])
	require.Equal(t, ref0, refused, "writes refused by the strict receiver in steady state")
}

// rankProxy forwards remote-write requests to a receiver and records the
// replica label values of each.
type rankProxy struct {
	url    string
	mu     sync.Mutex
	reqs   int
	mixed  int
	byRank map[string]int
}

func newRankProxy(t *testing.T, target string) *rankProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &rankProxy{url: "http://" + l.Addr().String() + "/api/v1/write", byRank: map[string]int{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.record(body)
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

func (p *rankProxy) record(body []byte) {
	raw, err := snappy.Decode(nil, body)
	var wr prompb.WriteRequest
	if err == nil {
		err = proto.Unmarshal(raw, &wr)
	}
	var ranks []string
	for _, ts := range wr.Timeseries {
		for _, l := range ts.Labels {
			if l.Name == sharding.DefaultReplicaLabel && !slices.Contains(ranks, l.Value) {
				ranks = append(ranks, l.Value)
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil || len(wr.Timeseries) == 0 {
		return
	}
	p.reqs++
	if len(ranks) > 1 {
		p.mixed++
	}
	for _, r := range ranks {
		p.byRank[r]++
	}
}

func (p *rankProxy) stats() (reqs, mixed int, byRank map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reqs, p.mixed, map[string]int{"0": p.byRank["0"], "1": p.byRank["1"]}
}
