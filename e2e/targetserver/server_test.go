package targetserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startControl serves the control API on a unix socket in a temp dir.
func startControl(t *testing.T) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "c.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(nil).Serve(ctx, l) }()
	c := NewClient(sock)
	t.Cleanup(func() {
		c.Close()
		cancel()
		require.NoError(t, <-done)
	})
	return c
}

func scrape(t *testing.T, url string, auth func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if auth != nil {
		auth(req)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestAuth(t *testing.T) {
	c := startControl(t)
	ctx := context.Background()
	basic := func(u, p string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(u, p) } }
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	cases := []struct {
		name string
		spec Spec
		auth func(*http.Request)
		want int
	}{
		{"open", Spec{}, nil, http.StatusOK},
		{"basic ok", Spec{BasicAuthUser: "u", BasicAuthPassword: "p"}, basic("u", "p"), http.StatusOK},
		{"basic wrong password", Spec{BasicAuthUser: "u", BasicAuthPassword: "p"}, basic("u", "q"), http.StatusUnauthorized},
		{"basic missing", Spec{BasicAuthUser: "u", BasicAuthPassword: "p"}, nil, http.StatusUnauthorized},
		{"bearer ok", Spec{BearerToken: "t"}, bearer("t"), http.StatusOK},
		{"bearer wrong", Spec{BearerToken: "t"}, bearer("x"), http.StatusUnauthorized},
		{"either: bearer", Spec{BasicAuthUser: "u", BearerToken: "t"}, bearer("t"), http.StatusOK},
		{"either: basic", Spec{BasicAuthUser: "u", BearerToken: "t"}, basic("u", ""), http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Addr = "127.0.0.1:0"
			addr, err := c.Put(ctx, tc.name, tc.spec)
			require.NoError(t, err)
			code, _ := scrape(t, "http://"+addr+"/metrics", tc.auth)
			require.Equal(t, tc.want, code)
			require.NoError(t, c.Delete(ctx, tc.name))
		})
	}
}

func TestSeriesUpdateAndDelete(t *testing.T) {
	c := startControl(t)
	ctx := context.Background()
	addr, err := c.Put(ctx, "a", Spec{Addr: "127.0.0.1:0", Series: 2})
	require.NoError(t, err)
	_, body := scrape(t, "http://"+addr+"/metrics", nil)
	require.Equal(t, 2, strings.Count(body, "testbed_series{"))
	require.Contains(t, body, `testbed_series{target="a",series="1"} 1`)
	require.Contains(t, body, `testbed_scrapes_total{target="a"} 1`)

	// Same address: updated in place, the listener (and port) stay.
	addr2, err := c.Put(ctx, "a", Spec{Addr: addr, Series: 5})
	require.NoError(t, err)
	require.Equal(t, addr, addr2)
	_, body = scrape(t, "http://"+addr+"/metrics", nil)
	require.Equal(t, 5, strings.Count(body, "testbed_series{"))
	require.Contains(t, body, `testbed_scrapes_total{target="a"} 2`)

	stats, err := c.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, stats["a"].Scrapes)
	require.Equal(t, addr, stats["a"].Addr)

	require.NoError(t, c.Delete(ctx, "a"))
	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "a deleted target must refuse connections")
	stats, err = c.Stats(ctx)
	require.NoError(t, err)
	require.Empty(t, stats)
}

func TestPutErrors(t *testing.T) {
	c := startControl(t)
	ctx := context.Background()
	_, err := c.Put(ctx, "bad-tls", Spec{Addr: "127.0.0.1:0", CertPEM: []byte("junk"), KeyPEM: []byte("junk")})
	require.ErrorContains(t, err, "certificate")
	_, err = c.Put(ctx, "bad-addr", Spec{Addr: "256.0.0.1:0"})
	require.ErrorContains(t, err, "listen")
}
