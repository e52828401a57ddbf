package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/promshard/promshard/config"
)

// runFlags are the flags of `promshard run`. Each flag's help text is its
// documentation: unit, default and what an empty value means.
type runFlags struct {
	kubeconfig         string
	kubeQPS            float64
	kubeBurst          int
	listenAddress      string
	webConfigFile      string
	peerConfigFile     string
	statusInterval     time.Duration
	storagePath        string
	prometheusAgent    string
	remoteWriteURLs    []string
	scrapeInterval     model.Duration
	scrapeTimeout      model.Duration
	externalLabels     []string
	monitorSelector    string
	namespaceSelector  string
	sdRole             string
	allowFileAccess    bool
	flushDeadline      time.Duration
	batchSendDeadline  model.Duration
	debounce           time.Duration
	namespaces         []string
	sdClusterWide      bool
	trimLabels         bool
	gogc               int
	gcHeadroom         float64
	autoMemLimit       bool
	memLimitRatio      float64
	sdProxy            bool
	unreachableTimeout time.Duration
	logLevel           *promslog.Level
	logFormat          *promslog.Format

	cluster clusterFlags
	rules   rulesFlags
}

func registerRunFlags(cmd *kingpin.CmdClause) *runFlags {
	f := &runFlags{logLevel: promslog.NewLevel(), logFormat: promslog.NewFormat()}
	cmd.Flag("kubeconfig", "Path to a kubeconfig. Empty: in-cluster configuration, then $KUBECONFIG.").Envar("KUBECONFIG").StringVar(&f.kubeconfig)
	cmd.Flag("kubernetes.qps", "Sustained requests per second to the API server, for each of promshard's clients (informers' lists and watches, status writes and Events, the discovery proxy's client); client-go's own default is 5. At start-up each member applies one status per selected object it owns, at this rate at most.").Default("50").Float64Var(&f.kubeQPS)
	cmd.Flag("kubernetes.burst", "Requests above --kubernetes.qps allowed in a burst, for each client; client-go's own default is 10.").Default("100").IntVar(&f.kubeBurst)
	cmd.Flag("web.listen-address", "Address for /metrics, /-/healthy, /-/ready, /api/v1/targets, /api/v1/cluster, /api/v1/status/object-health, /api/v1/status/remote-write and the status page.").Default(":9090").StringVar(&f.listenAddress)
	cmd.Flag("web.config.file", "exporter-toolkit web configuration file (TLS, client certificates, basic auth; the format of Prometheus' --web.config.file) protecting every HTTP endpoint, probes included. Re-read on each connection. Empty: plain HTTP, no authentication.").StringVar(&f.webConfigFile)
	cmd.Flag("web.peer-config-file", "HTTP client configuration (Prometheus' http_config format: tls_config, basic_auth, authorization) for requests to other members' endpoints (/api/v1/targets?scope=cluster, the status page, the per-object target counts of status reporting, /api/v1/status/object-health). Needed when --web.config.file demands TLS or credentials. Empty: plain HTTP client.").StringVar(&f.peerConfigFile)
	cmd.Flag("status.target-health-interval", "With --prometheus-agent: shortest time between two status writes of one monitor that only change its target counts (acceptance changes are written at once). Lower gives fresher messages and more API writes.").Default("1m").DurationVar(&f.statusInterval)
	cmd.Flag("storage.agent.path", "Directory of the agent WAL; samples survive restarts and receiver outages here.").Default("data-agent/").StringVar(&f.storagePath)
	cmd.Flag("prometheus-agent", "namespace/name of a PrometheusAgent whose settings (selectors, remoteWrite, externalLabels, intervals, limits, scrape classes) apply live. Until it exists nothing is scraped; when deleted, its last applied settings keep running. Empty: flags-only mode.").StringVar(&f.prometheusAgent)
	cmd.Flag("remote-write.url", "Remote-write endpoint in flags-only mode. Repeatable.").StringsVar(&f.remoteWriteURLs)
	cmd.Flag("remote-write.batch-send-deadline", "In flags-only mode, the longest time a sample waits in a remote-write queue before it is sent (Prometheus' batch_send_deadline; a PrometheusAgent sets it per remoteWrite in queueConfig.batchSendDeadline). A target that changes owner is held for about this long (--sharding.handoff-timeout): below the scrape interval, a handoff costs at most one scrape.").Default("5s").SetValue(&f.batchSendDeadline)
	cmd.Flag("remote-write.flush-deadline", "How long shutdown waits to send queued samples.").Default("1m").DurationVar(&f.flushDeadline)
	cmd.Flag("scrape.interval", "Default scrape interval in flags-only mode.").Default("30s").SetValue(&f.scrapeInterval)
	cmd.Flag("scrape.timeout", "Default scrape timeout in flags-only mode; 0 means min(10s, interval).").Default("0s").SetValue(&f.scrapeTimeout)
	cmd.Flag("external-label", "name=value external label in flags-only mode. Repeatable.").StringsVar(&f.externalLabels)
	cmd.Flag("monitor.selector", "Label selector (kubectl syntax) for ServiceMonitors, PodMonitors, Probes and ScrapeConfigs in flags-only mode. Empty selects all.").StringVar(&f.monitorSelector)
	cmd.Flag("namespace.selector", "Label selector for the namespaces monitors are read from in flags-only mode. Empty selects all.").StringVar(&f.namespaceSelector)
	cmd.Flag("service-discovery-role", "Kubernetes SD role for ServiceMonitors in flags-only mode: EndpointSlice or Endpoints.").Default("EndpointSlice").EnumVar(&f.sdRole, "EndpointSlice", "Endpoints")
	cmd.Flag("allow-file-access", "Accept file references (bearerTokenFile, tlsConfig.*File) in monitors, like arbitraryFSAccessThroughSMs. Off by default: monitors could read the pod's files.").BoolVar(&f.allowFileAccess)
	cmd.Flag("kubernetes.namespace", "Namespace to watch monitors (ServiceMonitor, PodMonitor, Probe, ScrapeConfig), Secrets, ConfigMaps and Namespace objects in. Repeatable. Empty (default): all namespaces, which needs cluster-wide list/watch rights; with namespaces given, Roles in those namespaces (plus the PrometheusAgent's, for its Secrets) suffice. Targets are discovered where the monitors say; that needs endpoints/pods/services rights there.").StringsVar(&f.namespaces)
	cmd.Flag("kubernetes.sd-cluster-wide", "Run one cluster-wide Kubernetes service discovery for all jobs whose discovery differs only in its namespaces (prometheus-operator gives every monitor endpoint one restricted to the monitor's namespaces), each job keeping its namespaces' targets: one watch per resource kind instead of one per namespace and kind, and no new discovery for a monitor in a new namespace. Caches those resources (pods, services, endpointslices) of all namespaces and needs list/watch on them cluster-wide. Off with --kubernetes.namespace, or with --no-kubernetes.sd-cluster-wide: one discovery per distinct configuration, as Prometheus runs them.").Default("true").BoolVar(&f.sdClusterWide)
	cmd.Flag("discovery.trim-labels", "Hold the target groups of Kubernetes service discovery with only the __meta_kubernetes_* labels that some job's relabeling reads (source labels, keepequal/dropequal targets, names a labelmap regex matches) or sharding needs (node, zone); every other label is kept. Prometheus drops __meta_* labels after relabeling, so nothing scraped or stored changes, while each discovered target (every replica discovers all of them) costs about 2 KB less at 35 labels. The discovered labels on the status page and in /api/v1/targets are then those relabeling saw: use --no-discovery.trim-labels to see all of them while writing relabel rules. A job that starts reading a label not kept so far makes that discovery list its objects again (promshard_discovery_relists_total).").Default("true").BoolVar(&f.trimLabels)
	cmd.Flag("discovery.debounce", "Shortest time between two configurations generated from Kubernetes changes: a change after a quiet period is generated at once, later changes within this time are coalesced into one at its end, so a burst or constant churn costs at most one translation and apply per period.").Default("100ms").DurationVar(&f.debounce)
	cmd.Flag("kubernetes.sd-proxy", "Let Prometheus' Kubernetes service discovery reach the API server through promshard's loopback TLS proxy, so that its watches resume within ~250ms of the API server being ready after an outage (without it client-go backs off up to ~60s). Costs one extra hop for the discovery's list/watch traffic.").Default("true").BoolVar(&f.sdProxy)
	cmd.Flag("kubernetes.unreachable-timeout", "How long a list, watch or other read of promshard's API clients (and of the service discovery through --kubernetes.sd-proxy) waits for an API server it cannot reach (connection refused or timed out, certificate not trusted) before its error goes to client-go, which logs it and retries with its backoff. An outage shorter than this resumes within ~250ms of the API server being ready; a longer one is logged, and /-/ready and the status page report it with the last error. Must be positive.").Default("30s").DurationVar(&f.unreachableTimeout)
	cmd.Flag("runtime.gogc", "Go garbage collector target percentage (GOGC), like Prometheus' runtime.gogc: lower uses less memory and more CPU. Default: $GOGC if set, else 75, Prometheus' default (Go's own is 100, ~15% more heap). -1 turns the collector off.").Default(defaultGoGC()).IntVar(&f.gogc)
	cmd.Flag("runtime.gc-headroom", "Fraction of the way from the live heap to the GC goal (see --runtime.gogc) that is still free when a collection starts: promshard starts one itself once the heap has grown past the rest. Go alone starts the collection of a steadily allocating process a few MiB before the goal, so that a configuration apply during its marking stalls in GC assists (about a second at 5,000 monitors and 500 MB of heap). Costs more collections (1/(1-x) as many: a third more at 0.25) and lowers the peak heap. Heaps less than 64 MiB from their goal are left to the Go runtime (their marking is short). 0 leaves the timing to the Go runtime.").Default("0.25").Float64Var(&f.gcHeadroom)
	cmd.Flag("auto-gomemlimit", "Set the Go runtime's soft memory limit (GOMEMLIMIT) to --auto-gomemlimit.ratio of the container's memory limit (cgroup; the machine's memory without one), as Prometheus' flag of the same name: the collector works harder near the limit instead of the pod being OOM-killed. An explicit $GOMEMLIMIT wins. --no-auto-gomemlimit leaves it to $GOMEMLIMIT.").Default("true").BoolVar(&f.autoMemLimit)
	cmd.Flag("auto-gomemlimit.ratio", "Share of the container's memory limit used as GOMEMLIMIT, above 0 and at most 1; the rest is left for memory the Go heap does not count.").Default(strconv.FormatFloat(defaultMemLimitRatio, 'g', -1, 64)).Float64Var(&f.memLimitRatio)
	cmd.Flag("log.level", "Only log messages with the given severity or above: debug, info, warn, error.").Default("info").SetValue(f.logLevel)
	cmd.Flag("log.format", "Output format of log messages: logfmt or json.").Default("logfmt").SetValue(f.logFormat)
	registerClusterFlags(cmd, &f.cluster)
	registerRulesFlags(cmd, &f.rules)
	return f
}

// validate checks what kingpin cannot; every error is one clear sentence.
func (f *runFlags) validate() error {
	if f.prometheusAgent != "" {
		if _, _, err := splitNamespacedName(f.prometheusAgent); err != nil {
			return fmt.Errorf("--prometheus-agent: %w", err)
		}
	}
	for _, u := range f.remoteWriteURLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("--remote-write.url %q: want an http:// or https:// URL", config.RedactURLs(u))
		}
	}
	if f.scrapeInterval <= 0 {
		return errors.New("--scrape.interval must be positive")
	}
	if f.scrapeTimeout > f.scrapeInterval {
		return fmt.Errorf("--scrape.timeout %s is longer than --scrape.interval %s", f.scrapeTimeout, f.scrapeInterval)
	}
	if _, err := parseExternalLabels(f.externalLabels); err != nil {
		return err
	}
	if _, err := metav1.ParseToLabelSelector(f.monitorSelector); err != nil {
		return fmt.Errorf("--monitor.selector: %w", err)
	}
	if _, err := metav1.ParseToLabelSelector(f.namespaceSelector); err != nil {
		return fmt.Errorf("--namespace.selector: %w", err)
	}
	if err := web.Validate(f.webConfigFile); err != nil {
		return fmt.Errorf("--web.config.file %s: %w", f.webConfigFile, err)
	}
	if f.statusInterval <= 0 {
		return errors.New("--status.target-health-interval must be positive")
	}
	if f.peerConfigFile != "" {
		if _, _, err := commoncfg.LoadHTTPConfigFile(f.peerConfigFile); err != nil {
			return fmt.Errorf("--web.peer-config-file: %w", err)
		}
	}
	for _, ns := range f.namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("--kubernetes.namespace %q: %s", ns, errs[0])
		}
	}
	if f.gogc < -1 {
		return fmt.Errorf("--runtime.gogc %d: want -1 (off) or a percentage", f.gogc)
	}
	if f.gcHeadroom < 0 || f.gcHeadroom >= 1 {
		return fmt.Errorf("--runtime.gc-headroom %g: want a fraction from 0 (off) to below 1", f.gcHeadroom)
	}
	if f.memLimitRatio <= 0 || f.memLimitRatio > 1 {
		return fmt.Errorf("--auto-gomemlimit.ratio %g: want a share above 0 and at most 1", f.memLimitRatio)
	}
	if f.batchSendDeadline <= 0 {
		return fmt.Errorf("--remote-write.batch-send-deadline %s: want a positive duration", f.batchSendDeadline)
	}
	if f.kubeQPS <= 0 {
		return fmt.Errorf("--kubernetes.qps %g: want a positive rate", f.kubeQPS)
	}
	if f.unreachableTimeout <= 0 {
		return fmt.Errorf("--kubernetes.unreachable-timeout %s: want a positive duration", f.unreachableTimeout)
	}
	if f.kubeBurst < 1 {
		return fmt.Errorf("--kubernetes.burst %d: want at least 1", f.kubeBurst)
	}
	if f.kubeconfig != "" {
		if _, err := os.Stat(f.kubeconfig); err != nil {
			return fmt.Errorf("--kubeconfig: %w", err)
		}
	}
	if err := f.rules.validate(); err != nil {
		return err
	}
	return f.cluster.validate()
}

// configOptions are the config.Options the flags describe.
func (f *runFlags) configOptions() config.Options {
	labels, _ := parseExternalLabels(f.externalLabels)
	monSel, _ := metav1.ParseToLabelSelector(f.monitorSelector)
	nsSel, _ := metav1.ParseToLabelSelector(f.namespaceSelector)
	return config.Options{
		Flags: config.FlagSettings{
			RemoteWriteURLs:      f.remoteWriteURLs,
			BatchSendDeadline:    f.batchSendDeadline,
			ScrapeInterval:       f.scrapeInterval,
			ScrapeTimeout:        f.scrapeTimeout,
			ExternalLabels:       labels,
			MonitorSelector:      monSel,
			NamespaceSelector:    nsSel,
			ServiceDiscoveryRole: monitoringv1.ServiceDiscoveryRole(f.sdRole),
		},
		AllowFileAccess: f.allowFileAccess,
		KubeconfigFile:  f.kubeconfig,
	}
}

func parseExternalLabels(kvs []string) (map[string]string, error) {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--external-label %q: want name=value", kv)
		}
		if !model.LabelName(name).IsValid() {
			return nil, fmt.Errorf("--external-label %q: %q is not a valid label name", kv, name)
		}
		out[name] = value
	}
	return out, nil
}

func splitNamespacedName(s string) (string, string, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" {
		return "", "", fmt.Errorf("%q: want namespace/name", s)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", "", fmt.Errorf("%q: invalid namespace: %s", s, errs[0])
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", "", fmt.Errorf("%q: invalid name: %s", s, errs[0])
	}
	return ns, name, nil
}

// defaultGoGC is $GOGC when it is a number or "off", else Prometheus'
// default of 75.
func defaultGoGC() string {
	switch v := os.Getenv("GOGC"); {
	case v == "off":
		return "-1"
	case v != "":
		if _, err := strconv.Atoi(v); err == nil {
			return v
		}
	}
	return "75"
}
