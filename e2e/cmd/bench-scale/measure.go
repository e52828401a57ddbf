package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/promshard/promshard/e2e/benchutil"
)

// windowStat is what one window measured of one replica.
type windowStat struct {
	cpu     float64 // CPU seconds
	rss     float64 // mean bytes
	allocMB float64 // heap allocated in the window
	gc      gcStat  // GC cycles that ended in the window
	failed  int     // failed scrapes
	dropped int     // remote-write requests refused for good
}

// window measures every replica over one window of p.window and logs it; in
// round 1 it profiles replica 0 if asked.
func window(ctx context.Context, p params, reps []*replica, round int, kind string) error {
	stopProfile := func() {}
	if round == 1 && p.profile != "" {
		heapProfile(ctx, p, reps[0], kind+"-start.heap")
		stopProfile = profile(ctx, p, reps[0], kind+".pprof", p.window)
	}
	stats := make([]windowStat, len(reps))
	errs := make([]error, len(reps))
	var wg sync.WaitGroup
	for i, r := range reps {
		wg.Go(func() { stats[i], errs[i] = measure(ctx, p, r) })
	}
	wg.Wait()
	stopProfile()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if round == 1 && p.profile != "" {
		heapProfile(ctx, p, reps[0], kind+"-end.heap") // its forced GC is not the window's
	}
	for i, r := range reps {
		s := stats[i]
		r.windows[kind] = append(r.windows[kind], s)
		logf("round %d replica %d %s: %.3f cores, %.1fMB, %.0fMB allocated; GC %d cycles, %.2f CPU-s, %.0fMB live; %d failed scrapes, %d dropped remote writes",
			round, i, kind, s.cpu/p.window.Seconds(), s.rss/1e6, s.allocMB, s.gc.cycles, s.gc.cpu, s.gc.liveMB, s.failed, s.dropped)
	}
	return nil
}

// measure measures r over one window: CPU, RSS, the heap allocated (the
// runtime's TotalAlloc, read before and after) and what its log shows of
// GC cycles, failed scrapes and dropped remote writes.
func measure(ctx context.Context, p params, r *replica) (windowStat, error) {
	a0, err := totalAlloc(ctx, r.ps.WebURL)
	if err != nil {
		return windowStat{}, err
	}
	offset := fileSize(r.ps.LogPath)
	// No counter: the translations are read once around all rounds.
	s, err := benchutil.Measure(ctx, r.ps.PID(), p.window, "", "")
	if err != nil {
		return windowStat{}, err
	}
	log, _ := readFrom(r.ps.LogPath, offset)
	a1, err := totalAlloc(ctx, r.ps.WebURL)
	if err != nil {
		return windowStat{}, err
	}
	return windowStat{cpu: s.CPUSeconds, rss: s.MeanRSS, allocMB: (a1 - a0) / 1e6, gc: parseGC(log), failed: failedScrapes(log), dropped: droppedWrites(log)}, nil
}

// totalAlloc returns the bytes the Go runtime at baseURL allocated on its
// heap so far, from the MemStats its text heap profile ends with (the
// metrics page would cost far more at thousands of scrape pools).
func totalAlloc(ctx context.Context, baseURL string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/debug/pprof/heap?debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# TotalAlloc = "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no TotalAlloc in the heap profile", baseURL)
}

// amortized returns the windows' CPU with each window's own GC time
// replaced by its share of all of the replica's GC time, in proportion to
// the heap it allocated. A GC cycle costs over a second of CPU at this heap
// and comes about once per round, so whether one falls into a window
// decides a single window's ratio; charging each window the GC work its
// allocation causes compares the work done instead.
func amortized(ws []windowStat, gcPerMB float64) float64 {
	var cpu float64
	for _, w := range ws {
		cpu += w.cpu - w.gc.cpu + w.allocMB*gcPerMB
	}
	return cpu
}

func report(p params, total int, reps []*replica, churnErrs int) {
	fmt.Printf("\nbench-scale: %d ServiceMonitors x 2 endpoints in %d namespaces, %d targets (%d sockets), %d replicas, interval %s, %d rounds of %s idle + %s churn\n",
		p.monitors, p.namespaces, total, p.addresses, len(reps), p.interval, p.rounds, p.window, p.window)
	fmt.Printf("churn: 1 Secret update/s in a namespace no monitor references + 1 Service endpoints change/s (%d failed writes)\n", churnErrs)
	fmt.Printf("%-7s %7s %7s %10s %7s %11s %8s %6s %6s %-30s %8s %8s %8s %8s %9s %9s %4s %6s %11s %6s\n", "replica", "owned_s", "watches",
		"idle_cores", "idle_MB", "churn_cores", "churn_MB", "cpu_x", "sum_x", "cpu_x per round", "alloc_x", "gc_i|c", "gc_x", "amort_x",
		"apply_p50", "apply_p99", "gens", "pools", "gcs(forced)", "assist")
	var dropped []string // remote-write requests refused, per replica
	for i, r := range reps {
		idle, churn := r.windows["idle"], r.windows["churn"]
		var ratios []string
		var cpuI, cpuC, allocI, allocC, gcI, gcC float64
		var coresI, coresC, rssI, rssC []float64
		refused := 0
		gcAll := r.editsGC
		for j := range churn {
			gcAll.add(idle[j].gc)
			gcAll.add(churn[j].gc)
			refused += idle[j].dropped + churn[j].dropped
			ratios = append(ratios, strconv.FormatFloat(churn[j].cpu/idle[j].cpu, 'f', 2, 64))
			cpuI, cpuC = cpuI+idle[j].cpu, cpuC+churn[j].cpu
			allocI, allocC = allocI+idle[j].allocMB, allocC+churn[j].allocMB
			gcI, gcC = gcI+idle[j].gc.cpu, gcC+churn[j].gc.cpu
			coresI, coresC = append(coresI, idle[j].cpu/p.window.Seconds()), append(coresC, churn[j].cpu/p.window.Seconds())
			rssI, rssC = append(rssI, idle[j].rss), append(rssC, churn[j].rss)
		}
		gcPerMB := (gcI + gcC) / max(allocI+allocC, 1)
		mi, mc := benchutil.Median(coresI), benchutil.Median(coresC)
		fmt.Printf("%-7d %7.1f %7.0f %10.3f %7.0f %11.3f %8.0f %6.3f %6.3f %-30s %8.3f %8s %8.3f %8.3f %8.3fs %8.3fs %4.0f %6.0f %11s %6.2f\n", i, r.owned.Seconds(), r.watches,
			mi, benchutil.Median(rssI)/1e6, mc, benchutil.Median(rssC)/1e6, mc/mi, cpuC/cpuI, strings.Join(ratios, " "),
			allocC/allocI, fmt.Sprintf("%.1f|%.1f", gcI, gcC), (cpuC-gcC)/(cpuI-gcI), amortized(churn, gcPerMB)/amortized(idle, gcPerMB),
			benchutil.Quantile(r.latencies, 0.5), benchutil.Quantile(r.latencies, 0.99), r.gens, r.pools,
			fmt.Sprintf("%d(%d)", gcAll.cycles, gcAll.forced), gcAll.assist/max(gcAll.cpu, 1e-9))
		dropped = append(dropped, strconv.Itoa(refused))
	}
	fmt.Printf("remote-write requests refused for good in the windows, per replica: %s\n", strings.Join(dropped, " "))
	fmt.Println(`cores, MB: medians over the rounds; cpu_x: median churn cores / median idle cores; sum_x: all churn windows' CPU / all idle windows';
alloc_x: heap allocated under churn / idle; gc_i|c: GC CPU-s in the idle | churn windows (gctrace); gc_x: sum_x without GC;
amort_x: sum_x with each window charged the replica's GC CPU per MB allocated instead of the cycles that fell into it.
pools: scrape pools after the edits (the marker pool included); gcs(forced): GC cycles in the windows and the edits, (started
by --runtime.gc-headroom); assist: their share of GC CPU spent in assists (allocating goroutines stalled to mark).
Goals: churn within 1.10 of idle; apply p99 <= 1s; gens (translations over all rounds) 0.`)
}
