package targetserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// ControlHandler serves the control API:
//
//	PUT    /targets/{name}  body: Spec   → {"addr": "<host:port>"}
//	DELETE /targets/{name}
//	GET    /targets         → {"<name>": Stats, ...}
//	GET    /healthz
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /targets/{name}", func(w http.ResponseWriter, r *http.Request) {
		var spec Spec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			http.Error(w, "decode spec: "+err.Error(), http.StatusBadRequest)
			return
		}
		addr, err := s.Put(r.PathValue("name"), spec)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeJSON(w, map[string]string{"addr": addr})
	})
	mux.HandleFunc("DELETE /targets/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.Delete(r.PathValue("name"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /targets", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Stats())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Client talks to a control API on a unix socket.
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the control socket at path.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socketPath)
	}}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// Healthy reports whether the control API answers.
func (c *Client) Healthy(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// Put starts or updates a target and returns its listen address.
func (c *Client) Put(ctx context.Context, name string, spec Spec) (string, error) {
	var out struct {
		Addr string `json:"addr"`
	}
	if err := c.do(ctx, http.MethodPut, "/targets/"+url.PathEscape(name), spec, &out); err != nil {
		return "", err
	}
	return out.Addr, nil
}

// Delete stops a target.
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/targets/"+url.PathEscape(name), nil, nil)
}

// Stats returns the statistics of every target by name.
func (c *Client) Stats(ctx context.Context) (map[string]Stats, error) {
	out := map[string]Stats{}
	err := c.do(ctx, http.MethodGet, "/targets", nil, &out)
	return out, err
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://targetserver"+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("target server %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("target server %s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(msg))
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
	}
	return nil
}
