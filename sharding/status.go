package sharding

import (
	"encoding/json"
	"net/http"
)

// MemberLister lists members; *Cluster implements it.
type MemberLister interface {
	Members() []Member
}

// StatsSource reports ownership; *Filter implements it.
type StatsSource interface {
	Stats() Stats
}

var (
	_ MemberLister = (*Cluster)(nil)
	_ StatsSource  = (*Filter)(nil)
)

// ClusterStatus is the data of the /api/v1/cluster response.
type ClusterStatus struct {
	Self         string         `json:"self"`
	Ready        bool           `json:"ready"`
	Members      []MemberStatus `json:"members"`
	TotalTargets int            `json:"totalTargets"`
	// CrossZone counts the targets self owns outside its zone.
	CrossZone int `json:"crossZone"`
	// Unowned counts, per Kubernetes node, the targets on a node without a
	// participant (node strategy): nobody scrapes them.
	Unowned map[string]int `json:"unowned,omitempty"`
	// KeyVersion is the ownership-key version self uses (see KeyVersion).
	KeyVersion KeyVersion `json:"keyVersion,omitempty"`
	// HandoffView and Held: see Stats.
	HandoffView uint64 `json:"handoffView,omitempty"`
	Held        int    `json:"held"`
	// TotalSeries, MaxSeriesPerMember, MembersNeeded, OverLimit: see Stats
	// (--sharding.balance=series).
	TotalSeries        int  `json:"totalSeries,omitempty"`
	MaxSeriesPerMember int  `json:"maxSeriesPerMember,omitempty"`
	MembersNeeded      int  `json:"membersNeeded,omitempty"`
	OverLimit          bool `json:"overLimit,omitempty"`
}

// MemberStatus is one member in ClusterStatus.
type MemberStatus struct {
	Member
	// OwnedTargets is how many targets this member computes the member owns.
	OwnedTargets int `json:"ownedTargets"`
	// OwnedSeries is how many series self computes the member owns
	// (--sharding.balance=series).
	OwnedSeries int `json:"ownedSeries,omitempty"`
}

// Status builds the cluster status as self sees it. stats may be nil.
func Status(self string, members MemberLister, stats StatsSource) ClusterStatus {
	var st Stats
	if stats != nil {
		st = stats.Stats()
	}
	out := ClusterStatus{Self: self, Ready: st.Ready, TotalTargets: st.TotalTargets, CrossZone: st.CrossZone, Unowned: st.Unowned, KeyVersion: st.KeyVersion,
		HandoffView: st.HandoffView, Held: st.Held, Members: []MemberStatus{},
		TotalSeries: st.TotalSeries, MaxSeriesPerMember: st.MaxSeriesPerMember, MembersNeeded: st.MembersNeeded, OverLimit: st.OverLimit}
	for _, m := range members.Members() {
		out.Members = append(out.Members, MemberStatus{Member: m, OwnedTargets: st.Owned[m.Name], OwnedSeries: st.Series[m.Name]})
	}
	return out
}

// NewStatusHandler serves GET /api/v1/cluster in the Prometheus API envelope:
// {"status":"success","data":ClusterStatus}. stats may be nil.
func NewStatusHandler(self string, members MemberLister, stats StatsSource) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Status string        `json:"status"`
			Data   ClusterStatus `json:"data"`
		}{"success", Status(self, members, stats)})
	})
}
