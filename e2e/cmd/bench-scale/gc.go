package main

import (
	"regexp"
	"strconv"
	"strings"
)

// gcStat is what the Go runtime's GC trace (the replicas run with
// GODEBUG=gctrace=1) logged over one window: the cycles that ended in it,
// their CPU time (assist, background and idle mark workers, and the two
// stop-the-world phases), the part of it in assists (allocating goroutines
// marking instead of running), how many were started by promshard
// (--runtime.gc-headroom: "(forced)"), and the live heap the last one
// marked.
type gcStat struct {
	cycles, forced int
	cpu, assist    float64 // seconds
	liveMB         float64
}

func (s *gcStat) add(o gcStat) {
	s.cycles, s.forced = s.cycles+o.cycles, s.forced+o.forced
	s.cpu, s.assist = s.cpu+o.cpu, s.assist+o.assist
	s.liveMB = o.liveMB
}

// gcLine matches a gctrace line, e.g. "gc 12 @3.4s 1%: 0.02+1.2+0.01 ms
// clock, 0.04+0.5/1.0/2.0+0.03 ms cpu, 4->4->2 MB, 5 MB goal, ...".
var gcLine = regexp.MustCompile(`^gc \d+ @[0-9.]+s \d+%: [^,]* ms clock, ([0-9.]+)\+([0-9.]+)/([0-9.]+)/([0-9.]+)\+([0-9.]+) ms cpu, \d+->\d+->(\d+) MB`)

// parseGC sums the GC trace lines in log.
func parseGC(log string) gcStat {
	var s gcStat
	for line := range strings.SplitSeq(log, "\n") {
		m := gcLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s.cycles++
		if strings.HasSuffix(line, "(forced)") {
			s.forced++
		}
		assist, _ := strconv.ParseFloat(m[2], 64)
		s.assist += assist / 1000
		for _, f := range m[1:6] {
			ms, _ := strconv.ParseFloat(f, 64)
			s.cpu += ms / 1000
		}
		s.liveMB, _ = strconv.ParseFloat(m[6], 64)
	}
	return s
}

// failedScrapes counts the scrapes that failed in log (the replicas log
// each at debug). The target server must keep up with every target, or the
// windows measure timeouts instead of scrapes.
func failedScrapes(log string) int {
	return strings.Count(log, `msg="Scrape failed"`)
}

// droppedWrites counts the remote-write requests the receiver refused for
// good in log (Prometheus' queue manager logs "non-recoverable error" and
// drops the whole batch, e.g. when a sample of it is out of order).
func droppedWrites(log string) int {
	return strings.Count(log, `msg="non-recoverable error"`)
}
