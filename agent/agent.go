// Package agent runs Prometheus' own discovery, scrape, agent WAL and remote
// write components inside the promshard process and applies typed
// configurations to them in place, in Prometheus' reload order.
//
// It owns the managers, the storage and the HTTP surface, the pipeline
// health /-/healthy answers (health.go), and GCHeadroom,
// which starts garbage collections early enough that an apply does not
// stall in GC assists (gcheadroom.go). It must not import
// promshard's discovery or sharding packages: the ownership filter arrives as
// the small TargetFilter interface defined here, and configurations arrive as
// typed *promconfig.Config values.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/agent"

	// Register the Kubernetes service discovery, which every monitor uses.
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
)

// TargetFilter decides which discovered targets this process scrapes. It sits
// between discovery.Manager.SyncCh() and scrape.Manager.Run(). The sharding
// package implements it; nil means this process owns every target.
type TargetFilter interface {
	// SetScrapeConfigs gives the filter every job's configuration, so it
	// can compute final targets with the jobs' relabeling; it is called
	// at the first apply (and the first after the filter was installed).
	SetScrapeConfigs(cfgs []*promconfig.ScrapeConfig)
	// ChangeScrapeConfigs is called after every later apply that changed
	// jobs, with only those: a job mapped to nil was removed, every job
	// not in the map keeps its configuration. The map is not kept.
	ChangeScrapeConfigs(changes map[string]*promconfig.ScrapeConfig)
	// RunChanges forwards owned targets from in to out until ctx is done.
	// Both carry changes: a map names only the jobs whose groups changed
	// since the previous map (an unchanged job keeps its slice), with a
	// nil slice for a job gone; the first map names every job. The maps
	// belong to their receiver; slices and groups must not be modified.
	RunChanges(ctx context.Context, in <-chan map[string][]*targetgroup.Group, out chan<- map[string][]*targetgroup.Group) error
}

// Defaults of the throttles in Options: at most one discovery update per
// second and four target reloads per second, however busy discovery is.
const (
	DefaultDiscoveryUpdateInterval = time.Second
	DefaultScrapeReloadInterval    = 250 * time.Millisecond
)

// Options configure an Agent. Zero values select the documented defaults.
type Options struct {
	// Logger receives the logs of the agent and of the Prometheus components
	// it runs. Nil discards them.
	Logger *slog.Logger
	// Registerer registers the agent's and Prometheus' metrics. Nil means no
	// metrics are registered.
	Registerer prometheus.Registerer
	// StoragePath is the directory of the agent WAL. Required.
	StoragePath string
	// WrapScrapeStorage, when set, wraps the storage the scrape manager
	// appends to (e.g. sharding.NewSeriesCounter, measuring the series per
	// target); the scrape manager then puts each target into its
	// appenders' context (scrape.Options.PassMetadataInContext). Nil: the
	// scrape manager appends to the WAL directly.
	WrapScrapeStorage func(storage.AppendableV2) storage.AppendableV2
	// RemoteFlushDeadline bounds how long shutdown waits for queued samples
	// to be sent. Default 1m, like Prometheus.
	RemoteFlushDeadline time.Duration
	// DiscoveryUpdateInterval is the minimum time between two updates the
	// discovery manager sends. Each carries the groups of every shared
	// discovery set; the fan-out compares each set's groups with the last
	// ones (one lookup per group) and passes on only the jobs that changed,
	// and the filter and the syncer work on those jobs only. Prometheus uses 5s;
	// default DefaultDiscoveryUpdateInterval (1s): a pod change reaches
	// scraping within about a second. Monitor changes do not wait for it:
	// a new or edited job gets at once the groups its shared discovery
	// already delivered (only a discovery configuration never seen before
	// waits for the discovery manager's first update, ~100ms when quiet).
	DiscoveryUpdateInterval time.Duration
	// ScrapeReloadInterval is the minimum time between two target reloads of
	// the scrape manager; a reload syncs only the pools whose targets
	// changed (scrapesync.go) and starts the pools of new jobs. Prometheus
	// uses 5s; default DefaultScrapeReloadInterval (250ms). With the
	// watcher's debounce (a lone change is rebuilt at once, changes within
	// 100ms of the last rebuild wait for the rest of it) a new monitor's
	// targets are scraped within about 0.6s plus the first scrape's offset.
	ScrapeReloadInterval time.Duration
	// WAL are the agent WAL options. Nil means tsdb/agent.DefaultOptions().
	WAL *agent.Options
	// KubernetesSDClusterWide lets jobs whose Kubernetes SD configurations
	// differ only in their namespace lists share one cluster-wide discovery
	// per configuration, each job keeping the target groups of its own
	// namespaces (see sdshare.go): one watch per resource kind instead of
	// one per namespace and kind. It needs list/watch rights on the
	// discovered resources in all namespaces, and caches them for all
	// namespaces. False: one discovery per distinct configuration, as
	// Prometheus runs them.
	KubernetesSDClusterWide bool
	// TrimDiscoveredLabels passes on the groups of Kubernetes SD holding
	// only the __meta_* labels that a job reading them relabels with (and
	// those KeepDiscoveredLabels names); see sdtrim.go. Every label not
	// starting with __meta_ is kept. Relabeling results are unchanged; the
	// discovered labels the status page shows are those relabeling saw.
	// False: discovered labels are held as discovery sends them.
	TrimDiscoveredLabels bool
	// KeepDiscoveredLabels are discovered labels kept by
	// TrimDiscoveredLabels although no relabeling reads them (the
	// ownership filter's node and zone labels).
	KeepDiscoveredLabels []string
}

func (o *Options) setDefaults() error {
	if o.StoragePath == "" {
		return errors.New("agent: storage path is required")
	}
	if o.Logger == nil {
		o.Logger = promslog.NewNopLogger()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.RemoteFlushDeadline <= 0 {
		o.RemoteFlushDeadline = time.Minute
	}
	if o.DiscoveryUpdateInterval <= 0 {
		o.DiscoveryUpdateInterval = DefaultDiscoveryUpdateInterval
	}
	if o.ScrapeReloadInterval <= 0 {
		o.ScrapeReloadInterval = DefaultScrapeReloadInterval
	}
	if o.WAL == nil {
		o.WAL = agent.DefaultOptions()
	}
	return nil
}

// Agent is one in-process Prometheus agent: discovery, scrape, WAL and
// remote write.
type Agent struct {
	opts      Options
	logger    *slog.Logger
	remote    *remote.Storage
	db        *agent.DB
	scrape    *scrape.Manager
	discovery *promdiscovery.Manager
	discCtx   context.Context
	discStop  context.CancelFunc
	metrics   *metrics
	// remoteClose closes remote storage once (FlushRemoteWrite or Run).
	remoteClose sync.Once
	// delivery answers DeliveredBefore (delivered.go).
	delivery delivery

	mtx    sync.Mutex
	filter TargetFilter

	// applyMtx serialises applies (the reconciler's and the drain timer's).
	applyMtx sync.Mutex
	// desired is the last applied configuration as asked for (prepared);
	// effective adds the draining jobs. Both are nil before the first
	// apply; empty is the prepared empty configuration rollbacks use then.
	desired   *promconfig.Config
	effective *promconfig.Config
	empty     *promconfig.Config
	// running holds desired's jobs by name; next is the index of the
	// configuration being applied (reused, apply.go). fed is the filter
	// that got every running job (a filter installed later gets them all
	// at the next apply, then only changes).
	running, next jobIndex
	fed           TargetFilter
	// lastChanged is false when the last ApplyConfig equalled the running
	// configuration.
	lastChanged bool
	drain       drainState
	stopped     bool

	// sd names the shared discovery sets (guarded by applyMtx); fanout,
	// syncer and marker are the stages around the filter (fanout.go,
	// scrapesync.go).
	sd     *sdRegistry
	fanout *fanout
	syncer *syncer
	syncs  *syncCounter // the scrape manager's registerer (scrapesync.go)
	marker *promconfig.ScrapeConfig
	// commits wraps the WAL for the scrape manager; health reads it and
	// the syncer (health.go).
	commits *commitTracker
	health  *pipelineHealth
}

// New opens the WAL and builds the managers. Nothing runs until Run.
func New(opts Options) (*Agent, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	a := &Agent{opts: opts, logger: logger, sd: newSDRegistry(opts.KubernetesSDClusterWide), fanout: newFanout()}
	ready := &readyScrapeManager{}
	a.remote = remote.NewStorage(logger.With("component", "remote"), opts.Registerer,
		func() (int64, error) { return 0, nil }, opts.StoragePath, opts.RemoteFlushDeadline, ready, false)
	db, err := agent.Open(logger.With("component", "wal"), opts.Registerer, a.remote, opts.StoragePath, opts.WAL)
	if err != nil {
		_ = a.remote.Close()
		return nil, fmt.Errorf("opening agent WAL in %s: %w", opts.StoragePath, err)
	}
	db.SetWriteNotified(a.remote)
	a.db = db

	a.commits = &commitTracker{AppendableV2: db, commits: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "promshard_wal_scrape_commits_total",
		Help: "Scrapes whose samples were committed to the agent WAL (a failed scrape commits its up and staleness samples too).",
	})}
	syncs := &syncCounter{Registerer: opts.Registerer}
	var scrapeStorage storage.AppendableV2 = a.commits
	if opts.WrapScrapeStorage != nil {
		scrapeStorage = opts.WrapScrapeStorage(scrapeStorage)
	}
	sm, err := scrape.NewManager(&scrape.Options{
		DiscoveryReloadInterval: modelDuration(opts.ScrapeReloadInterval),
		PassMetadataInContext:   opts.WrapScrapeStorage != nil,
	}, logger.With("component", "scrape manager"), nil, nil, scrapeStorage, syncs)
	if err == nil {
		err = syncs.check()
	}
	if err != nil {
		a.closeStorage()
		return nil, fmt.Errorf("creating scrape manager: %w", err)
	}
	ready.Set(sm)
	a.scrape = sm

	if err := promdiscovery.RegisterK8sClientMetricsWithPrometheus(opts.Registerer); err != nil {
		a.closeStorage()
		return nil, fmt.Errorf("registering kubernetes client metrics: %w", err)
	}
	sdMetrics, err := promdiscovery.CreateAndRegisterSDMetrics(opts.Registerer)
	if err != nil {
		a.closeStorage()
		return nil, fmt.Errorf("registering service discovery metrics: %w", err)
	}
	a.discCtx, a.discStop = context.WithCancel(context.Background())
	a.discovery = promdiscovery.NewManager(a.discCtx, logger.With("component", "discovery manager"),
		opts.Registerer, sdMetrics, promdiscovery.Name("scrape"), promdiscovery.Updatert(opts.DiscoveryUpdateInterval))
	if a.discovery == nil {
		a.closeStorage()
		return nil, errors.New("creating discovery manager failed")
	}
	a.metrics, err = newMetrics(opts.Registerer)
	if err != nil {
		a.closeStorage()
		return nil, err
	}
	if opts.TrimDiscoveredLabels {
		a.sd.trim = &trimSettings{keep: opts.KeepDiscoveredLabels, relists: a.metrics.sdRelists}
	}
	if a.marker, err = newMarkerJob(); err != nil {
		a.closeStorage()
		return nil, err
	}
	if a.empty, err = prepare(&promconfig.Config{}, nil, logger); err != nil {
		a.closeStorage()
		return nil, err
	}
	a.syncs = syncs
	a.syncer = newSyncer(logger.With("component", "target sync"), syncs.value, syncs.dropSyncLengths, a.metrics)
	if err := opts.Registerer.Register(a.commits.commits); err != nil {
		a.closeStorage()
		return nil, fmt.Errorf("registering WAL commit metrics: %w", err)
	}
	if a.health, err = newPipelineHealth(logger.With("component", "health"), opts.Registerer, a.syncer, a.commits, opts.ScrapeReloadInterval); err != nil {
		a.closeStorage()
		return nil, err
	}
	return a, nil
}

// SetFilter installs the ownership filter. It must be called before Run.
func (a *Agent) SetFilter(f TargetFilter) {
	a.mtx.Lock()
	defer a.mtx.Unlock()
	a.filter = f
}

// targetFilter returns the installed filter (nil: none).
func (a *Agent) targetFilter() TargetFilter {
	a.mtx.Lock()
	defer a.mtx.Unlock()
	return a.filter
}

// ScrapeManager returns the scrape manager, for the filter's handoff calls
// (DisableEndOfRunStalenessMarkers) and for the targets API.
func (a *Agent) ScrapeManager() *scrape.Manager { return a.scrape }

// Run runs discovery, the filter and scraping until ctx is done, then stops
// scraping and flushes remote write within RemoteFlushDeadline.
func (a *Agent) Run(ctx context.Context) error {
	filter := a.targetFilter()

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.discovery.Run(); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("discovery manager: %w", err)
		}
	}()
	filterCtx, stopFilter := context.WithCancel(context.Background())
	fanned := make(chan map[string][]*targetgroup.Group)
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.fanout.run(filterCtx, a.discovery.SyncCh(), fanned)
	}()
	var tsets <-chan map[string][]*targetgroup.Group = fanned
	if filter != nil {
		out := make(chan map[string][]*targetgroup.Group)
		wg.Add(1)
		go func(in <-chan map[string][]*targetgroup.Group) {
			defer wg.Done()
			if err := filter.RunChanges(filterCtx, in, out); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("target filter: %w", err)
			}
		}(tsets)
		tsets = out
	}
	drained := make(chan map[string][]*targetgroup.Group)
	wg.Add(1)
	go func(in <-chan map[string][]*targetgroup.Group) {
		defer wg.Done()
		a.syncer.run(filterCtx, in, drained)
	}(tsets)
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.health.run(filterCtx, healthCheckInterval)
	}()
	scrapeDone := make(chan struct{})
	go func() {
		defer close(scrapeDone)
		if err := a.scrape.Run(drained); err != nil {
			errc <- fmt.Errorf("scrape manager: %w", err)
		}
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// Stop in Prometheus' order: scraping first, then discovery, then storage
	// so that the last scrapes reach the WAL and remote write.
	a.applyMtx.Lock()
	a.stopped = true
	if a.drain.timer != nil {
		a.drain.timer.Stop()
	}
	a.applyMtx.Unlock()
	a.scrape.Stop()
	<-scrapeDone
	stopFilter()
	a.discStop()
	wg.Wait()
	a.closeStorage()
	return err
}

func (a *Agent) closeStorage() {
	if a.db != nil {
		if err := a.db.Close(); err != nil {
			a.logger.Error("closing agent WAL", "err", err)
		}
	}
	a.closeRemote()
}

// readyScrapeManager hands the scrape manager to remote storage once it
// exists (remote storage needs it for metadata; it is built first).
type readyScrapeManager struct {
	mtx sync.RWMutex
	m   *scrape.Manager
}

func (r *readyScrapeManager) Set(m *scrape.Manager) {
	r.mtx.Lock()
	defer r.mtx.Unlock()
	r.m = m
}

func (r *readyScrapeManager) Get() (*scrape.Manager, error) {
	r.mtx.RLock()
	defer r.mtx.RUnlock()
	if r.m == nil {
		return nil, errors.New("scrape manager not ready")
	}
	return r.m, nil
}

var _ remote.ReadyScrapeManager = (*readyScrapeManager)(nil)
