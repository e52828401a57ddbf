//go:build e2e

package e2e

// Checks of deploy/ and the Dockerfile: the kustomize base and the DaemonSet
// overlay are rendered here (a small loader for the subset of kustomize the
// manifests use, so no kustomize binary is needed), validated by the test
// bed's API server with server-side dry-run, and the ServiceAccount's RBAC is
// proven sufficient (promshard runs end to end with a token of it) and no
// broader (access reviews and direct calls with the same token).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/promshard/promshard/e2e/testbed"
)

// deployDir returns <repo>/deploy.
func deployDir(t testing.TB) string {
	t.Helper()
	root, err := testbed.RepoRoot()
	require.NoError(t, err)
	return filepath.Join(root, "deploy")
}

// kustomization is the subset of kustomize's Kustomization the manifests
// use. Strict decoding makes any other field an error instead of a silently
// different rendering.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Patches    []struct {
		Patch string `json:"patch"`
	} `json:"patches,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

// deployClusterScoped are the cluster-scoped kinds deploy/ may hold; kustomize's
// namespace transformer leaves them alone.
var deployClusterScoped = map[string]bool{
	"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true,
}

// renderKustomization renders the kustomization in dir like
// `kustomize build`: resources (files or kustomization folders) in order,
// `$patch: delete` strategic-merge patches, images, then the namespace.
func renderKustomization(dir string) ([]*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, fmt.Errorf("read kustomization: %w", err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		return nil, fmt.Errorf("%s: unsupported kustomization: %w", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: apiVersion/kind %s/%s", dir, k.APIVersion, k.Kind)
	}
	var objs []*unstructured.Unstructured
	for _, res := range k.Resources {
		p := filepath.Join(dir, res)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource: %w", dir, err)
		}
		var more []*unstructured.Unstructured
		if st.IsDir() {
			more, err = renderKustomization(p)
		} else {
			if rel, _ := filepath.Rel(dir, p); strings.HasPrefix(rel, "..") {
				return nil, fmt.Errorf("%s: file %s is outside the kustomization root (kustomize refuses it)", dir, res)
			}
			more, err = readDeployManifests(p)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	for _, p := range k.Patches {
		if objs, err = kustomizeDeletePatch(objs, p.Patch); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	}
	for _, o := range objs {
		if k.Namespace != "" && !deployClusterScoped[o.GetKind()] {
			o.SetNamespace(k.Namespace)
		}
		for _, img := range k.Images {
			kustomizeSetImage(o, img.Name, img.NewName, img.NewTag)
		}
	}
	seen := map[string]bool{}
	for _, o := range objs {
		id := o.GroupVersionKind().GroupKind().String() + " " + o.GetNamespace() + "/" + o.GetName()
		if seen[id] {
			return nil, fmt.Errorf("%s: %s defined twice", dir, id)
		}
		seen[id] = true
	}
	return objs, nil
}

// readManifests reads the objects of a multi-document YAML file.
func readDeployManifests(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open manifest: %w", err)
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		// YAML → JSON → map with int64 numbers, as the API machinery has it.
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		m := map[string]any{}
		if err := utiljson.Unmarshal(j, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(m) == 0 {
			continue // comments only
		}
		o := &unstructured.Unstructured{Object: m}
		if o.GetKind() == "" || o.GetAPIVersion() == "" || o.GetName() == "" {
			return nil, fmt.Errorf("%s: object without apiVersion, kind or name", path)
		}
		objs = append(objs, o)
	}
}

// applyDeletePatch removes the object a `$patch: delete` patch names; any
// other patch is unsupported, and a patch that matches nothing is an error
// (as in kustomize).
func kustomizeDeletePatch(objs []*unstructured.Unstructured, patch string) ([]*unstructured.Unstructured, error) {
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(patch), &m); err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	if m["$patch"] != "delete" {
		return nil, fmt.Errorf("patch %q: only `$patch: delete` patches are supported by this renderer", patch)
	}
	p := &unstructured.Unstructured{Object: m}
	out := objs[:0:0]
	for _, o := range objs {
		if o.GetAPIVersion() == p.GetAPIVersion() && o.GetKind() == p.GetKind() && o.GetName() == p.GetName() &&
			(p.GetNamespace() == "" || p.GetNamespace() == o.GetNamespace()) {
			continue
		}
		out = append(out, o)
	}
	if len(out) != len(objs)-1 {
		return nil, fmt.Errorf("delete patch for %s %s matches %d objects, want 1", p.GetKind(), p.GetName(), len(objs)-len(out))
	}
	return out, nil
}

// setImage rewrites the containers of a workload whose image is name.
func kustomizeSetImage(o *unstructured.Unstructured, name, newName, newTag string) {
	containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		cm := c.(map[string]any)
		img, _ := cm["image"].(string)
		base, tag, _ := strings.Cut(img, ":")
		if base != name {
			continue
		}
		if newName != "" {
			base = newName
		}
		if newTag != "" {
			tag = newTag
		}
		cm["image"] = base + ":" + tag
	}
	if containers != nil {
		_ = unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers")
	}
}

// renderDeploy renders deploy/<name>.
func renderDeploy(t testing.TB, name string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := renderKustomization(filepath.Join(deployDir(t), name))
	require.NoError(t, err)
	return objs
}

// find returns the rendered object of kind and name, failing if absent.
func deployObject(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	require.Failf(t, "object missing", "%s %s not rendered", kind, name)
	return nil
}

// kinds lists "Kind/name" of objs, sorted.
func deployKinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}

// podContainer returns the first container of a workload's pod template and
// the pod spec.
func deployContainer(t testing.TB, o *unstructured.Unstructured) (container, pod map[string]any) {
	t.Helper()
	pod, ok, err := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	require.True(t, ok && err == nil, "%s has no pod template: %v", o.GetKind(), err)
	cs, _ := pod["containers"].([]any)
	require.Len(t, cs, 1, "%s containers", o.GetKind())
	return cs[0].(map[string]any), pod
}

// stringsOf converts a []any of strings.
func deployStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// flagValue returns the value of --name=value in args.
func deployFlag(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// envSources maps each env var of a container to its downward API field.
func deployEnv(c map[string]any) map[string]string {
	out := map[string]string{}
	for _, e := range c["env"].([]any) {
		em := e.(map[string]any)
		path, _, _ := unstructured.NestedString(em, "valueFrom", "fieldRef", "fieldPath")
		out[em["name"].(string)] = path
	}
	return out
}

// placeholderKubeconfig points at an address nothing listens on: enough
// for promshard to get past its flags.
const placeholderKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: none
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: none
  user: {token: none}
contexts:
- name: none
  context: {cluster: none, user: none}
current-context: none
`

// checkDeployWorkload checks a StatefulSet or DaemonSet against the base's
// other objects.
func checkDeployWorkload(t *testing.T, base []*unstructured.Unstructured, w *unstructured.Unstructured) {
	gossip := deployObject(t, base, "Service", "promshard-gossip")
	c, pod := deployContainer(t, w)
	args := deployStrings(c["args"])
	join, _ := deployFlag(args, "cluster.join")
	require.Equal(t, "dns+"+gossip.GetName()+"."+gossip.GetNamespace()+".svc:7946", join, w.GetKind())
	agent, _ := deployFlag(args, "prometheus-agent")
	pa := deployObject(t, base, "PrometheusAgent", "promshard")
	require.Equal(t, pa.GetNamespace()+"/"+pa.GetName(), agent, w.GetKind())
	require.Equal(t, "promshard", pa.GetAnnotations()["operator.prometheus.io/controller-id"],
		"the PrometheusAgent must carry a controller-id so prometheus-operator leaves it alone")
	require.Equal(t, deployObject(t, base, "ServiceAccount", "promshard").GetName(), pod["serviceAccountName"], w.GetKind())
	var vols []string
	for _, v := range pod["volumes"].([]any) {
		vm := v.(map[string]any)
		if s, ok := vm["secret"].(map[string]any); ok {
			vols = append(vols, s["secretName"].(string))
			// YAML 1.1 reads 0440 as octal, as kubectl does: owner and
			// fsGroup may read the key.
			require.Equal(t, int64(0o440), s["defaultMode"], w.GetKind())
		}
	}
	require.Equal(t, []string{deployObject(t, base, "Secret", "promshard-gossip-key").GetName()}, vols, w.GetKind())
	env := deployEnv(c)
	require.Equal(t, "metadata.name", env["POD_NAME"], w.GetKind())
	require.Equal(t, "status.podIP", env["POD_IP"], w.GetKind())
	// terminationGracePeriodSeconds must leave room for the flush.
	flush, _ := deployFlag(args, "remote-write.flush-deadline")
	d, err := time.ParseDuration(flush)
	require.NoError(t, err, w.GetKind())
	grace, _ := pod["terminationGracePeriodSeconds"].(int64)
	require.Greater(t, time.Duration(grace)*time.Second, d+15*time.Second, w.GetKind())
}

// TestDeployRender checks what the API server cannot: the manifests agree
// with each other (Service, Secret and ServiceAccount names, the join
// address) and with promshard's flags.
func TestDeployRender(t *testing.T) {
	base := renderDeploy(t, "base")
	ds := renderDeploy(t, "daemonset")
	require.Equal(t, []string{
		"ClusterRole/promshard", "ClusterRoleBinding/promshard", "Namespace/promshard",
		"PodDisruptionBudget/promshard", "PrometheusAgent/promshard", "Secret/promshard-gossip-key",
		"Service/promshard", "Service/promshard-gossip", "ServiceAccount/promshard", "StatefulSet/promshard",
	}, deployKinds(base))
	require.Equal(t, []string{
		"ClusterRole/promshard", "ClusterRoleBinding/promshard", "DaemonSet/promshard", "Namespace/promshard",
		"PrometheusAgent/promshard", "Secret/promshard-gossip-key",
		"Service/promshard", "Service/promshard-gossip", "ServiceAccount/promshard",
	}, deployKinds(ds))

	sts := deployObject(t, base, "StatefulSet", "promshard")
	gossip := deployObject(t, base, "Service", "promshard-gossip")
	clusterIP, _, _ := unstructured.NestedString(gossip.Object, "spec", "clusterIP")
	notReady, _, _ := unstructured.NestedBool(gossip.Object, "spec", "publishNotReadyAddresses")
	require.Equal(t, "None", clusterIP, "gossip Service must be headless")
	require.True(t, notReady, "gossip Service must publish not-ready pods")
	svcName, _, _ := unstructured.NestedString(sts.Object, "spec", "serviceName")
	require.Equal(t, gossip.GetName(), svcName)
	replicas, _, _ := unstructured.NestedInt64(sts.Object, "spec", "replicas")
	require.EqualValues(t, 3, replicas)

	for _, w := range []*unstructured.Unstructured{sts, deployObject(t, ds, "DaemonSet", "promshard")} {
		checkDeployWorkload(t, base, w)
	}
	stsC, _ := deployContainer(t, sts)
	require.Equal(t, "metadata.labels['topology.kubernetes.io/zone']", deployEnv(stsC)["ZONE"], "--sharding.zone from the pod's zone label")
	c, pod := deployContainer(t, deployObject(t, ds, "DaemonSet", "promshard"))
	args := deployStrings(c["args"])
	strategy, _ := deployFlag(args, "sharding.strategy")
	require.Equal(t, "node", strategy)
	require.Equal(t, "spec.nodeName", deployEnv(c)["NODE_NAME"])
	for _, v := range pod["volumes"].([]any) {
		require.NotContains(t, v.(map[string]any), "persistentVolumeClaim")
	}

	t.Run("the gossip key placeholder is refused", func(t *testing.T) {
		key, _, _ := unstructured.NestedString(deployObject(t, base, "Secret", "promshard-gossip-key").Object, "stringData", "key")
		dir := t.TempDir()
		keyFile, kubeconfig := filepath.Join(dir, "key"), filepath.Join(dir, "kubeconfig")
		require.NoError(t, os.WriteFile(keyFile, []byte(key+"\n"), 0o600))
		require.NoError(t, os.WriteFile(kubeconfig, []byte(placeholderKubeconfig), 0o600))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, promshardBinary(t), "run", "--kubeconfig="+kubeconfig,
			"--storage.agent.path="+filepath.Join(dir, "data"), "--web.listen-address=127.0.0.1:0",
			"--cluster.listen-address=127.0.0.1:0", "--cluster.secret-key-file="+keyFile).CombinedOutput()
		require.Error(t, err, "promshard started with the placeholder key: %s", out)
		require.NoError(t, ctx.Err(), "promshard did not exit")
		require.Contains(t, string(out), "secret key")
	})

	t.Run("every flag exists", func(t *testing.T) {
		help, err := exec.Command(promshardBinary(t), "run", "--help").CombinedOutput()
		require.NoError(t, err, "%s", help)
		for _, w := range []*unstructured.Unstructured{sts, deployObject(t, ds, "DaemonSet", "promshard")} {
			c, _ := deployContainer(t, w)
			args := deployStrings(c["args"])
			require.Equal(t, "run", args[0], "first argument is the command")
			for _, a := range args[1:] {
				name, _, _ := strings.Cut(a, "=")
				known := strings.Contains(string(help), name+"=") || strings.Contains(string(help), "--[no-]"+strings.TrimPrefix(name, "--"))
				require.True(t, known, "%s: flag %s unknown to promshard run", w.GetKind(), name)
			}
		}
	})
}

// deployWarnings collects the API server's warning headers.
type deployWarnings struct {
	mu   sync.Mutex
	list []string
}

func (w *deployWarnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *deployWarnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// deployClient talks to the bed as admin and records warnings.
type deployClient struct {
	dyn      dynamic.Interface
	mapper   meta.RESTMapper
	warnings *deployWarnings
}

func newDeployClient(t testing.TB, bed *testbed.Bed) *deployClient {
	t.Helper()
	cfg := rest.CopyConfig(bed.RestConfig)
	w := &deployWarnings{}
	cfg.WarningHandler = w
	dyn, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	return &deployClient{
		dyn:      dyn,
		mapper:   restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(bed.Kube.Discovery())),
		warnings: w,
	}
}

// resource returns the dynamic client of o's resource.
func (c *deployClient) resource(o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dyn.Resource(m.Resource).Namespace(o.GetNamespace()), nil
	}
	return c.dyn.Resource(m.Resource), nil
}

// create creates o (server-side dry-run when dryRun) and returns the
// warnings the API server sent; an existing object is left as is.
func (c *deployClient) create(ctx context.Context, o *unstructured.Unstructured, dryRun bool) ([]string, error) {
	r, err := c.resource(o)
	if err != nil {
		return nil, err
	}
	opts := metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	c.warnings.take()
	_, err = r.Create(ctx, o.DeepCopy(), opts)
	if !dryRun && apierrors.IsAlreadyExists(err) {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return c.warnings.take(), nil
}

// TestDeployCluster runs the manifests against the test bed's API server:
// server-side dry-run of every object, then the ServiceAccount's RBAC.
func TestDeployCluster(t *testing.T) {
	bed := startBed(t)
	c := newDeployClient(t, bed)
	base := renderDeploy(t, "base")
	t.Run("server-side dry-run", func(t *testing.T) { testDeployDryRun(t, bed, c, base) })
	t.Run("RBAC", func(t *testing.T) { testDeployRBAC(t, bed, c, base) })
}

func testDeployDryRun(t *testing.T, bed *testbed.Bed, c *deployClient, base []*unstructured.Unstructured) {
	ctx := context.Background()
	overlay := renderDeploy(t, "daemonset")
	// Namespaces first, dry-run while they do not exist yet; then the
	// namespace for real (namespaced dry-runs need it; its Pod Security
	// labels make the workloads below warn if they were not "restricted").
	all := append(slices.Clone(base), overlay...)
	for _, o := range all {
		if o.GetKind() == "Namespace" {
			w, err := c.create(ctx, o, true)
			require.NoError(t, err)
			require.Empty(t, w)
		}
	}
	_, err := c.create(ctx, deployObject(t, base, "Namespace", "promshard"), false)
	require.NoError(t, err)
	for _, o := range all {
		if o.GetKind() == "Namespace" {
			continue
		}
		w, err := c.create(ctx, o, true)
		require.NoError(t, err, "server-side dry-run")
		require.Empty(t, w, "%s %s: API server warnings", o.GetKind(), o.GetName())
		t.Logf("dry-run ok: %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
	}
	// The warnings are a real check: a workload without the securityContext
	// makes the restricted namespace warn.
	loose := deployObject(t, base, "StatefulSet", "promshard").DeepCopy()
	unstructured.RemoveNestedField(loose.Object, "spec", "template", "spec", "securityContext")
	cs, _, _ := unstructured.NestedSlice(loose.Object, "spec", "template", "spec", "containers")
	delete(cs[0].(map[string]any), "securityContext")
	require.NoError(t, unstructured.SetNestedSlice(loose.Object, cs, "spec", "template", "spec", "containers"))
	w, err := c.create(ctx, loose, true)
	require.NoError(t, err)
	require.NotEmpty(t, w, "a StatefulSet without securityContext should violate the restricted level")
	t.Logf("control: a StatefulSet without securityContext gets: %v", w)
}
