package testbed

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// pollInterval is the interval of every start-up wait.
const pollInterval = 50 * time.Millisecond

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func (b *Bed) startKube(ctx context.Context) error {
	t0 := time.Now()
	etcdURL, err := b.startEtcd(ctx)
	if err != nil {
		return err
	}
	b.etcdURL = etcdURL
	t1 := time.Now()
	if err := b.startAPIServer(ctx, etcdURL); err != nil {
		return err
	}
	t2 := time.Now()
	if err := b.installCRDs(ctx); err != nil {
		return err
	}
	b.opts.Logf.printf("testbed: etcd ready in %.2fs, kube-apiserver in %.2fs, CRDs established in %.2fs",
		t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), time.Since(t2).Seconds())
	return nil
}

func (b *Bed) startEtcd(ctx context.Context) (string, error) {
	client, err := freePort("127.0.0.1")
	if err != nil {
		return "", err
	}
	peer, err := freePort("127.0.0.1")
	if err != nil {
		return "", err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	b.etcd, err = startProc(b.runDir, "etcd", filepath.Join(b.dir, "etcd.log"), []string{
		b.bins.Etcd, "--name=default", "--data-dir=" + filepath.Join(b.dir, "etcd"),
		"--listen-client-urls=" + clientURL, "--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		"--unsafe-no-fsync", "--log-level=warn",
	}, nil)
	if err != nil {
		return "", err
	}
	err = poll(ctx, pollInterval, "etcd health", func(ctx context.Context) (bool, error) {
		if b.etcd.exited() {
			return false, fmt.Errorf("etcd exited: %v", b.etcd.waitErr)
		}
		body, code, err := httpGet(ctx, http.DefaultClient, clientURL+"/health", "")
		return err == nil && code == http.StatusOK && strings.Contains(body, `"true"`), err
	})
	return clientURL, err
}

func (b *Bed) startAPIServer(ctx context.Context, etcdURL string) error {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	token, err := b.writeAuthFiles()
	if err != nil {
		return err
	}
	d := b.dir
	b.apiserverArgv = []string{
		b.bins.KubeAPIServer, "--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(d, "pki"),
		"--token-auth-file=" + filepath.Join(d, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(d, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(d, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--disable-admission-plugins=ServiceAccount",
	}
	host := fmt.Sprintf("https://127.0.0.1:%d", port)
	if err := b.runAPIServer(ctx, host, token); err != nil {
		return err
	}
	return b.makeClients(host, token)
}

// runAPIServer starts kube-apiserver with b.apiserverArgv and waits until
// its /readyz is ok.
func (b *Bed) runAPIServer(ctx context.Context, host, token string) error {
	p, err := startProc(b.runDir, "kube-apiserver", filepath.Join(b.dir, "kube-apiserver.log"), b.apiserverArgv, nil)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.apiserver = p
	b.mu.Unlock()
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer insecure.CloseIdleConnections()
	return poll(ctx, pollInterval, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("kube-apiserver exited: %v", p.waitErr)
		}
		body, code, err := httpGet(ctx, insecure, host+"/readyz", token)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("HTTP %d: %s", code, lastLines(body, 3))
		}
		return err == nil, err
	})
}

// StopAPIServer stops kube-apiserver (SIGTERM, SIGKILL after a grace
// period), as in an outage or an upgrade; etcd keeps the data.
func (b *Bed) StopAPIServer() {
	b.mu.Lock()
	p := b.apiserver
	b.mu.Unlock()
	p.stop()
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same address with the same flags, and returns once /readyz is ok.
func (b *Bed) StartAPIServer(ctx context.Context) error {
	b.mu.Lock()
	p := b.apiserver
	b.mu.Unlock()
	if !p.exited() {
		return errors.New("kube-apiserver is running")
	}
	return b.runAPIServer(ctx, b.RestConfig.Host, b.RestConfig.BearerToken)
}

// writeAuthFiles writes the token file (one admin token in system:masters)
// and a fresh service-account RSA key pair; it returns the admin token.
func (b *Bed) writeAuthFiles() (string, error) {
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate admin token: %w", err)
	}
	token := hex.EncodeToString(raw)
	line := fmt.Sprintf("%s,admin,admin,\"system:masters\"\n", token)
	if err := os.WriteFile(filepath.Join(b.dir, "tokens.csv"), []byte(line), 0o600); err != nil {
		return "", fmt.Errorf("write token file: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", fmt.Errorf("generate service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", fmt.Errorf("marshal service-account key: %w", err)
	}
	files := map[string]*pem.Block{
		"sa.key": {Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)},
		"sa.pub": {Type: "PUBLIC KEY", Bytes: pub},
	}
	for name, block := range files {
		if err := os.WriteFile(filepath.Join(b.dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return "", fmt.Errorf("write %s: %w", name, err)
		}
	}
	return token, nil
}

func (b *Bed) makeClients(host, token string) error {
	b.RestConfig = &rest.Config{
		Host:            host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             200,
		Burst:           400,
		// Tests write core/v1 Endpoints on purpose; skip the deprecation warning.
		WarningHandler: rest.NoWarnings{},
	}
	var err error
	if b.Kube, err = kubernetes.NewForConfig(b.RestConfig); err != nil {
		return fmt.Errorf("create kubernetes client: %w", err)
	}
	if b.Dynamic, err = dynamic.NewForConfig(b.RestConfig); err != nil {
		return fmt.Errorf("create dynamic client: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testbed"] = &clientcmdapi.Cluster{Server: host, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["testbed"] = &clientcmdapi.Context{Cluster: "testbed", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "testbed"
	b.Kubeconfig = filepath.Join(b.dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, b.Kubeconfig); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// installCRDs creates every CRD in CRDDir, then waits until each is
// Established and its resources can be listed. The CRDs are handled
// concurrently: schema processing in the API server dominates.
func (b *Bed) installCRDs(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(b.opts.CRDDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRD manifests in %s (run hack/gen-crds.sh): %v", b.opts.CRDDir, err)
	}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.installCRD(ctx, f)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (b *Bed) installCRD(ctx context.Context, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read CRD: %w", err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &u.Object); err != nil {
		return fmt.Errorf("parse CRD %s: %w", file, err)
	}
	// Descriptions are most of the ~0.7 MB of the larger CRDs and slow the
	// API server's schema processing down; validation does not use them.
	stripDescriptions(u.Object["spec"])
	if _, err := b.Dynamic.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create CRD %s: %w", u.GetName(), err)
	}
	return b.waitCRD(ctx, u)
}

// stripDescriptions deletes every string-valued "description" key (a
// schema's documentation; a property named description has a map value).
func stripDescriptions(v any) {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["description"].(string); ok {
			delete(v, "description")
		}
		for _, child := range v {
			stripDescriptions(child)
		}
	case []any:
		for _, child := range v {
			stripDescriptions(child)
		}
	}
}

func (b *Bed) waitCRD(ctx context.Context, crd *unstructured.Unstructured) error {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	return poll(ctx, pollInterval, "CRD "+crd.GetName()+" established", func(ctx context.Context) (bool, error) {
		got, err := b.Dynamic.Resource(crdGVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		established := false
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				established = true
			}
		}
		if !established {
			return false, fmt.Errorf("not Established yet")
		}
		for _, v := range versions {
			name, _ := v.(map[string]any)["name"].(string)
			gvr := schema.GroupVersionResource{Group: group, Version: name, Resource: plural}
			if _, err := b.Dynamic.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
				return false, err
			}
		}
		return true, nil
	})
}

// CreateNamespace creates a namespace with the given labels.
func (b *Bed) CreateNamespace(ctx context.Context, name string, labels map[string]string) error {
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": toAny(labels)}}
	_, err := b.Dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).
		Create(ctx, &unstructured.Unstructured{Object: ns}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// MonitoringGVR returns the resource of a prometheus-operator object: a
// typed struct from pkg/apis/monitoring/v1 or v1alpha1 (ServiceMonitor,
// PodMonitor, Probe, ScrapeConfig, PrometheusAgent, ...), or an unstructured
// object with apiVersion and kind set.
func MonitoringGVR(obj runtime.Object) (schema.GroupVersionResource, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind == "" {
		t := reflect.TypeOf(obj)
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if !strings.Contains(t.PkgPath(), "prometheus-operator/pkg/apis/monitoring/") {
			return schema.GroupVersionResource{}, fmt.Errorf("%T is not a prometheus-operator monitoring type", obj)
		}
		gvk.Kind = t.Name()
		gvk.Group = "monitoring.coreos.com"
		gvk.Version = filepath.Base(t.PkgPath())
	}
	if gvk.Group != "monitoring.coreos.com" || gvk.Version == "" {
		return schema.GroupVersionResource{}, fmt.Errorf("not a monitoring.coreos.com object: %v", gvk)
	}
	return gvk.GroupVersion().WithResource(strings.ToLower(gvk.Kind) + "s"), nil
}

// ApplyMonitoring creates obj (see MonitoringGVR) or, if it exists, updates
// it, and returns the stored object.
func (b *Bed) ApplyMonitoring(ctx context.Context, obj runtime.Object) (*unstructured.Unstructured, error) {
	gvr, err := MonitoringGVR(obj)
	if err != nil {
		return nil, err
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %T: %w", obj, err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(gvr.GroupVersion().String())
	u.SetKind(kindOf(obj))
	delete(u.Object, "status")
	res := b.Dynamic.Resource(gvr).Namespace(u.GetNamespace())
	got, err := res.Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		cur, gerr := res.Get(ctx, u.GetName(), metav1.GetOptions{})
		if gerr != nil {
			return nil, fmt.Errorf("get %s %s/%s: %w", gvr.Resource, u.GetNamespace(), u.GetName(), gerr)
		}
		u.SetResourceVersion(cur.GetResourceVersion())
		got, err = res.Update(ctx, u, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("apply %s %s/%s: %w", gvr.Resource, u.GetNamespace(), u.GetName(), err)
	}
	return got, nil
}

func kindOf(obj runtime.Object) string {
	if k := obj.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	t := reflect.TypeOf(obj)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}
