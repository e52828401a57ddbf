// Command bench-status measures the initial status pass on the test bed
// (`make bench-status`, not part of `make test`): M ServiceMonitors in N
// namespaces selected by one PrometheusAgent, and R replicas started at
// once (as a StatefulSet with podManagementPolicy Parallel) with
// --prometheus-agent and the given --kubernetes.qps / --kubernetes.burst.
// It prints the time from the start until every monitor carries its
// Accepted binding, the status writes of each replica, and, started while
// the pass runs and again after it, the time until every replica's
// informers saw a new monitor (one that is rejected:
// promshard_rejected_objects goes up), to show that the status writes do
// not starve the watches (the status writer's clients have rate limiters
// of their own).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/promshard/promshard/e2e/benchutil"
	"github.com/promshard/promshard/e2e/testbed"
)

type params struct {
	monitors, namespaces, replicas, burst, waitForSize int
	qps                                                float64
	timeout                                            time.Duration
}

func main() {
	var p params
	flag.IntVar(&p.monitors, "monitors", 5000, "ServiceMonitors the PrometheusAgent selects (they select no Service: each gets \"0 targets\")")
	flag.IntVar(&p.namespaces, "namespaces", 500, "namespaces the monitors are spread over")
	flag.IntVar(&p.replicas, "replicas", 3, "promshard replicas, started at once")
	flag.IntVar(&p.waitForSize, "wait-for-size", 2, "--cluster.wait-for-size of each replica (the deployment's default)")
	flag.Float64Var(&p.qps, "qps", 50, "--kubernetes.qps of each replica")
	flag.IntVar(&p.burst, "burst", 100, "--kubernetes.burst of each replica")
	flag.DurationVar(&p.timeout, "timeout", 15*time.Minute, "longest wait for the pass")
	flag.Parse()
	benchutil.Main("bench-status", func() error { return run(p) })
}

var logf = benchutil.Logf

const agentNS = "bench-status"

func nsName(i int) string { return fmt.Sprintf("status-%03d", i) }

func monitor(ns, name string, relabel ...monitoringv1.RelabelConfig) *monitoringv1.ServiceMonitor {
	return &monitoringv1.ServiceMonitor{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: monitoringv1.ServiceMonitorSpec{
			Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Endpoints: []monitoringv1.Endpoint{{Port: "metrics", RelabelConfigs: relabel}},
		},
	}
}

func run(p params) error {
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
	if err := setup(ctx, bed, p, rcv.WriteURL()); err != nil {
		return err
	}

	logf("starting %d replicas at once (qps %g, burst %d, wait-for-size %d)", p.replicas, p.qps, p.burst, p.waitForSize)
	start := time.Now()
	var reps []*testbed.Promshard
	for i := range p.replicas {
		args := []string{"--prometheus-agent=" + agentNS + "/agent", "--log.level=info",
			"--kubernetes.qps=" + strconv.FormatFloat(p.qps, 'g', -1, 64), "--kubernetes.burst=" + strconv.Itoa(p.burst),
			"--cluster.wait-for-size=" + strconv.Itoa(p.waitForSize)}
		if i > 0 {
			args = append(args, "--cluster.join="+reps[0].GossipAddr)
		}
		r, err := bed.StartPromshard(ctx, testbed.PromshardOptions{Binary: bin, Name: "status-" + strconv.Itoa(i),
			IP: "127.0.0." + strconv.Itoa(60+i), Gossip: true, NoWaitReady: true, Args: args})
		if err != nil {
			return err
		}
		defer r.Kill()
		reps = append(reps, r)
	}

	var probe atomic.Pointer[time.Duration]
	var probeWG sync.WaitGroup
	defer probeWG.Wait()
	probeStarted := false
	deadline := time.Now().Add(p.timeout)
	var firstBound time.Duration
	for {
		bound, err := countBound(ctx, bed)
		if err != nil {
			return err
		}
		el := time.Since(start)
		if bound > 0 && firstBound == 0 {
			firstBound = el
		}
		logf("%s: %d of %d monitors bound", el.Round(time.Second), bound, p.monitors)
		if bound > 0 && !probeStarted {
			// While the pass writes: does a new object reach every
			// replica's informers at once?
			probeStarted = true
			probeWG.Go(func() {
				if d, err := informerProbe(ctx, bed, reps, "probe-during"); err != nil {
					logf("informer probe: %v", err)
				} else {
					probe.Store(&d)
				}
			})
		}
		if bound >= p.monitors {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d monitors bound after %s", bound, p.monitors, p.timeout)
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	pass := time.Since(start)
	probeWG.Wait()
	// The same once the pass is over, to compare with.
	idle, err := informerProbe(ctx, bed, reps, "probe-after")
	if err != nil {
		return err
	}
	fmt.Printf("\n%d ServiceMonitors, %d replicas started at once, --kubernetes.qps=%g --kubernetes.burst=%d\n", p.monitors, p.replicas, p.qps, p.burst)
	fmt.Printf("every monitor bound %s after the start (first binding after %s; polled every 2 s)\n", pass.Round(time.Second), firstBound.Round(time.Second))
	total := 0
	for i, r := range reps {
		w, _, err := r.Metric(ctx, `promshard_status_writes_total{kind="ServiceMonitor",result="success"}`)
		if err != nil {
			return err
		}
		fail, _, _ := r.Metric(ctx, `promshard_status_writes_total{kind="ServiceMonitor",result="error"}`)
		total += int(w)
		fmt.Printf("replica %d: %.0f status writes (%.0f failed)\n", i, w, fail)
	}
	fmt.Printf("%d writes in all for %d monitors\n", total, p.monitors)
	if d := probe.Load(); d != nil {
		fmt.Printf("a monitor created during the pass reached every replica's informers in %s\n", d.Round(10*time.Millisecond))
	}
	fmt.Printf("a monitor created after the pass reached every replica's informers in %s\n", idle.Round(10*time.Millisecond))
	return nil
}

// setup creates the namespaces, the monitors and the PrometheusAgent.
func setup(ctx context.Context, bed *testbed.Bed, p params, writeURL string) error {
	if err := bed.CreateNamespace(ctx, agentNS, nil); err != nil {
		return err
	}
	for i := range p.namespaces {
		if err := bed.CreateNamespace(ctx, nsName(i), nil); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := benchutil.Parallel(ctx, p.monitors, 8, func(i int) error {
		_, err := bed.ApplyMonitoring(ctx, monitor(nsName(i%p.namespaces), fmt.Sprintf("mon-%04d", i)))
		return err
	}); err != nil {
		return err
	}
	logf("created %d ServiceMonitors in %s", p.monitors, time.Since(start).Round(time.Second))
	pa := &monitoringv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Namespace: agentNS, Name: "agent"}}
	pa.Spec.ServiceMonitorSelector = &metav1.LabelSelector{}
	pa.Spec.ServiceMonitorNamespaceSelector = &metav1.LabelSelector{}
	pa.Spec.ScrapeInterval = "1m"
	pa.Spec.RemoteWrite = []monitoringv1.RemoteWriteSpec{{URL: monitoringv1.URL(writeURL)}}
	_, err := bed.ApplyMonitoring(ctx, pa)
	return err
}

// countBound counts the ServiceMonitors with an Accepted condition in the
// binding of the PrometheusAgent.
func countBound(ctx context.Context, bed *testbed.Bed) (int, error) {
	gvr := monitoringv1.SchemeGroupVersion.WithResource("servicemonitors")
	n, cont := 0, ""
	for {
		list, err := bed.Dynamic.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1000, Continue: cont})
		if err != nil {
			return 0, err
		}
		for _, o := range list.Items {
			if !strings.HasPrefix(o.GetName(), "probe-") && bound(o) {
				n++
			}
		}
		if cont = list.GetContinue(); cont == "" {
			return n, nil
		}
	}
}

func bound(o unstructured.Unstructured) bool {
	bindings, _, _ := unstructured.NestedSlice(o.Object, "status", "bindings")
	for _, b := range bindings {
		m, _ := b.(map[string]any)
		if m["resource"] != "prometheusagents" || m["namespace"] != agentNS || m["name"] != "agent" {
			continue
		}
		conds, _, _ := unstructured.NestedSlice(m, "conditions")
		for _, c := range conds {
			if cm, _ := c.(map[string]any); cm["type"] == "Accepted" {
				return true
			}
		}
	}
	return false
}

// informerProbe creates a monitor every replica rejects and returns how
// long until each replica counts one more rejected monitor than before.
func informerProbe(ctx context.Context, bed *testbed.Bed, reps []*testbed.Promshard, name string) (time.Duration, error) {
	before := make([]float64, len(reps))
	for i, r := range reps {
		before[i], _, _ = r.Metric(ctx, `promshard_rejected_objects{kind="ServiceMonitor"}`)
	}
	bad := monitor(nsName(0), name, monitoringv1.RelabelConfig{SourceLabels: []monitoringv1.LabelName{"__address__"}, Regex: "(", Action: "replace", Replacement: ptr.To("x"), TargetLabel: "y"})
	start := time.Now()
	if _, err := bed.ApplyMonitoring(ctx, bad); err != nil {
		return 0, err
	}
	for time.Since(start) < 2*time.Minute {
		all := true
		for i, r := range reps {
			if v, _, err := r.Metric(ctx, `promshard_rejected_objects{kind="ServiceMonitor"}`); err != nil || v < before[i]+1 {
				all = false
				break
			}
		}
		if all {
			return time.Since(start), nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("the rejected monitor did not reach every replica within 2m")
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
