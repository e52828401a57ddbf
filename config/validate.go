package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"

	commoncfg "github.com/prometheus/common/config"
	promconfig "github.com/prometheus/prometheus/config"
)

// Checks of what Prometheus would refuse only when it builds an HTTP client.
//
// Prometheus validates an HTTP client configuration in two steps: Validate
// when the configuration is loaded (which config runs for every job), and
// the construction of the client when a scrape pool, a remote-write queue
// or a service discovery starts. The second step parses the inline CA,
// certificate and key; a CA Secret holding "not a certificate" passes the
// first step and fails the second, after the scrape manager has already
// swapped its configuration. checkHTTPClient runs the second step's checks
// on the inline values, so that such an object is rejected alone at
// translation. Files (allowed only with file access) are not read here:
// config does no I/O; the agent checks them when it pre-builds the clients.

// checkHTTPClient checks the TLS, OAuth2 and proxy settings of hc as
// building the client would.
func checkHTTPClient(hc *commoncfg.HTTPClientConfig) error {
	if err := checkTLS(&hc.TLSConfig); err != nil {
		return fmt.Errorf("tlsConfig: %w", err)
	}
	if err := hc.ProxyConfig.Validate(); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	if o := hc.OAuth2; o != nil {
		if err := checkTLS(&o.TLSConfig); err != nil {
			return fmt.Errorf("oauth2 tlsConfig: %w", err)
		}
		if err := o.ProxyConfig.Validate(); err != nil {
			return fmt.Errorf("oauth2 proxy: %w", err)
		}
		if o.TokenURL == "" {
			return errors.New("oauth2: tokenUrl is required")
		}
	}
	return nil
}

// checkTLS parses the inline CA bundle, client certificate and key of t and
// checks that the key belongs to the certificate, then lets Prometheus'
// own NewTLSConfig check the rest (versions, server name) on a copy
// without file references.
func checkTLS(t *commoncfg.TLSConfig) error {
	if t.CA != "" {
		if err := checkCA(t.CA); err != nil {
			return err
		}
	}
	if t.Cert != "" && t.Key != "" {
		if _, err := tls.X509KeyPair([]byte(t.Cert), []byte(t.Key)); err != nil {
			return fmt.Errorf("client certificate and key: %w", err)
		}
	}
	inline := *t
	inline.CAFile, inline.CertFile, inline.KeyFile = "", "", ""
	inline.CARef, inline.CertRef, inline.KeyRef = "", "", ""
	if t.CertFile != "" || t.KeyFile != "" {
		inline.Cert, inline.Key = "", ""
	}
	if _, err := commoncfg.NewTLSConfig(&inline); err != nil {
		return err
	}
	return nil
}

// checkCA requires at least one PEM certificate that x509 can parse.
func checkCA(ca string) error {
	rest := []byte(ca)
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("CA certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("CA is not a PEM-encoded certificate")
	}
	return nil
}

// checkJobClients runs checkHTTPClient on a job's client and on every
// client of its service discovery configurations (ScrapeConfig SDs carry
// their own HTTP settings in a field named HTTPClientConfig).
func checkJobClients(sc *promconfig.ScrapeConfig) error {
	if err := checkHTTPClient(&sc.HTTPClientConfig); err != nil {
		return err
	}
	for i, sd := range sc.ServiceDiscoveryConfigs {
		hc := sdHTTPClient(sd)
		if hc == nil {
			continue
		}
		if err := checkHTTPClient(hc); err != nil {
			return fmt.Errorf("%s service discovery %d: %w", sd.Name(), i, err)
		}
	}
	return nil
}

var httpClientConfigType = reflect.TypeFor[commoncfg.HTTPClientConfig]()

// sdHTTPClient returns the HTTPClientConfig field of an SD configuration
// struct (pointer), or nil when it has none.
func sdHTTPClient(sd any) *commoncfg.HTTPClientConfig {
	v := reflect.ValueOf(sd)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName("HTTPClientConfig")
	if !f.IsValid() || f.Type() != httpClientConfigType || !f.CanAddr() {
		return nil
	}
	return f.Addr().Interface().(*commoncfg.HTTPClientConfig)
}

// checkRemoteWriteClient runs checkHTTPClient and the SigV4 validation on a
// remote-write entry.
func checkRemoteWriteClient(rw *promconfig.RemoteWriteConfig) error {
	if err := checkHTTPClient(&rw.HTTPClientConfig); err != nil {
		return err
	}
	if rw.SigV4Config != nil {
		if err := rw.SigV4Config.Validate(); err != nil {
			return fmt.Errorf("sigv4: %w", err)
		}
	}
	return nil
}
