package testbed

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Network namespaces are named psh-<owner pid>-<index>; the veth pair is
// pshv<index>h (root side, <subnet>.1/24) and pshv<index>n (namespace side,
// <subnet>.2/24). The index selects a /24 of 198.18.0.0/15 and is unique
// across processes while the namespace exists.
const (
	netnsPrefix = "psh-"
	vethPrefix  = "pshv"
	maxNetns    = 512
)

var (
	netnsNameRE = regexp.MustCompile(`^psh-(\d+)-(\d+)$`)
	vethHostRE  = regexp.MustCompile(`^pshv(\d+)h$`)
)

// checkNetns fails with one clear sentence when this machine cannot create
// network namespaces.
func checkNetns(ctx context.Context) error {
	name := fmt.Sprintf("%s%d-check", netnsPrefix, os.Getpid())
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return fmt.Errorf("the test bed needs network namespaces (%w); run the e2e tests as root on Linux with iproute2 installed", err)
	}
	_ = run(ctx, "ip", "netns", "del", name)
	return nil
}

// subnet returns the /24 of namespace index idx: 198.18.idx.0 for idx < 256,
// else 198.19.(idx-256).0.
func subnet(idx int) net.IP {
	if idx < 256 {
		return net.IPv4(198, 18, byte(idx), 0).To4()
	}
	return net.IPv4(198, 19, byte(idx-256), 0).To4()
}

func withHost(ip net.IP, host byte) net.IP {
	out := make(net.IP, 4)
	copy(out, ip.To4())
	out[3] = host
	return out
}

// Netns creates a network namespace with a veth pair to the root namespace
// and starts a target server inside it. Targets added to it get addresses
// <subnet>.10 to <subnet>.254 (then the next port), reachable from the root
// namespace; the API server accepts them in EndpointSlices. The namespace is
// deleted on Close.
func (b *Bed) Netns(ctx context.Context) (*Host, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	unlock, err := lockFile(filepath.Join(cache, "run", "netns.lock"))
	if err != nil {
		return nil, err
	}
	name, idx, err := createNetns(ctx)
	unlock()
	if err != nil {
		return nil, err
	}
	h := &Host{bed: b, netns: name, idx: idx, base: subnet(idx), defaultPort: 8080}
	h.HostIP = withHost(h.base, 1)
	cleanup := func() {
		h.stop()
		_ = run(context.Background(), "ip", "netns", "del", name)
	}
	if err := h.startServer(ctx); err != nil {
		cleanup()
		return nil, err
	}
	if !b.addCloser(cleanup) {
		cleanup()
		return nil, fmt.Errorf("test bed is closed")
	}
	return h, nil
}

// Loopback starts a target server in the root namespace. Its targets get
// addresses 127.0.0.10 to 127.0.0.254 and, unless a port is given, a free
// port; use them as pod IPs (the API server accepts loopback pod IPs).
func (b *Bed) Loopback(ctx context.Context) (*Host, error) {
	h := &Host{bed: b, base: net.IPv4(127, 0, 0, 0).To4()}
	if err := h.startServer(ctx); err != nil {
		h.stop()
		return nil, err
	}
	if !b.addCloser(h.stop) {
		h.stop()
		return nil, fmt.Errorf("test bed is closed")
	}
	return h, nil
}

// createNetns must run under the netns lock.
func createNetns(ctx context.Context) (string, int, error) {
	used := map[int]bool{}
	list, _ := output(ctx, "ip", "netns", "list")
	for _, line := range strings.Split(list, "\n") {
		if m := netnsNameRE.FindStringSubmatch(strings.Fields(line + " x")[0]); m != nil {
			i, _ := strconv.Atoi(m[2])
			used[i] = true
		}
	}
	links, _ := output(ctx, "ip", "-o", "link", "show")
	for _, l := range vethLinks(links) {
		i, _ := strconv.Atoi(vethHostRE.FindStringSubmatch(l)[1])
		used[i] = true
	}
	idx := 0
	for used[idx] {
		idx++
	}
	if idx >= maxNetns {
		return "", 0, fmt.Errorf("all %d test bed network namespaces are in use", maxNetns)
	}
	name := fmt.Sprintf("%s%d-%d", netnsPrefix, os.Getpid(), idx)
	hostIf, nsIf := fmt.Sprintf("%s%dh", vethPrefix, idx), fmt.Sprintf("%s%dn", vethPrefix, idx)
	base := subnet(idx)
	steps := [][]string{
		{"netns", "add", name},
		{"link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", name},
		{"addr", "add", withHost(base, 1).String() + "/24", "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", name, "addr", "add", withHost(base, 2).String() + "/24", "dev", nsIf},
		{"-n", name, "link", "set", nsIf, "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "route", "add", "default", "via", withHost(base, 1).String()},
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			_ = run(context.Background(), "ip", "netns", "del", name)
			_ = run(context.Background(), "ip", "link", "del", hostIf)
			return "", 0, fmt.Errorf("the test bed needs network namespaces (%w); run the e2e tests as root on Linux with iproute2 installed", err)
		}
	}
	return name, idx, nil
}

// vethLinks returns the root-side veth names of test beds in `ip -o link`
// output.
func vethLinks(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if vethHostRE.MatchString(name) {
			names = append(names, name)
		}
	}
	return names
}

// deleteStaleNetns removes namespaces whose owner process is gone (killing
// what still runs in them) and root-side veths without a namespace.
func deleteStaleNetns() {
	ctx := context.Background()
	cache, err := CacheDir()
	if err != nil {
		return
	}
	unlock, err := lockFile(filepath.Join(cache, "run", "netns.lock"))
	if err != nil {
		return
	}
	defer unlock()
	live := map[string]bool{}
	list, _ := output(ctx, "ip", "netns", "list")
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], netnsPrefix) {
			continue
		}
		name := f[0]
		if owner, ok := ownerPID(strings.TrimPrefix(name, netnsPrefix)); ok && pidAlive(owner) {
			if m := netnsNameRE.FindStringSubmatch(name); m != nil {
				live[m[2]] = true
			}
			continue
		}
		pids, _ := output(ctx, "ip", "netns", "pids", name)
		for _, p := range strings.Fields(pids) {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = killPID(pid)
			}
		}
		_ = run(ctx, "ip", "netns", "del", name)
	}
	links, _ := output(ctx, "ip", "-o", "link", "show")
	for _, l := range vethLinks(links) {
		if !live[vethHostRE.FindStringSubmatch(l)[1]] {
			_ = run(ctx, "ip", "link", "del", l)
		}
	}
}
