package ruler

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// The request paths and headers of each API, recorded by a plain HTTP
// server (the e2e tests run the real Cortex ruler).
func TestClientPaths(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.EscapedPath()+" "+r.Header.Get("X-Scope-OrgID"))
		mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("no rule groups found\n"))
		case http.MethodPost:
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		opts ClientOptions
		want []string
	}{
		{ClientOptions{URL: srv.URL, API: APIMimir, Tenant: "t1"}, []string{
			"GET /prometheus/config/v1/rules t1",
			"POST /prometheus/config/v1/rules/promshard%2Fns%2Fx t1",
			"DELETE /prometheus/config/v1/rules/promshard%2Fns%2Fx/g%201 t1",
			"DELETE /prometheus/config/v1/rules/promshard%2Fns%2Fx t1",
		}},
		{ClientOptions{URL: srv.URL + "/base/", API: APICortex}, []string{
			"GET /base/api/v1/rules ",
			"POST /base/api/v1/rules/promshard%2Fns%2Fx ",
			"DELETE /base/api/v1/rules/promshard%2Fns%2Fx/g%201 ",
			"DELETE /base/api/v1/rules/promshard%2Fns%2Fx ",
		}},
		{ClientOptions{URL: srv.URL, API: APIMimir, MimirPrefix: "/custom/"}, []string{
			"GET /custom/config/v1/rules ",
			"POST /custom/config/v1/rules/promshard%2Fns%2Fx ",
			"DELETE /custom/config/v1/rules/promshard%2Fns%2Fx/g%201 ",
			"DELETE /custom/config/v1/rules/promshard%2Fns%2Fx ",
		}},
	} {
		got = nil
		c, err := NewClient(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if m, err := c.List(ctx); err != nil || len(m) != 0 {
			t.Errorf("List = %v, %v; want empty", m, err)
		}
		if err := c.Set(ctx, "promshard/ns/x", group("g 1", "up")); err != nil {
			t.Error(err)
		}
		if err := c.DeleteGroup(ctx, "promshard/ns/x", "g 1"); err != nil {
			t.Error(err)
		}
		if err := c.DeleteNamespace(ctx, "promshard/ns/x"); err != nil {
			t.Error(err)
		}
		for i := range tc.want {
			if i >= len(got) || got[i] != tc.want[i] {
				t.Errorf("%s: requests %q, want %q", tc.opts.API, got, tc.want)
				break
			}
		}
	}
}

func TestClientOptionsInvalid(t *testing.T) {
	for _, o := range []ClientOptions{
		{URL: "mimir:8080", API: APIMimir},
		{URL: "ftp://x", API: APIMimir},
		{URL: "http://x", API: "thanos"},
	} {
		if _, err := NewClient(o); err == nil {
			t.Errorf("NewClient(%+v) accepted", o)
		}
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&Error{Code: 0, Err: errors.New("connection refused")}, true},
		{&Error{Code: 503}, true},
		{&Error{Code: 429}, true},
		{&Error{Code: 400}, false},
		{&Error{Code: 404}, false},
		{errors.New("decode"), true},
		{nil, false},
	} {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
