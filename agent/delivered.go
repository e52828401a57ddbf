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
// DeliveredBefore(t) answers from Prometheus' per-queue metrics (highest
// enqueued and sent timestamps, shards), pinned by TestDeliveredBefore.
// Prometheus reports the timestamps in whole seconds. A queue delivered
// when either holds:
//
//   - Exact: its WAL watcher enqueued a sample with a timestamp at or after
//     t rounded up (that sample's scrape started after t, so it was written
//     after every sample of the stopped loops), the queue has one shard,
//     which sends in the order it enqueued, and its highest sent timestamp
//     reached t rounded up.
//   - By time: watcherSettle after t the watcher is reading t's second (or
//     its highest enqueued timestamp stayed unchanged that long: nothing is
//     written any more), and since then the longest batch send deadline
//     passed (every shard sends what it holds within it) while sends went
//     on (the highest sent timestamp reached t's second, or the last one
//     enqueued). A send that failed for good also moves the highest sent
//     timestamp: "delivered" includes given up.

// delivery keeps what DeliveredBefore saw for the moment it is asked about.
type delivery struct {
	mtx      sync.Mutex
	deadline time.Duration // the longest batch send deadline of the queues
	at       time.Time     // the moment the state below is for
	queues   map[string]*queueDelivery
	// gathered is when DeliveredBefore last gathered the registry: it does
	// so at most every deliveryGatherInterval (a registry with thousands
	// of scrape pools costs milliseconds to gather).
	gathered time.Time
}

// deliveryGatherInterval bounds how often DeliveredBefore gathers.
const deliveryGatherInterval = 200 * time.Millisecond

// queueDelivery is one queue's progress towards delivering what was
// written before delivery.at.
type queueDelivery struct {
	enq      float64   // highest enqueued timestamp last seen
	enqSince time.Time // since when it has been unchanged
	caughtAt time.Time // when the watcher was seen caught up (zero: not yet)
	exact    bool      // caught up by a later sample
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
// until it does; it gathers the registry at most every
// deliveryGatherInterval and answers false in between.
func (a *Agent) DeliveredBefore(t time.Time) bool {
	g, ok := a.opts.Registerer.(prometheus.Gatherer)
	if !ok {
		return true
	}
	now := time.Now()
	a.delivery.mtx.Lock()
	soon := t.Equal(a.delivery.at) && now.Sub(a.delivery.gathered) < deliveryGatherInterval
	if !soon {
		a.delivery.gathered = now
	}
	a.delivery.mtx.Unlock()
	if soon {
		return false // asked again too soon: the answer was false
	}
	return a.delivery.check(t, RemoteWriteStatus(g), now)
}

func (d *delivery) check(t time.Time, qs []QueueStatus, now time.Time) bool {
	d.mtx.Lock()
	defer d.mtx.Unlock()
	if !t.Equal(d.at) {
		d.at, d.queues = t, map[string]*queueDelivery{}
	}
	secs := float64(t.UnixMilli()) / 1000
	after, second := math.Ceil(secs), math.Floor(secs)
	done := true
	for _, q := range qs {
		key := q.Name + "\x00" + q.URL
		st := d.queues[key]
		if st == nil {
			st = &queueDelivery{enq: q.HighestEnqueued, enqSince: now}
			d.queues[key] = st
		}
		if q.HighestEnqueued != st.enq {
			st.enq, st.enqSince = q.HighestEnqueued, now
		}
		if st.caughtAt.IsZero() {
			switch {
			case q.HighestEnqueued >= after:
				st.caughtAt, st.exact = now, true
			case now.Sub(t) >= watcherSettle && (q.HighestEnqueued >= second || now.Sub(st.enqSince) >= watcherSettle):
				st.caughtAt = now
			default:
				done = false
				continue
			}
		}
		exact := st.exact && q.Shards <= 1 && q.HighestSent >= after
		timed := now.Sub(st.caughtAt) >= d.deadline && q.HighestSent >= min(second, st.enq)
		if !exact && !timed {
			done = false
		}
	}
	return done
}
