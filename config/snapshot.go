// Package config translates the prometheus-operator monitoring CRDs into typed
// Prometheus configuration.
//
// It owns the pure function Generate: a Snapshot of Kubernetes objects in, a
// *promconfig.Config and one Result per object out. It does no I/O and must not
// import promshard's discovery, sharding or agent packages, nor client-go
// informers. Both the agent and `promshard render` call it.
//
// A long-running caller translates with GenerateWithCache and one Cache
// instead: the cache keeps each object's translation while the object,
// the Secret and ConfigMap keys its translation looked up, and the global
// settings are unchanged, so that a snapshot after one edit costs the
// translation of that object plus a pass over the others (cache.go). Its
// output is Generate's; jobs it hands out again are shared and read-only.
// ReferencedObjectsWithCache and a ReferenceCache do the same for the
// Secret and ConfigMap references discovery filters changes with.
package config

import (
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Snapshot is an immutable view of every Kubernetes object that can influence
// the generated configuration. Producers (discovery/, the render command) must
// not mutate the objects after handing a Snapshot over: GenerateWithCache
// takes an object that keeps its pointer, or its non-empty resourceVersion
// and UID, as unchanged.
type Snapshot struct {
	// Agent is the PrometheusAgent named by --prometheus-agent. Nil means
	// flags-only mode: the settings come from Options.Flags. With
	// --prometheus-agent the agent's reconciler never translates a
	// snapshot without it (it waits, or uses the last applied agent).
	Agent *monitoringv1alpha1.PrometheusAgent

	ServiceMonitors []*monitoringv1.ServiceMonitor
	PodMonitors     []*monitoringv1.PodMonitor
	Probes          []*monitoringv1.Probe
	ScrapeConfigs   []*monitoringv1alpha1.ScrapeConfig
	// PrometheusRules are read only when rules are synced to a ruler
	// (RenderRules); Generate does not look at them.
	PrometheusRules []*monitoringv1.PrometheusRule

	// Namespaces are needed to evaluate namespace label selectors.
	Namespaces []*corev1.Namespace
	// Secrets and ConfigMaps hold credentials and CA bundles referenced by
	// the monitors and the PrometheusAgent.
	Secrets    []*corev1.Secret
	ConfigMaps []*corev1.ConfigMap
}

// FlagSettings are the settings of flags-only mode (Snapshot.Agent == nil).
// They mirror the subset of PrometheusAgent fields a user can give on the
// command line.
type FlagSettings struct {
	// RemoteWriteURLs are the remote-write endpoints. Empty means no remote write.
	RemoteWriteURLs []string
	// BatchSendDeadline is the remote-write queues' batch_send_deadline.
	// Zero means Prometheus' default (5s).
	BatchSendDeadline model.Duration
	// ScrapeInterval is the global scrape interval. Zero means 30s, the
	// prometheus-operator default.
	ScrapeInterval model.Duration
	// ScrapeTimeout is the global scrape timeout. Zero means 10s, capped at
	// ScrapeInterval.
	ScrapeTimeout model.Duration
	// ExternalLabels are added to every series sent by remote write.
	ExternalLabels map[string]string
	// MonitorSelector selects ServiceMonitors, PodMonitors, Probes and
	// ScrapeConfigs by label. Nil or empty selects all.
	MonitorSelector *metav1.LabelSelector
	// NamespaceSelector selects the namespaces the monitors are read from.
	// Nil or empty selects all namespaces.
	NamespaceSelector *metav1.LabelSelector
	// ServiceDiscoveryRole is the Kubernetes SD role for ServiceMonitors:
	// "EndpointSlice" (default when empty) or "Endpoints".
	ServiceDiscoveryRole monitoringv1.ServiceDiscoveryRole
}

// Options are the process-level inputs of Generate that are not Kubernetes
// objects.
type Options struct {
	// Flags holds the settings used in flags-only mode.
	Flags FlagSettings
	// AllowFileAccess permits file references in monitors (bearerTokenFile,
	// tlsConfig.*File), like prometheus-operator's
	// arbitraryFSAccessThroughSMs. False (the default) rejects them. A
	// PrometheusAgent's own arbitraryFSAccessThroughSMs also allows them.
	AllowFileAccess bool
	// KubeconfigFile, when set, is used by every generated Kubernetes SD
	// configuration to reach the API server. Empty means in-cluster config.
	KubeconfigFile string
	// NodeName, when set, restricts pod discovery of PodMonitors to pods on
	// this node with the field selector spec.nodeName=<NodeName> (DaemonSet
	// mode). Empty means all nodes.
	NodeName string
}

// Kind names used in Results.
const (
	KindServiceMonitor  = "ServiceMonitor"
	KindPodMonitor      = "PodMonitor"
	KindProbe           = "Probe"
	KindScrapeConfig    = "ScrapeConfig"
	KindPrometheusAgent = "PrometheusAgent"
	// KindAdditionalScrapeConfigs is the Result of the PrometheusAgent's
	// additionalScrapeConfigs, named after its Secret (in the agent's
	// namespace); its jobs have the names the Secret gives them.
	KindAdditionalScrapeConfigs = "AdditionalScrapeConfigs"
)

// Result is the outcome of translating one object.
type Result struct {
	Kind       string
	Namespace  string
	Name       string
	Generation int64
	// Accepted is false when the object was rejected; Reason then says why in
	// words a person can act on.
	Accepted bool
	Reason   string
	// Message, when set, describes an accepted object's outcome in its
	// status instead of target counts (a PrometheusRule: where its groups
	// were synced).
	Message string
	// Jobs are the names of the scrape jobs of an accepted object, so that
	// a job the scrape manager refuses can be traced back to its object.
	Jobs []string
}
