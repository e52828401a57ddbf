package testbed

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Credentials every replica started with PromshardOptions.SecureWeb
// demands, and uses towards its peers.
const (
	WebUser     = "promshard"
	WebPassword = "test-bed-web-password"
)

// writeSecureWeb writes, for a replica called name on ip, a server
// certificate signed by the bed's CA, an exporter-toolkit web configuration
// demanding TLS and basic auth, and a peer client configuration trusting the
// CA with the same credentials. It returns the flags that use them.
func (b *Bed) writeSecureWeb(name string, ip net.IP) ([]string, error) {
	dir := filepath.Join(b.dir, "web-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := b.ca.issue(ip)
	if err != nil {
		return nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(WebPassword), bcrypt.MinCost)
	if err != nil {
		return nil, err
	}
	files := map[string]string{
		"tls.crt": string(certPEM),
		"tls.key": string(keyPEM),
		"ca.crt":  string(b.ca.certPEM),
		"web.yml": fmt.Sprintf("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  %s: %s\n", WebUser, hash),
		"peer.yml": fmt.Sprintf("tls_config:\n  ca_file: %s\nbasic_auth:\n  username: %s\n  password: %s\n",
			filepath.Join(dir, "ca.crt"), WebUser, WebPassword),
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	return []string{"--web.config.file=" + filepath.Join(dir, "web.yml"), "--web.peer-config-file=" + filepath.Join(dir, "peer.yml")}, nil
}

// TLSClient returns an HTTP client that trusts the bed's CA (and sends no
// credentials).
func (b *Bed) TLSClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.ca.certPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
