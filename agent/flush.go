package agent

import (
	"context"
	"maps"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Flushing remote write before a graceful leave.
//
// A member that stops hands its targets to its peers. Its last samples sit in
// its remote-write queues for up to the batch send deadline (5 s by
// default); had it left the cluster at once, the new owners' first samples
// could reach a strict receiver (remote write 1.0, no out-of-order window)
// before them, and the receiver would refuse the older batch whole. So on
// SIGTERM cmd stops scraping, calls FlushRemoteWrite, and only then leaves:
// the old owner's last samples are delivered before anyone else writes the
// series.

// watcherSettle is how long every queue's highest enqueued timestamp must
// stay unchanged before FlushRemoteWrite stops the queues: the WAL watchers
// then read everything the stopped scrape loops wrote.
const watcherSettle = 200 * time.Millisecond

// queueHighestEnqueued is Prometheus' per-queue gauge of the highest sample
// timestamp its WAL watcher enqueued (storage/remote/queue_manager.go;
// pinned by TestRemoteWriteMetricsContract).
const queueHighestEnqueued = "prometheus_remote_storage_queue_highest_timestamp_seconds"

// FlushRemoteWrite delivers what the WAL holds and stops remote write: it
// waits (at most maxWait, or until ctx is done) until the WAL watchers read
// everything written so far, then stops every queue, which sends its
// buffered samples within Options.RemoteFlushDeadline. Call it only once
// scraping stopped, on the way out: nothing is sent afterwards (Run's
// shutdown does not close remote storage again). It returns how long it
// took.
func (a *Agent) FlushRemoteWrite(ctx context.Context, maxWait time.Duration) time.Duration {
	start := time.Now()
	if g, ok := a.opts.Registerer.(prometheus.Gatherer); ok {
		deadline := start.Add(maxWait)
		prev, since := highestEnqueued(g), time.Now()
		for time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(25 * time.Millisecond)
			cur := highestEnqueued(g)
			if !maps.Equal(cur, prev) {
				prev, since = cur, time.Now()
				continue
			}
			if time.Since(since) >= watcherSettle {
				break
			}
		}
	}
	a.closeRemote()
	return time.Since(start)
}

// highestEnqueued returns each queue's highest enqueued timestamp, by
// queue (RemoteWriteStatus).
func highestEnqueued(g prometheus.Gatherer) map[string]float64 {
	qs := RemoteWriteStatus(g)
	out := make(map[string]float64, len(qs))
	for _, q := range qs {
		out[q.Name+"\x00"+q.URL] = q.HighestEnqueued
	}
	return out
}

// closeRemote closes remote storage once; Close flushes the queues within
// RemoteFlushDeadline.
func (a *Agent) closeRemote() {
	a.remoteClose.Do(func() {
		if err := a.remote.Close(); err != nil {
			a.logger.Error("closing remote storage", "err", err)
		}
	})
}
