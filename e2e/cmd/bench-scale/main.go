// Command bench-scale measures promshard at scale on the test bed (`make
// bench-scale`, not part of `make test`): M ServiceMonitors with two
// endpoints each in N namespaces, each over its own Service of T endpoint
// addresses (M x 2 x T scrape targets; the addresses are A real target
// sockets in network namespaces, reused across Services, so each Prometheus
// target is distinct by labels and scraped on its own), and R clustered
// replicas. It prints per replica: the time from its start to every target
// owned, CPU cores and RSS idle, the same under background churn (one update
// per second of a Secret no monitor references and one Service's endpoints),
// the apply latency p50/p99 of monitor edits under that churn, and the
// watches it holds on the API server (kube-apiserver's
// apiserver_longrunning_requests{verb="WATCH"} before and after it started).
//
// Idle and churn windows alternate over several rounds (odd rounds idle
// first, even rounds churn first), because one pair of windows on a shared
// machine is noisier than the effect. A garbage collection costs about as
// much as the effect and comes about once per round, so the report also
// gives, per replica, the heap allocated in each kind of window (the work
// churn causes, which sets how often the collector runs) and the CPU ratio
// with each window charged GC time in proportion to what it allocated.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/promshard/promshard/e2e/benchutil"
	"github.com/promshard/promshard/e2e/testbed"
)

type params struct {
	monitors, namespaces, perService, addresses, replicas, edits, rounds int
	interval, window, settle, slowEdit                                   time.Duration
	profile, logs                                                        string
}

func main() {
	var p params
	flag.IntVar(&p.monitors, "monitors", 5000, "ServiceMonitors (two endpoints each), one Service each")
	flag.IntVar(&p.namespaces, "namespaces", 500, "namespaces the monitors are spread over")
	flag.IntVar(&p.perService, "per-service", 2, "endpoint addresses per Service (targets = monitors x 2 x this)")
	flag.IntVar(&p.addresses, "addresses", 200, "real target sockets the endpoint addresses are taken from")
	flag.IntVar(&p.replicas, "replicas", 3, "promshard replicas")
	flag.IntVar(&p.edits, "edits", 50, "monitor edits whose apply latency is measured")
	flag.DurationVar(&p.interval, "interval", time.Minute, "scrape interval of every endpoint")
	flag.IntVar(&p.rounds, "rounds", 5, "rounds of one idle and one churn window each (odd rounds idle first); the report compares medians, sums and GC-amortized sums over the rounds")
	flag.DurationVar(&p.window, "window", 30*time.Second, "measured window without changes, and with churn")
	flag.DurationVar(&p.settle, "settle", 5*time.Second, "unmeasured time after churn starts or stops, before a window")
	flag.DurationVar(&p.slowEdit, "slow-edit", time.Second, "apply latency above which an edit prints the replica's log since the edit (its debug lines give the rebuild, translate, apply and status times)")
	flag.StringVar(&p.profile, "profile", "", "directory for CPU profiles of replica 0 over the first idle and churn windows (idle.pprof, churn.pprof) and the first 20s of the edits (edits.pprof; replica 1's execution trace over their first 8s: edits.trace) and its heap profiles at their start and end, each after a forced GC (idle-start.heap, idle-end.heap, churn-start.heap, churn-end.heap; go tool pprof -sample_index=alloc_space -base idle-start.heap idle-end.heap shows what the window allocated); empty: none")
	flag.StringVar(&p.logs, "logs", "", "directory to copy the replicas' logs into at the end (replica-N.log: debug lines and GC traces of the whole run); empty: none")
	flag.Parse()
	benchutil.Main("bench-scale", func() error { return run(p) })
}

var logf = benchutil.Logf

// replica is one started promshard and what was measured of it.
type replica struct {
	ps        *testbed.Promshard
	start     time.Time
	owned     time.Duration
	watches   float64
	windows   map[string][]windowStat // "idle" and "churn": one per round
	gens      float64                 // translations over all rounds
	pools     float64                 // scrape pools after the edits (the marker pool included)
	latencies []float64
	editsGC   gcStat // GC cycles logged during the edits
}

func run(p params) error {
	if p.profile != "" {
		if err := os.MkdirAll(p.profile, 0o755); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bed, bin, err := benchutil.StartBed(ctx, "")
	if err != nil {
		return err
	}
	defer bed.Close()
	rcv, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	if err != nil {
		return err
	}
	w, err := newWorld(ctx, bed, p)
	if err != nil {
		return err
	}
	total := p.monitors * 2 * p.perService
	logf("%d monitors, %d namespaces, %d targets (%d sockets); starting %d replicas", p.monitors, p.namespaces, total, p.addresses, p.replicas)

	var reps []*replica
	for i := range p.replicas {
		before, err := watches(ctx, bed)
		if err != nil {
			return err
		}
		args := []string{"--remote-write.url=" + rcv.WriteURL(), "--scrape.interval=" + p.interval.String(), "--log.level=debug"}
		if i > 0 {
			args = append(args, "--cluster.join="+reps[0].ps.GossipAddr)
		}
		r := &replica{start: time.Now(), windows: map[string][]windowStat{}}
		r.ps, err = bed.StartPromshard(ctx, testbed.PromshardOptions{Binary: bin, Name: "scale-" + strconv.Itoa(i),
			IP: "127.0.0." + strconv.Itoa(20+i), Gossip: true, NoWaitReady: true, Args: args, Env: []string{"GODEBUG=gctrace=1"}})
		if err != nil {
			return err
		}
		defer r.ps.Kill()
		reps = append(reps, r)
		if err := waitOwned(ctx, reps, total); err != nil {
			return err
		}
		r.owned = time.Since(r.start)
		after, err := watches(ctx, bed)
		if err != nil {
			return err
		}
		r.watches = after - before
		logf("replica %d: all %d targets owned after %s; %.0f watches", i, total, r.owned.Round(time.Millisecond), r.watches)
	}

	// Targets a replica took over when the next one joined get their first
	// scrape, and a new connection, within an interval: wait that out.
	logf("warming up for one scrape interval (%s)", p.interval)
	if err := sleep(ctx, p.interval); err != nil {
		return err
	}
	gens0, err := generations(ctx, reps)
	if err != nil {
		return err
	}
	var churnWG sync.WaitGroup
	stopChurn := func() {}
	defer func() {
		stopChurn()
		churnWG.Wait()
	}()
	churning := false
	startChurn := func() {
		churnCtx, cancel := context.WithCancel(ctx)
		stopChurn = cancel
		churnWG.Go(func() { w.churn(churnCtx) })
		churning = true
	}
	for round := 1; round <= p.rounds; round++ {
		// Odd rounds measure idle first, even ones churn first: a GC cycle
		// (over a second of CPU at this heap) recurring about once per
		// round would otherwise fall into the same kind of window each time.
		kinds := []string{"idle", "churn"}
		if round%2 == 0 {
			kinds = []string{"churn", "idle"}
		}
		for _, kind := range kinds {
			switch {
			case kind == "idle" && churning:
				stopChurn()
				churnWG.Wait()
				churning = false
			case kind == "churn" && !churning:
				startChurn()
			}
			if err := sleep(ctx, p.settle); err != nil {
				return err
			}
			logf("round %d: %s for %s", round, kind, p.window)
			if err := window(ctx, p, reps, round, kind); err != nil {
				return err
			}
		}
	}
	if !churning { // the edits are measured under churn
		startChurn()
	}
	gens1, err := generations(ctx, reps)
	if err != nil {
		return err
	}
	for i, r := range reps {
		r.gens = gens1[i] - gens0[i]
	}
	logf("%d monitor edits under churn", p.edits)
	stopProfile := profile(ctx, p, reps[0], "edits.pprof", 21*time.Second)
	stopTrace := capture(ctx, p, reps[1], "trace", "edits.trace", 9*time.Second)
	if err := w.edits(ctx, reps, p.edits); err != nil {
		return err
	}
	stopProfile()
	stopTrace()
	// No job leaves the configuration: the pools created are the pools.
	pools, err := counters(ctx, reps, "prometheus_target_scrape_pools_total")
	if err != nil {
		return err
	}
	for i, r := range reps {
		r.pools = pools[i]
	}
	stopChurn()
	churnWG.Wait()
	report(p, total, reps, w.churnErrors())
	return keepLogs(p.logs, reps)
}

// keepLogs copies the replicas' logs into dir (if not empty).
func keepLogs(dir string, reps []*replica) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i, r := range reps {
		b, err := os.ReadFile(r.ps.LogPath)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("replica-%d.log", i)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// waitOwned waits until every replica reports the total number of targets
// and the replicas' own shares add up to it.
func waitOwned(ctx context.Context, reps []*replica, total int) error {
	deadline := time.Now().Add(30 * time.Minute)
	for time.Now().Before(deadline) {
		sum, ok := 0, true
		for _, r := range reps {
			st, err := clusterStatus(ctx, r.ps)
			if err != nil || st.TotalTargets != total {
				ok = false
				break
			}
			for _, m := range st.Members {
				if m.Name == st.Self {
					sum += m.OwnedTargets
				}
			}
		}
		if ok && sum == total {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("targets not all owned after 30m")
}

type status struct {
	Self         string `json:"self"`
	TotalTargets int    `json:"totalTargets"`
	Members      []struct {
		Name         string `json:"name"`
		OwnedTargets int    `json:"ownedTargets"`
	} `json:"members"`
}

func clusterStatus(ctx context.Context, ps *testbed.Promshard) (status, error) {
	var resp struct {
		Data status `json:"data"`
	}
	b, err := ps.Get(ctx, "/api/v1/cluster")
	if err != nil {
		return status{}, err
	}
	err = json.Unmarshal(b, &resp)
	return resp.Data, err
}

// watches returns the watches kube-apiserver is serving.
func watches(ctx context.Context, bed *testbed.Bed) (float64, error) {
	b, err := bed.Kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	var n float64
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "apiserver_longrunning_requests{") && strings.Contains(line, `verb="WATCH"`) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return 0, err
			}
			n += v
		}
	}
	return n, nil
}

// generations reads every replica's translation counter.
func generations(ctx context.Context, reps []*replica) ([]float64, error) {
	return counters(ctx, reps, "promshard_config_generations_total")
}

// counters reads the metric name of every replica.
func counters(ctx context.Context, reps []*replica, name string) ([]float64, error) {
	out := make([]float64, len(reps))
	for i, r := range reps {
		v, err := benchutil.Metric(ctx, r.ps.WebURL+"/metrics", name)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// heapProfile saves r's heap profile as p.profile/name.
func heapProfile(ctx context.Context, p params, r *replica, name string) {
	// gc=1: the heap profile's allocation counts are those of the last
	// completed GC cycle; a forced one makes them current, so that the
	// difference of two profiles is what the window allocated.
	if err := saveProfile(ctx, r.ps.WebURL+"/debug/pprof/heap?gc=1", filepath.Join(p.profile, name)); err != nil {
		logf("heap profile %s: %v", name, err)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// saveProfile writes what url answers to path.
func saveProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// profile records a CPU profile of r over d (less a second) into
// p.profile/name in the background; the returned func waits for it.
func profile(ctx context.Context, p params, r *replica, name string, d time.Duration) func() {
	return capture(ctx, p, r, "profile", name, d)
}

// capture saves r's /debug/pprof/<endpoint> over d (less a second) into
// p.profile/name in the background; the returned func waits for it.
func capture(ctx context.Context, p params, r *replica, endpoint, name string, d time.Duration) func() {
	if p.profile == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		secs := max(1, int(d.Seconds())-1)
		if err := saveProfile(ctx, fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", r.ps.WebURL, endpoint, secs), filepath.Join(p.profile, name)); err != nil {
			logf("%s %s: %v", endpoint, name, err)
		}
	}()
	return func() { <-done }
}

// monitor is the i-th ServiceMonitor: two endpoints on the Service's port.
func monitor(ns, name string, edit int) *monitoringv1.ServiceMonitor {
	ep := monitoringv1.Endpoint{Port: "metrics"}
	if edit > 0 {
		ep.RelabelConfigs = []monitoringv1.RelabelConfig{{TargetLabel: "edit", Replacement: ptr.To(strconv.Itoa(edit))}}
	}
	// Same port and path: a second job, as a second endpoint would be. Its
	// own label keeps its series apart from the first's: identical series
	// from two jobs are sharded independently, so two members would send
	// the same series and a receiver refuses the out-of-order batches.
	ep2 := ep
	ep2.RelabelConfigs = append(slices.Clone(ep.RelabelConfigs), monitoringv1.RelabelConfig{TargetLabel: "endpoint_index", Replacement: ptr.To("1")})
	return &monitoringv1.ServiceMonitor{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: monitoringv1.ServiceMonitorSpec{
			Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Endpoints: []monitoringv1.Endpoint{ep, ep2},
		},
	}
}
