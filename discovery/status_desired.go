package discovery

import (
	"fmt"
	"strings"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promshard/promshard/config"
)

// Condition reasons promshard writes.
const (
	// ReasonAccepted: the object was translated and its jobs run.
	ReasonAccepted = "Accepted"
	// ReasonInvalidConfiguration: the object was rejected; the message says why.
	ReasonInvalidConfiguration = "InvalidConfiguration"
)

// TargetHealth is the cluster-wide health of the targets one object
// produced, summed over every member's scrape pools.
type TargetHealth struct {
	// Targets counts active targets, Up those whose last scrape succeeded.
	Targets, Up int
	// Down is one failing target, "<scrape URL host> <last error>", or ""
	// when all are up.
	Down string
	// Stale lists the members that did not answer the last request for
	// their counts and had targets of the object in their answer before:
	// those earlier counts are included.
	Stale []StaleCounts
	// Missing names the members that never answered: none of their
	// targets is counted.
	Missing []string
}

// StaleCounts names a member whose counts are from an earlier answer.
type StaleCounts struct {
	Member string
	// As is when the member last answered.
	As time.Time
}

// ClusterHealth is the target health of every object, as StatusOptions.Health
// reports it.
type ClusterHealth struct {
	// Objects holds the objects with targets on some member; an object
	// that is not here has none.
	Objects map[config.ObjectKey]*TargetHealth
	// Missing names the members that never answered (none of their
	// targets is counted in any object).
	Missing []string
}

// of returns the health of the object key.
func (c *ClusterHealth) of(key config.ObjectKey) *TargetHealth {
	if h := c.Objects[key]; h != nil {
		if len(c.Missing) > 0 && h.Missing == nil {
			cp := *h
			cp.Missing = c.Missing
			return &cp
		}
		return h
	}
	return &TargetHealth{Missing: c.Missing}
}

// message returns the Accepted condition's message for an accepted object,
// e.g. "12 targets, 11 up; down: 10.0.3.7:8080 connection refused", with
// what is not current: "; stale: counts of member b as of
// 2026-01-02T03:04:05Z" and "; not counted: targets of member c (no answer
// yet)". Times are the answers', so the message does not change while a
// member stays unreachable.
func (h TargetHealth) message() string {
	if h.Targets == 0 && len(h.Stale) == 0 && len(h.Missing) == 0 {
		return "0 targets: no target is discovered for the object's selectors and endpoints"
	}
	m := fmt.Sprintf("%d targets, %d up", h.Targets, h.Up)
	if h.Down != "" {
		m += "; down: " + h.Down
	}
	for _, s := range h.Stale {
		m += fmt.Sprintf("; stale: counts of member %s as of %s", s.Member, s.As.UTC().Truncate(time.Second).Format(time.RFC3339))
	}
	if len(h.Missing) > 0 {
		m += "; not counted: targets of member " + strings.Join(h.Missing, ", ") + " (no answer yet)"
	}
	return truncate(m, maxMessage)
}

// maxMessage bounds a condition message: a rejection reason can quote a
// whole regular expression or PEM block.
const maxMessage = 1024

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}

// desiredCondition is the Accepted condition promshard wants on an object
// for result and the cluster-wide health (nil: unknown, e.g. a peer did not
// answer; an accepted object then keeps its previous message). prev is the
// condition currently written (nil when there is none); its transition
// time is kept while the status does not change.
func desiredCondition(res config.Result, health *TargetHealth, prev *monitoringv1.ConfigResourceCondition, now time.Time) monitoringv1.ConfigResourceCondition {
	c := monitoringv1.ConfigResourceCondition{
		Type:               monitoringv1.Accepted,
		Status:             monitoringv1.ConditionTrue,
		Reason:             ReasonAccepted,
		ObservedGeneration: res.Generation,
	}
	switch {
	case !res.Accepted:
		c.Status, c.Reason, c.Message = monitoringv1.ConditionFalse, ReasonInvalidConfiguration, truncate(res.Reason, maxMessage)
	case res.Message != "":
		c.Message = truncate(res.Message, maxMessage)
	case health != nil:
		c.Message = health.message()
	case prev != nil && prev.Status == monitoringv1.ConditionTrue:
		c.Message = prev.Message
	default:
		c.Message = "accepted; target counts are not known yet"
	}
	c.LastTransitionTime = metav1.NewTime(now.UTC().Truncate(time.Second))
	if prev != nil && prev.Status == c.Status {
		c.LastTransitionTime = prev.LastTransitionTime
	}
	return c
}

// conditionChange classifies how want differs from the written condition.
type conditionChange int

const (
	changeNone    conditionChange = iota
	changeHealth                  // only the target counts in the message
	changeVerdict                 // status, reason, generation or a rejection's message
)

func compareCondition(prev *monitoringv1.ConfigResourceCondition, want monitoringv1.ConfigResourceCondition) conditionChange {
	switch {
	case prev == nil, prev.Status != want.Status, prev.Reason != want.Reason,
		prev.ObservedGeneration != want.ObservedGeneration,
		!prev.LastTransitionTime.Equal(&want.LastTransitionTime):
		return changeVerdict
	case prev.Message == want.Message:
		return changeNone
	case want.Status == monitoringv1.ConditionTrue:
		return changeHealth
	default:
		return changeVerdict
	}
}

// findBinding returns the binding of the workload in bindings, or nil.
func findBinding(bindings []monitoringv1.WorkloadBinding, want monitoringv1.WorkloadBinding) *monitoringv1.WorkloadBinding {
	for i := range bindings {
		b := &bindings[i]
		if b.Group == want.Group && b.Resource == want.Resource && b.Namespace == want.Namespace && b.Name == want.Name {
			return b
		}
	}
	return nil
}

// acceptedOf returns the Accepted condition of a binding, or nil.
func acceptedOf(b *monitoringv1.WorkloadBinding) *monitoringv1.ConfigResourceCondition {
	if b == nil {
		return nil
	}
	for i := range b.Conditions {
		if b.Conditions[i].Type == monitoringv1.Accepted {
			return &b.Conditions[i]
		}
	}
	return nil
}
