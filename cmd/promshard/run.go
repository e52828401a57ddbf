package main

import (
	"context"
	"fmt"
	"github.com/prometheus/prometheus/storage"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/scrape"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/promshard/promshard/agent"
	"github.com/promshard/promshard/config"
	"github.com/promshard/promshard/discovery"
	"github.com/promshard/promshard/ruler"
	"github.com/promshard/promshard/sharding"
)

// runAgent runs `promshard run` until SIGTERM/SIGINT and returns the exit code.
func runAgent(f *runFlags, stderr io.Writer) int {
	if err := f.validate(); err != nil {
		fmt.Fprintf(stderr, "promshard: error: %v\n", err)
		return 2
	}
	logger := promslog.New(&promslog.Config{Level: f.logLevel, Format: f.logFormat, Writer: stderr})
	debug.SetGCPercent(f.gogc)
	if f.autoMemLimit {
		// The library logs the limit it sets.
		if _, err := setMemoryLimit(f.memLimitRatio, containerMemory, logger.With("component", "automemlimit")); err != nil {
			logger.Warn("Failed to set GOMEMLIMIT automatically", "err", err)
		}
	}
	// client-go logs through klog (e.g. failing list/watch calls): route it
	// into the same structured logger.
	klog.SetSlogLogger(logger.With("component", "client-go"))
	if err := serve(f, logger); err != nil {
		logger.Error("promshard stopped with an error", "err", err)
		return 1
	}
	logger.Info("promshard stopped")
	return 0
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	}
	return nil, fmt.Errorf("no --kubeconfig, no $KUBECONFIG and not running in a cluster")
}

// serve wires the actors and runs them. Order on SIGTERM: the member stops
// scraping, flushes remote write within --remote-write.flush-deadline,
// leaves the cluster (peers take over), then every actor is interrupted.
func serve(f *runFlags, logger *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), versioncollector.NewCollector("promshard"))

	rc, err := restConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	rc.UserAgent = "promshard"
	// client-go's rate limiter applies per client built from rc.
	rc.QPS, rc.Burst = float32(f.kubeQPS), f.kubeBurst

	// Balancing series measures what each scrape delivers on its way to
	// the WAL.
	var series *sharding.SeriesCounter
	var wrapScrape func(storage.AppendableV2) storage.AppendableV2
	if f.cluster.balance == string(sharding.BalanceSeries) {
		wrapScrape = func(next storage.AppendableV2) storage.AppendableV2 {
			series = sharding.NewSeriesCounter(next)
			return series
		}
	}
	a, err := agent.New(agent.Options{
		Logger: logger, Registerer: reg, StoragePath: f.storagePath, RemoteFlushDeadline: f.flushDeadline,
		KubernetesSDClusterWide: f.sdClusterWide && len(f.namespaces) == 0, WrapScrapeStorage: wrapScrape,
		TrimDiscoveredLabels: f.trimLabels, KeepDiscoveredLabels: sharding.DiscoveredLabelsRead(),
	})
	if err != nil {
		return err
	}
	peerURL, err := webURL(f.listenAddress, f.webConfigFile)
	if err != nil {
		return fmt.Errorf("--web.listen-address: %w", err)
	}
	cluster, filter, err := newSharding(f, peerURL, a, series, logger, reg)
	if err != nil {
		return err
	}
	a.SetFilter(filter)

	opts := f.configOptions()
	if f.cluster.strategy == string(sharding.StrategyNode) {
		opts.NodeName = f.cluster.localNode
	}
	rep := newReplication(&f.cluster, cluster.Self())
	proxy, cleanup, err := sdProxy(f, rc, logger, &opts)
	if err != nil {
		return err
	}
	defer cleanup()
	// The references are computed after every rebuild; the cache walks
	// only the specs of monitors that changed.
	refCache := &config.ReferenceCache{}
	watcher, err := discovery.New(discovery.Options{
		RESTConfig: rc, Agent: f.prometheusAgent, Namespaces: f.namespaces, Debounce: f.debounce, Rules: f.rules.enabled(),
		UnreachableTimeout: f.unreachableTimeout,
		Logger:             logger.With("component", "kubernetes"), Registerer: reg,
		References: func(s *config.Snapshot) *config.References {
			return config.ReferencedObjectsWithCache(s, opts, refCache)
		},
	})
	if err != nil {
		return err
	}
	generate, err := newGenerate(opts, rep, reg)
	if err != nil {
		return err
	}
	rec, err := agent.NewReconciler(watcher.Snapshots(), generate, a, logger.With("component", "reconciler"), reg)
	if err != nil {
		return err
	}
	// With --prometheus-agent the flags' settings are never used.
	rec.RequireAgent(f.prometheusAgent)
	// The member participates (owns targets, answers /-/ready) once all of
	// these hold; until then its peers keep its share. Before the
	// PrometheusAgent was first seen nothing is applied, so it waits too.
	participationReady := allOf(
		watcher.Synced,
		func() bool { return rec.Status().Version > 0 }, // first configuration applied
		filter.Primed, // discovery delivered its first result for it
	)
	client, err := peerClient(f.peerConfigFile)
	if err != nil {
		return err
	}
	targets := clusterTargets(a, cluster, client)
	// Statuses and the status page's per-object health come from the
	// members' per-object counts; full target lists only on demand.
	health, err := agent.NewClusterHealth(a, targets, reg)
	if err != nil {
		return err
	}
	var status *discovery.StatusWriter
	if f.prometheusAgent != "" {
		if status, err = newStatusWriter(rc, f.prometheusAgent, f.statusInterval, cluster, filter, health, logger.With("component", "status"), reg); err != nil {
			return err
		}
	}
	var rules *ruler.Syncer
	if f.rules.enabled() {
		var report func(bool, []config.Result)
		if status != nil {
			report = status.UpdateRules
		}
		if rules, err = newRuleSyncer(&f.rules, cluster, report, logger.With("component", "rules"), reg); err != nil {
			return err
		}
	}
	rec.OnApplied(func(snap *config.Snapshot, results []config.Result) {
		if status != nil {
			status.Update(snap, results)
		}
		if rules != nil {
			rules.Update(snap)
		}
	})
	var rulesPage func() agent.RulesInfo
	if rules != nil {
		rulesPage = rulesInfo(rules)
	}
	web, err := agent.NewWeb(agent.WebOptions{
		ListenAddress: f.listenAddress, ConfigFile: f.webConfigFile, Gatherer: reg, Logger: logger,
		Ready:          cluster.Participant,
		NotReadyReason: rec.NotReadyReason,
		Handlers: map[string]http.Handler{
			"GET /api/v1/cluster": sharding.NewStatusHandler(cluster.Self(), cluster, filter),
		},
		Cluster:    func() agent.ClusterInfo { return clusterInfo(sharding.Status(cluster.Self(), cluster, filter)) },
		Reconciler: rec,
		Targets:    targets,
		Health:     health,
		Rules:      rulesPage,
		APIServer:  apiServerInfo(watcher, proxy),
	}, a)
	if err != nil {
		return err
	}
	logger.Info("promshard starting", "web", web.Addr(), "node", f.cluster.nodeName, "clustered", f.cluster.enabled())

	var g run.Group
	addActor(&g, "signals", func(ctx context.Context) error {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		defer signal.Stop(sig)
		for {
			select {
			case s := <-sig:
				if s == syscall.SIGHUP {
					// Like Prometheus' reload signal: re-read files now.
					logger.Info("received SIGHUP, reloading the gossip keyring")
					cluster.ReloadKeyring()
					continue
				}
				logger.Info("received signal, shutting down", "signal", s.String())
				gracefulLeave(ctx, cluster, filter, a, logger)
				return nil
			case <-ctx.Done():
				return nil
			}
		}
	})
	addActor(&g, "cluster", cluster.Run)
	addActor(&g, "participation", func(ctx context.Context) error {
		return cluster.ParticipateWhen(ctx, participationReady, 100*time.Millisecond)
	})
	addActor(&g, "kubernetes", watcher.Run)
	if proxy != nil {
		addActor(&g, "sd-proxy", proxy.Run)
	}
	addActor(&g, "reconciler", rec.Run)
	addActor(&g, "agent", a.Run)
	addActor(&g, "web", web.Run)
	if status != nil {
		addActor(&g, "status", status.Run)
	}
	if rules != nil {
		addActor(&g, "rules", rules.Run)
	}
	if f.gcHeadroom > 0 {
		gc, err := agent.NewGCHeadroom(f.gcHeadroom, 25*time.Millisecond, logger.With("component", "gc"), reg)
		if err != nil {
			return err
		}
		addActor(&g, "gc-headroom", gc.Run)
	}
	return g.Run()
}

// allOf returns a condition that holds when every one of conds holds.
func allOf(conds ...func() bool) func() bool {
	return func() bool {
		for _, c := range conds {
			if !c() {
				return false
			}
		}
		return true
	}
}

// gracefulLeave hands every target off (the scrape manager stops them
// without staleness markers at its next reload), waits until no scrape loop
// runs any more (at most 2 s), delivers what remote write still holds
// (Agent.FlushRemoteWrite, within --remote-write.flush-deadline), then
// announces the leave: peers take over within a scrape interval. Stopping
// and delivering before leaving means no series is written by two members
// at once and the old owner's last samples reach the receiver before the
// new owner's first, which a remote-write 1.0 receiver (Prometheus) would
// otherwise answer by rejecting whole batches as out of order.
func gracefulLeave(ctx context.Context, cluster *sharding.Cluster, filter *sharding.Filter, a *agent.Agent, logger *slog.Logger) {
	sm := a.ScrapeManager()
	filter.Release()
	deadline := time.Now().Add(2 * time.Second)
	for activeTargets(sm) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	flushed := a.FlushRemoteWrite(ctx, 2*time.Second)
	logger.Info("Stopped scraping and flushed remote write, leaving the cluster", "still_active", activeTargets(sm), "flush", flushed)
	cluster.Leave()
}

func activeTargets(sm *scrape.Manager) int {
	n := 0
	for _, ts := range sm.TargetsActive() {
		n += len(ts)
	}
	return n
}

// addActor adds a context-shaped actor to g.
func addActor(g *run.Group, name string, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error {
		if err := fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}, func(error) { cancel() })
}

func newSharding(f *runFlags, webURL string, a *agent.Agent, series *sharding.SeriesCounter, logger *slog.Logger, reg prometheus.Registerer) (*sharding.Cluster, *sharding.Filter, error) {
	cf := f.cluster
	cluster, err := sharding.NewCluster(sharding.ClusterConfig{
		NodeName: cf.nodeName, ListenAddress: cf.listenAddress, AdvertiseAddress: cf.advertiseAddress,
		Join: cf.join, SecretKeyFile: cf.secretKeyFile, ClusterName: cf.name, KubernetesNode: cf.localNode,
		WaitForSize: cf.waitForSize, WaitTimeout: cf.waitTimeout, Zone: cf.zone, WebURL: webURL,
		BalanceSeries: cf.balance == string(sharding.BalanceSeries),
	}, logger.With("component", "cluster"), reg)
	if err != nil {
		return nil, nil, err
	}
	opts := sharding.FilterOptions{
		Self: cluster.Self(), Members: cluster, ReplicationFactor: cf.replicationFactor,
		ReplicaLabel: cf.replicaLabel, ReplicationMode: sharding.ReplicationMode(cf.replicationMode), Strategy: sharding.Strategy(cf.strategy), NodeName: cf.localNode, Zone: cf.zone,
		Staleness: a.ScrapeManager(), Logger: logger.With("component", "sharding"), Registerer: reg,
		HandoffTimeout: cf.handoffTimeout, Delivered: a.DeliveredBefore, Announce: cluster.AnnounceReleased,
		Balance: sharding.Balance(cf.balance), Weights: cluster.Weights(), MaxSeriesPerMember: cf.maxSeriesPerMember,
	}
	if series != nil {
		opts.Series = series.Series
	}
	filter, err := sharding.NewFilter(opts)
	if err != nil {
		cluster.Close()
		return nil, nil, err
	}
	return cluster, filter, nil
}

// clusterInfo adapts sharding's status to the agent's status page.
func clusterInfo(st sharding.ClusterStatus) agent.ClusterInfo {
	ci := agent.ClusterInfo{Self: st.Self, Ready: st.Ready, TotalTargets: st.TotalTargets, CrossZone: st.CrossZone, Unowned: st.Unowned,
		TotalSeries: st.TotalSeries, MaxSeriesPerMember: st.MaxSeriesPerMember, MembersNeeded: st.MembersNeeded, OverLimit: st.OverLimit}
	for _, m := range st.Members {
		ci.Members = append(ci.Members, agent.MemberInfo{Name: m.Name, Address: m.Address, State: string(m.State), Zone: m.Zone, OwnedTargets: m.OwnedTargets, OwnedSeries: m.OwnedSeries})
	}
	return ci
}

// sdProxy starts, with --kubernetes.sd-proxy, the API proxy Prometheus'
// Kubernetes SD reaches the API server through (its watches then resume
// at once after an outage) and points opts.KubeconfigFile at it. cleanup
// removes the kubeconfig.
func sdProxy(f *runFlags, rc *rest.Config, logger *slog.Logger, opts *config.Options) (*discovery.APIProxy, func(), error) {
	if !f.sdProxy {
		return nil, func() {}, nil
	}
	proxy, err := discovery.NewAPIProxy(rc, f.unreachableTimeout, logger.With("component", "sd-proxy"))
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "promshard-sd-")
	if err != nil {
		return nil, nil, fmt.Errorf("directory for the service discovery kubeconfig: %w", err)
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	opts.KubeconfigFile = filepath.Join(dir, "kubeconfig")
	if err := proxy.WriteKubeconfig(opts.KubeconfigFile); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("write the service discovery kubeconfig: %w", err)
	}
	return proxy, cleanup, nil
}

// apiServerInfo adapts the reachability of the watcher's clients and of the
// service discovery proxy (nil: off) to the agent's web: the longer outage
// of the two.
func apiServerInfo(w *discovery.Watcher, proxy *discovery.APIProxy) func() agent.APIServerInfo {
	return func() agent.APIServerInfo {
		r := w.Reachability()
		if proxy != nil {
			if p := proxy.Reachability(); !p.Reachable && (r.Reachable || p.Since.Before(r.Since)) {
				r = p
			}
		}
		return agent.APIServerInfo{Unreachable: !r.Reachable, Since: r.Since, LastError: r.LastError, Timeout: r.Timeout}
	}
}
