package sharding

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Confirmed handoff.
//
// When a target changes owner, the old owner's last samples may still sit
// in its remote-write queue (batches go out every batch send deadline) when
// the new owner's first samples reach the receiver; a strict receiver
// (remote write 1.0 without an out-of-order window: Prometheus, Mimir and
// Cortex by default) then refuses the older batch whole. Ordering the
// scrapes is not enough; the deliveries must be ordered.
//
// Every member computes, with its member view, a handoff view: a hash of
// what ownership depends on that every member sees alike (the key version,
// the participants, their zones under StrategyZone). Two members with the
// same handoff view assign every target alike.
//
//   - Giving up. After a pass under handoff view H, a member waits until
//     the loops of the targets it handed off are gone (the scrape manager
//     applied the pass) and remote write delivered, or gave up on, every
//     sample written before (FilterOptions.Delivered), then announces that
//     it released H (FilterOptions.Announce; the Cluster gossips it in its
//     metadata). A pass that gave nothing up announces at once.
//   - Gaining. A target a member owns under H but did not scrape before is
//     held (not passed on) until every other participant of H released H,
//     or until FilterOptions.HandoffTimeout after the first hold (counted
//     in promshard_sharding_handoffs_timed_out_total). Left and dead
//     members are no participants: nobody waits for them (a graceful leave
//     delivers before it announces the leave). Members that do not confirm
//     handoffs (an older promshard) are not waited for either.
//
// The old owner's last samples therefore reach the receiver before the new
// owner's first, at the cost of holding a moved target for about the old
// owner's delivery time (≤ batch send deadline) plus a gossip round: keep
// the batch send deadline below the scrape interval and a handoff costs at
// most one scrape. Targets that every member scrapes
// (__tmp_disable_sharding) and, under StrategyNode, node-local targets
// carry distinct labels or have one possible owner: they are never held.
//
// A release names a view, not a moment: should the membership return to a
// view a peer released before and the peer's newer announcement not have
// reached this member yet (one gossip round), this member could start
// early. A member that stalled steps down and pulls fresh state first
// (cluster_release.go).

// DefaultHandoffTimeout is the default FilterOptions.HandoffTimeout:
// Prometheus' default batch send deadline (5 s) twice.
const DefaultHandoffTimeout = 10 * time.Second

// stopMargin is added to the moment the handed-off loops were seen gone:
// the scrape manager drops a target from its active ones before its loop
// finished, and the loop's last append may follow within this margin.
const stopMargin = 100 * time.Millisecond

// releasePoll is how often the filter checks, while a release is pending,
// whether the handed-off loops are gone and their samples delivered.
const releasePoll = 50 * time.Millisecond

// handoffState is the filter's confirmed-handoff bookkeeping, owned by Run.
type handoffState struct {
	// holdSince is when the first pass held a target, zero while none is
	// held; timedOut is the handoff view whose hold timed out.
	holdSince time.Time
	timedOut  uint64
	// pending is the handoff view to announce, announced the last one
	// announced; undelivered: a pass handed targets off since the last
	// announcement, first at gaveUp; stoppedAt is when their loops were
	// seen gone (zero: not yet).
	pending, announced uint64
	undelivered        bool
	gaveUp, stoppedAt  time.Time
}

// handoffView hashes what every member's ownership depends on alike: the
// key version, the participants and, for StrategyZone, their zones.
func handoffView(key KeyVersion, names []string, zones map[string][]string) uint64 {
	d := xxhash.New()
	_, _ = d.WriteString("k" + strconv.Itoa(int(key)))
	for _, n := range names {
		_, _ = d.WriteString("\x00" + n)
	}
	for _, z := range slices.Sorted(maps.Keys(zones)) {
		_, _ = d.WriteString("\x01" + z)
		for _, n := range slices.Sorted(slices.Values(zones[z])) {
			_, _ = d.WriteString("\x00" + n)
		}
	}
	h := d.Sum64()
	if h == 0 {
		h = 1 // 0 means "nothing released"
	}
	return h
}

// confirm sets v.confirmed: this member may scrape what it gained under v.
// That is so when it is no participant (it gains nothing), when every
// other participant that confirms handoffs released v's handoff view, or
// when the hold outlasted HandoffTimeout.
func (f *Filter) confirm(v *memberView, peers []Member, now time.Time) {
	v.released = true
	for _, m := range peers {
		if m.State == StateParticipant && m.ConfirmsHandoffs && m.Released != v.handoff {
			v.released = false
			break
		}
	}
	h := &f.ho
	if !v.released && !h.holdSince.IsZero() && now.Sub(h.holdSince) >= f.opts.HandoffTimeout && h.timedOut != v.handoff {
		h.timedOut = v.handoff
		f.logger.Warn("Handoff timed out: scraping gained targets although not every participant released them",
			"held", f.totals.held, "timeout", f.opts.HandoffTimeout)
	}
	v.confirmed = v.self != StateParticipant || v.released || h.timedOut == v.handoff
}

// holds reports whether a target of entry e, owned under v and not sent
// before, must be held.
func (f *Filter) holds(v *memberView, e *preparedEntry) bool {
	if v.confirmed || e.all {
		return false
	}
	return f.opts.Strategy != StrategyNode || e.node == ""
}

// afterPass updates the handoff bookkeeping after a pass under v that held
// f.totals.held targets; gaveUp: it handed targets off.
func (f *Filter) afterPass(v *memberView, gaveUp bool, now time.Time) {
	h := &f.ho
	held := f.totals.held
	f.metrics.handoffs.held.Set(float64(held))
	switch {
	case held > 0 && h.holdSince.IsZero():
		h.holdSince = now
		f.metrics.handoffs.started.Inc()
		f.logger.Debug("Holding gained targets until their previous owners released them", "targets", held)
	case held == 0 && !h.holdSince.IsZero():
		if v.released {
			f.metrics.handoffs.confirmed.Inc()
		} else {
			f.metrics.handoffs.timedOut.Inc()
		}
		f.metrics.handoffs.duration.Observe(now.Sub(h.holdSince).Seconds())
		f.logger.Debug("Scraping the held targets", "confirmed", v.released, "held_for", now.Sub(h.holdSince).String())
		h.holdSince = time.Time{}
	}
	if gaveUp {
		if !h.undelivered {
			h.gaveUp = now
		}
		h.undelivered, h.stoppedAt = true, time.Time{}
	}
	h.pending = v.handoff
}

// holdDeadline returns when the current hold times out, zero when nothing
// is held.
func (f *Filter) holdDeadline() time.Time {
	if f.ho.holdSince.IsZero() {
		return time.Time{}
	}
	return f.ho.holdSince.Add(f.opts.HandoffTimeout)
}

// releaseStep announces the pending handoff view once what this member
// gave up is stopped and delivered. It reports whether a release is still
// pending (Run polls again after releasePoll).
func (f *Filter) releaseStep(now time.Time) bool {
	h := &f.ho
	if f.opts.Announce == nil || h.pending == 0 || (h.pending == h.announced && !h.undelivered) {
		return false
	}
	if h.undelivered {
		if h.stoppedAt.IsZero() {
			if f.flaggedRunning() {
				return true
			}
			h.stoppedAt = now.Add(stopMargin)
		}
		if now.Before(h.stoppedAt) || (f.opts.Delivered != nil && !f.opts.Delivered(h.stoppedAt)) {
			return true
		}
		h.undelivered = false
		f.metrics.handoffs.release.Observe(now.Sub(h.gaveUp).Seconds())
		f.logger.Debug("Given-up targets stopped and delivered", "after", now.Sub(h.gaveUp).String())
		h.gaveUp = time.Time{}
	}
	f.opts.Announce(h.pending)
	f.logger.Debug("Released the handoff view", "view", strconv.FormatUint(h.pending, 16), "gave_up_targets", !h.gaveUp.IsZero())
	h.announced = h.pending
	return false
}

// flaggedRunning reports whether the loop of a target handed off still
// runs, and forgets the flagged targets whose loops are gone.
func (f *Filter) flaggedRunning() bool {
	if len(f.flagged) == 0 || f.opts.Staleness == nil {
		return false
	}
	f.swept = time.Now()
	f.sweep()
	return len(f.flagged) > 0
}
