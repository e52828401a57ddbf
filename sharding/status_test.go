package sharding

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

type fixedStats Stats

func (s fixedStats) Stats() Stats { return Stats(s) }

func TestStatusHandler(t *testing.T) {
	members := newTestMembers("n0", "n1")
	members.members = append(members.members, Member{Name: "n2", Address: "127.0.0.3:7946", State: StateDead})
	stats := fixedStats{Ready: true, KeyVersion: KeySeries, TotalTargets: 12, Owned: map[string]int{"n0": 6, "n1": 4}, Unowned: map[string]int{"node-x": 2}}
	for _, tc := range []struct {
		name   string
		stats  StatsSource
		method string
		code   int
		body   string
	}{
		{"with stats", stats, http.MethodGet, http.StatusOK, `{"status":"success","data":{"self":"n0","ready":true,"members":[` +
			`{"name":"n0","address":"","state":"participant","keyVersion":2,"ownedTargets":6},` +
			`{"name":"n1","address":"","state":"participant","keyVersion":2,"ownedTargets":4},` +
			`{"name":"n2","address":"127.0.0.3:7946","state":"dead","ownedTargets":0}],"totalTargets":12,"crossZone":0,"unowned":{"node-x":2},"keyVersion":2,"held":0}}`},
		{"without filter", nil, http.MethodGet, http.StatusOK, `{"status":"success","data":{"self":"n0","ready":false,"members":[` +
			`{"name":"n0","address":"","state":"participant","keyVersion":2,"ownedTargets":0},` +
			`{"name":"n1","address":"","state":"participant","keyVersion":2,"ownedTargets":0},` +
			`{"name":"n2","address":"127.0.0.3:7946","state":"dead","ownedTargets":0}],"totalTargets":0,"crossZone":0,"held":0}}`},
		{"post", stats, http.MethodPost, http.StatusMethodNotAllowed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			NewStatusHandler("n0", members, tc.stats).ServeHTTP(rec, httptest.NewRequest(tc.method, "/api/v1/cluster", nil))
			require.Equal(t, tc.code, rec.Code)
			if tc.body != "" {
				require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
				require.JSONEq(t, tc.body, rec.Body.String())
			}
		})
	}
}

func TestFilterPartitionDuplicatesNeverLoses(t *testing.T) {
	// Split brain: n0 and n1 each see only themselves, n2 sees everyone.
	tsets := podGroups(100, noNode)
	owners := map[string][]string{}
	for _, tc := range []struct {
		self string
		view []string
	}{{"n0", []string{"n0"}}, {"n1", []string{"n1"}}, {"n2", three}} {
		f := newTestFilter(t, FilterOptions{Self: tc.self, Members: newTestMembers(tc.view...)})
		for _, ls := range finalTargets(t, filterOnce(f, tsets))[podJob] {
			owners[ls] = append(owners[ls], tc.self)
		}
	}
	require.Len(t, owners, 100, "no target is lost")
	for ls, o := range owners {
		require.Contains(t, o, "n0", ls)
		require.Contains(t, o, "n1", ls)
	}
}
