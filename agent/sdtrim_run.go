package agent

import (
	"context"
	"time"

	"github.com/prometheus/common/promslog"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

const (
	// trimQuiet is how long a relisting discoverer must have sent nothing
	// after its first groups before it replaces the running one. Kubernetes
	// SD sends the groups of its initial list one after another as soon as
	// its caches are synced, so a pause this long means it is through.
	trimQuiet = 2 * time.Second
	// trimDebounce collects the growths of one apply (or of monitors
	// created together) into one relist.
	trimDebounce = 250 * time.Millisecond
	// trimRetry is the wait before a relist whose discoverer could not be
	// created is tried again.
	trimRetry = 10 * time.Second
)

// trimDiscoverer runs the discoverer of a trimConfig and passes its groups
// on trimmed to the set's needs; see sdtrim.go.
type trimDiscoverer struct {
	cfg   *trimConfig
	opts  promdiscovery.DiscovererOptions
	first promdiscovery.Discoverer
}

// innerRun is one running inner discoverer.
type innerRun struct {
	ch     chan []*targetgroup.Group
	cancel context.CancelFunc
}

func startInner(ctx context.Context, d promdiscovery.Discoverer) *innerRun {
	ctx, cancel := context.WithCancel(ctx)
	r := &innerRun{ch: make(chan []*targetgroup.Group), cancel: cancel}
	go d.Run(ctx, r.ch)
	return r
}

// relist is a second discoverer delivering every group again after the
// needs grew.
type relist struct {
	*innerRun
	seen          map[string]struct{} // sources it sent
	started, last time.Time           // last: its last send (zero: none yet)
}

// Run passes on the running discoverer's groups, trimmed. After the needs
// grew (debounced by trimDebounce) it starts a relist: from then on a
// source the relist sent is taken from the relist only, every other from
// the running discoverer. Once the relist has been quiet for the quiet
// period after its first send (or right away when nothing is held), it
// becomes the running discoverer: the old one is stopped and every source
// sent with targets before that the relist did not send (its object is
// gone) is deleted. Growth during a relist starts another one after the
// switch, since groups the relist sent before the growth lack the new
// labels.
func (d *trimDiscoverer) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	logger := d.opts.Logger
	if logger == nil {
		logger = promslog.NewNopLogger()
	}
	quiet := d.cfg.quiet
	if quiet <= 0 {
		quiet = trimQuiet
	}
	// Nothing is held yet, and groups are trimmed to the needs of the
	// moment they are sent: growth so far needs no relist.
	select {
	case <-d.cfg.needs.grown:
	default:
	}
	var tr trimmer
	held := map[string]struct{}{} // sources last sent with targets
	primary := startInner(ctx, d.first)
	var re *relist
	pending := false
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer func() {
		timer.Stop()
		primary.cancel()
		if re != nil {
			re.cancel()
		}
	}()
	for {
		var reCh <-chan []*targetgroup.Group
		if re != nil {
			reCh = re.ch
		}
		var out []*targetgroup.Group
		select {
		case <-ctx.Done():
			return
		case tgs := <-primary.ch:
			needs := d.cfg.needs.load()
			for _, tg := range tgs {
				if tg == nil {
					continue
				}
				if re != nil {
					if _, ok := re.seen[tg.Source]; ok {
						continue // the relist's version replaced it
					}
				}
				out = append(out, tr.trim(needs, tg))
			}
		case tgs := <-reCh:
			needs := d.cfg.needs.load()
			for _, tg := range tgs {
				if tg == nil {
					continue
				}
				re.seen[tg.Source] = struct{}{}
				out = append(out, tr.trim(needs, tg))
			}
			re.last = time.Now()
			timer.Reset(quiet)
		case <-d.cfg.needs.grown:
			pending = true
			if re == nil {
				timer.Reset(trimDebounce)
			}
		case <-timer.C:
			switch {
			case re == nil && pending:
				inner, err := d.cfg.inner.NewDiscoverer(d.opts)
				if err != nil {
					logger.Error("Cannot relist discovery for newly read labels; trying again", "err", err, "in", trimRetry)
					timer.Reset(trimRetry)
					continue
				}
				pending = false
				re = &relist{innerRun: startInner(ctx, inner), seen: map[string]struct{}{}, started: time.Now()}
				if d.cfg.relist != nil {
					d.cfg.relist.Inc()
				}
				logger.Info("Relisting discovery: a job reads discovered labels not kept so far", "groups", len(held))
				timer.Reset(quiet)
			case re != nil && (!re.last.IsZero() || len(held) == 0):
				if wait := quiet - time.Since(re.last); !re.last.IsZero() && wait > 0 {
					timer.Reset(wait)
					continue
				}
				primary.cancel()
				primary = re.innerRun
				deleted := 0
				for src := range held {
					if _, ok := re.seen[src]; !ok {
						out = append(out, &targetgroup.Group{Source: src})
						deleted++
					}
				}
				logger.Info("Relisted discovery", "groups", len(re.seen), "deleted", deleted, "took", time.Since(re.started).Round(time.Millisecond))
				re = nil
				if pending {
					timer.Reset(trimDebounce)
				}
			case re != nil:
				timer.Reset(quiet) // nothing sent yet (caches syncing)
			}
		}
		if len(out) == 0 {
			continue
		}
		for _, tg := range out {
			if len(tg.Targets) == 0 {
				delete(held, tg.Source)
			} else {
				held[tg.Source] = struct{}{}
			}
		}
		select {
		case up <- out:
		case <-ctx.Done():
			return
		}
	}
}
