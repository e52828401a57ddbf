package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"
)

// WebOptions configure the HTTP server.
type WebOptions struct {
	// ListenAddress is host:port to listen on, e.g. ":9090".
	ListenAddress string
	// ConfigFile is an exporter-toolkit web configuration file (TLS, client
	// certificates, basic auth, as Prometheus' --web.config.file) protecting
	// every endpoint. It is validated by NewWeb and re-read by the server on
	// each new connection, so certificates and users can change without a
	// restart. Empty: plain HTTP without authentication.
	ConfigFile string
	// Gatherer serves /metrics. Nil means prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Ready reports readiness for /-/ready: in promshard, the member
	// participates in the cluster (informers synced, first configuration
	// applied, first discovery result filtered). Nil means always ready.
	Ready func() bool
	// NotReadyReason, when set, explains a failing /-/ready in its body
	// (e.g. Reconciler.NotReadyReason); empty falls back to the generic
	// text. It does not decide readiness: Ready does.
	NotReadyReason func() string
	// APIServer reports the Kubernetes API server's reachability: once it
	// has been unreachable longer than its Timeout, /-/ready says so (a
	// failing one gives that as its reason, a passing one adds it) and the
	// status page shows it. Nil: not reported.
	APIServer func() APIServerInfo
	// Handlers are extra routes, e.g. "/api/v1/cluster" from sharding.
	Handlers map[string]http.Handler
	// Cluster feeds the status page's cluster section. Nil shows none.
	Cluster func() ClusterInfo
	// Rules feeds the status page's rules section. Nil (rule sync off)
	// shows none.
	Rules func() RulesInfo
	// Targets answers /api/v1/targets?scope=cluster and the status page's
	// cluster-wide target list. Nil: both show this member's targets only.
	Targets *ClusterTargets
	// Health answers /api/v1/status/object-health?scope=cluster and the
	// status page's per-object target health, from every member's compact
	// counts. Nil: both show this member's counts only.
	Health *ClusterHealth
	// Reconciler feeds the status page's configuration and rejected
	// objects sections. Nil shows none.
	Reconciler *Reconciler
	Logger     *slog.Logger
}

// Web is the HTTP server of one promshard process.
type Web struct {
	opts  WebOptions
	agent *Agent
	mux   *http.ServeMux
	ln    net.Listener
}

// NewWeb binds the listen address at once so that a bad or busy address is a
// startup error, not a runtime one.
func NewWeb(opts WebOptions, a *Agent) (*Web, error) {
	if opts.Logger == nil {
		opts.Logger = promslog.NewNopLogger()
	}
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.DefaultGatherer
	}
	if err := web.Validate(opts.ConfigFile); err != nil {
		return nil, fmt.Errorf("web config file %s: %w", opts.ConfigFile, err)
	}
	ln, err := net.Listen("tcp", opts.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", opts.ListenAddress, err)
	}
	w := &Web{opts: opts, agent: a, mux: http.NewServeMux(), ln: ln}
	w.routes()
	return w, nil
}

// Addr is the bound address (useful with port 0).
func (w *Web) Addr() string { return w.ln.Addr().String() }

// Handle adds a route; it must be called before Run.
func (w *Web) Handle(pattern string, h http.Handler) { w.mux.Handle(pattern, h) }

func (w *Web) routes() {
	w.mux.Handle("GET /metrics", promhttp.HandlerFor(w.opts.Gatherer, promhttp.HandlerOpts{}))
	w.mux.HandleFunc("GET /-/healthy", func(rw http.ResponseWriter, _ *http.Request) {
		if w.agent != nil {
			if ok, reason := w.agent.Healthy(); !ok {
				http.Error(rw, "promshard is not healthy: "+reason, http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(rw, "promshard is Healthy.")
	})
	w.mux.HandleFunc("GET /-/ready", w.ready)
	w.mux.HandleFunc("GET /api/v1/targets", w.targetsHandler)
	w.mux.HandleFunc("GET /api/v1/status/remote-write", w.remoteWriteHandler)
	w.mux.HandleFunc("GET /api/v1/status/object-health", w.objectHealthHandler)
	// Go's profiles, as Prometheus serves them (behind --web.config.file
	// like every other endpoint).
	w.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	w.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	w.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	w.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	w.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	w.mux.HandleFunc("GET /{$}", w.statusPage)
	for p, h := range w.opts.Handlers {
		w.mux.Handle(p, h)
	}
}

// Run serves until ctx is done, then shuts down gracefully.
func (w *Web) Run(ctx context.Context) error {
	srv := &http.Server{Handler: w.mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		errc <- web.Serve(w.ln, srv, &web.FlagConfig{WebConfigFile: &w.opts.ConfigFile}, w.opts.Logger.With("component", "web"))
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("web server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("web server shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ready answers /-/ready: 503 with a reason until the member participates.
// An API server unreachable beyond its wait limit is the reason given
// first; a participating member stays ready meanwhile (it scrapes with the
// last configuration it saw, and every replica would fail at once) and
// says so in its answer.
func (w *Web) ready(rw http.ResponseWriter, _ *http.Request) {
	var api string
	if w.opts.APIServer != nil {
		now := time.Now()
		if info := w.opts.APIServer(); info.Exceeded(now) {
			api = info.Message(now)
		}
	}
	if w.opts.Ready != nil && !w.opts.Ready() {
		reason := "waiting for informers to sync, the first configuration and the first discovery result"
		if w.opts.NotReadyReason != nil {
			if r := w.opts.NotReadyReason(); r != "" {
				reason = r
			}
		}
		if api != "" {
			reason = api
		}
		http.Error(rw, "promshard is not ready: "+reason, http.StatusServiceUnavailable)
		return
	}
	if api != "" {
		fmt.Fprintln(rw, "promshard is Ready, scraping with the last configuration it saw, but "+api)
		return
	}
	fmt.Fprintln(rw, "promshard is Ready.")
}
