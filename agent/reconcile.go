package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

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

// kinds are the object kinds whose rejections are counted.
var kinds = []string{config.KindServiceMonitor, config.KindPodMonitor, config.KindProbe, config.KindScrapeConfig, config.KindPrometheusAgent}

// Reconciler turns every new snapshot into a configuration and applies it.
// It is one oklog/run actor.
type Reconciler struct {
	snapshots <-chan *config.Snapshot
	generate  GenerateFunc
	applier   Applier
	logger    *slog.Logger

	rejected    *prometheus.GaugeVec
	generations prometheus.Counter
	onApplied   func(*config.Snapshot, []config.Result)

	mtx       sync.Mutex
	results   []config.Result
	version   int
	appliedAt time.Time
	lastErr   error
	reasons   map[string]string
}

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
			Help: "Objects rejected by the last translation, by kind.",
		}, []string{"kind"}),
		generations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promshard_config_generations_total",
			Help: "Configurations generated from Kubernetes snapshots.",
		}),
		reasons: map[string]string{},
	}
	for _, kind := range kinds {
		r.rejected.WithLabelValues(kind).Set(0)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.rejected, r.generations} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering reconciler metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Run applies snapshots until ctx is done.
func (r *Reconciler) Run(ctx context.Context) error {
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
	cfg, results, err := r.generate(snap)
	r.generations.Inc()
	r.record(results)
	if err != nil {
		r.logger.Error("configuration cannot be generated; keeping the previous one", "err", err)
		r.setErr(err)
		return
	}
	if err := r.applier.ApplyConfig(cfg); err != nil {
		r.logger.Error("configuration cannot be applied; keeping the previous one", "err", err)
		r.setErr(err)
		return
	}
	r.mtx.Lock()
	r.version++
	r.appliedAt = time.Now()
	r.lastErr = nil
	v := r.version
	r.mtx.Unlock()
	r.logger.Debug("configuration applied", "version", v, "jobs", len(cfg.ScrapeConfigs))
	if r.onApplied != nil {
		r.onApplied(snap, results)
	}
}

// OnApplied registers fn, called after every applied configuration with the
// snapshot it was generated from and the per-object results of what now
// runs. fn must not block. Call it before Run.
func (r *Reconciler) OnApplied(fn func(*config.Snapshot, []config.Result)) { r.onApplied = fn }

// record keeps the results, updates the metric and logs each rejection once
// per distinct reason so a rejected object is easy to find without flooding
// the log on every snapshot.
func (r *Reconciler) record(results []config.Result) {
	counts := map[string]int{}
	seen := map[string]bool{}
	r.mtx.Lock()
	defer r.mtx.Unlock()
	for _, res := range results {
		key := res.Kind + "/" + res.Namespace + "/" + res.Name
		seen[key] = true
		if res.Accepted {
			if _, was := r.reasons[key]; was {
				r.logger.Info("object accepted again", "kind", res.Kind, "namespace", res.Namespace, "name", res.Name)
				delete(r.reasons, key)
			}
			continue
		}
		counts[res.Kind]++
		if r.reasons[key] != res.Reason {
			r.logger.Warn("object rejected", "kind", res.Kind, "namespace", res.Namespace, "name", res.Name, "reason", res.Reason)
			r.reasons[key] = res.Reason
		}
	}
	for key := range r.reasons {
		if !seen[key] {
			delete(r.reasons, key)
		}
	}
	for _, kind := range kinds {
		r.rejected.WithLabelValues(kind).Set(float64(counts[kind]))
	}
	r.results = results
}

func (r *Reconciler) setErr(err error) {
	r.mtx.Lock()
	defer r.mtx.Unlock()
	r.lastErr = err
}

// Status is what the status page and readiness need from the reconciler.
type Status struct {
	// Version counts applied configurations; 0 means none yet.
	Version   int
	AppliedAt time.Time
	LastError error
	Results   []config.Result
}

// Status returns a copy of the reconciler's state.
func (r *Reconciler) Status() Status {
	r.mtx.Lock()
	defer r.mtx.Unlock()
	return Status{Version: r.version, AppliedAt: r.appliedAt, LastError: r.lastErr, Results: append([]config.Result(nil), r.results...)}
}
