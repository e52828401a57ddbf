package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/promshard/promshard/agent"
	"github.com/promshard/promshard/config"
	"github.com/promshard/promshard/ruler"
	"github.com/promshard/promshard/sharding"
)

// rulesKey is the key whose rendezvous owner among the participants syncs
// PrometheusRules (one member at a time, like an object's status writer).
const rulesKey = "promshard/rules"

// rulesRequestTimeout bounds one request to the ruler.
const rulesRequestTimeout = 30 * time.Second

// rulesFlags are the --rules.* flags: PrometheusRule objects kept in sync
// with a Mimir or Cortex ruler. Off unless --rules.url is given.
type rulesFlags struct {
	url                    string
	api                    string
	mimirPrefix            string
	tenant                 string
	httpConfigFile         string
	namespacePrefix        string
	selector               string
	namespaceSelector      string
	enforcedNamespaceLabel string
	resyncInterval         time.Duration
}

func registerRulesFlags(cmd *kingpin.CmdClause, f *rulesFlags) {
	cmd.Flag("rules.url", "Base URL of a Mimir or Cortex ruler (or its gateway), e.g. http://mimir:8080: the selected PrometheusRule objects are kept in sync with its rule configuration API. Empty (default): PrometheusRules are not read.").StringVar(&f.url)
	cmd.Flag("rules.api", "Rule configuration API of --rules.url: mimir (<--rules.mimir-prefix>/config/v1/rules) or cortex (/api/v1/rules).").Default(string(ruler.APIMimir)).EnumVar(&f.api, string(ruler.APIMimir), string(ruler.APICortex))
	cmd.Flag("rules.mimir-prefix", "With --rules.api=mimir: Mimir's -http.prometheus-http-prefix.").Default(ruler.DefaultMimirPrefix).StringVar(&f.mimirPrefix)
	cmd.Flag("rules.tenant", "Tenant sent as X-Scope-OrgID with every ruler request. Empty: no header (a store without multi-tenancy).").StringVar(&f.tenant)
	cmd.Flag("rules.http-config-file", "HTTP client configuration for the ruler (Prometheus' http_config format: tls_config, basic_auth, authorization, proxy_url). Empty: plain HTTP client.").StringVar(&f.httpConfigFile)
	cmd.Flag("rules.namespace-prefix", "Ruler namespaces are <prefix>/<namespace>/<name>, one per PrometheusRule; promshard only ever changes or deletes namespaces under <prefix>/, so several clusters (each with its own prefix) and hand-managed rules can share one tenant.").Default(config.DefaultRuleNamespacePrefix).StringVar(&f.namespacePrefix)
	cmd.Flag("rules.selector", "Label selector (kubectl syntax) for PrometheusRule objects, like a Prometheus' ruleSelector. Empty selects all.").StringVar(&f.selector)
	cmd.Flag("rules.namespace-selector", "Label selector for the namespaces PrometheusRules are read from, like ruleNamespaceSelector (within --kubernetes.namespace). Empty selects all.").StringVar(&f.namespaceSelector)
	cmd.Flag("rules.enforced-namespace-label", "Label name, like prometheus-operator's enforcedNamespaceLabel: every selector of every rule expression is restricted to <label>=\"<object's namespace>\" and every rule gets that label, so a team's rules only see its own series. Empty: off.").StringVar(&f.enforcedNamespaceLabel)
	cmd.Flag("rules.resync-interval", "How often the ruler is read in full and groups edited or added by hand under the prefix are repaired. Changes of PrometheusRules are synced at once.").Default(ruler.DefaultResyncInterval.String()).DurationVar(&f.resyncInterval)
}

// enabled reports whether rule sync is on.
func (f *rulesFlags) enabled() bool { return f.url != "" }

// validate checks the rule flags; errors are one sentence each.
func (f *rulesFlags) validate() error {
	if !f.enabled() {
		return nil
	}
	if _, err := f.client(nil); err != nil {
		return fmt.Errorf("--rules.url: %w", err)
	}
	if _, err := parseSelector(f.selector); err != nil {
		return fmt.Errorf("--rules.selector: %w", err)
	}
	if _, err := parseSelector(f.namespaceSelector); err != nil {
		return fmt.Errorf("--rules.namespace-selector: %w", err)
	}
	if p := f.namespacePrefix; p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("--rules.namespace-prefix %q: want a non-empty prefix without a leading or trailing slash", p)
	}
	if l := f.enforcedNamespaceLabel; l != "" && !model.LabelName(l).IsValid() {
		return fmt.Errorf("--rules.enforced-namespace-label %q is not a valid label name", l)
	}
	if f.resyncInterval <= 0 {
		return errors.New("--rules.resync-interval must be positive")
	}
	if f.httpConfigFile != "" {
		if _, err := rulesHTTPClient(f.httpConfigFile); err != nil {
			return err
		}
	}
	return nil
}

// client is the ruler client the flags describe; hc nil means the
// package's default HTTP client.
func (f *rulesFlags) client(hc *http.Client) (*ruler.Client, error) {
	return ruler.NewClient(ruler.ClientOptions{URL: f.url, API: ruler.API(f.api), MimirPrefix: f.mimirPrefix, Tenant: f.tenant, HTTPClient: hc})
}

// ruleOptions are the flags' selection and rendering options.
func (f *rulesFlags) ruleOptions() config.RuleOptions {
	sel, _ := parseSelector(f.selector)
	nsSel, _ := parseSelector(f.namespaceSelector)
	return config.RuleOptions{Selector: sel, NamespaceSelector: nsSel, NamespacePrefix: f.namespacePrefix, EnforcedNamespaceLabel: f.enforcedNamespaceLabel}
}

// parseSelector parses a kubectl label selector; empty selects all (nil).
func parseSelector(s string) (k8slabels.Selector, error) {
	if s == "" {
		return nil, nil
	}
	ls, err := metav1.ParseToLabelSelector(s)
	if err != nil {
		return nil, err
	}
	return metav1.LabelSelectorAsSelector(ls)
}

func rulesHTTPClient(path string) (*http.Client, error) {
	return httpClientFromFile("--rules.http-config-file", path, "promshard_rules", rulesRequestTimeout)
}

// newRuleSyncer wires the ruler sync: the rendezvous owner of rulesKey
// among the participants syncs; report receives its outcomes.
func newRuleSyncer(f *rulesFlags, cluster *sharding.Cluster, report func(bool, []config.Result), logger *slog.Logger, reg prometheus.Registerer) (*ruler.Syncer, error) {
	hc, err := rulesHTTPClient(f.httpConfigFile)
	if err != nil {
		return nil, err
	}
	client, err := f.client(hc)
	if err != nil {
		return nil, fmt.Errorf("--rules.url: %w", err)
	}
	self := cluster.Self()
	return ruler.New(ruler.Options{
		Client: client, Rules: f.ruleOptions(), ResyncInterval: f.resyncInterval, Report: report,
		Owns: func() bool {
			return sharding.OwnerOf(sharding.StringKey(rulesKey), participants(cluster)) == self
		},
		Logger: logger, Registerer: reg,
	})
}

// rulesInfo adapts the syncer's status to the status page.
func rulesInfo(s *ruler.Syncer) func() agent.RulesInfo {
	return func() agent.RulesInfo {
		st := s.Status()
		ri := agent.RulesInfo{Endpoint: st.Endpoint, Syncing: st.Syncing, LastSync: st.LastSync, LastError: st.LastError}
		for _, o := range st.Objects {
			ri.Objects = append(ri.Objects, agent.RuleObjectInfo{Object: o.Object, Namespace: o.Namespace, Groups: o.Groups, State: o.State, Reason: o.Reason})
		}
		return ri
	}
}
