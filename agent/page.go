package agent

import (
	"context"
	"embed"
	"html/template"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/common/version"

	"github.com/promshard/promshard/config"
)

// ClusterInfo is the cluster as this member sees it, for the status page.
// cmd/ adapts sharding's status to it, so agent does not import sharding.
type ClusterInfo struct {
	Self         string
	Ready        bool
	TotalTargets int
	Members      []MemberInfo
	// CrossZone counts the targets this member owns outside its zone.
	CrossZone int
	// TotalSeries is the series of every target when ownership balances
	// series (0: it balances targets); MaxSeriesPerMember the limit (0:
	// none), MembersNeeded the members it takes to keep within it, and
	// OverLimit tells that some member holds more.
	TotalSeries, MaxSeriesPerMember, MembersNeeded int
	OverLimit                                      bool
	// Unowned counts, per Kubernetes node, the targets on a node without a
	// participating member: nobody scrapes them.
	Unowned map[string]int
}

// addRemoteWrite fills in each alive member's remote-write queues.
func (w *Web) addRemoteWrite(ctx context.Context, ci *ClusterInfo) {
	var peers map[string][]QueueStatus
	var errs map[string]error
	if w.opts.Targets != nil {
		peers, errs = w.opts.Targets.RemoteWrite(ctx)
	}
	for i := range ci.Members {
		m := &ci.Members[i]
		switch {
		case m.Name == ci.Self:
			m.RemoteWrite = RemoteWriteStatus(w.opts.Gatherer)
		case errs[m.Name] != nil:
			m.RemoteWriteError = errs[m.Name].Error()
		default:
			m.RemoteWrite = peers[m.Name]
		}
	}
}

// MemberInfo is one cluster member on the status page. State is joining,
// participant, left or dead.
type MemberInfo struct {
	Name, Address, State, Zone string
	OwnedTargets               int
	// OwnedSeries is the member's series (only when balancing series).
	OwnedSeries int
	// RemoteWrite is the member's remote-write queues, filled in by the
	// page (this member's from its metrics, the others' from their
	// /api/v1/status/remote-write); RemoteWriteError says why a member's
	// are missing.
	RemoteWrite      []QueueStatus
	RemoteWriteError string
}

// RulesInfo is the ruler sync as this member runs it, for the status page.
// cmd/ adapts the ruler package's status to it.
type RulesInfo struct {
	Endpoint  string
	Syncing   bool
	LastSync  time.Time
	LastError string
	Objects   []RuleObjectInfo
}

// RuleObjectInfo is one selected PrometheusRule: its ruler namespace, its
// group count and state (synced, pending, rejected or refused).
type RuleObjectInfo struct {
	Object, Namespace string
	Groups            int
	State, Reason     string
}

// APIServerInfo is the Kubernetes API server's reachability as promshard's
// clients see it, for /-/ready and the status page. cmd/ adapts the
// discovery package's.
type APIServerInfo struct {
	// Unreachable holds from a failed request until the server answers.
	Unreachable bool
	// Since is when it became unreachable; LastError the last error since.
	Since     time.Time
	LastError string
	// Timeout is how long a request waits for an unreachable server before
	// its error reaches client-go; past it, /-/ready says so.
	Timeout time.Duration
}

// Exceeded reports whether the server has been unreachable longer than
// Timeout at now.
func (i APIServerInfo) Exceeded(now time.Time) bool {
	return i.Unreachable && now.Sub(i.Since) > i.Timeout
}

// Message is one line saying how long the server has been unreachable and
// why; empty while it is reachable.
func (i APIServerInfo) Message(now time.Time) string {
	if !i.Unreachable {
		return ""
	}
	limit := "within the wait limit of " + i.Timeout.String() + ", requests wait for it"
	if i.Exceeded(now) {
		limit = "longer than the wait limit of " + i.Timeout.String() + ", requests fail with its error"
	}
	return "the Kubernetes API server has been unreachable for " + now.Sub(i.Since).Round(time.Second).String() +
		" (" + limit + "): " + i.LastError
}

//go:embed page.html
var pageFS embed.FS

var pageTmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(100*time.Millisecond).String() + " ago"
	},
}).ParseFS(pageFS, "page.html"))

type pageTarget struct {
	Pool, URL, Health, LastError, Owner string
	LastScrape                          time.Time
	Labels                              string
}

// pageObjectHealth is one object's row in the per-object health table;
// Stale says whose counts are from an earlier answer.
type pageObjectHealth struct {
	ClusterObjectHealth
	StaleSince string
}

type pageData struct {
	Version  string
	Now      time.Time
	Cluster  ClusterInfo
	Targets  []pageTarget
	Up, Down int
	// Scope is "cluster" (every member's targets) or "this member";
	// Object, when set, keeps only the targets of that object
	// ("Kind/namespace/name"); Objects lists the objects to choose from.
	Scope    string
	Object   string
	Objects  []string
	Warnings []string
	// Health is every object's target counts from the members' compact
	// per-object exchange (kept to Object when set); HealthWarnings names
	// the members whose counts are stale or missing.
	Health         []pageObjectHealth
	HealthWarnings []string
	Config         Status
	Rejected       []config.Result
	// Rules is nil when rule sync is off.
	Rules *RulesInfo
	// HealthReason says why /-/healthy fails; empty when healthy.
	HealthReason string
	// APIServer is set while the API server is unreachable.
	APIServer string
}

func (w *Web) statusPage(rw http.ResponseWriter, r *http.Request) {
	d := pageData{Version: version.Version, Now: time.Now(), Object: r.URL.Query().Get("object")}
	if d.Version == "" {
		d.Version = "dev (unstamped build)"
	}
	// Three parts ask the peers (each waits up to the peer timeout for
	// one that does not answer): ask at once, not one after the other.
	var wg sync.WaitGroup
	if w.opts.Cluster != nil {
		d.Cluster = w.opts.Cluster()
		wg.Go(func() { w.addRemoteWrite(r.Context(), &d.Cluster) })
	}
	wg.Go(func() { w.addObjectHealth(r.Context(), &d) })
	d.Scope = "this member"
	var td TargetDiscovery
	var tdErr error
	if w.opts.Targets != nil {
		d.Scope = "cluster"
		wg.Go(func() { td, tdErr = w.opts.Targets.Gather(r.Context()) })
	} else {
		td = w.agent.targets()
	}
	if w.opts.Rules != nil {
		ri := w.opts.Rules()
		d.Rules = &ri
	}
	if w.agent != nil {
		if ok, reason := w.agent.Healthy(); !ok {
			d.HealthReason = reason
		}
	}
	if w.opts.APIServer != nil {
		d.APIServer = w.opts.APIServer().Message(d.Now)
	}
	if w.opts.Reconciler != nil {
		d.Config = w.opts.Reconciler.Status()
		for _, res := range d.Config.Results {
			if !res.Accepted {
				d.Rejected = append(d.Rejected, res)
			}
		}
	}
	wg.Wait()
	if tdErr != nil {
		d.Warnings = append(d.Warnings, tdErr.Error())
	}
	objects := map[string]bool{}
	for _, t := range td.ActiveTargets {
		obj := t.ScrapePool
		if key, ok := config.JobObject(t.ScrapePool); ok {
			obj = key.String()
		}
		objects[obj] = true
		if d.Object != "" && obj != d.Object {
			continue
		}
		d.Targets = append(d.Targets, newPageTarget(t))
		if t.Health == "up" {
			d.Up++
		} else {
			d.Down++
		}
	}
	for o := range objects {
		d.Objects = append(d.Objects, o)
	}
	sort.Strings(d.Objects)
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTmpl.Execute(rw, d); err != nil {
		w.opts.Logger.Error("rendering status page", "err", err)
	}
}

// addObjectHealth fills in the per-object health table.
func (w *Web) addObjectHealth(ctx context.Context, d *pageData) {
	var rep HealthReport
	if w.opts.Health != nil {
		rep = w.opts.Health.Gather(ctx)
	} else {
		for _, h := range w.agent.objectHealth() {
			rep.Objects = append(rep.Objects, ClusterObjectHealth{ObjectHealth: h})
		}
	}
	d.HealthWarnings = rep.Warnings()
	answered := map[string]time.Time{}
	for _, m := range rep.Members {
		answered[m.Name] = m.Answered
	}
	for _, o := range rep.Objects {
		if d.Object != "" && o.Object != d.Object {
			continue
		}
		row := pageObjectHealth{ClusterObjectHealth: o}
		for i, name := range o.Stale {
			if i > 0 {
				row.StaleSince += ", "
			}
			row.StaleSince += name + " as of " + answered[name].Format("15:04:05 MST")
		}
		d.Health = append(d.Health, row)
	}
}

func newPageTarget(t Target) pageTarget {
	pt := pageTarget{Pool: t.ScrapePool, URL: t.ScrapeURL, Health: t.Health, LastError: t.LastError, LastScrape: t.LastScrape, Owner: t.Owner}
	keys := make([]string, 0, len(t.Labels))
	for k := range t.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			pt.Labels += ", "
		}
		pt.Labels += k + "=" + t.Labels[k]
	}
	return pt
}
