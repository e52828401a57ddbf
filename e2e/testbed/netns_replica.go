package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"k8s.io/client-go/tools/clientcmd"
)

// Replicas in network namespaces.
//
// A replica started with PromshardOptions.Host runs in that host's network
// namespace (ip netns exec) on the namespace side of its veth (<subnet>.2),
// with fixed ports (each namespace has its own). It reaches the API server
// and other root-namespace services through forwarders the bed listens
// with on the host's root-side address (Host.Forward), the targets in other
// namespaces and its peers through the root namespace, which routes between
// the test bed's subnets (IPv4 forwarding on). Host.SetLink cuts the
// namespace off from everything and back: a network partition.

// Fixed ports of a replica in a namespace.
const (
	netnsWebPort    = 9090
	netnsGossipPort = 7946
)

// ReplicaIP returns the namespace-side address a replica in h binds.
func (h *Host) ReplicaIP() net.IP { return withHost(h.base, 2) }

// SetLink brings the root side of h's veth up or down: down cuts the
// namespace off from the root namespace and every other namespace.
func (h *Host) SetLink(ctx context.Context, up bool) error {
	if h.netns == "" {
		return errors.New("SetLink: a loopback host has no link")
	}
	state := "down"
	if up {
		state = "up"
	}
	if err := run(ctx, "ip", "link", "set", fmt.Sprintf("%s%dh", vethPrefix, h.idx), state); err != nil {
		return err
	}
	if up {
		// The namespace's default route went away with the link.
		_ = run(ctx, "ip", "-n", h.netns, "route", "replace", "default", "via", h.HostIP.String())
	}
	return nil
}

// Exec runs argv in h's namespace and returns its standard output.
func (h *Host) Exec(ctx context.Context, argv ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.netns}, argv...)...).Output()
	return string(out), err
}

// Forward makes the root-namespace TCP address addr (e.g. 127.0.0.1:6443)
// reachable from h's namespace at the returned address on h's root-side
// IP, until the bed closes.
func (h *Host) Forward(addr string) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(h.HostIP.String(), port))
	if err != nil {
		l, err = net.Listen("tcp", net.JoinHostPort(h.HostIP.String(), "0"))
	}
	if err != nil {
		return "", fmt.Errorf("forward %s into %s: %w", addr, h.netns, err)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { pipe(c, addr) })
		}
	}()
	if !h.bed.addCloser(func() { l.Close(); wg.Wait() }) {
		l.Close()
		return "", errors.New("test bed is closed")
	}
	return l.Addr().String(), nil
}

// pipe copies between c and a new connection to addr until either ends.
func pipe(c net.Conn, addr string) {
	defer c.Close()
	d, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer d.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(d, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, d); done <- struct{}{} }()
	<-done
}

// ForwardURL is Forward for a URL's host:port: it returns the URL as seen
// from h's namespace.
func (h *Host) ForwardURL(u string) (string, error) {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return "", fmt.Errorf("URL %q has no scheme", u)
	}
	hostport, path, _ := strings.Cut(rest, "/")
	fwd, err := h.Forward(hostport)
	if err != nil {
		return "", err
	}
	if path != "" {
		path = "/" + path
	}
	return scheme + "://" + fwd + path, nil
}

// netnsKubeconfig writes a copy of the bed's kubeconfig whose server is the
// API server's forwarder into h, still verified as the API server's own
// address.
func (b *Bed) netnsKubeconfig(h *Host, name string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(b.Kubeconfig)
	if err != nil {
		return "", err
	}
	for _, c := range cfg.Clusters {
		scheme, hostport, _ := strings.Cut(c.Server, "://")
		host, _, err := net.SplitHostPort(hostport)
		if err != nil {
			return "", fmt.Errorf("kubeconfig server %q: %w", c.Server, err)
		}
		fwd, err := h.Forward(hostport)
		if err != nil {
			return "", err
		}
		c.Server = scheme + "://" + fwd
		c.TLSServerName = host
	}
	path := filepath.Join(b.dir, "kubeconfig-"+name)
	return path, clientcmd.WriteToFile(*cfg, path)
}

// enableForwarding turns IPv4 forwarding on in the root namespace, so that
// namespaces reach each other.
func enableForwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	return os.WriteFile(p, []byte("1\n"), 0o644)
}

// netnsArgs prepares a replica for h: its bind address, ports, kubeconfig
// and the command prefix.
func (b *Bed) netnsArgs(opts *PromshardOptions) (prefix []string, webPort, gossipPort int, err error) {
	if err := enableForwarding(); err != nil {
		return nil, 0, 0, fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	h := opts.Host
	opts.IP = h.ReplicaIP().String()
	if opts.Kubeconfig == "" {
		if opts.Kubeconfig, err = b.netnsKubeconfig(h, opts.Name); err != nil {
			return nil, 0, 0, err
		}
	}
	gossipPort = netnsGossipPort
	if opts.GossipPort != 0 {
		gossipPort = opts.GossipPort
	}
	return []string{"ip", "netns", "exec", h.netns}, netnsWebPort, gossipPort, nil
}

// GossipAddrIn returns the gossip address a replica started in h will
// have, for peers' --cluster.join lists.
func (h *Host) GossipAddrIn() string {
	return net.JoinHostPort(h.ReplicaIP().String(), strconv.Itoa(netnsGossipPort))
}
