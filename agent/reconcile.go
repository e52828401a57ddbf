package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"

	"github.com/promshard/promshard/config"
)

// GenerateFunc translates a snapshot into a configuration; config.Generate
// with fixed options is the production implementation.
type GenerateFunc func(*config.Snapshot) (*promconfig.Config, []config.Result, error)

// Applier is what the Reconciler applies configurations to; *Agent
// implements it.
type Applier interface {
	ApplyConfig(*promconfig.Config) error
}

var _ Applier = (*Agent)(nil)

// changeReporter is implemented by appliers that tell whether their last
// ApplyConfig changed what runs (*Agent does); the Reconciler then counts a
// new version only for a change.
type changeReporter interface {
	LastApplyChanged() bool
}

// kinds are the object kinds whose rejections are counted.
var kinds = []string{config.KindServiceMonitor, config.KindPodMonitor, config.KindProbe, config.KindScrapeConfig,
	config.KindPrometheusAgent, config.KindAdditionalScrapeConfigs}

// Reconciler turns every new snapshot into a configuration and applies it.
// It is one oklog/run actor.
//
// With a required PrometheusAgent (RequireAgent) it never falls back to the
// flags' settings: before the object is first seen nothing is applied (so
// nothing is scraped and readiness stays false); when it is deleted, or
// changed into settings that cannot be translated, its last applied
// settings keep being used, so scraping and remote write go on and monitor
// changes are still applied; when it is back or fixed, it is applied.
//
// Remote write is part of the PrometheusAgent's settings: one invalid
// remote-write entry (bad URL, a CA that is not a certificate, a client
// the agent cannot build) rejects the PrometheusAgent as a whole, shown as
// a rejected object of kind PrometheusAgent, and the last applied remote
// writes keep running. Dropping just the bad entry would silently collect
// data that never reaches that destination.
//
// A monitor whose job the agent refuses (JobErrors) is rejected alone with
// the agent's reason, all its jobs left out, and the rest is applied.
type Reconciler struct {
	snapshots <-chan *config.Snapshot
	generate  GenerateFunc
	applier   Applier
	logger    *slog.Logger
	agentName string // "<namespace>/<name>"; empty in flags-only mode

	rejected    *prometheus.GaugeVec
	generations prometheus.Counter
	agentState  *prometheus.GaugeVec
	ignored     *prometheus.GaugeVec

	// lastAgent is the PrometheusAgent of the last applied configuration;
	// only the Run goroutine uses it.
	lastAgent *monitoringv1alpha1.PrometheusAgent
	onApplied func(*config.Snapshot, []config.Result)
	// took is how long the last generateAndApply translated and applied
	// (Run goroutine only; logged with "configuration applied").
	took struct{ translate, apply time.Duration }

	mtx       sync.Mutex
	results   []config.Result
	version   int
	appliedAt time.Time
	lastErr   error
	reasons   map[config.ObjectKey]string
	agent     agentStatus
	// ignoredFields are the fields of the applied PrometheusAgent that
	// promshard does not apply.
	ignoredFields config.IgnoredAgentFields
}

// agentStatus is what happens with the required PrometheusAgent.
type agentStatus struct {
	state string // one of agentStates
	note  string // a sentence for the log and the status page
}

// States of the required PrometheusAgent, the values of the state label of
// promshard_prometheus_agent_state.
const (
	agentFlagsOnly = "flags-only" // no --prometheus-agent: flag settings
	agentWaiting   = "waiting"    // never seen: nothing is applied
	agentPresent   = "present"    // applied as it is
	agentMissing   = "missing"    // deleted: its last applied settings run
	agentInvalid   = "invalid"    // rejected: its last applied settings run
)

var agentStates = []string{agentFlagsOnly, agentWaiting, agentPresent, agentMissing, agentInvalid}

// NewReconciler builds a Reconciler. logger may be nil.
func NewReconciler(snapshots <-chan *config.Snapshot, generate GenerateFunc, applier Applier, logger *slog.Logger, reg prometheus.Registerer) (*Reconciler, error) {
	if snapshots == nil || generate == nil || applier == nil {
		return nil, fmt.Errorf("reconciler: snapshots, generate and applier are required")
	}
	if logger == nil {
		logger = promslog.NewNopLogger()
	}
	r := &Reconciler{
		snapshots: snapshots, generate: generate, applier: applier, logger: logger,
		rejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promshard_rejected_objects",
			Help: "Objects rejected by the last translation or refused by the scrape manager, by kind; a rejected PrometheusAgent counts 1.",
		}, []string{"kind"}),
		generations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_config_generations_total",
			Help: "Configurations generated from Kubernetes snapshots.",
		}),
		agentState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promshard_prometheus_agent_state",
			Help: "1 for the current state of the PrometheusAgent named by --prometheus-agent: flags-only (none named), waiting (never seen, nothing scraped), present, missing (deleted, last applied settings keep running), invalid (rejected, last applied settings keep running).",
		}, []string{"state"}),
		ignored: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promshard_prometheus_agent_ignored_fields",
			Help: "Fields the applied PrometheusAgent sets that promshard does not apply, by class: workload (pod settings; promshard runs as the pods you deploy) or unimplemented. The log, the status page and the PrometheusAgent's Reconciled condition name them.",
		}, []string{"class"}),
		reasons: map[config.ObjectKey]string{},
	}
	r.ignored.WithLabelValues("workload").Set(0)
	r.ignored.WithLabelValues("unimplemented").Set(0)
	for _, kind := range kinds {
		r.rejected.WithLabelValues(kind).Set(0)
	}
	r.setAgent(agentFlagsOnly, "")
	if reg != nil {
		for _, c := range []prometheus.Collector{r.rejected, r.generations, r.agentState, r.ignored} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering reconciler metrics: %w", err)
			}
		}
	}
	return r, nil
}

// RequireAgent makes the settings come only from the PrometheusAgent name
// ("<namespace>/<name>", as --prometheus-agent); see Reconciler. It must be
// called before Run.
func (r *Reconciler) RequireAgent(name string) {
	r.agentName = name
	if name != "" {
		r.setAgent(agentWaiting, "PrometheusAgent "+name+" not found yet: nothing is scraped until it exists")
	}
}

// Run applies snapshots until ctx is done.
func (r *Reconciler) Run(ctx context.Context) error {
	if r.agentName != "" {
		r.logger.Info("waiting for the PrometheusAgent before scraping anything", "prometheus_agent", r.agentName)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case snap := <-r.snapshots:
			r.reconcile(snap)
		}
	}
}

func (r *Reconciler) reconcile(snap *config.Snapshot) {
	start := time.Now()
	present := snap.Agent != nil
	snap, ok := r.withAgent(snap)
	if !ok {
		return
	}
	cfg, results, agentErr, err := r.generateAndApply(snap)
	var agentRes *config.Result
	if present && r.agentName != "" {
		agentRes = &config.Result{Kind: config.KindPrometheusAgent, Namespace: snap.Agent.Namespace, Name: snap.Agent.Name, Generation: snap.Agent.Generation, Accepted: !agentErr}
		switch {
		case !agentErr:
			if err == nil && r.agentStatus() != agentPresent {
				r.logger.Info("PrometheusAgent found, applying its settings", "prometheus_agent", r.agentName)
				r.setAgent(agentPresent, "")
			}
		case r.lastAgent != nil && r.lastAgent != snap.Agent:
			// Keep the last applied settings; monitor changes still apply.
			agentRes.Reason = err.Error()
			if r.agentStatus() != agentInvalid {
				// record logs the reason, once per distinct reason.
				r.logger.Error("PrometheusAgent rejected; its last applied settings keep running", "prometheus_agent", r.agentName)
			}
			r.setAgent(agentInvalid, "PrometheusAgent "+r.agentName+" is rejected: its last applied settings keep running")
			old := *snap
			old.Agent = r.lastAgent
			snap = &old
			cfg, results, _, err = r.generateAndApply(&old)
		default:
			agentRes.Reason = err.Error()
			r.setAgent(agentInvalid, "PrometheusAgent "+r.agentName+" is rejected: "+r.keeping())
		}
	}
	if err != nil {
		r.logger.Error("configuration not applied; "+r.keeping(), "err", err)
		r.setErr(err, agentRes)
		return
	}
	if agentRes != nil {
		results = append(results, *agentRes)
	}
	r.record(results)
	recorded := time.Now()
	if r.onApplied != nil {
		r.onApplied(snap, results)
	}
	if snap.Agent != nil {
		if snap.Agent != r.lastAgent {
			r.setIgnored(config.IgnoredFields(&snap.Agent.Spec))
		}
		r.lastAgent = snap.Agent
	}
	r.mtx.Lock()
	defer r.mtx.Unlock()
	r.lastErr = nil
	if cr, ok := r.applier.(changeReporter); ok && !cr.LastApplyChanged() && r.version > 0 {
		return
	}
	r.version++
	r.appliedAt = time.Now()
	r.logger.Debug("configuration applied", "version", r.version, "jobs", len(cfg.ScrapeConfigs),
		"translate", r.took.translate.String(), "apply", r.took.apply.String(),
		"status", r.appliedAt.Sub(recorded).String(), "total", r.appliedAt.Sub(start).String())
}

// generateAndApply translates snap and applies the result with per-object
// isolation. agentErr tells whether err comes from the PrometheusAgent's
// (or the flags') own settings: the translation of the global section or a
// remote write the agent cannot build a client for.
func (r *Reconciler) generateAndApply(snap *config.Snapshot) (cfg *promconfig.Config, results []config.Result, agentErr bool, err error) {
	start := time.Now()
	cfg, results, err = r.generate(snap)
	translated := time.Now()
	defer func() { r.took.translate, r.took.apply = translated.Sub(start), time.Since(translated) }()
	r.generations.Inc()
	if err != nil {
		return nil, results, true, errors.New(config.RedactURLs(err.Error()))
	}
	results, err = r.applyIsolated(cfg, results)
	if err != nil {
		var rwErr *RemoteWriteError
		return cfg, results, errors.As(err, &rwErr), errors.New(config.RedactURLs(err.Error()))
	}
	return cfg, results, false, nil
}

// keeping says what runs after a failed attempt.
func (r *Reconciler) keeping() string {
	r.mtx.Lock()
	defer r.mtx.Unlock()
	if r.version == 0 {
		return "nothing is scraped yet"
	}
	return "the previously applied configuration keeps running"
}

// withAgent returns the snapshot to translate when a PrometheusAgent is
// required: the snapshot itself when it has the agent, one with the last
// applied agent when it was deleted, and false before it was ever seen.
func (r *Reconciler) withAgent(snap *config.Snapshot) (*config.Snapshot, bool) {
	if r.agentName == "" {
		return snap, true
	}
	if snap.Agent != nil {
		return snap, true
	}
	if r.lastAgent == nil {
		r.setAgent(agentWaiting, "PrometheusAgent "+r.agentName+" not found yet: nothing is scraped until it exists")
		return snap, false
	}
	if r.agentStatus() != agentMissing {
		r.logger.Warn("PrometheusAgent deleted; its last applied settings keep running (scraping and remote write go on) until it is back", "prometheus_agent", r.agentName)
	}
	r.setAgent(agentMissing, "PrometheusAgent "+r.agentName+" was deleted: its last applied settings keep running (scraping and remote write go on) until it is back")
	withLast := *snap
	withLast.Agent = r.lastAgent
	return &withLast, true
}

// applyIsolated applies cfg; when the agent refuses jobs, the objects of
// those jobs are rejected with the reason and the rest is applied.
func (r *Reconciler) applyIsolated(cfg *promconfig.Config, results []config.Result) ([]config.Result, error) {
	for {
		err := r.applier.ApplyConfig(cfg)
		var refused JobErrors
		if !errors.As(err, &refused) {
			return results, err
		}
		var dropped int
		cfg, results, dropped = rejectJobs(cfg, results, refused)
		if dropped == 0 {
			return results, err
		}
	}
}

// rejectJobs marks the objects of the refused jobs rejected and returns a
// configuration without any of their jobs, and how many jobs it dropped.
func rejectJobs(cfg *promconfig.Config, results []config.Result, refused JobErrors) (*promconfig.Config, []config.Result, int) {
	results = slices.Clone(results)
	drop := map[string]bool{}
	for i := range results {
		res := &results[i]
		for _, job := range res.Jobs {
			if jerr, ok := refused[job]; ok && res.Accepted {
				res.Accepted = false
				res.Reason = config.RedactURLs(fmt.Sprintf("job %s: %v", job, jerr))
			}
		}
		if !res.Accepted {
			for _, job := range res.Jobs {
				drop[job] = true
			}
		}
	}
	for job := range refused {
		drop[job] = true // a job no Result names is left out too
	}
	out := *cfg
	out.ScrapeConfigs = make([]*promconfig.ScrapeConfig, 0, len(cfg.ScrapeConfigs))
	for _, sc := range cfg.ScrapeConfigs {
		if !drop[sc.JobName] {
			out.ScrapeConfigs = append(out.ScrapeConfigs, sc)
		}
	}
	return &out, results, len(cfg.ScrapeConfigs) - len(out.ScrapeConfigs)
}

// setIgnored records the ignored fields of the applied PrometheusAgent,
// logging them when they change.
func (r *Reconciler) setIgnored(f config.IgnoredAgentFields) {
	r.mtx.Lock()
	changed := f.String() != r.ignoredFields.String()
	r.ignoredFields = f
	r.mtx.Unlock()
	if changed && !f.Empty() {
		r.logger.Warn(f.String(), "prometheus_agent", r.agentName)
	}
	r.ignored.WithLabelValues("workload").Set(float64(len(f.Workload)))
	r.ignored.WithLabelValues("unimplemented").Set(float64(len(f.Unimplemented)))
}

func (r *Reconciler) setAgent(state, note string) {
	r.mtx.Lock()
	r.agent = agentStatus{state: state, note: note}
	r.mtx.Unlock()
	for _, s := range agentStates {
		v := 0.0
		if s == state {
			v = 1
		}
		r.agentState.WithLabelValues(s).Set(v)
	}
}

func (r *Reconciler) agentStatus() string {
	r.mtx.Lock()
	defer r.mtx.Unlock()
	return r.agent.state
}

// OnApplied registers fn, called after every applied configuration with the
// snapshot it was generated from and the per-object results of what now
// runs. fn must not block. Call it before Run.
func (r *Reconciler) OnApplied(fn func(*config.Snapshot, []config.Result)) { r.onApplied = fn }

// record keeps the results, updates the metric and logs each rejection once
// per distinct reason so a rejected object is easy to find without flooding
// the log on every snapshot.
//
// results must be the reconciler's own (generated for this attempt): the
// reasons are redacted in place, and the slice is kept as it is. With
// thousands of objects this runs on every edit, so it allocates only for
// rejected objects.
func (r *Reconciler) record(results []config.Result) {
	counts := map[string]int{}
	rejected := map[config.ObjectKey]bool{}
	r.mtx.Lock()
	defer r.mtx.Unlock()
	for i := range results {
		res := &results[i]
		key := res.Key()
		if res.Accepted {
			if _, was := r.reasons[key]; was {
				r.logger.Info("object accepted again", "kind", res.Kind, "namespace", res.Namespace, "name", res.Name)
				delete(r.reasons, key)
			}
			continue
		}
		rejected[key] = true
		counts[res.Kind]++
		res.Reason = config.RedactURLs(res.Reason)
		if r.reasons[key] != res.Reason {
			r.logger.Warn("object rejected", "kind", res.Kind, "namespace", res.Namespace, "name", res.Name, "reason", res.Reason)
			r.reasons[key] = res.Reason
		}
	}
	for key := range r.reasons {
		if !rejected[key] { // gone, or accepted (deleted above)
			delete(r.reasons, key)
		}
	}
	for _, kind := range kinds {
		r.rejected.WithLabelValues(kind).Set(float64(counts[kind]))
	}
	r.results = results
}

// setErr records a failed attempt; a rejected PrometheusAgent is shown as
// a rejected object beside the results of what runs.
func (r *Reconciler) setErr(err error, agentRes *config.Result) {
	r.mtx.Lock()
	r.lastErr = err
	results := r.results
	r.mtx.Unlock()
	if agentRes == nil || agentRes.Accepted {
		return
	}
	kept := make([]config.Result, 0, len(results)+1)
	for _, res := range results {
		if res.Kind != config.KindPrometheusAgent {
			kept = append(kept, res)
		}
	}
	r.record(append(kept, *agentRes))
}

// Status is what the status page and readiness need from the reconciler.
type Status struct {
	// Version counts applied configurations that changed what runs; 0
	// means none yet.
	Version   int
	AppliedAt time.Time
	LastError error
	Results   []config.Result
	// Agent says what happens with the required PrometheusAgent when that
	// is not simply "applied" (waiting for it, deleted, rejected); empty
	// otherwise.
	Agent string
	// Waiting is true while nothing is applied because the required
	// PrometheusAgent was never seen.
	Waiting bool
	// Ignored names the fields of the applied PrometheusAgent promshard
	// does not apply; empty when there are none.
	Ignored string
}

// Status returns a copy of the reconciler's state.
func (r *Reconciler) Status() Status {
	r.mtx.Lock()
	defer r.mtx.Unlock()
	return Status{
		Version: r.version, AppliedAt: r.appliedAt, LastError: r.lastErr, Results: append([]config.Result(nil), r.results...),
		Agent: r.agent.note, Waiting: r.agent.state == agentWaiting, Ignored: r.ignoredFields.String(),
	}
}

// NotReadyReason says why /-/ready fails as far as the configuration is
// concerned, or "" when a configuration runs.
func (r *Reconciler) NotReadyReason() string {
	st := r.Status()
	switch {
	case st.Waiting:
		return st.Agent
	case st.Version == 0:
		return "no configuration applied yet"
	}
	return ""
}
