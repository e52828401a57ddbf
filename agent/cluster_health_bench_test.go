package agent

import (
	"encoding/json"
	"fmt"
	"testing"
)

// BenchmarkPeerExchangeBytes compares what one member answers a peer per
// periodic exchange: its full target list (/api/v1/targets?scope=local,
// what status reporting fetched before) against its per-object counts
// (/api/v1/status/object-health). The shape is that of `make bench-scale`:
// 5,000 ServiceMonitors of 2 endpoints and 2 targets each (20,000 targets),
// 3 members owning a third each; a target carries 34 discovered labels (an
// EndpointSlice target) and 8 final ones. "cluster-B/exchange" is every
// member asking every other once (N x (N-1) answers), as each status
// refresh of each member does.
func BenchmarkPeerExchangeBytes(b *testing.B) {
	const monitors, members = 5000, 3
	var td TargetDiscovery
	var health []ObjectHealth
	for m := range monitors {
		object := fmt.Sprintf("ServiceMonitor/scale-%03d/svc-%04d", m%500, m)
		h := ObjectHealth{Object: object}
		for i := range 4 { // 2 endpoints x 2 targets
			if (m*4+i)%members != 0 {
				continue // another member's
			}
			addr := fmt.Sprintf("10.0.%d.%d:8080", m/250, m%250)
			discovered := map[string]string{"__address__": addr, "job": fmt.Sprintf("serviceMonitor/scale-%03d/svc-%04d/%d", m%500, m, i/2)}
			for l := range 32 {
				discovered[fmt.Sprintf("__meta_kubernetes_label_%02d", l)] = fmt.Sprintf("value-%d-%d", m, l)
			}
			td.ActiveTargets = append(td.ActiveTargets, Target{
				DiscoveredLabels: discovered,
				Labels: map[string]string{"instance": addr, "job": fmt.Sprintf("svc-%04d", m), "namespace": fmt.Sprintf("scale-%03d", m%500),
					"service": fmt.Sprintf("svc-%04d", m), "pod": fmt.Sprintf("svc-%04d-%d", m, i%2), "endpoint": "metrics", "container": "app", "endpoint_index": fmt.Sprint(i / 2)},
				ScrapePool: fmt.Sprintf("serviceMonitor/scale-%03d/svc-%04d/%d", m%500, m, i/2), ScrapeURL: "http://" + addr + "/metrics",
				GlobalURL: "http://" + addr + "/metrics", Health: "up", ScrapeInterval: "1m", ScrapeTimeout: "10s",
			})
			h.add(true, addr, "")
		}
		if h.Targets > 0 {
			health = append(health, h)
		}
	}
	var targetsB, healthB int
	for b.Loop() {
		t, err := json.Marshal(apiResponse{Status: "success", Data: td})
		if err != nil {
			b.Fatal(err)
		}
		h, err := json.Marshal(apiResponse{Status: "success", Data: objectHealthResponse{Objects: health}})
		if err != nil {
			b.Fatal(err)
		}
		targetsB, healthB = len(t), len(h)
	}
	b.ReportMetric(float64(targetsB), "targets-B/answer")
	b.ReportMetric(float64(healthB), "object-health-B/answer")
	b.ReportMetric(float64(targetsB*members*(members-1)), "targets-cluster-B/exchange")
	b.ReportMetric(float64(healthB*members*(members-1)), "object-health-cluster-B/exchange")
}
