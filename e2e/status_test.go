//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/promshard/promshard/e2e/testbed"
)

// statusEnv is three replicas with protected endpoints (TLS + basic auth),
// an encrypted gossip keyring each, reading PrometheusAgent st/agent that
// selects the ServiceMonitors labelled team=a.
type statusEnv struct {
	bed      *testbed.Bed
	host     *testbed.Host
	targets  []*testbed.Target
	reps     []*testbed.Promshard
	keyFiles []string
}

const statusNS = "st"

func statusSM(name, team string, relabel ...monitoringv1.RelabelConfig) *monitoringv1.ServiceMonitor {
	sm := serviceMonitor(statusNS, name, relabel...)
	sm.Labels = map[string]string{"team": team}
	return sm
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	e := &statusEnv{bed: startBed(t)}
	rcv, err := e.bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	require.NoError(t, e.bed.CreateNamespace(ctx, statusNS, nil))
	e.host, err = e.bed.Netns(ctx)
	require.NoError(t, err)
	e.targets, err = e.host.AddTargets(ctx, "st-web", 3, testbed.TargetOptions{})
	require.NoError(t, err)
	require.NoError(t, e.bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: statusNS, Name: "web", Labels: map[string]string{"app": "web"}, Targets: e.targets}))
	pa := prometheusAgent(statusNS, "agent", nil, rcv.WriteURL())
	pa.Spec.ServiceMonitorSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	_, err = e.bed.ApplyMonitoring(ctx, pa)
	require.NoError(t, err)
	_, err = e.bed.ApplyMonitoring(ctx, statusSM("web", "a"))
	require.NoError(t, err)

	oldKey := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("o", 32)))
	for i := range 3 {
		f := filepath.Join(e.bed.Dir(), fmt.Sprintf("gossip-key-%d", i))
		require.NoError(t, os.WriteFile(f, []byte(oldKey+"\n"), 0o600))
		e.keyFiles = append(e.keyFiles, f)
		args := []string{"--prometheus-agent=" + statusNS + "/agent", "--status.target-health-interval=5s", "--cluster.secret-key-file=" + f}
		if i > 0 {
			args = append(args, "--cluster.join="+e.reps[0].GossipAddr)
		}
		e.reps = append(e.reps, startPromshard(t, e.bed, testbed.PromshardOptions{
			Name: fmt.Sprintf("s%d", i), IP: "127.0.0." + strconv.Itoa(40+i), Gossip: true, SecureWeb: true, Args: args,
		}))
	}
	eventually(t, 30*time.Second, "every replica sees 3 members", e.allSeeMembers(3))

	t.Run("protected endpoints, cluster-wide targets", e.testClusterTargets)
	t.Run("accepted monitor reports its target health", e.testAccepted)
	t.Run("monitor whose relabeling drops everything: 0 targets, dropped once", e.testAllDropped)
	t.Run("rejected monitor: condition and one Warning Event", e.testRejected)
	t.Run("gossip key rotated without a split", func(t *testing.T) { e.testKeyRotation(t, oldKey) })
	t.Run("PrometheusAgent status follows the members", e.testAgentStatus)
}

func (e *statusEnv) allSeeMembers(n int) func(context.Context) error {
	return func(ctx context.Context) error {
		for _, r := range e.reps {
			if r.Exited() {
				continue
			}
			v, _, err := r.Metric(ctx, `promshard_cluster_members{state="participant"}`)
			if err != nil {
				return err
			}
			if int(v) != n {
				return fmt.Errorf("a replica sees %v participants, want %d", v, n)
			}
		}
		return nil
	}
}

func (e *statusEnv) testClusterTargets(t *testing.T) {
	ctx := context.Background()
	// Without credentials, or without TLS, nothing is served.
	for _, path := range []string{"/metrics", "/api/v1/targets", "/-/ready", "/"} {
		resp, err := e.bed.TLSClient().Get(e.reps[0].WebURL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
	}
	resp, err := http.Get(strings.Replace(e.reps[0].WebURL, "https://", "http://", 1) + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP is refused")
	// Any replica lists every target once, with its owner; the members
	// reach each other through TLS and basic auth.
	for _, r := range e.reps {
		eventually(t, 30*time.Second, "cluster-wide targets on "+r.WebURL, func(ctx context.Context) error {
			var resp struct {
				Data struct {
					ActiveTargets []struct {
						ScrapeURL, Owner, Health string
					} `json:"activeTargets"`
				} `json:"data"`
				Warnings []string `json:"warnings"`
			}
			if err := r.GetJSON(ctx, "/api/v1/targets?scope=cluster", &resp); err != nil {
				return err
			}
			if len(resp.Warnings) > 0 {
				return fmt.Errorf("warnings: %v", resp.Warnings)
			}
			seen := map[string]string{}
			for _, at := range resp.Data.ActiveTargets {
				if prev, dup := seen[at.ScrapeURL]; dup {
					return fmt.Errorf("%s listed twice (owners %s and %s)", at.ScrapeURL, prev, at.Owner)
				}
				if !strings.HasPrefix(at.Owner, "s") || at.Health != "up" {
					return fmt.Errorf("%s: owner %q health %s", at.ScrapeURL, at.Owner, at.Health)
				}
				seen[at.ScrapeURL] = at.Owner
			}
			for _, tg := range e.targets {
				if seen[tg.URL()] == "" {
					return fmt.Errorf("%s missing from %v", tg.URL(), seen)
				}
			}
			return nil
		})
	}
	// The per-object counts the statuses are written from: every member
	// asks the others for theirs, through TLS and basic auth.
	for _, r := range e.reps {
		eventually(t, 30*time.Second, "cluster-wide object health on "+r.WebURL, func(ctx context.Context) error {
			var resp objectHealth
			if err := r.GetJSON(ctx, "/api/v1/status/object-health?scope=cluster", &resp); err != nil {
				return err
			}
			if len(resp.Warnings) > 0 || len(resp.Data.Members) != 2 {
				return fmt.Errorf("members %v, warnings %v", resp.Data.Members, resp.Warnings)
			}
			for _, o := range resp.Data.Objects {
				if o.Object == "ServiceMonitor/st/web" && o.Targets == 3 && o.Up == 3 && len(o.Stale) == 0 {
					return nil
				}
			}
			return fmt.Errorf("ServiceMonitor/st/web not 3 of 3 up: %+v", resp.Data.Objects)
		})
	}
	page, err := e.reps[1].Get(ctx, "/?object=ServiceMonitor/st/web")
	require.NoError(t, err)
	for _, tg := range e.targets {
		require.Contains(t, string(page), tg.URL(), "status page lists the cluster's targets of the object")
	}
	require.Contains(t, string(page), "Target health by object (1)", "status page shows the object's counts")
}

// binding returns the Accepted condition of st/<name>'s binding to the
// PrometheusAgent, nil when there is no such binding.
func (e *statusEnv) binding(ctx context.Context, name string) (*monitoringv1.ConfigResourceCondition, int64, error) {
	u, err := e.bed.Dynamic.Resource(schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "servicemonitors"}).
		Namespace(statusNS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, 0, err
	}
	var sm monitoringv1.ServiceMonitor
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &sm); err != nil {
		return nil, 0, err
	}
	for _, b := range sm.Status.Bindings {
		if b.Resource == "prometheusagents" && b.Namespace == statusNS && b.Name == "agent" {
			for i := range b.Conditions {
				if b.Conditions[i].Type == monitoringv1.Accepted {
					return &b.Conditions[i], sm.Generation, nil
				}
			}
		}
	}
	return nil, sm.Generation, nil
}

func (e *statusEnv) conditionIs(name string, status monitoringv1.ConditionStatus, message string) func(context.Context) error {
	return func(ctx context.Context) error {
		c, gen, err := e.binding(ctx, name)
		switch {
		case err != nil:
			return err
		case c == nil:
			return fmt.Errorf("%s has no binding", name)
		case c.Status != status || !strings.Contains(c.Message, message) || c.ObservedGeneration != gen:
			return fmt.Errorf("%s: %s %q (generation %d of %d), want %s containing %q", name, c.Status, c.Message, c.ObservedGeneration, gen, status, message)
		}
		return nil
	}
}

// writes sums promshard_status_writes_total{kind} over the live replicas.
func (e *statusEnv) writes(t *testing.T, kind string) int {
	t.Helper()
	total := 0
	for _, r := range e.reps {
		if r.Exited() {
			continue
		}
		v, _, err := r.Metric(context.Background(), `promshard_status_writes_total{kind="`+kind+`",result="success"}`)
		require.NoError(t, err)
		total += int(v)
	}
	return total
}

func (e *statusEnv) testAccepted(t *testing.T) {
	ctx := context.Background()
	eventually(t, 60*time.Second, "Accepted=True with 3 up", e.conditionIs("web", monitoringv1.ConditionTrue, "3 targets, 3 up"))
	c, _, err := e.binding(ctx, "web")
	require.NoError(t, err)
	require.Equal(t, "3 targets, 3 up", c.Message)
	before := e.writes(t, "ServiceMonitor")

	// A stopped target shows as down, written by one member.
	stopped := e.targets[0]
	require.NoError(t, e.host.RemoveTarget(ctx, stopped.Name))
	eventually(t, 2*time.Minute, "the stopped target shows as down",
		e.conditionIs("web", monitoringv1.ConditionTrue, "3 targets, 2 up; down: "+stopped.Addr()))
	c2, _, err := e.binding(ctx, "web")
	require.NoError(t, err)
	require.True(t, c2.LastTransitionTime.Equal(&c.LastTransitionTime), "the status did not change, so neither does the transition time")
	time.Sleep(3 * time.Second) // let a second writer, if there were one, show up
	afterChange := e.writes(t, "ServiceMonitor")
	require.Equal(t, before+1, afterChange, "one member writes the change, once")

	// Nothing changes: nothing is written again.
	time.Sleep(12 * time.Second)
	require.Equal(t, afterChange, e.writes(t, "ServiceMonitor"), "an unchanged object is not rewritten")
}

func (e *statusEnv) testAllDropped(t *testing.T) {
	ctx := context.Background()
	sm := statusSM("none", "a", monitoringv1.RelabelConfig{SourceLabels: []monitoringv1.LabelName{"__address__"}, Regex: "nothing-matches", Action: "keep"})
	sm.Spec.Selector.MatchLabels = map[string]string{"app": "web"}
	_, err := e.bed.ApplyMonitoring(ctx, sm)
	require.NoError(t, err)
	eventually(t, 30*time.Second, "0 targets said plainly", e.conditionIs("none", monitoringv1.ConditionTrue, "0 targets"))
	eventually(t, 30*time.Second, "each dropped target listed once, cluster-wide", func(ctx context.Context) error {
		var resp struct {
			Data struct {
				DroppedTargets []struct {
					ScrapePool       string            `json:"scrapePool"`
					DiscoveredLabels map[string]string `json:"discoveredLabels"`
				} `json:"droppedTargets"`
			} `json:"data"`
		}
		if err := e.reps[2].GetJSON(ctx, "/api/v1/targets?scope=cluster", &resp); err != nil {
			return err
		}
		seen := map[string]int{}
		for _, d := range resp.Data.DroppedTargets {
			if d.ScrapePool == "serviceMonitor/st/none/0" {
				seen[d.DiscoveredLabels["__address__"]]++
			}
		}
		for _, tg := range e.targets {
			if seen[tg.Addr()] != 1 {
				return fmt.Errorf("dropped %s listed %d times (%v)", tg.Addr(), seen[tg.Addr()], seen)
			}
		}
		return nil
	})
}

func (e *statusEnv) testRejected(t *testing.T) {
	ctx := context.Background()
	require.NoError(t, e.bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: statusNS, Name: "broken", Labels: map[string]string{"app": "broken"}, Targets: e.targets[1:2]}))
	broken := statusSM("broken", "a", monitoringv1.RelabelConfig{SourceLabels: []monitoringv1.LabelName{"__address__"}, Regex: "([unclosed", Action: "keep"})
	_, err := e.bed.ApplyMonitoring(ctx, broken)
	require.NoError(t, err)
	eventually(t, 30*time.Second, "Accepted=False with the reason", e.conditionIs("broken", monitoringv1.ConditionFalse, "unclosed"))
	c, _, err := e.binding(ctx, "broken")
	require.NoError(t, err)
	require.Equal(t, "InvalidConfiguration", c.Reason)

	warnings := func(ctx context.Context) (int, error) {
		evs, err := e.bed.Kube.CoreV1().Events(statusNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=broken,type=Warning"})
		if err != nil {
			return 0, err
		}
		return len(evs.Items), nil
	}
	eventually(t, 30*time.Second, "a Warning Event", func(ctx context.Context) error {
		n, err := warnings(ctx)
		if err == nil && n != 1 {
			err = fmt.Errorf("%d Warning Events", n)
		}
		return err
	})
	time.Sleep(3 * time.Second) // more status cycles of every member
	n, err := warnings(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "one Warning Event, not one per member or cycle")

	// No longer selected: the binding goes away.
	_, err = e.bed.ApplyMonitoring(ctx, statusSM("broken", "b", broken.Spec.Endpoints[0].RelabelConfigs...))
	require.NoError(t, err)
	eventually(t, 30*time.Second, "binding removed", func(ctx context.Context) error {
		c, _, err := e.binding(ctx, "broken")
		if err == nil && c != nil {
			err = fmt.Errorf("still bound: %s %q", c.Status, c.Message)
		}
		return err
	})
	// The other monitor's binding is untouched.
	require.NoError(t, e.conditionIs("web", monitoringv1.ConditionTrue, "3 targets")(ctx))
}

// testKeyRotation rotates the gossip key in the three documented steps, one
// replica at a time (SIGHUP reloads the file at once), and checks after
// each change that every replica still sees all three members.
func (e *statusEnv) testKeyRotation(t *testing.T, oldKey string) {
	ctx := context.Background()
	newKey := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("n", 32)))
	for _, step := range []struct {
		name string
		keys []string
	}{
		{"add the new key second", []string{oldKey, newKey}},
		{"make the new key first", []string{newKey, oldKey}},
		{"remove the old key", []string{newKey}},
	} {
		for i, r := range e.reps {
			require.NoError(t, os.WriteFile(e.keyFiles[i], []byte(strings.Join(step.keys, "\n")+"\n"), 0o600))
			r.Signal(syscall.SIGHUP)
			eventually(t, 10*time.Second, step.name+": keyring reloaded", func(ctx context.Context) error {
				v, _, err := r.Metric(ctx, "promshard_cluster_gossip_keys")
				if err == nil && int(v) != len(step.keys) {
					err = fmt.Errorf("%v keys installed, want %d", v, len(step.keys))
				}
				return err
			})
			// Longer than a failed probe round plus a suspicion timeout.
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				require.NoError(t, e.allSeeMembers(3)(ctx), "%s, replica %d", step.name, i)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
}

func (e *statusEnv) testAgentStatus(t *testing.T) {
	agentStatus := func(replicas, available int32) func(context.Context) error {
		return func(ctx context.Context) error {
			u, err := e.bed.Dynamic.Resource(schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1alpha1", Resource: "prometheusagents"}).
				Namespace(statusNS).Get(ctx, "agent", metav1.GetOptions{})
			if err != nil {
				return err
			}
			var pa monitoringv1alpha1.PrometheusAgent
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &pa); err != nil {
				return err
			}
			st := pa.Status
			if st.Replicas != replicas || st.AvailableReplicas != available {
				return fmt.Errorf("replicas %d available %d, want %d and %d", st.Replicas, st.AvailableReplicas, replicas, available)
			}
			for _, c := range st.Conditions {
				if c.Type == monitoringv1.Reconciled && !strings.Contains(c.Message, "objects selected") {
					return fmt.Errorf("Reconciled message %q", c.Message)
				}
			}
			return nil
		}
	}
	eventually(t, 30*time.Second, "replicas 3, available 3", agentStatus(3, 3))
	e.reps[2].Kill()
	eventually(t, 30*time.Second, "replicas 2, available 2 after SIGKILL", agentStatus(2, 2))
}
