//go:build e2e

package e2e

// The deploy's RBAC: sufficient (promshard runs end to end with a token of
// the ServiceAccount, minted with the TokenRequest API) and no broader
// (rules review, access reviews and direct calls with the same token).

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/promshard/promshard/e2e/testbed"
)

// rbacRule is one rule of the least privilege the issue asks for, written
// here independently of deploy/base/clusterrole.yaml.
type rbacRule struct {
	group     string
	resources []string
	verbs     []string
}

var (
	deployMonitoringKinds = []string{"servicemonitors", "podmonitors", "probes", "scrapeconfigs", "prometheusagents", "prometheusrules"}
	// deployReadVerbs are what informers use; nothing calls get.
	deployReadVerbs = []string{"list", "watch"}
	// deployWantRules is everything promshard may do beyond what any
	// authenticated user may: what the code uses, nothing more.
	deployWantRules = []rbacRule{
		{"monitoring.coreos.com", deployMonitoringKinds, deployReadVerbs},
		{"", []string{"namespaces", "nodes", "services", "endpoints", "pods", "secrets", "configmaps"}, deployReadVerbs},
		{"discovery.k8s.io", []string{"endpointslices"}, deployReadVerbs},
		{"networking.k8s.io", []string{"ingresses"}, deployReadVerbs},
		{"monitoring.coreos.com", []string{"servicemonitors/status", "podmonitors/status", "probes/status", "scrapeconfigs/status", "prometheusagents/status", "prometheusrules/status"}, []string{"patch"}},
		{"", []string{"events"}, []string{"create"}},
	}
)

// triples expands rules into sorted "group resource verb" strings.
func rbacTriples(rules []rbacRule) []string {
	set := map[string]bool{}
	for _, r := range rules {
		for _, res := range r.resources {
			for _, v := range r.verbs {
				set[r.group+" "+res+" "+v] = true
			}
		}
	}
	out := slices.Collect(maps.Keys(set))
	sort.Strings(out)
	return out
}

// saAccess is a ServiceAccount's token and clients built on it.
type saAccess struct {
	name       string
	cfg        *rest.Config
	kube       kubernetes.Interface
	dyn        dynamic.Interface
	kubeconfig string
}

// serviceAccountAccess creates the ServiceAccount ns/name unless it exists,
// mints a token for it with the TokenRequest API and writes a kubeconfig.
func serviceAccountAccess(t *testing.T, bed *testbed.Bed, ns, name string) *saAccess {
	t.Helper()
	ctx := context.Background()
	_, err := bed.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	tr, err := bed.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "TokenRequest")
	require.NotEmpty(t, tr.Status.Token)

	a := &saAccess{name: "system:serviceaccount:" + ns + ":" + name, cfg: rest.AnonymousClientConfig(bed.RestConfig)}
	a.cfg.BearerToken = tr.Status.Token
	a.kube, err = kubernetes.NewForConfig(a.cfg)
	require.NoError(t, err)
	a.dyn, err = dynamic.NewForConfig(a.cfg)
	require.NoError(t, err)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bed"] = &clientcmdapi.Cluster{Server: a.cfg.Host, InsecureSkipTLSVerify: a.cfg.Insecure, CertificateAuthorityData: a.cfg.CAData}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["sa"] = &clientcmdapi.Context{Cluster: "bed", AuthInfo: "sa", Namespace: ns}
	kc.CurrentContext = "sa"
	a.kubeconfig = filepath.Join(t.TempDir(), name+".kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*kc, a.kubeconfig))

	// The token authenticates as the ServiceAccount.
	rev, err := a.kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Equal(t, a.name, rev.Status.UserInfo.Username)
	return a
}

// rules returns the ServiceAccount's resource rules in ns as triples and
// its non-resource rules.
func (a *saAccess) rules(t *testing.T, ns string) (resource, nonResource []string) {
	t.Helper()
	rev, err := a.kube.AuthorizationV1().SelfSubjectRulesReviews().Create(context.Background(),
		&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.False(t, rev.Status.Incomplete, rev.Status.EvaluationError)
	var rs []rbacRule
	for _, r := range rev.Status.ResourceRules {
		require.Empty(t, r.ResourceNames, "rules with resourceNames are not expected here: %+v", r)
		for _, g := range r.APIGroups {
			rs = append(rs, rbacRule{g, r.Resources, r.Verbs})
		}
	}
	for _, r := range rev.Status.NonResourceRules {
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				nonResource = append(nonResource, u+" "+v)
			}
		}
	}
	sort.Strings(nonResource)
	return rbacTriples(rs), nonResource
}

// can asks the API server whether the ServiceAccount may do verb on
// group/resource[/subresource] in ns.
func (a *saAccess) can(t *testing.T, ns, verb, group, resource string) bool {
	t.Helper()
	res, sub, _ := strings.Cut(resource, "/")
	rev, err := a.kube.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Group: group, Resource: res, Subresource: sub,
		}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return rev.Status.Allowed
}

// deployArgs returns the container arguments of the workload kind minus
// the ones that depend on the cluster (paths, addresses, peers), which the
// test bed's replica runner sets for loopback.
func deployArgs(t *testing.T, objs []*unstructured.Unstructured, kind string) []string {
	c, _ := deployContainer(t, deployObject(t, objs, kind, "promshard"))
	var out []string
	for _, a := range deployStrings(c["args"])[1:] { // [0] is the command, run
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "--storage.agent.path", "--web.listen-address", "--cluster.listen-address", "--cluster.node-name",
			"--cluster.advertise-address", "--cluster.join", "--cluster.secret-key-file", "--cluster.wait-for-size":
			continue
		}
		out = append(out, a)
	}
	return out
}

// gossipKeyFile writes a gossip key made as deploy/README.md says (32
// random bytes, base64) and returns the --cluster.secret-key-file flag.
func gossipKeyFile(t *testing.T) string {
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600))
	return "--cluster.secret-key-file=" + path
}

// rbacNS is the namespace of the RBAC test's targets and monitors.
const rbacNS = "deploy-app"

// rbacEnv is what the RBAC subtests share: the deploy's ServiceAccount and
// an unbound one, a receiver, and targets with their monitors in rbacNS.
type rbacEnv struct {
	bed         *testbed.Bed
	base        []*unstructured.Unstructured
	sa, unbound *saAccess
	rcv         *testbed.Receiver
	// onNode are PodMonitor targets on node-a and node-b.
	onNode map[string]*testbed.Target
}

func testDeployRBAC(t *testing.T, bed *testbed.Bed, c *deployClient, base []*unstructured.Unstructured) {
	ctx := context.Background()
	for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
		_, err := c.create(ctx, deployObject(t, base, kind, "promshard"), false)
		require.NoError(t, err)
	}
	e := &rbacEnv{bed: bed, base: base,
		sa:      serviceAccountAccess(t, bed, "promshard", "promshard"),
		unbound: serviceAccountAccess(t, bed, "promshard", "promshard-unbound"),
	}
	var err error
	e.rcv, err = bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	require.NoError(t, err)
	// The deploy's PrometheusAgent, pointed at the receiver.
	pa := deployObject(t, base, "PrometheusAgent", "promshard").DeepCopy()
	require.NoError(t, unstructured.SetNestedSlice(pa.Object, []any{map[string]any{"url": e.rcv.WriteURL()}}, "spec", "remoteWrite"))
	require.NoError(t, unstructured.SetNestedField(pa.Object, "1s", "spec", "scrapeInterval"))
	_, err = c.create(ctx, pa, false)
	require.NoError(t, err)
	e.workload(t)

	t.Run("sufficient: promshard runs with the ServiceAccount's token", e.testSufficient)
	t.Run("sufficient: the DaemonSet's arguments on node-a", e.testDaemonSet)
	t.Run("control: without the binding the log says forbidden", e.testControl)
	t.Run("no broader: rules beyond an authenticated user's", e.testRules)
	t.Run("no broader: access reviews", e.testAccessReviews)
	t.Run("no broader: direct calls", e.testDirectCalls)
}

// workload creates in rbacNS: Service web with 3 targets and its
// ServiceMonitor; pod worker (no node) and pods daemon-node-a/-node-b, each
// under a PodMonitor; Node node-a (zone=zone-a) and Service zoned (node-a's
// target) under a ServiceMonitor attaching node metadata.
func (e *rbacEnv) workload(t *testing.T) {
	ctx := context.Background()
	monitoredService(t, e.bed, rbacNS, "web", 3)
	lo, err := e.bed.Loopback(ctx)
	require.NoError(t, err)
	pt, err := lo.AddTarget(ctx, "deploy-pod", testbed.TargetOptions{})
	require.NoError(t, err)
	_, err = e.bed.CreatePod(ctx, testbed.PodSpec{Namespace: rbacNS, Name: "worker", Labels: map[string]string{"app": "worker"}, Target: pt})
	require.NoError(t, err)
	e.onNode = map[string]*testbed.Target{}
	for _, node := range []string{"node-a", "node-b"} {
		e.onNode[node], err = lo.AddTarget(ctx, "deploy-"+node, testbed.TargetOptions{NodeName: node})
		require.NoError(t, err)
		_, err = e.bed.CreatePod(ctx, testbed.PodSpec{Namespace: rbacNS, Name: "daemon-" + node, Labels: map[string]string{"app": "daemon"}, Target: e.onNode[node]})
		require.NoError(t, err)
	}
	// A ServiceMonitor with node metadata: needs nodes list/watch.
	require.NoError(t, e.bed.CreateNode(ctx, "node-a", map[string]string{"zone": "zone-a"}))
	netns, err := e.bed.Netns(ctx) // EndpointSlices refuse loopback addresses
	require.NoError(t, err)
	zt, err := netns.AddTarget(ctx, "deploy-zoned", testbed.TargetOptions{NodeName: "node-a"})
	require.NoError(t, err)
	require.NoError(t, e.bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: rbacNS, Name: "zoned",
		Labels: map[string]string{"app": "zoned"}, Targets: []*testbed.Target{zt}}))
	zoned := serviceMonitor(rbacNS, "zoned", monitoringv1.RelabelConfig{
		SourceLabels: []monitoringv1.LabelName{"__meta_kubernetes_node_label_zone"}, TargetLabel: "zone"})
	zoned.Spec.AttachMetadata = &monitoringv1.AttachMetadata{Node: ptr.To(true)}
	_, err = e.bed.ApplyMonitoring(ctx, zoned)
	require.NoError(t, err)
	for _, app := range []string{"worker", "daemon"} {
		_, err = e.bed.ApplyMonitoring(ctx, &monitoringv1.PodMonitor{
			ObjectMeta: metav1.ObjectMeta{Namespace: rbacNS, Name: app},
			Spec: monitoringv1.PodMonitorSpec{
				Selector:            metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
				PodMetricsEndpoints: []monitoringv1.PodMetricsEndpoint{{Port: ptr.To("metrics"), Interval: "1s"}},
			},
		})
		require.NoError(t, err)
	}
}

// testSufficient runs promshard with the token and the StatefulSet's
// arguments: every target is scraped and remote-written, nothing forbidden.
func (e *rbacEnv) testSufficient(t *testing.T) {
	// Gossip on, encrypted.
	args := append(deployArgs(t, e.base, "StatefulSet"), gossipKeyFile(t))
	t.Logf("promshard run %s", strings.Join(args, " "))
	p := startPromshard(t, e.bed, testbed.PromshardOptions{Name: "deploy-sa", Kubeconfig: e.sa.kubeconfig, Gossip: true, Args: args})
	eventually(t, 90*time.Second, "ServiceMonitor targets scraped", healthyPool(p, "serviceMonitor/"+rbacNS+"/web/0", 3))
	eventually(t, 30*time.Second, "PodMonitor targets scraped", healthyPool(p, "podMonitor/"+rbacNS+"/worker/0", 1))
	eventually(t, 30*time.Second, "pods on nodes scraped", healthyPool(p, "podMonitor/"+rbacNS+"/daemon/0", 2))
	eventually(t, 30*time.Second, "samples at the receiver", queryCount(e.rcv, `up{namespace="`+rbacNS+`"} == 1`, 7))
	eventually(t, 30*time.Second, "node labels at the receiver (attachMetadata.node)", queryCount(e.rcv, `up{namespace="`+rbacNS+`",zone="zone-a"} == 1`, 1))
	require.NotRegexp(t, `(?i)forbidden`, p.Log(), "promshard's log")
}

// testDaemonSet runs the DaemonSet's arguments as the member on node-a.
func (e *rbacEnv) testDaemonSet(t *testing.T) {
	ctx := context.Background()
	args := append(deployArgs(t, renderDeploy(t, "daemonset"), "DaemonSet"), gossipKeyFile(t))
	t.Logf("NODE_NAME=node-a promshard run %s", strings.Join(args, " "))
	p := startPromshard(t, e.bed, testbed.PromshardOptions{Name: "deploy-ds", Kubeconfig: e.sa.kubeconfig, Gossip: true,
		Env: []string{"NODE_NAME=node-a"}, Args: args})
	// Its node's pod only; node-b's belongs to node-b's member.
	eventually(t, 60*time.Second, "node-a's pod scraped", healthyPool(p, "podMonitor/"+rbacNS+"/daemon/0", 1))
	ts, err := poolTargets(ctx, p, "podMonitor/"+rbacNS+"/daemon/0")
	require.NoError(t, err)
	require.Equal(t, e.onNode["node-a"].URL(), ts[0].ScrapeURL)
	// Node-less targets are hashed; alone, it owns them all.
	eventually(t, 30*time.Second, "node-less targets scraped", healthyPool(p, "serviceMonitor/"+rbacNS+"/web/0", 3))
	require.NotRegexp(t, `(?i)forbidden`, p.Log(), "promshard's log")
}

// testControl shows the log check can fail: an unbound token is refused.
func (e *rbacEnv) testControl(t *testing.T) {
	p := startPromshard(t, e.bed, testbed.PromshardOptions{Name: "deploy-unbound", Kubeconfig: e.unbound.kubeconfig, NoWaitReady: true, Args: deployArgs(t, e.base, "StatefulSet")})
	defer p.Kill()
	forbidden := regexp.MustCompile(`(?i).*forbidden.*`)
	eventually(t, 30*time.Second, "forbidden in the log", func(context.Context) error {
		if forbidden.MatchString(p.Log()) {
			return nil
		}
		return errors.New("no forbidden line yet")
	})
	t.Logf("first such line: %s", forbidden.FindString(p.Log()))
}

// testRules compares everything the token may do with an unbound token's
// rights: the difference must be exactly deployWantRules.
func (e *rbacEnv) testRules(t *testing.T) {
	got, gotNR := e.sa.rules(t, rbacNS)
	floor, floorNR := e.unbound.rules(t, rbacNS)
	var extra []string
	for _, r := range got {
		if !slices.Contains(floor, r) {
			extra = append(extra, r)
		}
	}
	require.Equal(t, rbacTriples(deployWantRules), extra)
	require.Equal(t, floorNR, gotNR, "non-resource URLs")
}

// testAccessReviews asks the API server about chosen rights, granted and not.
func (e *rbacEnv) testAccessReviews(t *testing.T) {
	for _, tc := range []struct {
		verb, group, resource string
		allowed               bool
	}{
		// Used: informers of promshard and of Prometheus' Kubernetes SD.
		{"list", "monitoring.coreos.com", "servicemonitors", true},
		{"watch", "monitoring.coreos.com", "prometheusagents", true},
		{"watch", "", "secrets", true},
		{"list", "", "configmaps", true},
		{"watch", "", "namespaces", true},
		{"list", "", "nodes", true},
		{"watch", "", "nodes", true},
		{"watch", "", "pods", true},
		{"list", "discovery.k8s.io", "endpointslices", true},
		{"list", "networking.k8s.io", "ingresses", true},
		// Used: status by server-side apply, Warning Events.
		{"patch", "monitoring.coreos.com", "podmonitors/status", true},
		{"patch", "monitoring.coreos.com", "prometheusagents/status", true},
		{"create", "", "events", true},
		// Not used: no get, no status update, no events.k8s.io.
		{"get", "", "secrets", false},
		{"get", "monitoring.coreos.com", "servicemonitors", false},
		{"get", "", "nodes", false},
		{"update", "monitoring.coreos.com", "servicemonitors/status", false},
		{"get", "monitoring.coreos.com", "servicemonitors/status", false},
		{"create", "events.k8s.io", "events", false},
		{"patch", "", "events", false},
		{"create", "monitoring.coreos.com", "servicemonitors", false},
		{"update", "monitoring.coreos.com", "servicemonitors", false},
		{"delete", "monitoring.coreos.com", "podmonitors", false},
		{"patch", "monitoring.coreos.com", "prometheusagents", false},
		{"create", "", "secrets", false},
		{"update", "", "configmaps", false},
		{"delete", "", "pods", false},
		{"create", "", "pods/exec", false},
		{"get", "", "pods/log", false},
		{"get", "", "nodes/proxy", false},
		{"create", "", "nodes", false},
		{"create", "", "serviceaccounts/token", false},
		{"delete", "", "events", false},
		{"bind", "rbac.authorization.k8s.io", "clusterroles", false},
		{"escalate", "rbac.authorization.k8s.io", "clusterroles", false},
		{"impersonate", "", "users", false},
		{"create", "apps", "statefulsets", false},
	} {
		require.Equal(t, tc.allowed, e.sa.can(t, rbacNS, tc.verb, tc.group, tc.resource), "%s %s %s", tc.verb, tc.group, tc.resource)
	}
}

// testDirectCalls tries writes with the token.
func (e *rbacEnv) testDirectCalls(t *testing.T) {
	ctx := context.Background()
	_, err := e.sa.kube.CoreV1().Secrets(rbacNS).Create(ctx, secret(rbacNS, "stolen", map[string]string{"k": "v"}), metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "create Secret: %v", err)
	err = e.sa.kube.CoreV1().Pods(rbacNS).Delete(ctx, "worker", metav1.DeleteOptions{})
	require.True(t, apierrors.IsForbidden(err), "delete Pod: %v", err)
	smGVR, err := testbed.MonitoringGVR(&monitoringv1.ServiceMonitor{})
	require.NoError(t, err)
	_, err = e.sa.dyn.Resource(smGVR).Namespace(rbacNS).List(ctx, metav1.ListOptions{})
	require.NoError(t, err, "list ServiceMonitors")
	_, err = e.sa.dyn.Resource(smGVR).Namespace(rbacNS).Get(ctx, "web", metav1.GetOptions{})
	require.True(t, apierrors.IsForbidden(err), "get ServiceMonitor: %v", err)
	sm, err := e.bed.Dynamic.Resource(smGVR).Namespace(rbacNS).Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err, "get ServiceMonitor as admin")
	sm.SetLabels(map[string]string{"changed": "yes"})
	_, err = e.sa.dyn.Resource(smGVR).Namespace(rbacNS).Update(ctx, sm, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
	require.True(t, apierrors.IsForbidden(err), "update ServiceMonitor: %v", err)
	_, err = e.sa.dyn.Resource(smGVR).Namespace(rbacNS).UpdateStatus(ctx, sm, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
	require.True(t, apierrors.IsForbidden(err), "update ServiceMonitor status: %v", err)
	sm.SetResourceVersion("")
	sm.SetName("copy")
	_, err = e.sa.dyn.Resource(smGVR).Namespace(rbacNS).Create(ctx, sm, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.True(t, apierrors.IsForbidden(err), "create ServiceMonitor: %v", err)
	// The status writer's calls work: apply on the status subresource and
	// a Warning Event.
	apply := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
		"metadata": map[string]any{"name": "web", "namespace": rbacNS},
		"status":   map[string]any{"bindings": []any{}},
	}}
	_, err = e.sa.dyn.Resource(smGVR).Namespace(rbacNS).Apply(ctx, "web", apply,
		metav1.ApplyOptions{FieldManager: "rbac-test", Force: true, DryRun: []string{metav1.DryRunAll}}, "status")
	require.NoError(t, err, "apply ServiceMonitor status")
	_, err = e.sa.kube.CoreV1().Events(rbacNS).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: rbacNS, GenerateName: "web."},
		InvolvedObject: corev1.ObjectReference{APIVersion: "monitoring.coreos.com/v1", Kind: "ServiceMonitor", Namespace: rbacNS, Name: "web"},
		Reason:         "Rejected", Message: "dry-run", Type: corev1.EventTypeWarning, Source: corev1.EventSource{Component: "promshard"},
	}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.NoError(t, err, "create Event")
	_, err = e.sa.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.NoError(t, err, "list Nodes")
}
