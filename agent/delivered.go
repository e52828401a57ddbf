package agent

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/prometheus/config"
)

// Delivery for the confirmed handoff.
//
// A member that gave targets up announces the release only once remote
// write delivered, or gave up on, every sample those targets wrote
// (sharding's handoff.go). The samples' loops stopped before a moment t;
// DeliveredBefore(t) answers from Prometheus' per-queue metrics, pinned by
// TestDeliveredBefore:
//
//   - The queue's WAL watcher read everything written before t once it
//     enqueued a sample with a timestamp at or after t: that sample's scrape
//     started after t, so it was written after every sample of the stopped
//     loops. Prometheus reports the highest timestamps in whole seconds, so
//     the check is against t rounded up. With nothing written any more, a
//     highest enqueued timestamp that stays unchanged for watcherSettle
//     counts as read.
//   - A shard sends its samples in the order it enqueued them, and the
//     highest sent timestamp moves after a send succeeded or failed for
//     good: once it reaches t rounded up, a one-shard queue sent everything
//     before t. With several shards (or after the settle case) the others
//     may still hold some, each for at most the batch send deadline: the
//     check then also waits that long after the watcher caught up.

// delivery keeps what DeliveredBefore saw for the moment it is asked about.
type delivery struct {
	mtx      sync.Mutex
	deadline time.Duration // the longest batch send deadline of the queues
	at       time.Time     // the moment the state below is for
	queues   map[string]*queueDelivery
}

// queueDelivery is one queue's progress towards delivering what was
// written before delivery.at.
type queueDelivery struct {
	enq      float64   // highest enqueued timestamp last seen
	enqSince time.Time // since when it has been unchanged
	caughtAt time.Time // when the watcher was seen caught up (zero: not yet)
	settled  bool      // caught up by settling, not by a later sample
}

// setDeadline records the longest batch send deadline of cfgs.
func (d *delivery) setDeadline(cfgs []*promconfig.RemoteWriteConfig) {
	longest := time.Duration(0)
	for _, c := range cfgs {
		longest = max(longest, time.Duration(c.QueueConfig.BatchSendDeadline))
	}
	d.mtx.Lock()
	d.deadline = longest
	d.mtx.Unlock()
}

// DeliveredBefore reports whether remote write sent, or gave up on, every
// sample written to the WAL before t (see above). Without remote write, or
// without a gatherer, it reports true. Calls are meant to be repeated
// until it does; each call gathers the registry once.
func (a *Agent) DeliveredBefore(t time.Time) bool {
	g, ok := a.opts.Registerer.(prometheus.Gatherer)
	if !ok {
		return true
	}
	return a.delivery.check(t, RemoteWriteStatus(g), time.Now())
}

func (d *delivery) check(t time.Time, qs []QueueStatus, now time.Time) bool {
	d.mtx.Lock()
	defer d.mtx.Unlock()
	if !t.Equal(d.at) {
		d.at, d.queues = t, map[string]*queueDelivery{}
	}
	after := math.Ceil(float64(t.UnixMilli()) / 1000)
	done := true
	for _, q := range qs {
		key := q.Name + "\x00" + q.URL
		st := d.queues[key]
		if st == nil {
			st = &queueDelivery{enq: q.HighestEnqueued, enqSince: now}
			d.queues[key] = st
		}
		if st.caughtAt.IsZero() {
			switch {
			case q.HighestEnqueued >= after:
				st.caughtAt = now
			case q.HighestEnqueued != st.enq:
				st.enq, st.enqSince = q.HighestEnqueued, now
			case now.Sub(st.enqSince) >= watcherSettle:
				st.caughtAt, st.settled = now, true
			}
			if st.caughtAt.IsZero() {
				done = false
				continue
			}
		}
		target := after
		if st.settled {
			target = st.enq
		}
		if q.HighestSent < target || ((q.Shards > 1 || st.settled) && now.Sub(st.caughtAt) < d.deadline) {
			done = false
		}
	}
	return done
}
