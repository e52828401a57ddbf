package ruler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"

	"github.com/promshard/promshard/config"
)

// Defaults and bounds of the Syncer.
const (
	// DefaultResyncInterval is how often the ruler is read in full and
	// repaired (groups edited or added by hand under the prefix).
	DefaultResyncInterval = time.Minute
	// defaultTimeout bounds one request of the default HTTP client.
	defaultTimeout = 30 * time.Second
	// minBackoff and maxBackoff bound the wait before retrying a ruler
	// that did not answer or answered 5xx/429. The cap keeps a ruler that
	// is back in sync within seconds, at one list request per cap while
	// it is down.
	minBackoff = 500 * time.Millisecond
	maxBackoff = 5 * time.Second
	// ownerCheckInterval is how often Owns is asked without another
	// reason to sync: a member that takes over after a leave syncs within it.
	ownerCheckInterval = 2 * time.Second
)

// Options configure a Syncer.
type Options struct {
	// Client reaches the ruler. Required.
	Client *Client
	// Rules select and render the PrometheusRule objects; its prefix is
	// the only part of the ruler the Syncer touches.
	Rules config.RuleOptions
	// ResyncInterval is how often the ruler is read in full; zero means
	// DefaultResyncInterval.
	ResyncInterval time.Duration
	// Owns reports whether this member syncs now (one member at a time).
	// Nil: always.
	Owns func() bool
	// Report, when set, receives after every sync attempt whether this
	// member syncs and, if so, the outcome of every selected object
	// (Result.Message on success, Reason on refusal). It must not block.
	Report func(owned bool, results []config.Result)
	// Logger logs; nil logs nothing.
	Logger *slog.Logger
	// Registerer registers the promshard_rules_* metrics; nil none.
	Registerer prometheus.Registerer
}

// Syncer keeps the ruler's groups under the prefix equal to the rendered
// PrometheusRules of the latest snapshot. It is one oklog/run actor.
type Syncer struct {
	opts    Options
	logger  *slog.Logger
	m       *metrics
	trigger chan struct{}

	mtx    sync.Mutex
	snap   *config.Snapshot
	status Status

	// Owned by Run.
	cache   config.RuleCache
	enc     encoder
	known   state // nil: read the ruler before the next change
	refused map[string]refusal
	owned   bool
}

// refusal is a namespace whose content the ruler refused (4xx), kept until
// the content changes or the next full resync.
type refusal struct {
	fingerprint, reason string
}

// Status is what the Syncer last did, for the status page.
type Status struct {
	Endpoint string
	// Syncing is true on the member that syncs.
	Syncing   bool
	LastSync  time.Time // last sync that left the ruler as wanted
	LastError string    // of the last attempt; "" when it succeeded
	Objects   []ObjectStatus
}

// ObjectStatus is one selected PrometheusRule and its ruler namespace.
type ObjectStatus struct {
	Object, Namespace string
	Groups            int
	// State is synced, pending (not written yet), rejected (the object
	// does not render) or refused (the ruler refused it).
	State, Reason string
}

// New validates opts.
func New(opts Options) (*Syncer, error) {
	if opts.Client == nil {
		return nil, errors.New("ruler syncer: a Client is required")
	}
	if opts.ResyncInterval < 0 {
		return nil, fmt.Errorf("ruler syncer: negative resync interval %s", opts.ResyncInterval)
	}
	if opts.ResyncInterval == 0 {
		opts.ResyncInterval = DefaultResyncInterval
	}
	if opts.Owns == nil {
		opts.Owns = func() bool { return true }
	}
	if opts.Logger == nil {
		opts.Logger = promslog.NewNopLogger()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("ruler syncer: %w", err)
	}
	return &Syncer{
		opts: opts, logger: opts.Logger, m: m, trigger: make(chan struct{}, 1),
		refused: map[string]refusal{},
		status:  Status{Endpoint: opts.Client.Endpoint()},
	}, nil
}

// Update hands over the latest snapshot. It does not block.
func (s *Syncer) Update(snap *config.Snapshot) {
	s.mtx.Lock()
	s.snap = snap
	s.mtx.Unlock()
	s.poke()
}

func (s *Syncer) poke() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Status returns what the Syncer last did.
func (s *Syncer) Status() Status {
	s.mtx.Lock()
	defer s.mtx.Unlock()
	st := s.status
	st.Objects = append([]ObjectStatus(nil), st.Objects...)
	return st
}

// Run syncs until ctx is done: on every Update, every ResyncInterval (a
// full read), on retries after a failure, and when this member starts or
// stops being the one that syncs (checked every ownerCheckInterval).
func (s *Syncer) Run(ctx context.Context) error {
	resync := time.NewTicker(s.opts.ResyncInterval)
	defer resync.Stop()
	retry := time.NewTimer(0)
	<-retry.C
	owner := time.NewTicker(ownerCheckInterval)
	defer owner.Stop()
	backoff := minBackoff
	full, retrying := true, false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.trigger:
			if retrying {
				continue // the retry takes the latest snapshot; changes do not shorten the backoff
			}
		case <-resync.C:
			full = true
		case <-retry.C:
			retrying = false
		case <-owner.C:
			if s.opts.Owns() == s.owned {
				continue
			}
		}
		s.mtx.Lock()
		snap := s.snap
		s.mtx.Unlock()
		if snap == nil {
			continue // nothing is known yet: an empty wish would delete every group
		}
		if !s.checkOwner() {
			continue
		}
		err := s.sync(ctx, snap, full)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.logger.Warn("Syncing rules to the ruler failed, retrying", "endpoint", s.opts.Client.Endpoint(), "in", backoff, "err", err)
			retry.Reset(backoff)
			backoff = min(2*backoff, maxBackoff)
			full, retrying = true, true
			continue
		}
		retry.Stop()
		backoff, full, retrying = minBackoff, false, false
	}
}

// checkOwner reports whether this member syncs, and handles a change:
// a member that takes over reads the ruler first (another member wrote
// it), one that hands over reports that it no longer speaks for the
// objects.
func (s *Syncer) checkOwner() bool {
	owned := s.opts.Owns()
	if owned != s.owned {
		s.owned = owned
		s.known = nil
		s.refused = map[string]refusal{}
		s.m.syncing.Set(boolFloat(owned))
		s.logger.Info("Rule sync ownership changed", "syncing", owned)
		if !owned {
			s.m.objects.Reset()
			s.m.groups.Set(0)
			s.mtx.Lock()
			s.status.Syncing, s.status.Objects = false, nil
			s.mtx.Unlock()
			if s.opts.Report != nil {
				s.opts.Report(false, nil)
			}
		}
	}
	return owned
}

// sync runs one pass: read the ruler when full or when its state is not
// known, apply the planned changes, report. A retryable error stops the
// pass (the next one re-reads); a refusal marks its namespace alone.
func (s *Syncer) sync(ctx context.Context, snap *config.Snapshot, full bool) error {
	start := time.Now()
	prefix := s.opts.Rules.Prefix()
	sets := config.RenderRulesCached(snap, s.opts.Rules, &s.cache)
	s.enc.next()
	var err error
	if full || s.known == nil {
		err = s.read(ctx, prefix, full)
	}
	pending := map[string]bool{}
	if err == nil {
		err = s.write(ctx, sets, prefix, pending)
	}
	if err != nil {
		s.known = nil
		s.m.failures.Inc()
		// Nothing is assumed written: every accepted object waits.
		for _, rs := range sets {
			pending[rs.RulerNamespace] = true
		}
	} else {
		s.m.lastSuccess.SetToCurrentTime()
	}
	s.m.duration.Observe(time.Since(start).Seconds())
	s.report(sets, pending, err, start)
	return err
}

func (s *Syncer) read(ctx context.Context, prefix string, full bool) error {
	listed, err := s.opts.Client.List(ctx)
	s.m.request("list", err)
	if err != nil {
		return err
	}
	s.known = readState(listed, prefix)
	if full {
		s.refused = map[string]refusal{} // try refused objects again
	}
	return nil
}

// write applies the plan; pending collects the namespaces not brought in
// line.
func (s *Syncer) write(ctx context.Context, sets []config.RuleSet, prefix string, pending map[string]bool) error {
	skip := map[string]bool{}
	for _, rs := range sets {
		if r, ok := s.refused[rs.RulerNamespace]; ok {
			if rs.Result.Accepted && r.fingerprint == s.enc.fingerprint(rs) {
				skip[rs.RulerNamespace] = true
				continue
			}
			delete(s.refused, rs.RulerNamespace) // changed since: try it
		}
	}
	byNS := make(map[string]config.RuleSet, len(sets))
	for _, rs := range sets {
		byNS[rs.RulerNamespace] = rs
	}
	for _, o := range plan(sets, s.known, prefix, skip, &s.enc) {
		if skip[o.namespace] {
			continue // refused earlier in this pass
		}
		var err error
		switch o.kind {
		case opSet:
			err = s.opts.Client.Set(ctx, o.namespace, o.group)
			s.m.request("set", err)
		case opDeleteGroup:
			err = s.opts.Client.DeleteGroup(ctx, o.namespace, o.name)
			s.m.request("delete_group", err)
		case opDeleteNamespace:
			err = s.opts.Client.DeleteNamespace(ctx, o.namespace)
			s.m.request("delete_namespace", err)
		}
		switch {
		case err == nil:
			s.known.apply(o)
		case Retryable(err) || o.kind == opDeleteNamespace:
			return err
		default:
			s.logger.Error("The ruler refused a rule group; the object's other groups are kept as they are", "namespace", o.namespace, "err", err)
			s.refused[o.namespace] = refusal{fingerprint: s.enc.fingerprint(byNS[o.namespace]), reason: err.Error()}
			skip[o.namespace] = true
		}
	}
	for ns := range skip {
		pending[ns] = true
	}
	return nil
}

// report publishes the outcome per object: status, page, metrics.
func (s *Syncer) report(sets []config.RuleSet, pending map[string]bool, err error, at time.Time) {
	results := make([]config.Result, 0, len(sets))
	objects := make([]ObjectStatus, 0, len(sets))
	counts := map[string]int{}
	groups := 0
	for _, rs := range sets {
		res := rs.Result
		os := ObjectStatus{Object: res.Key().String(), Namespace: rs.RulerNamespace, Groups: len(rs.Groups)}
		r, refused := s.refused[rs.RulerNamespace]
		switch {
		case !res.Accepted:
			os.State, os.Reason = "rejected", res.Reason
			res.Reason += "; the ruler keeps the groups last synced for this object"
		case refused:
			os.State, os.Reason = "refused", r.reason
			res.Accepted, res.Reason = false, r.reason
		case pending[rs.RulerNamespace]:
			os.State = "pending"
			res.Message = fmt.Sprintf("%d rule groups not synced to ruler namespace %s yet", len(rs.Groups), rs.RulerNamespace)
			if err != nil {
				os.Reason = err.Error()
				res.Message += ": " + err.Error()
			}
		default:
			os.State = "synced"
			groups += len(rs.Groups)
			res.Message = fmt.Sprintf("%d rule groups synced to ruler namespace %s", len(rs.Groups), rs.RulerNamespace)
		}
		counts[os.State]++
		results = append(results, res)
		objects = append(objects, os)
	}
	for _, state := range []string{"synced", "pending", "rejected", "refused"} {
		s.m.objects.WithLabelValues(state).Set(float64(counts[state]))
	}
	s.m.groups.Set(float64(groups))
	s.mtx.Lock()
	s.status.Syncing, s.status.Objects = true, objects
	s.status.LastError = ""
	if err != nil {
		s.status.LastError = err.Error()
	} else {
		s.status.LastSync = at
	}
	s.mtx.Unlock()
	if s.opts.Report != nil {
		s.opts.Report(true, results)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
