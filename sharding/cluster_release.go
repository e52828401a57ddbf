package sharding

import (
	"context"
	"time"
)

// Release announcements and stalls.
//
// A member gossips, in its metadata, the handoff view it released last
// (handoff.go): the filter calls AnnounceReleased once the member applied
// the view and delivered what it scraped from the targets it gave up. The
// announcement is asynchronous: memberlist's UpdateNode waits for the
// broadcast to go out, which must not block the filter.
//
// A member whose process stalled (a long GC pause, CPU starvation under a
// limit, SIGSTOP) for longer than its peers need to declare it dead may
// find, when it runs again, that they took its targets over. It cannot
// tell from memberlist whether they did, so it assumes they did: it stops
// owning targets at once (the filter hands them off), pulls the peers'
// current state with a join (push/pull: it also learns that it was
// declared dead and refutes it, so the peers see it alive again), and
// participates again. Its targets then come back through the confirmed
// handoff: held until every peer released the view it is part of. A stall
// that the peers did not notice costs one reload of its targets.

// stallCheckInterval is how often the stall watchdog ticks; a tick that
// comes more than the stall threshold after the previous one means the
// process did not run in between.
const stallCheckInterval = 250 * time.Millisecond

// releaseAnnounceTimeout bounds how long one announcement waits for its
// broadcast to go out.
const releaseAnnounceTimeout = time.Second

// AnnounceReleased gossips that this member released the handoff view
// view. It does not block; a later call supersedes an earlier one not yet
// sent. Standalone, it only records the value.
func (c *Cluster) AnnounceReleased(view uint64) {
	c.mtx.Lock()
	if m, ok := c.members[c.cfg.NodeName]; ok {
		m.Released, m.ConfirmsHandoffs = view, view != 0
		c.members[c.cfg.NodeName] = m
	}
	c.mtx.Unlock()
	if c.meta == nil || c.meta.released.Swap(view) == view {
		return
	}
	select {
	case c.announce <- struct{}{}:
	default:
	}
}

// announcer sends release announcements until ctx is done or the cluster
// closes.
func (c *Cluster) announcer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-c.announce:
		}
		c.life.Lock()
		if !c.closed && !c.leaving.Load() {
			if err := c.ml.UpdateNode(releaseAnnounceTimeout); err != nil {
				c.logger.Debug("Cluster release announcement not confirmed", "err", err)
			}
		}
		c.life.Unlock()
	}
}

// watchStalls calls stalled whenever the process did not run for longer
// than the stall threshold, until ctx is done or the cluster closes. The
// monotonic clock goes on while a process is stopped.
func (c *Cluster) watchStalls(ctx context.Context) {
	t := time.NewTicker(stallCheckInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-t.C:
			// Not the tick's value: that is when the tick was due,
			// before the stall.
			if gap := time.Since(last); gap > c.cfg.StallThreshold {
				c.stalled(ctx, gap)
			}
			last = time.Now()
		}
	}
}

// stalled steps a participant down after a stall of gap and lets it
// participate again once it pulled the peers' state.
func (c *Cluster) stalled(ctx context.Context, gap time.Duration) {
	c.stalls.Add(1)
	if !c.Participant() {
		return
	}
	c.logger.Warn("Process stalled for longer than peers need to declare it dead: handing targets off until the cluster state is pulled again",
		"stall", gap.Round(time.Millisecond).String(), "threshold", c.cfg.StallThreshold)
	c.participating.Store(false)
	c.setSelf(StateJoining)
	c.pullState(ctx)
	c.announced.Store(false)
	c.Participate()
}

// pullState exchanges full state (memberlist's push/pull through a join)
// with the join list, or, without one, with the members known alive.
func (c *Cluster) pullState(ctx context.Context) {
	addrs := c.resolveJoin(ctx)
	if len(addrs) == 0 {
		for _, m := range c.Members() {
			if m.Name != c.cfg.NodeName && m.State.Alive() && m.Address != "" {
				addrs = append(addrs, m.Address)
			}
		}
	}
	if len(addrs) == 0 {
		return
	}
	if n, err := c.ml.Join(addrs); err != nil && n == 0 {
		c.logger.Warn("Cluster state pull after a stall failed", "addresses", addrs, "err", err)
	}
}
