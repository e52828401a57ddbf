package sharding

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/stretchr/testify/require"
)

// testConfig has a pod job in the shape prometheus-operator generates: the
// address comes from the pod IP and the container port, a drop annotation
// drops a pod, meta labels become pod/node labels.
const testConfig = `
global:
  scrape_interval: 15s
scrape_configs:
- job_name: podMonitor/default/app/0
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_annotation_drop]
    regex: "true"
    action: drop
  - source_labels: [__meta_kubernetes_pod_ip]
    target_label: __address__
    replacement: $1:8080
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
  - source_labels: [__meta_kubernetes_pod_node_name]
    target_label: node
- job_name: static
`

func testScrapeConfigs(t testing.TB) []*config.ScrapeConfig {
	t.Helper()
	scs, err := loadScrapeConfigs(testConfig)
	require.NoError(t, err)
	return scs
}

func loadScrapeConfigs(yaml string) ([]*config.ScrapeConfig, error) {
	cfg, err := config.Load(yaml, nil)
	if err != nil {
		return nil, err
	}
	return cfg.GetScrapeConfigs()
}

const podJob = "podMonitor/default/app/0"

// pod returns a discovered pod target; port only changes the discovered
// address, which relabeling overwrites.
func pod(i, port int, node string) model.LabelSet {
	ip := fmt.Sprintf("10.0.%d.%d", i/250, i%250)
	ls := model.LabelSet{
		"__address__":                    model.LabelValue(fmt.Sprintf("%s:%d", ip, port)),
		"__meta_kubernetes_pod_ip":       model.LabelValue(ip),
		"__meta_kubernetes_pod_name":     model.LabelValue(fmt.Sprintf("app-%d", i)),
		"__meta_kubernetes_pod_scraped":  "true",
		"__meta_kubernetes_pod_phase_ok": "true",
	}
	if node != "" {
		ls["__meta_kubernetes_pod_node_name"] = model.LabelValue(node)
	}
	return ls
}

func podGroups(n int, node func(i int) string) map[string][]*targetgroup.Group {
	tg := &targetgroup.Group{Source: "pod/default", Labels: model.LabelSet{"__meta_kubernetes_namespace": "default"}}
	for i := range n {
		tg.Targets = append(tg.Targets, pod(i, 80, node(i)))
	}
	static := &targetgroup.Group{Source: "0", Targets: []model.LabelSet{{"__address__": "198.18.0.1:9100"}}}
	return map[string][]*targetgroup.Group{podJob: {tg}, "static": {static}}
}

func noNode(int) string { return "" }

// testMembers is a MemberSource the test changes at will.
type testMembers struct {
	mtx     sync.Mutex
	members []Member
	ready   bool
	changes chan struct{}
}

func newTestMembers(names ...string) *testMembers {
	m := &testMembers{ready: true, changes: make(chan struct{}, 1)}
	m.set(names...)
	return m
}

func (m *testMembers) set(names ...string) {
	m.mtx.Lock()
	m.members = nil
	for _, n := range names {
		m.members = append(m.members, Member{Name: n, State: StateParticipant, KeyVersion: LatestKeyVersion})
	}
	m.mtx.Unlock()
	m.signal()
}

func (m *testMembers) signal() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

func (m *testMembers) Members() []Member {
	m.mtx.Lock()
	defer m.mtx.Unlock()
	return slices.Clone(m.members)
}
func (m *testMembers) Changes() <-chan struct{} { return m.changes }
func (m *testMembers) Ready() bool {
	m.mtx.Lock()
	defer m.mtx.Unlock()
	return m.ready
}

// testStaleness records DisableEndOfRunStalenessMarkers calls; active
// stands for the scrape manager's running loops.
type testStaleness struct {
	mtx      sync.Mutex
	disabled map[string][]string // job → target label sets
	active   map[string][]*scrape.Target
}

func (s *testStaleness) TargetsActive() map[string][]*scrape.Target {
	s.mtx.Lock()
	defer s.mtx.Unlock()
	return s.active
}

func (s *testStaleness) DisableEndOfRunStalenessMarkers(job string, targets []*scrape.Target) {
	s.mtx.Lock()
	defer s.mtx.Unlock()
	if s.disabled == nil {
		s.disabled = map[string][]string{}
	}
	for _, t := range targets {
		s.disabled[job] = append(s.disabled[job], t.Labels(labels.NewBuilder(labels.EmptyLabels())).String())
	}
}

func newTestFilter(t testing.TB, opts FilterOptions) *Filter {
	t.Helper()
	f, err := NewFilter(opts)
	require.NoError(t, err)
	f.SetScrapeConfigs(testScrapeConfigs(t))
	return f
}

// filterOnce runs one recompute over tsets, as Run does on new input.
func filterOnce(f *Filter, tsets map[string][]*targetgroup.Group) map[string][]*targetgroup.Group {
	f.setInput(tsets)
	return recomputeAll(f, true)
}

// recomputeAll runs one recompute and returns every job's output, as Run
// sends it.
func recomputeAll(f *Filter, reprepare bool) map[string][]*targetgroup.Group {
	f.recompute(reprepare)
	return maps.Clone(f.out)
}

// finalTargets returns the final label sets (what the scrape pool scrapes)
// of the targets in out, keyed by job.
func finalTargets(t testing.TB, out map[string][]*targetgroup.Group) map[string][]string {
	t.Helper()
	cfgs := map[string]*config.ScrapeConfig{}
	for _, c := range testScrapeConfigs(t) {
		cfgs[c.JobName] = c
	}
	res := map[string][]string{}
	lb := labels.NewBuilder(labels.EmptyLabels())
	for job, groups := range out {
		res[job] = []string{}
		for _, tg := range groups {
			targets, failures := scrape.TargetsFromGroup(tg, cfgs[job], nil, lb)
			require.Empty(t, failures)
			for _, tt := range targets {
				ls := tt.Labels(lb)
				if !ls.IsEmpty() {
					res[job] = append(res[job], ls.String())
				}
			}
		}
		slices.Sort(res[job])
		res[job] = slices.Compact(res[job])
	}
	return res
}
