// Package benchutil measures processes for the bench-* commands: CPU time
// and resident memory from /proc, and counters from a /metrics page.
package benchutil

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100
// on every Linux the test bed runs on).
const clockTicks = 100

// CPUSeconds returns the user+system CPU time pid has used.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// RSSBytes returns the resident set size of pid.
func RSSBytes(pid int) (float64, error) {
	r, err := ReadRSS(pid)
	return r.Total, err
}

// RSS is a process' resident set split as the kernel reports it: anonymous
// memory (heap, stacks: what the process allocated) and file-backed pages
// (its mapped binary and files, which the page cache may evict and share).
type RSS struct {
	Total, Anon, File, Shmem float64 // bytes
}

// ReadRSS reads VmRSS, RssAnon, RssFile and RssShmem of pid.
func ReadRSS(pid int) (RSS, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return RSS{}, err
	}
	defer f.Close()
	var r RSS
	fields := map[string]*float64{"VmRSS:": &r.Total, "RssAnon:": &r.Anon, "RssFile:": &r.File, "RssShmem:": &r.Shmem}
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for prefix, dst := range fields {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				if err != nil {
					return RSS{}, err
				}
				*dst = kb * 1024
				found = found || prefix == "VmRSS:"
			}
		}
	}
	if !found {
		return RSS{}, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return r, sc.Err()
}

// Metric returns the sum of the samples of metric name (any labels) on the
// /metrics page at url.
func Metric(ctx context.Context, url, name string) (float64, error) {
	resp, err := get(ctx, url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		fs := strings.Fields(line)
		v, err := strconv.ParseFloat(fs[len(fs)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("parse %q: %w", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("%s has no %s", url, name)
	}
	return sum, sc.Err()
}

// Sample is what Measure saw of a process over a window.
type Sample struct {
	CPUSeconds float64 // CPU time used in the window
	MeanRSS    float64 // bytes, mean of one reading per second
	// MeanAnon and MeanFile split MeanRSS into anonymous and file-backed
	// pages (RSS).
	MeanAnon, MeanFile float64
	Samples            float64 // increase of the samples counter in the window
	HeapInuse          float64 // Go heap in use at the end, if the caller reads it
}

// Measure watches pid for d: CPU time, RSS once a second, and the increase
// of counter on the /metrics page at metricsURL (not read if counter is
// empty).
func Measure(ctx context.Context, pid int, d time.Duration, metricsURL, counter string) (Sample, error) {
	// The counter is read outside the window: at thousands of scrape pools
	// rendering the metrics page costs the process more than the work
	// measured.
	var n0, n1 float64
	var err error
	if counter != "" {
		if n0, err = Metric(ctx, metricsURL, counter); err != nil {
			return Sample{}, err
		}
	}
	cpu0, err := CPUSeconds(pid)
	if err != nil {
		return Sample{}, err
	}
	var rss, anon, file []float64
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return Sample{}, ctx.Err()
		case <-time.After(time.Second):
		}
		r, err := ReadRSS(pid)
		if err != nil {
			return Sample{}, err
		}
		rss, anon, file = append(rss, r.Total), append(anon, r.Anon), append(file, r.File)
	}
	cpu1, err := CPUSeconds(pid)
	if err != nil {
		return Sample{}, err
	}
	if counter != "" {
		if n1, err = Metric(ctx, metricsURL, counter); err != nil {
			return Sample{}, err
		}
	}
	return Sample{CPUSeconds: cpu1 - cpu0, MeanRSS: Mean(rss), MeanAnon: Mean(anon), MeanFile: Mean(file), Samples: n1 - n0}, nil
}

// Mean returns the mean of xs (0 for none).
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// Median returns the median of xs (0 for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Quantile returns the q-quantile (nearest rank) of xs (0 for none).
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Memory is where a Go process' resident memory lies at one moment: the
// kernel's split of RSS (/proc/<pid>/smaps_rollup) and the runtime's own
// accounting (go_memstats_* on its /metrics page), in bytes.
type Memory struct {
	RSSAnon, RSSFile                 float64 // resident anonymous and file-backed pages
	Exe                              string  // resident pages of the executable's mappings by permissions, e.g. "r-xp 30.1MB r--p 20.3MB"
	HeapInuse, HeapIdleKept, NextGC  float64 // heap spans in use, idle but not returned, GC goal
	Stacks, RuntimeOther, Goroutines float64 // goroutine stacks, GC/mspan/mcache/other runtime metadata, count
}

// String prints m in MB (goroutines as a count).
func (m Memory) String() string {
	return fmt.Sprintf("rss anon %.1fMB file %.1fMB (executable: %s) | heap in use %.1fMB idle kept %.1fMB next_gc %.1fMB | stacks %.1fMB runtime %.1fMB | goroutines %.0f",
		m.RSSAnon/1e6, m.RSSFile/1e6, m.Exe, m.HeapInuse/1e6, m.HeapIdleKept/1e6, m.NextGC/1e6, m.Stacks/1e6, m.RuntimeOther/1e6, m.Goroutines)
}

// ReadMemory reads pid's memory split and its runtime's accounting from the
// /metrics page at metricsURL.
func ReadMemory(ctx context.Context, pid int, metricsURL string) (Memory, error) {
	var m Memory
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "Anonymous:":
			m.RSSAnon = kb * 1024
		case "Rss:":
			m.RSSFile = kb * 1024 // minus Anonymous below
		}
	}
	m.RSSFile -= m.RSSAnon
	if m.Exe, err = exeRSS(pid); err != nil {
		return m, err
	}
	vals := map[string]float64{}
	for _, name := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes",
		"go_memstats_next_gc_bytes", "go_memstats_stack_sys_bytes", "go_memstats_gc_sys_bytes", "go_memstats_mspan_sys_bytes",
		"go_memstats_mcache_sys_bytes", "go_memstats_other_sys_bytes", "go_memstats_buck_hash_sys_bytes", "go_goroutines"} {
		if vals[name], err = Metric(ctx, metricsURL, name); err != nil {
			return m, err
		}
	}
	m.HeapInuse = vals["go_memstats_heap_inuse_bytes"]
	m.HeapIdleKept = vals["go_memstats_heap_idle_bytes"] - vals["go_memstats_heap_released_bytes"]
	m.NextGC = vals["go_memstats_next_gc_bytes"]
	m.Stacks = vals["go_memstats_stack_sys_bytes"]
	m.RuntimeOther = vals["go_memstats_gc_sys_bytes"] + vals["go_memstats_mspan_sys_bytes"] + vals["go_memstats_mcache_sys_bytes"] +
		vals["go_memstats_other_sys_bytes"] + vals["go_memstats_buck_hash_sys_bytes"]
	m.Goroutines = vals["go_goroutines"]
	return m, nil
}

// exeRSS sums the resident pages of pid's executable's mappings (text,
// read-only data with the pc tables, data) by permissions, from
// /proc/<pid>/smaps.
func exeRSS(pid int) (string, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return "", err
	}
	var perms []string
	kb := map[string]float64{}
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 6 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			cur = ""
			if f[5] == exe {
				cur = f[1]
				if _, ok := kb[cur]; !ok {
					perms = append(perms, cur)
				}
			}
		case len(f) >= 2 && f[0] == "Rss:" && cur != "":
			v, _ := strconv.ParseFloat(f[1], 64)
			kb[cur] += v
		}
	}
	out := make([]string, 0, len(perms))
	for _, p := range perms {
		out = append(out, fmt.Sprintf("%s %.1fMB", p, kb[p]*1024/1e6))
	}
	return strings.Join(out, " "), nil
}

// EvictFromPageCache drops the cached pages of the file at path that no
// process maps (POSIX_FADV_DONTNEED). Resident file-backed memory depends
// on how a binary got into the page cache: a binary just written by `go
// build` sits in large folios that the kernel maps whole on the first
// fault, one built long ago maps page by page. Evicting both executables
// before each run makes both fault their code in the same way, as a
// container does when it starts from its image.
func EvictFromPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("evict %s from the page cache: %w", path, err)
	}
	return nil
}
