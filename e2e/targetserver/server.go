// Package targetserver serves many Prometheus metrics targets from one
// process, each on its own listen address, managed at runtime through a small
// HTTP control API (usually on a unix socket, which works across network
// namespaces). It is test infrastructure for promshard's e2e test bed and
// imports no promshard package.
//
// Every target exposes /metrics in the Prometheus text format:
//
//	testbed_target_info{target="<name>"} 1
//	testbed_series{target="<name>",series="<i>"} <i>   for i in [0, Series)
//	testbed_scrapes_total{target="<name>"} <scrapes so far>
package targetserver

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/promslog"
)

// Spec describes one target.
type Spec struct {
	// Addr is the host:port to listen on; port 0 picks a free port.
	Addr string `json:"addr"`
	// Series is the number of testbed_series samples; 0 means none (the
	// info and scrape-counter samples are always there).
	Series int `json:"series"`
	// BasicAuthUser and BasicAuthPassword, when the user is set, require
	// HTTP basic auth. BearerToken, when set, requires that bearer token.
	// With both set either is accepted.
	BasicAuthUser     string `json:"basicAuthUser,omitempty"`
	BasicAuthPassword string `json:"basicAuthPassword,omitempty"`
	BearerToken       string `json:"bearerToken,omitempty"`
	// CertPEM and KeyPEM, when set, serve HTTPS with this certificate.
	CertPEM []byte `json:"certPEM,omitempty"`
	KeyPEM  []byte `json:"keyPEM,omitempty"`
}

// Stats reports what happened to one target.
type Stats struct {
	// Addr is the actual listen address (with the chosen port).
	Addr string `json:"addr"`
	// Scrapes counts successful /metrics requests; Rejected counts
	// requests refused for missing or wrong credentials.
	Scrapes  int64 `json:"scrapes"`
	Rejected int64 `json:"rejected"`
	// LastScraper is the remote host:port of the last successful scrape.
	LastScraper string `json:"lastScraper,omitempty"`
}

type target struct {
	name     string
	spec     atomic.Pointer[Spec]
	addr     string
	srv      *http.Server
	scrapes  atomic.Int64
	rejected atomic.Int64
	lastFrom atomic.Value // string
}

// Server holds the running targets.
type Server struct {
	logger  *slog.Logger
	mu      sync.Mutex
	targets map[string]*target
}

// New returns an empty server. A nil logger discards logs.
func New(logger *slog.Logger) *Server {
	if logger == nil {
		logger = promslog.NewNopLogger()
	}
	return &Server{logger: logger, targets: map[string]*target{}}
}

// Put starts target name or, if it runs on the same address, replaces its
// spec in place (series count, credentials; a TLS change restarts it). It
// returns the actual listen address.
func (s *Server) Put(name string, spec Spec) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.targets[name]; ok {
		old := t.spec.Load()
		sameTLS := bytes.Equal(old.CertPEM, spec.CertPEM) && bytes.Equal(old.KeyPEM, spec.KeyPEM)
		if (spec.Addr == old.Addr || spec.Addr == t.addr) && sameTLS {
			spec.Addr = old.Addr
			t.spec.Store(&spec)
			return t.addr, nil
		}
		s.stopLocked(t)
	}
	t, err := s.start(name, spec)
	if err != nil {
		return "", err
	}
	s.targets[name] = t
	return t.addr, nil
}

func (s *Server) start(name string, spec Spec) (*target, error) {
	l, err := net.Listen("tcp", spec.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for target %s: %w", name, err)
	}
	if len(spec.CertPEM) > 0 {
		cert, err := tls.X509KeyPair(spec.CertPEM, spec.KeyPEM)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("load certificate of target %s: %w", name, err)
		}
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	t := &target{name: name, addr: l.Addr().String()}
	t.spec.Store(&spec)
	t.lastFrom.Store("")
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", t.serveMetrics)
	t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := t.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("target stopped serving", "target", name, "err", err)
		}
	}()
	s.logger.Info("target started", "target", name, "addr", t.addr)
	return t, nil
}

// Delete stops target name; its connections are closed at once, so the
// next scrape fails. Unknown names are not an error.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.targets[name]; ok {
		s.stopLocked(t)
	}
}

func (s *Server) stopLocked(t *target) {
	_ = t.srv.Close()
	delete(s.targets, t.name)
	s.logger.Info("target stopped", "target", t.name)
}

// Stats returns the statistics of every target by name.
func (s *Server) Stats() map[string]Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Stats, len(s.targets))
	for name, t := range s.targets {
		out[name] = Stats{Addr: t.addr, Scrapes: t.scrapes.Load(), Rejected: t.rejected.Load(),
			LastScraper: t.lastFrom.Load().(string)}
	}
	return out
}

// Close stops every target.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.targets {
		s.stopLocked(t)
	}
}

func (t *target) serveMetrics(w http.ResponseWriter, r *http.Request) {
	spec := t.spec.Load()
	if !authorized(spec, r) {
		t.rejected.Add(1)
		w.Header().Set("WWW-Authenticate", `Basic realm="testbed"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	n := t.scrapes.Add(1)
	t.lastFrom.Store(r.RemoteAddr)
	var buf bytes.Buffer
	q := strconv.Quote(t.name)
	fmt.Fprintf(&buf, "# HELP testbed_target_info Identifies the target.\n# TYPE testbed_target_info gauge\n")
	fmt.Fprintf(&buf, "testbed_target_info{target=%s} 1\n", q)
	fmt.Fprintf(&buf, "# HELP testbed_series Synthetic series; the value is the series number.\n# TYPE testbed_series gauge\n")
	for i := 0; i < spec.Series; i++ {
		fmt.Fprintf(&buf, "testbed_series{target=%s,series=\"%d\"} %d\n", q, i, i)
	}
	fmt.Fprintf(&buf, "# HELP testbed_scrapes_total Scrapes served by this target.\n# TYPE testbed_scrapes_total counter\n")
	fmt.Fprintf(&buf, "testbed_scrapes_total{target=%s} %d\n", q, n)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func authorized(spec *Spec, r *http.Request) bool {
	if spec.BasicAuthUser == "" && spec.BearerToken == "" {
		return true
	}
	if spec.BasicAuthUser != "" {
		if u, p, ok := r.BasicAuth(); ok && equal(u, spec.BasicAuthUser) && equal(p, spec.BasicAuthPassword) {
			return true
		}
	}
	if spec.BearerToken != "" && equal(r.Header.Get("Authorization"), "Bearer "+spec.BearerToken) {
		return true
	}
	return false
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// shutdownTimeout bounds a graceful control-server shutdown.
const shutdownTimeout = 5 * time.Second

// Serve runs the control API on l until ctx ends, then stops every target.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s.ControlHandler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("control server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	s.Close()
	<-errc
	if err != nil {
		return fmt.Errorf("shut down control server: %w", err)
	}
	return nil
}
