package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/promshard/promshard/config"
)

// Defaults of StatusOptions.
const (
	// DefaultStatusInterval is how often statuses are compared with what
	// runs, besides right after every applied configuration.
	DefaultStatusInterval = 10 * time.Second
	// DefaultHealthInterval is the shortest time between two writes of one
	// object's status that change only its target counts.
	DefaultHealthInterval = time.Minute
)

// StatusOptions configure a StatusWriter.
type StatusOptions struct {
	// RESTConfig reaches the API server. Required. The writer builds
	// clients of its own from it, each with its own rate limiter of
	// RESTConfig.QPS and Burst (unless RESTConfig.RateLimiter is set): the
	// start-up pass, one write per owned object, never delays the
	// informers' lists and watches (`make bench-status` measures both).
	RESTConfig *rest.Config
	// Agent is the PrometheusAgent the bindings name, "<namespace>/<name>".
	// Required: in flags-only mode there is no workload to bind to.
	Agent string
	// Owns reports whether this member writes the status of the object
	// whose key (config.ObjectKey.String()) is given. Exactly one member
	// must own each key at a time (the sharding package's OwnerOf). Required.
	Owns func(key string) bool
	// Health returns the target counts of every object, summed over the
	// members (members exchange per-object counts, not target lists). Nil,
	// or an error, leaves the target counts of the messages as they are;
	// a member that did not answer is reported inside ClusterHealth (its
	// objects' counts are stale), which leaves every other object current.
	Health func(ctx context.Context) (ClusterHealth, error)
	// Replicas returns the number of members and of members ready to own
	// targets, for the PrometheusAgent's status. Nil: the agent's status is
	// not written.
	Replicas func() (members, available int)
	// Capacity says, when the cluster cannot hold its load within what a
	// member is sized for (--sharding.max-series-per-member), why; "" when
	// it can. The PrometheusAgent's Available condition is then Degraded
	// with it. Nil: never.
	Capacity func() string
	// Interval is how often statuses are checked. Default DefaultStatusInterval.
	Interval time.Duration
	// HealthInterval bounds writes that only change target counts, per
	// object. Default DefaultHealthInterval.
	HealthInterval time.Duration
	// Logger logs; nil logs nothing.
	Logger *slog.Logger
	// Registerer registers the promshard_status_* metrics; nil registers none.
	Registerer prometheus.Registerer
}

// StatusWriter reports, on every selected ServiceMonitor, PodMonitor, Probe
// and ScrapeConfig, whether promshard accepted it and how its targets are
// doing, on every selected PrometheusRule whether its groups are in the
// ruler (status.bindings, in prometheus-operator's shape), emits a Warning
// Event for each rejection, and keeps the PrometheusAgent's status. It is
// one oklog/run actor; feed it with Update after every applied
// configuration.
//
// Writes use server-side apply on the status subresource with a field
// manager of their own, so bindings of other workloads (a Prometheus run by
// prometheus-operator) are left alone, and a binding promshard no longer
// wants is removed by applying without it.
type StatusWriter struct {
	opts         StatusOptions
	logger       *slog.Logger
	dyn          dynamic.Interface
	kube         kubernetes.Interface
	agentNS      string
	agentName    string
	fieldManager string
	metrics      *statusMetrics

	mtx     sync.Mutex
	snap    *config.Snapshot
	results []config.Result
	// rulesOwned is true while this member syncs PrometheusRules; it then
	// writes their statuses from ruleResults (UpdateRules).
	rulesOwned  bool
	ruleResults []config.Result
	trigger     chan struct{}

	// Owned by Run.
	written   map[config.ObjectKey]writtenCondition
	events    map[config.ObjectKey]string // reason of the last Event emitted
	health    *ClusterHealth
	healthAt  time.Time
	agentLast string
}

// writtenCondition is what this member last wrote on an object, and when.
type writtenCondition struct {
	cond monitoringv1.ConfigResourceCondition
	at   time.Time
}

// NewStatusWriter validates opts and builds the API clients.
func NewStatusWriter(opts StatusOptions) (*StatusWriter, error) {
	if opts.RESTConfig == nil || opts.Owns == nil {
		return nil, errors.New("status writer: RESTConfig and Owns are required")
	}
	ns, name, err := splitAgent(opts.Agent)
	if err != nil {
		return nil, fmt.Errorf("status writer: %w", err)
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultStatusInterval
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = DefaultHealthInterval
	}
	if opts.Logger == nil {
		opts.Logger = promslog.NewNopLogger()
	}
	dyn, err := dynamic.NewForConfig(opts.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("status writer: %w", err)
	}
	kube, err := kubernetes.NewForConfig(opts.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("status writer: %w", err)
	}
	m, err := newStatusMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("status writer: %w", err)
	}
	return &StatusWriter{
		opts: opts, logger: opts.Logger, dyn: dyn, kube: kube, agentNS: ns, agentName: name,
		// One manager per PrometheusAgent: two promshard deployments
		// binding the same monitor must not remove each other's entries.
		fieldManager: truncate("promshard/"+ns+"/"+name, 128),
		metrics:      m,
		trigger:      make(chan struct{}, 1),
		written:      map[config.ObjectKey]writtenCondition{},
		events:       map[config.ObjectKey]string{},
	}, nil
}

// splitAgent parses the PrometheusAgent reference "<namespace>/<name>"
// of Options.Agent and StatusOptions.Agent.
func splitAgent(s string) (string, string, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("Agent %q: want <namespace>/<name>", s)
	}
	return ns, name, nil
}

// Update hands over the snapshot a configuration was generated from and the
// results of that configuration as applied. It does not block.
func (w *StatusWriter) Update(snap *config.Snapshot, results []config.Result) {
	w.mtx.Lock()
	w.snap, w.results = snap, results
	w.mtx.Unlock()
	w.poke()
}

// UpdateRules hands over the outcome of the last rule sync: owned is true
// on the member that syncs PrometheusRules, which alone writes their
// statuses (the others leave them as they are). It does not block.
func (w *StatusWriter) UpdateRules(owned bool, results []config.Result) {
	w.mtx.Lock()
	w.rulesOwned, w.ruleResults = owned, results
	w.mtx.Unlock()
	w.poke()
}

func (w *StatusWriter) poke() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// Run writes statuses until ctx is done.
func (w *StatusWriter) Run(ctx context.Context) error {
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.trigger:
		case <-t.C:
		}
		w.sync(ctx, time.Now())
	}
}

// sync brings every owned status in line with what runs.
func (w *StatusWriter) sync(ctx context.Context, now time.Time) {
	w.mtx.Lock()
	snap, results := w.snap, w.results
	rulesOwned, ruleResults := w.rulesOwned, w.ruleResults
	w.mtx.Unlock()
	if snap == nil {
		return
	}
	w.refreshHealth(ctx, now)
	byKey := make(map[config.ObjectKey]config.Result, len(results)+len(ruleResults))
	for _, r := range results {
		byKey[r.Key()] = r
	}
	for _, r := range ruleResults {
		byKey[r.Key()] = r
	}
	for _, o := range monitoringObjects(snap) {
		if ctx.Err() != nil {
			return
		}
		owned := rulesOwned
		if o.key.Kind != config.KindPrometheusRule {
			owned = w.opts.Owns(o.key.String())
		}
		w.syncObject(ctx, o, owned, byKey, now)
	}
	if w.opts.Replicas != nil && snap.Agent != nil {
		w.syncAgent(ctx, snap.Agent, results, now)
	}
}

// refreshHealth gathers the cluster's counts at most twice per
// HealthInterval; on failure the previous counts stay.
func (w *StatusWriter) refreshHealth(ctx context.Context, now time.Time) {
	if w.opts.Health == nil || now.Sub(w.healthAt) < w.opts.HealthInterval/2 {
		return
	}
	h, err := w.opts.Health(ctx)
	if err != nil {
		w.logger.Warn("Cluster-wide target counts unavailable, keeping the previous target counts in statuses", "err", err)
		return
	}
	w.health, w.healthAt = &h, now
}

// monitoredObject is one monitoring object with what status writing needs.
type monitoredObject struct {
	key      config.ObjectKey
	gvr      schema.GroupVersionResource
	apiVer   string
	uid      string
	bindings []monitoringv1.WorkloadBinding
}

func monitoringObjects(snap *config.Snapshot) []monitoredObject {
	v1, v1alpha1 := monitoringv1.SchemeGroupVersion, monitoringv1alpha1.SchemeGroupVersion
	var out []monitoredObject
	for _, o := range snap.ServiceMonitors {
		out = append(out, monitoredObject{config.ObjectKey{Kind: config.KindServiceMonitor, Namespace: o.Namespace, Name: o.Name},
			v1.WithResource(resServiceMonitors), v1.String(), string(o.UID), o.Status.Bindings})
	}
	for _, o := range snap.PodMonitors {
		out = append(out, monitoredObject{config.ObjectKey{Kind: config.KindPodMonitor, Namespace: o.Namespace, Name: o.Name},
			v1.WithResource(resPodMonitors), v1.String(), string(o.UID), o.Status.Bindings})
	}
	for _, o := range snap.Probes {
		out = append(out, monitoredObject{config.ObjectKey{Kind: config.KindProbe, Namespace: o.Namespace, Name: o.Name},
			v1.WithResource(resProbes), v1.String(), string(o.UID), o.Status.Bindings})
	}
	for _, o := range snap.ScrapeConfigs {
		out = append(out, monitoredObject{config.ObjectKey{Kind: config.KindScrapeConfig, Namespace: o.Namespace, Name: o.Name},
			v1alpha1.WithResource(resScrapeConfigs), v1alpha1.String(), string(o.UID), o.Status.Bindings})
	}
	for _, o := range snap.PrometheusRules {
		out = append(out, monitoredObject{config.ObjectKey{Kind: config.KindPrometheusRule, Namespace: o.Namespace, Name: o.Name},
			v1.WithResource(resPrometheusRules), v1.String(), string(o.UID), o.Status.Bindings})
	}
	return out
}

// binding is the identity of the binding this writer maintains.
func (w *StatusWriter) binding() monitoringv1.WorkloadBinding {
	return monitoringv1.WorkloadBinding{Group: monitoringv1.SchemeGroupVersion.Group, Resource: resPrometheusAgents, Namespace: w.agentNS, Name: w.agentName}
}
