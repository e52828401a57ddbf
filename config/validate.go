package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"sync"

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
	if err := checkPEM(t.CA, t.Cert, string(t.Key)); err != nil {
		return err
	}
	// The PEM material is checked; NewTLSConfig checks the rest.
	rest := *t
	rest.CA, rest.Cert, rest.Key = "", "", ""
	rest.CAFile, rest.CertFile, rest.KeyFile = "", "", ""
	rest.CARef, rest.CertRef, rest.KeyRef = "", "", ""
	if rest == (commoncfg.TLSConfig{}) {
		return nil // the common case: nothing left to check
	}
	return newTLSConfig(rest)
}

// newTLSConfig runs Prometheus' NewTLSConfig on t. Taking t by value keeps
// checkTLS' copy on the stack in the common case above: it is checked for
// ten thousand jobs per translation.
func newTLSConfig(t commoncfg.TLSConfig) error {
	_, err := commoncfg.NewTLSConfig(&t)
	return err
}

// pemCacheSize bounds the cache of checked PEM material; when full it is
// emptied.
const pemCacheSize = 4096

// pemCache remembers the outcome of checkPEM by a hash of its input:
// thousands of monitors usually share a few CA bundles, and parsing one
// costs about 40µs.
var pemCache = struct {
	sync.Mutex
	m map[[sha256.Size]byte]error
}{m: map[[sha256.Size]byte]error{}}

// checkPEM checks an inline CA bundle and, when both are inline, a client
// certificate and key, as NewTLSConfig would: the CA must hold at least one
// certificate x509 can parse, and the key must belong to the certificate.
func checkPEM(ca, cert, key string) error {
	if ca == "" && (cert == "" || key == "") {
		return nil
	}
	h := sha256.New()
	for _, s := range []string{ca, cert, key} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	pemCache.Lock()
	err, ok := pemCache.m[sum]
	pemCache.Unlock()
	if ok {
		return err
	}
	err = parsePEM(ca, cert, key)
	pemCache.Lock()
	if len(pemCache.m) >= pemCacheSize {
		pemCache.m = make(map[[sha256.Size]byte]error, pemCacheSize)
	}
	pemCache.m[sum] = err
	pemCache.Unlock()
	return err
}

func parsePEM(ca, cert, key string) error {
	if ca != "" {
		if err := checkCA(ca); err != nil {
			return err
		}
	}
	if cert != "" && key != "" {
		if _, err := tls.X509KeyPair([]byte(cert), []byte(key)); err != nil {
			return fmt.Errorf("client certificate and key: %w", err)
		}
	}
	return nil
}

// checkCA requires at least one PEM certificate that x509 can parse, like
// x509.CertPool.AppendCertsFromPEM, which Prometheus uses.
func checkCA(ca string) error {
	rest := []byte(ca)
	var firstErr error
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		_, err := x509.ParseCertificate(block.Bytes)
		if err == nil {
			return nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return fmt.Errorf("CA holds no usable certificate: %w", firstErr)
	}
	return errors.New("CA is not a PEM-encoded certificate")
}

// checkJobClients runs checkHTTPClient on a job's client and on every
// client of its service discovery configurations (ScrapeConfig SDs carry
// their own HTTP settings in a field named HTTPClientConfig).
func checkJobClients(sc *promconfig.ScrapeConfig) error {
	if err := checkHTTPClient(&sc.HTTPClientConfig); err != nil {
		return err
	}
	for i, sd := range sc.ServiceDiscoveryConfigs {
		hc := SDHTTPClientConfig(sd)
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

// SDHTTPClientConfig returns the HTTP client settings of a service
// discovery configuration (its field HTTPClientConfig, which every HTTP
// based SD of Prometheus has), or nil when it has none.
func SDHTTPClientConfig(sd any) *commoncfg.HTTPClientConfig {
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
