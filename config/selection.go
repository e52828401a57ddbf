package config

import (
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// namespaceNameLabel is set by Kubernetes on every Namespace; it is
// synthesized for namespaces absent from the snapshot so that selectors on it
// work in `promshard render` without Namespace manifests.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// kindSelector selects the objects of one monitor kind, like the
// PrometheusAgent's <kind>Selector and <kind>NamespaceSelector.
type kindSelector struct {
	// objects selects by the object's labels; nil selects nothing.
	objects labels.Selector
	// namespaces selects by the labels of the object's namespace; nil means
	// only ownNamespace.
	namespaces   labels.Selector
	ownNamespace string
}

// selection holds the selectors of all four monitor kinds.
type selection struct {
	serviceMonitors, podMonitors, probes, scrapeConfigs kindSelector
}

// agentKindSelector builds a selector with prometheus-operator's semantics:
// a nil object selector selects nothing, an empty one everything; a nil
// namespace selector means the agent's own namespace, an empty one all.
func agentKindSelector(field string, objSel, nsSel *metav1.LabelSelector, ownNS string) (kindSelector, error) {
	ks := kindSelector{ownNamespace: ownNS}
	var err error
	if objSel != nil {
		if ks.objects, err = metav1.LabelSelectorAsSelector(objSel); err != nil {
			return ks, fmt.Errorf("invalid %sSelector: %w", field, err)
		}
	}
	if nsSel != nil {
		if ks.namespaces, err = metav1.LabelSelectorAsSelector(nsSel); err != nil {
			return ks, fmt.Errorf("invalid %sNamespaceSelector: %w", field, err)
		}
	}
	return ks, nil
}

// newAgentSelection reads the four selector pairs of a PrometheusAgent.
func newAgentSelection(spec *monitoringv1.CommonPrometheusFields, ownNS string) (selection, error) {
	var s selection
	var err error
	if s.serviceMonitors, err = agentKindSelector("serviceMonitor", spec.ServiceMonitorSelector, spec.ServiceMonitorNamespaceSelector, ownNS); err != nil {
		return s, err
	}
	if s.podMonitors, err = agentKindSelector("podMonitor", spec.PodMonitorSelector, spec.PodMonitorNamespaceSelector, ownNS); err != nil {
		return s, err
	}
	if s.probes, err = agentKindSelector("probe", spec.ProbeSelector, spec.ProbeNamespaceSelector, ownNS); err != nil {
		return s, err
	}
	if s.scrapeConfigs, err = agentKindSelector("scrapeConfig", spec.ScrapeConfigSelector, spec.ScrapeConfigNamespaceSelector, ownNS); err != nil {
		return s, err
	}
	return s, nil
}

// newFlagSelection applies the flags-only selectors to all kinds; nil or
// empty selects everything.
func newFlagSelection(f FlagSettings) (selection, error) {
	ks := kindSelector{objects: labels.Everything(), namespaces: labels.Everything()}
	var err error
	if f.MonitorSelector != nil {
		if ks.objects, err = metav1.LabelSelectorAsSelector(f.MonitorSelector); err != nil {
			return selection{}, fmt.Errorf("invalid monitor selector: %w", err)
		}
	}
	if f.NamespaceSelector != nil {
		if ks.namespaces, err = metav1.LabelSelectorAsSelector(f.NamespaceSelector); err != nil {
			return selection{}, fmt.Errorf("invalid namespace selector: %w", err)
		}
	}
	return selection{serviceMonitors: ks, podMonitors: ks, probes: ks, scrapeConfigs: ks}, nil
}

// namespaceLabels returns the labels of every namespace in the snapshot.
func namespaceLabels(snap *Snapshot) map[string]labels.Set {
	out := make(map[string]labels.Set, len(snap.Namespaces))
	for _, ns := range snap.Namespaces {
		if ns == nil {
			continue
		}
		set := labels.Set{}
		for k, v := range ns.Labels {
			set[k] = v
		}
		set[namespaceNameLabel] = ns.Name
		out[ns.Name] = set
	}
	return out
}

// matches reports whether an object in namespace ns with labels objLabels is
// selected.
func (ks kindSelector) matches(nsLabels map[string]labels.Set, ns string, objLabels map[string]string) bool {
	if ks.objects == nil || !ks.objects.Matches(labels.Set(objLabels)) {
		return false
	}
	if ks.namespaces == nil {
		return ns == ks.ownNamespace
	}
	set, ok := nsLabels[ns]
	if !ok {
		set = labels.Set{namespaceNameLabel: ns}
		nsLabels[ns] = set // a namespace not (yet) in the snapshot, for its other objects
	}
	return ks.namespaces.Matches(set)
}

// selectObjects keeps the non-nil objects ks selects.
func selectObjects[T interface {
	objectMeta
	GetLabels() map[string]string
	comparable
}](g *generator, ks kindSelector, objs []T) []T {
	var zero T
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if o == zero {
			continue
		}
		if ks.matches(g.nsLabels, o.GetNamespace(), o.GetLabels()) {
			out = append(out, o)
		}
	}
	return out
}

func (g *generator) selectServiceMonitors() []*monitoringv1.ServiceMonitor {
	return selectObjects(g, g.settings.sel.serviceMonitors, g.snap.ServiceMonitors)
}

func (g *generator) selectPodMonitors() []*monitoringv1.PodMonitor {
	return selectObjects(g, g.settings.sel.podMonitors, g.snap.PodMonitors)
}

func (g *generator) selectProbes() []*monitoringv1.Probe {
	return selectObjects(g, g.settings.sel.probes, g.snap.Probes)
}

func (g *generator) selectScrapeConfigs() []*monitoringv1alpha1.ScrapeConfig {
	return selectObjects(g, g.settings.sel.scrapeConfigs, g.snap.ScrapeConfigs)
}

// targetNamespaces returns the namespaces a monitor discovers targets in, as
// prometheus-operator does: its own namespace when ignoreNamespaceSelectors
// is set or namespaceSelector is empty, none (= all) for any: true, else
// matchNames.
func (g *generator) targetNamespaces(sel monitoringv1.NamespaceSelector, own string) []string {
	switch {
	case g.settings.ignoreNamespaceSelectors:
		return []string{own}
	case sel.Any:
		return nil
	case len(sel.MatchNames) == 0:
		return []string{own}
	}
	return sel.MatchNames
}
