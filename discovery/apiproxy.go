package discovery

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/prometheus/common/promslog"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// APIProxy serves the API server on a loopback address for Prometheus'
// Kubernetes service discovery, through the same reachability gate as the
// Watcher's own clients.
//
// The service discovery builds its own client-go informers from a
// kubeconfig; their reflectors back off up to 30–60 s while the API server
// is away, so endpoints that changed just after an outage would reach
// scraping a minute late. Pointed at this proxy (WriteKubeconfig), their
// lists and watches wait in the gate instead of failing and resume within
// a probe interval of the server being ready. Requests must carry the
// proxy's random bearer token, which only the kubeconfig file (mode 0600)
// holds; the proxy replaces it with promshard's own credentials. Watches
// stream through unbuffered.
type APIProxy struct {
	listener net.Listener
	server   *http.Server
	token    string
	caPEM    []byte
	stop     chan struct{}
	gate     *reachGate
}

// Reachability reports whether the proxy reaches the API server.
func (p *APIProxy) Reachability() Reachability { return p.gate.reachability() }

// NewAPIProxy listens on 127.0.0.1 with a free port and forwards to the API
// server rc reaches. A GET waits at most unreachableTimeout for a server it
// cannot reach (zero: DefaultUnreachableTimeout), then the service
// discovery gets its error. Run serves.
func NewAPIProxy(rc *rest.Config, unreachableTimeout time.Duration, logger *slog.Logger) (*APIProxy, error) {
	if logger == nil {
		logger = promslog.NewNopLogger()
	}
	p := &APIProxy{stop: make(chan struct{})}
	cfg := rest.CopyConfig(rc)
	gate := &reachGate{interval: DefaultReadyProbeInterval, timeout: unreachableTimeout, logger: logger, stop: p.stop}
	p.gate = gate
	cfg.Wrap(gate.wrap)
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("API proxy transport: %w", err)
	}
	target, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("API proxy target: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("API proxy token: %w", err)
	}
	p.token = hex.EncodeToString(raw)
	// TLS: client-go sends credentials only over TLS, and the token must
	// not cross even the loopback in clear.
	cert, err := selfSignedLoopbackCert()
	if err != nil {
		return nil, fmt.Errorf("API proxy certificate: %w", err)
	}
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("API proxy listener: %w", err)
	}
	p.listener = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}})
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header.Del("Authorization") // the transport adds promshard's
		},
		Transport:     rt,
		FlushInterval: -1, // watch events as they come
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	want := []byte("Bearer " + p.token)
	p.server = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			proxy.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	return p, nil
}

// URL is the proxy's base URL.
func (p *APIProxy) URL() string {
	return (&url.URL{Scheme: "https", Host: p.listener.Addr().String()}).String()
}

// WriteKubeconfig writes a kubeconfig (mode 0600) reaching the API server
// through the proxy.
func (p *APIProxy) WriteKubeconfig(path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["promshard"] = &clientcmdapi.Cluster{Server: p.URL(), CertificateAuthorityData: p.caPEM}
	cfg.AuthInfos["promshard"] = &clientcmdapi.AuthInfo{Token: p.token}
	cfg.Contexts["promshard"] = &clientcmdapi.Context{Cluster: "promshard", AuthInfo: "promshard"}
	cfg.CurrentContext = "promshard"
	return clientcmd.WriteToFile(*cfg, path)
}

// Run serves until ctx is done, then closes every connection (watches
// included) and returns nil.
func (p *APIProxy) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- p.server.Serve(p.listener) }()
	select {
	case err := <-errc:
		close(p.stop)
		return fmt.Errorf("API proxy: %w", err)
	case <-ctx.Done():
	}
	close(p.stop)
	err := p.server.Close()
	<-errc
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// selfSignedLoopbackCert makes a certificate for 127.0.0.1, valid for ten
// years (it lives as long as the process).
func selfSignedLoopbackCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "promshard API proxy"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
