// Package discovery is promshard's Kubernetes API I/O: it watches the
// objects that shape the configuration and hands them over as debounced,
// immutable config.Snapshot values, and it writes back what runs
// (StatusWriter: Accepted bindings with target health on the monitors,
// Warning Events for rejections, the PrometheusAgent's status).
//
// It owns the client-go informers for ServiceMonitor, PodMonitor, Probe,
// ScrapeConfig and PrometheusAgent (dynamic informers converted to the typed
// prometheus-operator structs) and for Namespace, Secret and ConfigMap (typed
// informers). Informer handlers only signal; one worker debounces the signals
// and rebuilds the snapshot from the informer caches. Monitoring CRDs that are
// not installed yet are polled for and watched as soon as they appear.
//
// Work follows what matters: a Secret or ConfigMap change that no selected
// object of the last snapshot references (Options.References), and a
// Namespace change that leaves its labels alone, cause no rebuild. Cached
// objects keep only what the translation reads. Every Secret and ConfigMap
// of the watched namespaces (Options.Namespaces, all by default) is cached,
// with one informer per resource and namespace: watching only referenced
// objects would take one watch per namespace holding a selected monitor
// (hundreds at scale) and miss references until re-listed; restricting
// the namespaces is the lever for memory and for namespaced RBAC.
//
// After an API server outage every client of the Watcher, and Prometheus'
// Kubernetes SD through APIProxy, resumes within a /readyz probe interval
// instead of client-go's backoff of up to a minute (see reachGate); a
// request waits at most Options.UnreachableTimeout, then its error reaches
// client-go (logged, backed off) and Reachability reports the outage.
// LoadManifests builds the same Snapshot from YAML files instead, for
// `promshard render`.
//
// It may import promshard's config package (for config.Snapshot and Result)
// and nothing else of promshard: no translation, scraping or sharding
// happens here; who writes which status and the cluster's targets arrive as
// functions wired in cmd/.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/promshard/promshard/config"
)

// Defaults of Options.
const (
	// DefaultDebounce is the default Options.Debounce.
	DefaultDebounce = 100 * time.Millisecond
	// DefaultCRDCheckInterval is the default Options.CRDCheckInterval.
	DefaultCRDCheckInterval = 5 * time.Second
)

// Options configure a Watcher.
type Options struct {
	// RESTConfig reaches the API server. Required by New.
	RESTConfig *rest.Config

	// Agent is the PrometheusAgent to read settings from, as
	// "<namespace>/<name>". Only that object is watched (field selector on
	// its name). Empty means flags-only mode: Snapshot.Agent is always nil
	// and the prometheusagents CRD is not watched.
	Agent string

	// Namespaces limits the monitors (ServiceMonitor, PodMonitor, Probe,
	// ScrapeConfig), Secrets, ConfigMaps and Namespace objects watched to
	// these namespaces: one informer per namespace and resource. Secrets
	// and ConfigMaps are also watched in the Agent's namespace, since the
	// PrometheusAgent references credentials there. Empty means all
	// namespaces, with one cluster-wide informer per resource (needs
	// cluster-wide list/watch permissions). Every Secret and ConfigMap of
	// the watched namespaces is cached, since any may be referenced, except
	// Helm release Secrets (field selector type!=helm.sh/release.v1).
	Namespaces []string

	// Rules also watches PrometheusRule objects (in Namespaces) into
	// Snapshot.PrometheusRules, for the ruler sync. False leaves them out
	// (no informer, no RBAC needed).
	Rules bool

	// Debounce is the shortest time between two rebuilds. A change after
	// a quiet period is rebuilt at once; changes within Debounce of the
	// last rebuild are coalesced into one rebuild at the end of that
	// window, so that a burst yields two snapshots (its first change, then
	// the rest) and constant churn at most one per Debounce. A change
	// reaches the Snapshots channel at most Debounce plus the rebuild time
	// after the informer saw it. Zero means DefaultDebounce (100ms).
	// Negative is invalid.
	Debounce time.Duration

	// ResyncPeriod is the informers' resync period. Resyncs re-deliver
	// cached objects and do not cause a rebuild by themselves (unchanged
	// resourceVersion), so zero, meaning no periodic resync, is the
	// default and the recommended value. Negative is invalid.
	ResyncPeriod time.Duration

	// CRDCheckInterval is how often the API server's discovery endpoint is
	// asked which monitoring CRDs are installed, so that a CRD installed or
	// removed later starts or stops its informers without a restart. Zero
	// means DefaultCRDCheckInterval (5s). Negative is invalid.
	CRDCheckInterval time.Duration

	// UnreachableTimeout is how long a list, watch or other GET waits for
	// an API server it cannot reach (refused, timed out, certificate not
	// trusted) before the error reaches client-go, which logs it and backs
	// off; an outage that ends within it resumes within a /readyz probe
	// interval (see reachGate). Zero means DefaultUnreachableTimeout (30s).
	// Negative is invalid.
	UnreachableTimeout time.Duration

	// Logger receives the Watcher's logs as is (the caller adds its
	// "component" key). Nil means no logging. client-go's own messages
	// (e.g. a failing list/watch) go to klog, which cmd/ may route to slog.
	Logger *slog.Logger

	// Registerer registers the promshard_discovery_* metrics. Nil means
	// the metrics are kept but not registered anywhere.
	Registerer prometheus.Registerer

	// References returns the Secrets and ConfigMaps the translation of a
	// snapshot can read (cmd passes config.ReferencedObjects with the
	// process' config.Options). A Secret or ConfigMap change that the last
	// snapshot does not reference then causes no rebuild and no snapshot:
	// work stays proportional to the changes that matter. It is called
	// once per published snapshot, from the worker. Nil means every Secret
	// and ConfigMap change causes a rebuild.
	References func(*config.Snapshot) *config.References
}

// resourceDiscoverer is the part of client-go's discovery client the Watcher
// needs to tell whether a CRD is installed.
type resourceDiscoverer interface {
	ServerResourcesForGroupVersionWithContext(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error)
}

// clients are the API clients a Watcher uses; tests pass fakes.
type clients struct {
	kube kubernetes.Interface
	dyn  dynamic.Interface
	disc resourceDiscoverer
}

// Watcher watches the Kubernetes objects that influence the configuration
// and publishes a new Snapshot after every relevant change. Build it with New
// and run it with Run.
type Watcher struct {
	opts      Options
	logger    *slog.Logger
	metrics   *metrics
	clients   clients
	agentNS   string
	agentName string
	// monitorNS are the namespaces monitors and Namespace objects are
	// watched in; resourceNS those of Secrets and ConfigMaps. {""} means all.
	monitorNS  []string
	resourceNS []string
	kinds      []*kind
	refs       refFilter
	// gate is the reachability gate of the clients New built; nil with
	// fake clients.
	gate *reachGate

	// trigger is the cap-1 signal channel informer handlers send to.
	trigger chan struct{}
	// out is the cap-1 latest-wins snapshot channel.
	out chan *config.Snapshot

	started atomic.Bool
	synced  atomic.Bool
	// stopped is closed when Run returns.
	stopped chan struct{}

	mu sync.Mutex
	// running holds the informers of each started resource, by resource.
	running map[string]*runningKind
	// crdChecked is true once the CRD check succeeded at least once.
	crdChecked bool
	// crdState remembers the last known installed state, by resource.
	crdState map[string]bool
	// agentLogged and agentFound remember what was last logged about the
	// PrometheusAgent's presence.
	agentLogged, agentFound bool
}

// New validates opts and builds a Watcher that talks to opts.RESTConfig.
func New(opts Options) (*Watcher, error) {
	if opts.RESTConfig == nil {
		return nil, errors.New("discovery: RESTConfig is required")
	}
	cfg := rest.CopyConfig(opts.RESTConfig)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "promshard"
	}
	gate := &reachGate{interval: DefaultReadyProbeInterval, timeout: opts.UnreachableTimeout, logger: opts.Logger}
	if gate.logger == nil {
		gate.logger = promslog.NewNopLogger()
	}
	cfg.Wrap(gate.wrap)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery: dynamic client: %w", err)
	}
	// Core objects (Secrets can be large and many) are cheaper to decode as
	// protobuf; custom resources only speak JSON, hence the second config.
	protoCfg := rest.CopyConfig(cfg)
	protoCfg.ContentType = "application/vnd.kubernetes.protobuf"
	protoCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	kube, err := kubernetes.NewForConfig(protoCfg)
	if err != nil {
		return nil, fmt.Errorf("discovery: kubernetes client: %w", err)
	}
	w, err := newWatcher(opts, clients{kube: kube, dyn: dyn, disc: kube.Discovery()})
	if err != nil {
		return nil, err
	}
	gate.up, gate.stop = w.metrics.apiserverUp, w.stopped
	gate.setUp(1)
	w.gate = gate
	return w, nil
}

// newWatcher validates opts and builds a Watcher on the given clients.
func newWatcher(opts Options, c clients) (*Watcher, error) {
	if err := validateOptions(&opts); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = promslog.NewNopLogger()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("discovery: metrics: %w", err)
	}
	w := &Watcher{
		opts:     opts,
		logger:   logger,
		metrics:  m,
		clients:  c,
		trigger:  make(chan struct{}, 1),
		out:      make(chan *config.Snapshot, 1),
		running:  map[string]*runningKind{},
		crdState: map[string]bool{},
		refs:     refFilter{compute: opts.References},
		stopped:  make(chan struct{}),
	}
	if opts.Agent != "" {
		w.agentNS, w.agentName, _ = strings.Cut(opts.Agent, "/")
	}
	w.monitorNS, w.resourceNS = watchedNamespaces(opts.Namespaces, w.agentNS)
	w.kinds = w.buildKinds()
	for _, k := range w.kinds {
		if k.crd {
			w.metrics.crdInstalled.WithLabelValues(k.resource).Set(0)
		}
	}
	return w, nil
}

// Reachability reports whether the Watcher's clients reach the API server,
// and since when and with what error they do not.
func (w *Watcher) Reachability() Reachability {
	if w.gate == nil {
		return Reachability{Reachable: true, Timeout: DefaultUnreachableTimeout}
	}
	return w.gate.reachability()
}

func validateOptions(opts *Options) error {
	if opts.Agent != "" {
		ns, _, err := splitAgent(opts.Agent)
		if err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("discovery: Agent namespace %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	for _, ns := range opts.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("discovery: namespace %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	switch {
	case opts.Debounce < 0:
		return fmt.Errorf("discovery: Debounce %s is negative", opts.Debounce)
	case opts.ResyncPeriod < 0:
		return fmt.Errorf("discovery: ResyncPeriod %s is negative", opts.ResyncPeriod)
	case opts.CRDCheckInterval < 0:
		return fmt.Errorf("discovery: CRDCheckInterval %s is negative", opts.CRDCheckInterval)
	case opts.UnreachableTimeout < 0:
		return fmt.Errorf("discovery: UnreachableTimeout %s is negative", opts.UnreachableTimeout)
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.CRDCheckInterval == 0 {
		opts.CRDCheckInterval = DefaultCRDCheckInterval
	}
	return nil
}

// watchedNamespaces returns the namespaces monitors and Namespace objects are
// watched in, and those Secrets and ConfigMaps are watched in (the same plus
// the agent's namespace). {""} means all namespaces.
func watchedNamespaces(namespaces []string, agentNS string) (monitors, resources []string) {
	if len(namespaces) == 0 {
		return []string{metav1.NamespaceAll}, []string{metav1.NamespaceAll}
	}
	seen := map[string]bool{}
	for _, ns := range namespaces {
		if !seen[ns] {
			seen[ns] = true
			monitors = append(monitors, ns)
		}
	}
	resources = append(resources, monitors...)
	if agentNS != "" && !seen[agentNS] {
		resources = append(resources, agentNS)
	}
	return monitors, resources
}

// Snapshots returns the channel new snapshots are published on. It holds at
// most one snapshot: a newer one replaces an unread older one, so a slow
// consumer always reads the newest. The channel is never closed.
//
// The objects in a snapshot are shared with the informer caches and must be
// treated as read-only (client-go's rule for cached objects); client-go
// replaces, never modifies, a cached object on update, so a snapshot never
// changes after it was published.
func (w *Watcher) Snapshots() <-chan *config.Snapshot {
	return w.out
}

// Synced reports whether the first snapshot was published. It is built only
// after the installed CRDs were discovered and the informers of every
// installed resource had synced. Once true it stays true: a CRD installed
// later joins the snapshots when its informers have synced.
func (w *Watcher) Synced() bool {
	return w.synced.Load()
}

// Run starts the informers, the CRD check and the rebuild worker, and
// returns nil once ctx is done and every goroutine it started has stopped.
// It can be called once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("discovery: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		close(w.stopped)
	}()

	w.mu.Lock()
	for _, k := range w.kinds {
		if !k.crd {
			w.startKindLocked(ctx, &wg, k)
		}
	}
	w.mu.Unlock()
	wg.Go(func() { w.checkCRDsLoop(ctx, &wg) })

	w.worker(ctx)
	return nil
}

// signal asks the worker for a rebuild without ever blocking.
func (w *Watcher) signal() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// worker waits for signals, debounces them and publishes a rebuilt snapshot
// once everything it depends on has synced. It returns when ctx is done.
func (w *Watcher) worker(ctx context.Context) {
	var last time.Time // when the last rebuild started
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.trigger:
		}
		// A change after a quiet period is rebuilt at once. One within
		// Debounce of the last rebuild waits for the rest of that window,
		// and later signals meanwhile land in the cap-1 trigger and are
		// served by the same rebuild: a burst or constant churn costs at
		// most one rebuild per Debounce, and the latency stays bounded (a
		// window that restarted on every signal could starve).
		if wait := time.Until(last.Add(w.opts.Debounce)); wait > 0 && !sleep(ctx, wait) {
			return
		}
		// A signal of the window is served by this rebuild: handlers run
		// after the informer cache was updated.
		select {
		case <-w.trigger:
		default:
		}
		w.refs.rebuilding()
		start := time.Now()
		last = start
		snap, ok := w.rebuild()
		if !ok {
			continue
		}
		w.logger.Debug("snapshot rebuilt", "rebuild", time.Since(start).String())
		// Synced before the snapshot is visible: a consumer that got it
		// must see Synced() true.
		w.synced.Store(true)
		w.publish(snap)
		if w.refs.rebuilt(snap) {
			w.signal()
		}
	}
}

// sleep waits for d and reports false if ctx was done first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// publish makes snap the pending snapshot, replacing an unread older one.
// The worker is the only sender, so the loop ends after at most two rounds.
func (w *Watcher) publish(snap *config.Snapshot) {
	for {
		select {
		case w.out <- snap:
			return
		default:
		}
		select {
		case <-w.out:
		default:
		}
	}
}

// eventHandler signals the worker for every change of a resource that can
// change the translation: Secrets and ConfigMaps only when referenced (see
// Options.References).
func (w *Watcher) eventHandler(resource string) cache.ResourceEventHandler {
	events := w.metrics.events.WithLabelValues(resource)
	var unreferenced prometheus.Counter // only Secrets and ConfigMaps are filtered
	if resource == resSecrets || resource == resConfigMaps {
		unreferenced = w.metrics.unreferenced.WithLabelValues(resource)
	}
	handle := func(obj any) {
		if unreferenced != nil {
			if ns, name, ok := informerObjectName(obj); ok && !w.refs.matters(resource, ns, name) {
				unreferenced.Inc()
				return
			}
		}
		events.Inc()
		w.signal()
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: handle,
		UpdateFunc: func(oldObj, newObj any) {
			if changed(oldObj, newObj) {
				handle(newObj)
			}
		},
		DeleteFunc: handle,
	}
}
