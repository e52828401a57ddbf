package agent

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReadyAndPageReportTheAPIServer(t *testing.T) {
	a := newTestAgent(t)
	t.Cleanup(a.closeStorage)
	var ready bool
	var api APIServerInfo
	w, err := NewWeb(WebOptions{
		ListenAddress: "127.0.0.1:0",
		Ready:         func() bool { return ready },
		APIServer:     func() APIServerInfo { return api },
	}, a)
	require.NoError(t, err)
	defer w.ln.Close()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		w.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	const x509 = `Get "https://10.0.0.1:6443/api": tls: failed to verify certificate: x509: certificate signed by unknown authority`
	for _, tc := range []struct {
		name  string
		ready bool
		api   APIServerInfo
		code  int
		body  string
	}{
		{"reachable, not ready", false, APIServerInfo{Timeout: 30 * time.Second}, 503,
			"promshard is not ready: waiting for informers to sync, the first configuration and the first discovery result\n"},
		{"unreachable within the limit, not ready", false, APIServerInfo{Unreachable: true, Since: time.Now().Add(-10 * time.Second), LastError: x509, Timeout: 30 * time.Second}, 503,
			"promshard is not ready: waiting for informers to sync"},
		{"unreachable beyond the limit, not ready", false, APIServerInfo{Unreachable: true, Since: time.Now().Add(-time.Minute), LastError: x509, Timeout: 30 * time.Second}, 503,
			"promshard is not ready: the Kubernetes API server has been unreachable for 1m0s (longer than the wait limit of 30s, requests fail with its error): " + x509 + "\n"},
		{"reachable, ready", true, APIServerInfo{Timeout: 30 * time.Second}, 200, "promshard is Ready.\n"},
		{"unreachable beyond the limit, ready", true, APIServerInfo{Unreachable: true, Since: time.Now().Add(-time.Minute), LastError: x509, Timeout: 30 * time.Second}, 200,
			"promshard is Ready, scraping with the last configuration it saw, but the Kubernetes API server has been unreachable for 1m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready, api = tc.ready, tc.api
			code, body := get("/-/ready")
			require.Equal(t, tc.code, code, body)
			require.Contains(t, body, tc.body)
			_, page := get("/")
			if tc.api.Unreachable {
				require.Contains(t, page, `id="apiserver">Kubernetes API: the Kubernetes API server has been unreachable for`)
				require.Contains(t, page, "x509: certificate signed by unknown authority")
			} else {
				require.Contains(t, page, `id="apiserver">Kubernetes API server reachable.`)
			}
			require.Contains(t, page, `id="pipeline-health">Scrape pipeline healthy.`)
		})
	}
}
