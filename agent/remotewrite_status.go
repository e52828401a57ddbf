package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Remote-write status per member.
//
// What users judge is what arrives at their long-term storage, so every
// member reports its remote-write queues at /api/v1/status/remote-write and
// the status page shows each member's next to it: samples sent, samples the
// receiver refused or that failed for good (Prometheus'
// prometheus_remote_storage_samples_failed_total, e.g. a strict receiver's
// out-of-order refusals), samples dropped by write relabeling, and how far
// the queue is behind the WAL. The figures come from Prometheus' own
// per-queue metrics (pinned by TestFlushRemoteWrite).

// QueueStatus is one remote-write queue of one member.
type QueueStatus struct {
	// Name is the queue's remote_name, URL its endpoint.
	Name string `json:"name"`
	URL  string `json:"url"`
	// SamplesSent, SamplesFailed, SamplesRetried and SamplesDropped are the
	// queue's counters since the member started.
	SamplesSent    float64 `json:"samplesSent"`
	SamplesFailed  float64 `json:"samplesFailed"`
	SamplesRetried float64 `json:"samplesRetried"`
	SamplesDropped float64 `json:"samplesDropped"`
	// LagSeconds is the highest timestamp enqueued minus the highest sent.
	LagSeconds float64 `json:"lagSeconds"`
	// HighestEnqueued and HighestSent are the highest sample timestamps
	// (Unix seconds, whole: Prometheus truncates them) the queue read from
	// the WAL and sent (or gave up on); Shards is its current shard count.
	HighestEnqueued float64 `json:"highestEnqueued"`
	HighestSent     float64 `json:"highestSent"`
	Shards          float64 `json:"shards"`
}

// remoteWriteMetrics maps Prometheus' per-queue metric names to the field
// each one fills.
var remoteWriteMetrics = map[string]func(q *QueueStatus, v float64){
	"prometheus_remote_storage_samples_total":                        func(q *QueueStatus, v float64) { q.SamplesSent = v },
	"prometheus_remote_storage_samples_failed_total":                 func(q *QueueStatus, v float64) { q.SamplesFailed = v },
	"prometheus_remote_storage_samples_retried_total":                func(q *QueueStatus, v float64) { q.SamplesRetried = v },
	"prometheus_remote_storage_samples_dropped_total":                func(q *QueueStatus, v float64) { q.SamplesDropped = v },
	queueHighestEnqueued:                                             func(q *QueueStatus, v float64) { q.HighestEnqueued = v },
	"prometheus_remote_storage_queue_highest_sent_timestamp_seconds": func(q *QueueStatus, v float64) { q.HighestSent = v },
	"prometheus_remote_storage_shards":                               func(q *QueueStatus, v float64) { q.Shards = v },
}

// RemoteWriteStatus reads the remote-write queues' status from g, sorted
// by name.
func RemoteWriteStatus(g prometheus.Gatherer) []QueueStatus {
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return nil
	}
	byQueue := map[string]*QueueStatus{}
	for _, mf := range mfs {
		set := remoteWriteMetrics[mf.GetName()]
		if set == nil {
			continue
		}
		for _, m := range mf.GetMetric() {
			var name, u string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "remote_name":
					name = lp.GetValue()
				case "url":
					u = lp.GetValue()
				}
			}
			q := byQueue[name+"\x00"+u]
			if q == nil {
				q = &QueueStatus{Name: name, URL: u}
				byQueue[name+"\x00"+u] = q
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			set(q, v)
		}
	}
	out := make([]QueueStatus, 0, len(byQueue))
	for _, q := range byQueue {
		q.LagSeconds = max(q.HighestEnqueued-q.HighestSent, 0)
		out = append(out, *q)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name+out[i].URL < out[j].Name+out[j].URL })
	return out
}

// remoteWriteHandler serves /api/v1/status/remote-write.
func (w *Web) remoteWriteHandler(rw http.ResponseWriter, _ *http.Request) {
	writeJSON(rw, http.StatusOK, apiResponse{Status: "success", Data: RemoteWriteStatus(w.opts.Gatherer)})
}

// RemoteWrite asks every peer for its remote-write queues. A peer that did
// not answer maps to its error instead.
func (c *ClusterTargets) RemoteWrite(ctx context.Context) (map[string][]QueueStatus, map[string]error) {
	peers, client := c.peersAndClient()
	var mtx sync.Mutex
	out, errs := map[string][]QueueStatus{}, map[string]error{}
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			qs, err := fetchRemoteWrite(ctx, client, p)
			mtx.Lock()
			defer mtx.Unlock()
			if err != nil {
				errs[p.Name] = err
				return
			}
			out[p.Name] = qs
		})
	}
	wg.Wait()
	return out, errs
}

func fetchRemoteWrite(ctx context.Context, client *http.Client, p Peer) ([]QueueStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultPeerTimeout)
	defer cancel()
	u, err := url.JoinPath(p.URL, "/api/v1/status/remote-write")
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", u, resp.Status)
	}
	var body struct {
		Data []QueueStatus `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", u, err)
	}
	return body.Data, nil
}
