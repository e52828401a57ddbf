package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/promshard/promshard/e2e/benchutil"
	"github.com/promshard/promshard/e2e/testbed"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// churnNS holds the Secret no monitor references.
const churnNS = "bench-churn"

// world is the bench's objects.
type world struct {
	bed      *testbed.Bed
	p        params
	sockets  []*testbed.Target
	failures atomic.Int64
	churned  atomic.Int64 // churn steps so far: each window goes on where the last stopped
}

func nsName(i int) string  { return fmt.Sprintf("scale-%03d", i) }
func monName(i int) string { return fmt.Sprintf("svc-%04d", i) }

// monitorNS is the namespace of monitor i.
func (w *world) monitorNS(i int) string { return nsName(i % w.p.namespaces) }

// service returns the Service of monitor i over the sockets starting at
// offset shift.
func (w *world) service(i, shift int) testbed.ServiceSpec {
	ts := make([]*testbed.Target, 0, w.p.perService)
	for j := range w.p.perService {
		ts = append(ts, w.sockets[(i*w.p.perService+j+shift)%len(w.sockets)])
	}
	return testbed.ServiceSpec{Namespace: w.monitorNS(i), Name: monName(i), Labels: map[string]string{"app": monName(i)}, Targets: ts}
}

// newWorld creates the sockets, namespaces, Services and monitors, with a
// few concurrent writers.
func newWorld(ctx context.Context, bed *testbed.Bed, p params) (*world, error) {
	w := &world{bed: bed, p: p}
	// Every target holds a keep-alive connection to its socket's server, and
	// a process may have 20,000 open files here (the hard limit, which only
	// CAP_SYS_RESOURCE raises): one target server for all targets ran out of
	// them ("accept4: too many open files") and the replicas' scrapes timed
	// out. The sockets are spread over target servers of at most
	// connsPerServer targets each, in their own network namespaces.
	servers := max(1, min(p.addresses, (p.monitors*2*p.perService+connsPerServer-1)/connsPerServer))
	for h := range servers {
		host, err := bed.Netns(ctx)
		if err != nil {
			return nil, err
		}
		n := p.addresses/servers + btoi(h < p.addresses%servers)
		ts, err := host.AddTargets(ctx, "scale"+strconv.Itoa(h), n, testbed.TargetOptions{})
		if err != nil {
			return nil, err
		}
		w.sockets = append(w.sockets, ts...)
	}
	logf("%d sockets on %d target servers", len(w.sockets), servers)
	for i := range p.namespaces {
		if err := bed.CreateNamespace(ctx, nsName(i), nil); err != nil {
			return nil, err
		}
	}
	if err := bed.CreateNamespace(ctx, churnNS, nil); err != nil {
		return nil, err
	}
	start := time.Now()
	err := benchutil.Parallel(ctx, p.monitors, 8, func(i int) error {
		if err := bed.ApplyService(ctx, w.service(i, 0)); err != nil {
			return err
		}
		_, err := bed.ApplyMonitoring(ctx, monitor(w.monitorNS(i), monName(i), 0))
		return err
	})
	logf("created %d Services and ServiceMonitors in %s", p.monitors, time.Since(start).Round(time.Second))
	return w, err
}

// connsPerServer bounds the targets (so keep-alive connections) one target
// server serves, well below a process' 20,000 open files: a target moved to
// another replica holds its old connection until it idles out.
const connsPerServer = 6000

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// churn updates, once a second each, a Secret in churnNS (referenced by no
// monitor) and the endpoints of one Service (moving it to other sockets),
// until ctx is done.
func (w *world) churn(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	secrets := w.bed.Kube.CoreV1().Secrets(churnNS)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := int(w.churned.Add(1))
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: churnNS, Name: "unreferenced"},
			StringData: map[string]string{"n": strconv.Itoa(n)}}
		if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			if _, err = secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil && ctx.Err() == nil {
				w.failures.Add(1)
			}
		}
		if err := w.bed.ApplyService(ctx, w.service(n%w.p.monitors, n)); err != nil && ctx.Err() == nil {
			w.failures.Add(1)
		}
	}
}

func (w *world) churnErrors() int { return int(w.failures.Load()) }

// edits edits n monitors one after the other and records, per replica, the
// time from just before the write to the replica's log line "configuration
// applied" (the replicas run with --log.level=debug; reading the metrics
// page instead takes seconds at this scale). Only the log written since the
// last edit is read. An edit slower than -slow-edit prints what that replica
// logged meanwhile (its GC traces included: the replicas run with
// GODEBUG=gctrace=1), to tell where the time went.
func (w *world) edits(ctx context.Context, reps []*replica, n int) error {
	offsets := make([]int64, len(reps))
	for i, r := range reps {
		offsets[i] = fileSize(r.ps.LogPath)
	}
	for k := 1; k <= n; k++ {
		i := (k * 97) % w.p.monitors
		t0 := time.Now() // before the write: includes its round trip
		if _, err := w.bed.ApplyMonitoring(ctx, monitor(w.monitorNS(i), monName(i), k)); err != nil {
			return err
		}
		for ri, r := range reps {
			deadline := time.Now().Add(time.Minute)
			var since strings.Builder
			for {
				chunk, next := readFrom(r.ps.LogPath, offsets[ri])
				offsets[ri] = next
				since.WriteString(chunk)
				r.editsGC.add(parseGC(chunk))
				if at, ok := appliedAfter(since.String(), t0); ok {
					d := at.Sub(t0)
					r.latencies = append(r.latencies, d.Seconds())
					if d > w.p.slowEdit {
						logf("edit %d: replica %d applied after %s; its log meanwhile:\n%s", k, ri, d.Round(time.Millisecond), lastLines(since.String(), 60))
					}
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("edit %d: replica %s applied nothing within a minute", k, r.ps.WebURL)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	return nil
}

// fileSize returns the size of the file at path (0 if unreadable).
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// readFrom returns the complete lines of the file at path from offset on,
// and the offset after them.
func readFrom(path string, offset int64) (string, int64) {
	f, err := os.Open(path)
	if err != nil {
		return "", offset
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, offset, 1<<40))
	if err != nil {
		return "", offset
	}
	end := bytes.LastIndexByte(b, '\n') + 1
	return string(b[:end]), offset + int64(end)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// appliedAfter returns the time of the first "configuration applied" log
// line at or after t0.
func appliedAfter(log string, t0 time.Time) (time.Time, bool) {
	for line := range strings.SplitSeq(log, "\n") {
		if !strings.Contains(line, `msg="configuration applied"`) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err == nil && !at.Before(t0) {
			return at, true
		}
	}
	return time.Time{}, false
}
