package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/scrape"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/promshard/promshard/agent"
	"github.com/promshard/promshard/config"
	"github.com/promshard/promshard/discovery"
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

// serve wires the actors and runs them. Order on shutdown: every actor is
// interrupted together; the cluster leaves gracefully (peers take over at
// once), the agent stops scraping and flushes remote write within
// --remote-write.flush-deadline.
func serve(f *runFlags, logger *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), versioncollector.NewCollector("promshard"))

	rc, err := restConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	rc.UserAgent = "promshard"

	a, err := agent.New(agent.Options{
		Logger: logger, Registerer: reg, StoragePath: f.storagePath, RemoteFlushDeadline: f.flushDeadline,
	})
	if err != nil {
		return err
	}
	cluster, filter, err := newSharding(f, a.ScrapeManager(), logger, reg)
	if err != nil {
		return err
	}
	a.SetFilter(filter)

	opts := f.configOptions()
	if f.cluster.strategy == string(sharding.StrategyNode) {
		opts.NodeName = f.cluster.localNode
	}
	proxy, cleanup, err := sdProxy(f, rc, logger, &opts)
	if err != nil {
		return err
	}
	defer cleanup()
	watcher, err := discovery.New(discovery.Options{
		RESTConfig: rc, Agent: f.prometheusAgent, Namespaces: f.namespaces, Debounce: f.debounce,
		Logger: logger.With("component", "kubernetes"), Registerer: reg,
		References: func(s *config.Snapshot) *config.References { return config.ReferencedObjects(s, opts) },
	})
	if err != nil {
		return err
	}
	generate := func(s *config.Snapshot) (*promconfig.Config, []config.Result, error) {
		return config.Generate(s, opts)
	}
	rec, err := agent.NewReconciler(watcher.Snapshots(), generate, a, logger.With("component", "reconciler"), reg)
	if err != nil {
		return err
	}
	web, err := agent.NewWeb(agent.WebOptions{
		ListenAddress: f.listenAddress, Gatherer: reg, Logger: logger,
		Ready: func() bool { return watcher.Synced() && rec.Status().Version > 0 },
		Handlers: map[string]http.Handler{
			"GET /api/v1/cluster": sharding.NewStatusHandler(cluster.Self(), cluster, filter),
		},
		Cluster:    func() agent.ClusterInfo { return clusterInfo(sharding.Status(cluster.Self(), cluster, filter)) },
		Reconciler: rec,
	}, a)
	if err != nil {
		return err
	}
	logger.Info("promshard starting", "web", web.Addr(), "node", f.cluster.nodeName, "clustered", f.cluster.enabled())

	var g run.Group
	addActor(&g, "signals", func(ctx context.Context) error {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		defer signal.Stop(sig)
		select {
		case s := <-sig:
			logger.Info("received signal, shutting down", "signal", s.String())
		case <-ctx.Done():
		}
		return nil
	})
	addActor(&g, "cluster", cluster.Run)
	addActor(&g, "kubernetes", watcher.Run)
	if proxy != nil {
		addActor(&g, "sd-proxy", proxy.Run)
	}
	addActor(&g, "reconciler", rec.Run)
	addActor(&g, "agent", a.Run)
	addActor(&g, "web", web.Run)
	return g.Run()
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

func newSharding(f *runFlags, sm *scrape.Manager, logger *slog.Logger, reg prometheus.Registerer) (*sharding.Cluster, *sharding.Filter, error) {
	cf := f.cluster
	cluster, err := sharding.NewCluster(sharding.ClusterConfig{
		NodeName: cf.nodeName, ListenAddress: cf.listenAddress, AdvertiseAddress: cf.advertiseAddress,
		Join: cf.join, SecretKeyFile: cf.secretKeyFile, ClusterName: cf.name, KubernetesNode: cf.localNode,
		WaitForSize: cf.waitForSize, WaitTimeout: cf.waitTimeout,
	}, logger.With("component", "cluster"), reg)
	if err != nil {
		return nil, nil, err
	}
	filter, err := sharding.NewFilter(sharding.FilterOptions{
		Self: cluster.Self(), Members: cluster, ReplicationFactor: cf.replicationFactor,
		ReplicaLabel: cf.replicaLabel, Strategy: sharding.Strategy(cf.strategy), NodeName: cf.localNode,
		Staleness: sm, Logger: logger.With("component", "sharding"), Registerer: reg,
	})
	if err != nil {
		cluster.Close()
		return nil, nil, err
	}
	return cluster, filter, nil
}

// clusterInfo adapts sharding's status to the agent's status page.
func clusterInfo(st sharding.ClusterStatus) agent.ClusterInfo {
	ci := agent.ClusterInfo{Self: st.Self, Ready: st.Ready, TotalTargets: st.TotalTargets}
	for _, m := range st.Members {
		ci.Members = append(ci.Members, agent.MemberInfo{Name: m.Name, Address: m.Address, State: string(m.State), OwnedTargets: m.OwnedTargets})
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
	proxy, err := discovery.NewAPIProxy(rc, logger.With("component", "sd-proxy"))
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
