package discovery

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/promshard/promshard/config"
)

// manifestExtensions are the file name endings read from folders.
var manifestExtensions = []string{".yaml", ".yml", ".json"}

// LoadManifests reads Kubernetes objects from YAML or JSON files, or from
// every .yaml/.yml/.json file under folders (recursively, in lexical order),
// into a Snapshot without a PrometheusAgent (flags-only mode). Files may
// hold several documents and `List` objects. Objects of unknown kinds are
// ignored; a document that cannot be parsed is an error naming its file.
// Objects without a namespace get "default", like kubectl.
func LoadManifests(paths []string) (*config.Snapshot, error) {
	snap, _, err := loadManifests(paths)
	return snap, err
}

// LoadManifestsForAgent is LoadManifests that also sets Snapshot.Agent to
// the PrometheusAgent named agent ("namespace/name") found among the
// manifests. It is an error if there is no such object.
func LoadManifestsForAgent(paths []string, agent string) (*config.Snapshot, error) {
	ns, name, ok := strings.Cut(agent, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("invalid PrometheusAgent reference %q: want namespace/name", agent)
	}
	snap, agents, err := loadManifests(paths)
	if err != nil {
		return nil, err
	}
	for _, a := range agents {
		if a.Namespace == ns && a.Name == name {
			snap.Agent = a
			return snap, nil
		}
	}
	return nil, fmt.Errorf("PrometheusAgent %s not found in the manifests", agent)
}

func loadManifests(paths []string) (*config.Snapshot, []*monitoringv1alpha1.PrometheusAgent, error) {
	l := &manifestLoader{snap: &config.Snapshot{}}
	for _, p := range paths {
		files, err := manifestFiles(p)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range files {
			if err := l.loadFile(f); err != nil {
				return nil, nil, err
			}
		}
	}
	return l.snap, l.agents, nil
}

// manifestFiles expands p into the manifest files it names.
func manifestFiles(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		ext := strings.ToLower(filepath.Ext(path))
		for _, e := range manifestExtensions {
			if ext == e {
				files = append(files, path)
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read manifests folder %s: %w", p, err)
	}
	sort.Strings(files)
	return files, nil
}

// manifestLoader accumulates the objects of all files.
type manifestLoader struct {
	snap   *config.Snapshot
	agents []*monitoringv1alpha1.PrometheusAgent
}

func (l *manifestLoader) loadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for doc := 1; ; doc++ {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		if len(obj) == 0 {
			continue
		}
		if err := l.addObject(obj); err != nil {
			return fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
	}
}

// addObject converts one object (or the items of a List) into its typed
// form and adds it to the snapshot.
func (l *manifestLoader) addObject(obj map[string]any) error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	if kind == "" {
		return errors.New("object has no kind")
	}
	if strings.HasSuffix(kind, "List") {
		items, _ := obj["items"].([]any)
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				return fmt.Errorf("%s item %d is not an object", kind, i)
			}
			if err := l.addObject(m); err != nil {
				return fmt.Errorf("%s item %d: %w", kind, i, err)
			}
		}
		return nil
	}
	target := l.newTarget(apiVersion, kind)
	if target == nil {
		return nil // not a kind that shapes the configuration
	}
	if kind != "Namespace" {
		defaultNamespace(obj)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, target); err != nil {
		return fmt.Errorf("%s %s: %w", kind, objectName(obj), err)
	}
	return nil
}

// newTarget allocates the typed object for apiVersion/kind, appends it to
// the snapshot and returns it; nil for kinds that are ignored.
func (l *manifestLoader) newTarget(apiVersion, kind string) runtime.Object {
	s := l.snap
	v1 := monitoringv1.SchemeGroupVersion.String()
	v1alpha1 := monitoringv1alpha1.SchemeGroupVersion.String()
	switch {
	case apiVersion == v1 && kind == monitoringv1.ServiceMonitorsKind:
		o := &monitoringv1.ServiceMonitor{}
		s.ServiceMonitors = append(s.ServiceMonitors, o)
		return o
	case apiVersion == v1 && kind == monitoringv1.PodMonitorsKind:
		o := &monitoringv1.PodMonitor{}
		s.PodMonitors = append(s.PodMonitors, o)
		return o
	case apiVersion == v1 && kind == monitoringv1.ProbesKind:
		o := &monitoringv1.Probe{}
		s.Probes = append(s.Probes, o)
		return o
	case apiVersion == v1alpha1 && kind == monitoringv1alpha1.ScrapeConfigsKind:
		o := &monitoringv1alpha1.ScrapeConfig{}
		s.ScrapeConfigs = append(s.ScrapeConfigs, o)
		return o
	case apiVersion == v1alpha1 && kind == monitoringv1alpha1.PrometheusAgentsKind:
		o := &monitoringv1alpha1.PrometheusAgent{}
		l.agents = append(l.agents, o)
		return o
	case apiVersion == "v1" && kind == "Namespace":
		o := &corev1.Namespace{}
		s.Namespaces = append(s.Namespaces, o)
		return o
	case apiVersion == "v1" && kind == "Secret":
		o := &corev1.Secret{}
		s.Secrets = append(s.Secrets, o)
		return o
	case apiVersion == "v1" && kind == "ConfigMap":
		o := &corev1.ConfigMap{}
		s.ConfigMaps = append(s.ConfigMaps, o)
		return o
	}
	return nil
}

func objectName(obj map[string]any) string {
	md, _ := obj["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	name, _ := md["name"].(string)
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// defaultNamespace sets metadata.namespace to "default" when it is missing.
func defaultNamespace(obj map[string]any) {
	md, ok := obj["metadata"].(map[string]any)
	if !ok {
		md = map[string]any{}
		obj["metadata"] = md
	}
	if ns, _ := md["namespace"].(string); ns == "" {
		md["namespace"] = "default"
	}
}
