package testbed

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/promshard/promshard/e2e/targetserver"
)

// Host is a target server: in a network namespace (Bed.Netns) or on
// loopback in the root namespace (Bed.Loopback).
type Host struct {
	bed   *Bed
	netns string // "" for the root namespace
	idx   int
	base  net.IP
	// defaultPort is used when TargetOptions.Port is 0; 0 means a free port.
	defaultPort int
	// HostIP is the root namespace's address on the veth (nil on loopback).
	HostIP net.IP

	proc   *proc
	client *targetserver.Client

	mu      sync.Mutex
	next    int // targets handed out so far (addresses are never reused)
	targets map[string]*Target
}

// Netns returns the network namespace name ("" on loopback).
func (h *Host) Netns() string { return h.netns }

// TargetOptions configures one target. The zero value serves plain HTTP
// without auth and one testbed_series sample.
type TargetOptions struct {
	// Series is the number of testbed_series samples (see package
	// targetserver). Default 1; negative means 0.
	Series int
	// Port to listen on. Default 8080 in a namespace (so targets of one
	// Service share a port), a free port on loopback.
	Port int
	// BasicAuthUser/BasicAuthPassword and BearerToken require credentials;
	// with both set either is accepted.
	BasicAuthUser, BasicAuthPassword, BearerToken string
	// TLS serves HTTPS with a certificate signed by Bed.CACertPEM, valid for
	// the target's IP and the name "target.testbed".
	TLS bool
	// NodeName is copied to EndpointSlice/Endpoints entries and pods made
	// for this target; "" means none.
	NodeName string
	// Zone is copied to the target's EndpointSlice endpoint (its zone
	// field); "" means none.
	Zone string
}

// Target is one served endpoint.
type Target struct {
	Name     string
	IP       net.IP
	Port     int
	Scheme   string // "http" or "https"
	NodeName string
	Options  TargetOptions
	host     *Host
}

// Addr returns "ip:port".
func (t *Target) Addr() string { return net.JoinHostPort(t.IP.String(), strconv.Itoa(t.Port)) }

// URL returns the metrics URL, e.g. http://198.18.0.10:8080/metrics.
func (t *Target) URL() string { return t.Scheme + "://" + t.Addr() + "/metrics" }

func (h *Host) startServer(ctx context.Context) error {
	sock := filepath.Join(h.bed.dir, fmt.Sprintf("targets-%s.sock", h.label()))
	argv := []string{h.bed.bins.TargetServer, "--control.socket=" + sock}
	if h.netns != "" {
		argv = append([]string{"ip", "netns", "exec", h.netns}, argv...)
	}
	var err error
	h.proc, err = startProc(h.bed.runDir, "targetserver-"+h.label(), filepath.Join(h.bed.dir, "targetserver-"+h.label()+".log"), argv, nil)
	if err != nil {
		return err
	}
	h.client = targetserver.NewClient(sock)
	return poll(ctx, pollInterval, "target server control socket", func(ctx context.Context) (bool, error) {
		if h.proc.exited() {
			return false, fmt.Errorf("target server exited: %v", h.proc.waitErr)
		}
		err := h.client.Healthy(ctx)
		return err == nil, err
	})
}

func (h *Host) label() string {
	if h.netns == "" {
		return "loopback"
	}
	return h.netns
}

func (h *Host) stop() {
	if h.client != nil {
		h.client.Close()
	}
	h.proc.stop()
}

// AddTarget starts a target with a new address on this host.
func (h *Host) AddTarget(ctx context.Context, name string, opts TargetOptions) (*Target, error) {
	h.mu.Lock()
	if h.targets == nil {
		h.targets = map[string]*Target{}
	}
	if _, dup := h.targets[name]; dup {
		h.mu.Unlock()
		return nil, fmt.Errorf("target %s exists", name)
	}
	i := h.next
	h.next++
	h.mu.Unlock()

	const first, perPort = 10, 245 // host numbers .10 to .254
	ip := withHost(h.base, byte(first+i%perPort))
	port := opts.Port
	if port == 0 && h.defaultPort != 0 {
		port = h.defaultPort + i/perPort
	}
	if h.netns != "" {
		// Ignore "exists": the address may carry targets on other ports.
		_ = run(ctx, "ip", "-n", h.netns, "addr", "add", ip.String()+"/32", "dev", fmt.Sprintf("%s%dn", vethPrefix, h.idx))
	}
	spec, err := h.spec(ip, port, opts)
	if err != nil {
		return nil, err
	}
	addr, err := h.client.Put(ctx, name, spec)
	if err != nil {
		return nil, err
	}
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ = strconv.Atoi(portStr)
	t := &Target{Name: name, IP: ip, Port: port, Scheme: "http", NodeName: opts.NodeName, Options: opts, host: h}
	if opts.TLS {
		t.Scheme = "https"
	}
	h.mu.Lock()
	h.targets[name] = t
	h.mu.Unlock()
	return t, nil
}

func (h *Host) spec(ip net.IP, port int, opts TargetOptions) (targetserver.Spec, error) {
	series := opts.Series
	if series == 0 {
		series = 1
	} else if series < 0 {
		series = 0
	}
	spec := targetserver.Spec{
		Addr:              net.JoinHostPort(ip.String(), strconv.Itoa(port)),
		Series:            series,
		BasicAuthUser:     opts.BasicAuthUser,
		BasicAuthPassword: opts.BasicAuthPassword,
		BearerToken:       opts.BearerToken,
	}
	if opts.TLS {
		var err error
		if spec.CertPEM, spec.KeyPEM, err = h.bed.ca.issue(ip); err != nil {
			return spec, err
		}
	}
	return spec, nil
}

// AddTargets adds n targets named prefix-0 … prefix-(n-1) with opts.
func (h *Host) AddTargets(ctx context.Context, prefix string, n int, opts TargetOptions) ([]*Target, error) {
	out := make([]*Target, 0, n)
	for i := 0; i < n; i++ {
		t, err := h.AddTarget(ctx, fmt.Sprintf("%s-%d", prefix, i), opts)
		if err != nil {
			return out, err
		}
		out = append(out, t)
	}
	return out, nil
}

// SetSeries changes the number of testbed_series samples a plain-HTTP
// target serves, in place (TLS targets: remove and add them again).
func (h *Host) SetSeries(ctx context.Context, t *Target, series int) error {
	if t.Options.TLS {
		return fmt.Errorf("SetSeries on TLS target %s is not supported; remove and add it", t.Name)
	}
	opts := t.Options
	opts.Series = series
	spec, err := h.spec(t.IP, t.Port, opts)
	if err != nil {
		return err
	}
	if _, err := h.client.Put(ctx, t.Name, spec); err != nil {
		return err
	}
	t.Options.Series = series
	return nil
}

// RemoveTarget stops serving a target: its connections are closed and new
// ones are refused. The address stays assigned.
func (h *Host) RemoveTarget(ctx context.Context, name string) error {
	if err := h.client.Delete(ctx, name); err != nil {
		return err
	}
	h.mu.Lock()
	delete(h.targets, name)
	h.mu.Unlock()
	return nil
}

// Stats returns per-target scrape statistics (scrapes, rejected requests,
// last scraper address) from the target server.
func (h *Host) Stats(ctx context.Context) (map[string]targetserver.Stats, error) {
	return h.client.Stats(ctx)
}
