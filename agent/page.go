package agent

import (
	"embed"
	"html/template"
	"net/http"
	"sort"
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
	// Unowned counts, per Kubernetes node, the targets on a node without a
	// participating member: nobody scrapes them.
	Unowned map[string]int
}

// MemberInfo is one cluster member on the status page. State is joining,
// participant, left or dead.
type MemberInfo struct {
	Name, Address, State, Zone string
	OwnedTargets               int
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
	Pool, URL, Health, LastError string
	LastScrape                   time.Time
	Labels                       string
}

type pageData struct {
	Version  string
	Now      time.Time
	Cluster  ClusterInfo
	Targets  []pageTarget
	Up, Down int
	Config   Status
	Rejected []config.Result
}

func (w *Web) statusPage(rw http.ResponseWriter, _ *http.Request) {
	d := pageData{Version: version.Version, Now: time.Now()}
	if d.Version == "" {
		d.Version = "dev (unstamped build)"
	}
	if w.opts.Cluster != nil {
		d.Cluster = w.opts.Cluster()
	}
	if w.opts.Reconciler != nil {
		d.Config = w.opts.Reconciler.Status()
		for _, res := range d.Config.Results {
			if !res.Accepted {
				d.Rejected = append(d.Rejected, res)
			}
		}
	}
	for _, t := range targetsOf(w.agent.ScrapeManager()).ActiveTargets {
		pt := pageTarget{Pool: t.ScrapePool, URL: t.ScrapeURL, Health: t.Health, LastError: t.LastError, LastScrape: t.LastScrape}
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
		if t.Health == "up" {
			d.Up++
		} else {
			d.Down++
		}
		d.Targets = append(d.Targets, pt)
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTmpl.Execute(rw, d); err != nil {
		w.opts.Logger.Error("rendering status page", "err", err)
	}
}
