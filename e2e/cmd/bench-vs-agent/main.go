// Command bench-vs-agent compares promshard with Prometheus' own agent on
// the same targets (`make bench-vs-agent`): on the test bed, N targets of S
// series each behind one Service are scraped every interval by promshard
// (a ServiceMonitor, flags-only mode) and by `prometheus --agent` (the
// Prometheus configuration promshard generates for that ServiceMonitor, so
// discovery, relabeling and series are the same), one process at a time,
// rounds interleaved A B A B so that load from other work on the machine
// hits both alike. Each run waits until every target is up, warms up, then
// measures CPU seconds per million appended samples and mean RSS per series.
// Before each run the process' executable is evicted from the page cache,
// so that both fault their code in alike (see EvictFromPageCache), and at
// the end of each run it logs where the resident memory lies.
// It prints every run, the medians and the ratios promshard/agent, RSS split
// into anonymous memory (what the process allocated) and file-backed pages
// (its executable and mapped files, which the page cache shares and may
// evict: a process measured alone on an idle machine keeps more of them
// resident than one measured beside another).
//
// -together runs promshard and the agent at the same time in each round,
// on the same targets (both scrape every target), so that both see the
// same machine, page cache and receiver: the fairer comparison of RSS.
//
// The agent is by default the test bed's Prometheus, built with Kubernetes
// discovery only. -agent-build=all-sd measures Prometheus as released
// instead, with every service discovery compiled in, as promshard has them
// for ScrapeConfig objects: linked code costs resident memory even unused
// (its executable pages).
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promshard/promshard/config"
	"github.com/promshard/promshard/e2e/benchutil"
	"github.com/promshard/promshard/e2e/testbed"
)

const ns = "bench"

type params struct {
	binary, extraArg, baseline, baselineArg string
	agentBuild                              string
	rounds, targets, series                 int
	together                                bool
	interval                                model.Duration
	warmup, measure                         time.Duration
}

func main() {
	var p params
	flag.StringVar(&p.binary, "promshard", "", "promshard binary to measure (e.g. a build of an older commit); empty builds ./cmd/promshard")
	flag.StringVar(&p.baseline, "baseline", "", "a second promshard binary (e.g. a build of the previous commit) measured in the same rounds as \"baseline\"")
	flag.StringVar(&p.baselineArg, "baseline-arg", "", "one extra flag for the baseline instead of -promshard-arg; with no -baseline the baseline is the measured binary with this flag")
	flag.StringVar(&p.extraArg, "promshard-arg", "", "one extra flag for promshard, e.g. --runtime.gogc=100")
	flag.StringVar(&p.agentBuild, "agent-build", "kubernetes-sd", "the Prometheus build run as the agent: kubernetes-sd (the test bed's, Kubernetes discovery only) or all-sd (default build tags, as released)")
	flag.IntVar(&p.rounds, "rounds", 3, "rounds; each runs promshard then the agent")
	flag.BoolVar(&p.together, "together", false, "run promshard and the agent at the same time in each round instead of one after the other")
	flag.IntVar(&p.targets, "targets", 200, "targets behind the Service")
	flag.IntVar(&p.series, "series", 200, "series per target")
	interval := flag.Duration("interval", 5*time.Second, "scrape interval")
	flag.DurationVar(&p.warmup, "warmup", 30*time.Second, "time after all targets are up before measuring")
	flag.DurationVar(&p.measure, "measure", 60*time.Second, "measured window per run")
	flag.Parse()
	p.interval = model.Duration(*interval)
	if p.agentBuild != "all-sd" && p.agentBuild != "kubernetes-sd" {
		fmt.Fprintf(os.Stderr, "bench-vs-agent: -agent-build %q: want all-sd or kubernetes-sd\n", p.agentBuild)
		os.Exit(2)
	}
	benchutil.Main("bench-vs-agent", func() error { return run(p) })
}

var logf = benchutil.Logf

// result is one measured run.
type result struct {
	name                    string
	cpuPerMSamples, rssPerS float64
	anonPerS                float64 // anonymous RSS per series
	s                       benchutil.Sample
}

func run(p params) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bed, bin, err := benchutil.StartBed(ctx, p.binary)
	if err != nil {
		return err
	}
	defer bed.Close()
	agentBin := bed.Bins().Prometheus
	if p.agentBuild == "all-sd" {
		if agentBin, err = testbed.PrometheusAllSD(ctx, logf); err != nil {
			return err
		}
	}
	rcv, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	if err != nil {
		return err
	}
	agentConfig, err := setup(ctx, bed, p, rcv.WriteURL())
	if err != nil {
		return err
	}
	series := float64(p.targets * p.series)
	names := []string{"promshard", "agent"}
	if p.baseline == "" && p.baselineArg != "" {
		p.baseline = bin
	}
	if p.baseline != "" {
		names = []string{"promshard", "baseline", "agent"}
	}
	runOne := func(name string, round int) (benchutil.Sample, error) {
		switch name {
		case "promshard":
			return runPromshard(ctx, bed, bin, p.extraArg, p, rcv.WriteURL(), round)
		case "baseline":
			return runPromshard(ctx, bed, p.baseline, cmp.Or(p.baselineArg, p.extraArg), p, rcv.WriteURL(), round+1000)
		default:
			return runAgent(ctx, bed, agentBin, agentConfig, p, round)
		}
	}
	var all []result
	for round := 1; round <= p.rounds; round++ {
		samples := make([]benchutil.Sample, len(names))
		errs := make([]error, len(names))
		if p.together {
			logf("round %d: %s at the same time", round, strings.Join(names, ", "))
			var wg sync.WaitGroup
			for i, name := range names {
				wg.Go(func() { samples[i], errs[i] = runOne(name, round) })
			}
			wg.Wait()
		} else {
			for i, name := range names {
				logf("round %d: %s", round, name)
				samples[i], errs[i] = runOne(name, round)
				if errs[i] != nil {
					break
				}
			}
		}
		for i, name := range names {
			if errs[i] != nil {
				return fmt.Errorf("round %d %s: %w", round, name, errs[i])
			}
			s := samples[i]
			r := result{name: name, s: s, cpuPerMSamples: s.CPUSeconds / s.Samples * 1e6, rssPerS: s.MeanRSS / series, anonPerS: s.MeanAnon / series}
			logf("round %d %-9s cpu %.2fs samples %.0f cpu/1M %.3fs rss %.1fMB (anon %.1fMB, file %.1fMB) rss/series %.0fB heap in use %.1fMB",
				round, name, s.CPUSeconds, s.Samples, r.cpuPerMSamples, s.MeanRSS/1e6, s.MeanAnon/1e6, s.MeanFile/1e6, r.rssPerS, s.HeapInuse/1e6)
			all = append(all, r)
		}
	}
	report(p, names, all)
	return nil
}

// setup creates the targets, the Service and the ServiceMonitor, and writes
// the agent's configuration: promshard's translation of the same objects.
func setup(ctx context.Context, bed *testbed.Bed, p params, writeURL string) (string, error) {
	if err := bed.CreateNamespace(ctx, ns, nil); err != nil {
		return "", err
	}
	host, err := bed.Netns(ctx)
	if err != nil {
		return "", err
	}
	ts, err := host.AddTargets(ctx, "bench", p.targets, testbed.TargetOptions{Series: p.series})
	if err != nil {
		return "", err
	}
	if err := bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: ns, Name: "bench", Labels: map[string]string{"app": "bench"}, Targets: ts, Pods: true}); err != nil {
		return "", err
	}
	sm := &monitoringv1.ServiceMonitor{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bench"},
		Spec: monitoringv1.ServiceMonitorSpec{
			Selector:  metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
			Endpoints: []monitoringv1.Endpoint{{Port: "metrics", Interval: monitoringv1.Duration(p.interval.String())}},
		},
	}
	if _, err := bed.ApplyMonitoring(ctx, sm); err != nil {
		return "", err
	}
	snap := &config.Snapshot{
		ServiceMonitors: []*monitoringv1.ServiceMonitor{sm},
		Namespaces:      []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: ns}}},
	}
	cfg, results, err := config.Generate(snap, config.Options{
		KubeconfigFile: bed.Kubeconfig,
		// Its own external label: with -together both write to one
		// receiver, which would refuse one of two identical streams.
		Flags: config.FlagSettings{RemoteWriteURLs: []string{writeURL}, ScrapeInterval: p.interval, ExternalLabels: map[string]string{"bench": "agent"}},
	})
	if err != nil {
		return "", err
	}
	if len(results) != 1 || !results[0].Accepted {
		return "", fmt.Errorf("translation: %+v", results)
	}
	out, err := config.Marshal(cfg, true)
	if err != nil {
		return "", err
	}
	path := filepath.Join(bed.Dir(), "agent.yml")
	return path, os.WriteFile(path, out, 0o600)
}

const samplesCounter = "prometheus_agent_samples_appended_total"

func runPromshard(ctx context.Context, bed *testbed.Bed, bin, extraArg string, p params, writeURL string, round int) (benchutil.Sample, error) {
	// The log level is both processes' default (the test bed would run
	// promshard at debug, which formats more lines).
	args := []string{"--remote-write.url=" + writeURL, "--scrape.interval=" + p.interval.String(), "--log.level=info", "--external-label=bench=promshard-" + strconv.Itoa(round)}
	if extraArg != "" {
		args = append(args, extraArg)
	}
	if err := benchutil.EvictFromPageCache(bin); err != nil {
		return benchutil.Sample{}, err
	}
	ps, err := bed.StartPromshard(ctx, testbed.PromshardOptions{Binary: bin, Name: "bench-promshard-" + strconv.Itoa(round), Args: args})
	if err != nil {
		return benchutil.Sample{}, err
	}
	defer func() {
		ps.Signal(syscall.SIGTERM)
		ps.Wait(30 * time.Second)
	}()
	return measure(ctx, ps.PID(), ps.WebURL, p)
}

func runAgent(ctx context.Context, bed *testbed.Bed, prometheus, cfg string, p params, round int) (benchutil.Sample, error) {
	l, err := benchutil.FreeAddr()
	if err != nil {
		return benchutil.Sample{}, err
	}
	dir := filepath.Join(bed.Dir(), "agent-"+strconv.Itoa(round))
	logFile, err := os.Create(dir + ".log")
	if err != nil {
		return benchutil.Sample{}, err
	}
	defer logFile.Close()
	if err := benchutil.EvictFromPageCache(prometheus); err != nil {
		return benchutil.Sample{}, err
	}
	cmd := exec.CommandContext(ctx, prometheus, "--agent", "--config.file="+cfg, "--storage.agent.path="+dir,
		"--web.listen-address="+l)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return benchutil.Sample{}, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	return measure(ctx, cmd.Process.Pid, "http://"+l, p)
}

// measure waits until every target is up, warms up and measures.
func measure(ctx context.Context, pid int, baseURL string, p params) (benchutil.Sample, error) {
	took, err := benchutil.WaitUp(ctx, baseURL, p.targets, 3*time.Minute)
	if err != nil {
		return benchutil.Sample{}, err
	}
	logf("all %d targets up after %s", p.targets, took.Round(time.Millisecond))
	select {
	case <-ctx.Done():
		return benchutil.Sample{}, ctx.Err()
	case <-time.After(p.warmup):
	}
	s, err := benchutil.Measure(ctx, pid, p.measure, baseURL+"/metrics", samplesCounter)
	if err != nil {
		return s, err
	}
	s.HeapInuse, err = benchutil.Metric(ctx, baseURL+"/metrics", "go_memstats_heap_inuse_bytes")
	if err != nil {
		return s, err
	}
	m, err := benchutil.ReadMemory(ctx, pid, baseURL+"/metrics")
	if err == nil {
		logf("memory at the end: %s", m)
	}
	return s, err
}

func report(p params, names []string, all []result) {
	mode := "interleaved"
	if p.together {
		mode = "at the same time"
	}
	fmt.Printf("\nbench-vs-agent: %d targets x %d series, interval %s, warmup %s, measured %s per run, %d rounds (%s %s), agent build %s\n",
		p.targets, p.series, p.interval, p.warmup, p.measure, p.rounds, strings.Join(names, ", "), mode, p.agentBuild)
	fmt.Printf("%-6s %-10s %10s %12s %12s %10s %10s %10s %14s\n", "round", "process", "cpu_s", "samples", "cpu_s/1M", "rss_MB", "anon_MB", "file_MB", "rss_B/series")
	by := map[string][]result{}
	for i, r := range all {
		fmt.Printf("%-6d %-10s %10.2f %12.0f %12.3f %10.1f %10.1f %10.1f %14.0f\n", i/len(names)+1, r.name, r.s.CPUSeconds, r.s.Samples, r.cpuPerMSamples,
			r.s.MeanRSS/1e6, r.s.MeanAnon/1e6, r.s.MeanFile/1e6, r.rssPerS)
		by[r.name] = append(by[r.name], r)
	}
	med := func(name string, f func(result) float64) float64 {
		var xs []float64
		for _, r := range by[name] {
			xs = append(xs, f(r))
		}
		return benchutil.Median(xs)
	}
	cpu := func(r result) float64 { return r.cpuPerMSamples }
	rss := func(r result) float64 { return r.rssPerS }
	anon := func(r result) float64 { return r.anonPerS }
	file := func(r result) float64 { return r.s.MeanFile }
	for _, name := range names {
		fmt.Printf("median %-9s: cpu %.3fs/1M samples, rss %.0fB/series (%.1fMB), anon %.0fB/series, file-backed %.1fMB\n", name,
			med(name, cpu), med(name, rss), med(name, rss)*float64(p.targets*p.series)/1e6, med(name, anon), med(name, file)/1e6)
	}
	for _, name := range names[:len(names)-1] {
		var cpuRatios, rssRatios []float64
		for i, r := range by[name] {
			cpuRatios = append(cpuRatios, r.cpuPerMSamples/by["agent"][i].cpuPerMSamples)
			rssRatios = append(rssRatios, r.rssPerS/by["agent"][i].rssPerS)
		}
		fmt.Printf("ratio %s/agent: CPU %.3f (per round %s), RSS %.3f (per round %s), anonymous RSS %.3f\n", name,
			med(name, cpu)/med("agent", cpu), fmtRatios(cpuRatios), med(name, rss)/med("agent", rss), fmtRatios(rssRatios), med(name, anon)/med("agent", anon))
	}
}

func fmtRatios(xs []float64) string {
	s := make([]string, 0, len(xs))
	for _, x := range xs {
		s = append(s, strconv.FormatFloat(x, 'f', 3, 64))
	}
	return strings.Join(s, " ")
}
