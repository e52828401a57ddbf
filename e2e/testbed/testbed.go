package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options configures New. The zero value is usable.
type Options struct {
	// Logf receives progress lines (builds, start-up time). nil discards.
	Logf Logf
	// Bins are the binaries to run; nil means Binaries(ctx, Logf).
	Bins *Bins
	// CRDDir holds the CRD manifests to install. Default <repo>/deploy/crds.
	CRDDir string
	// StartTimeout bounds start-up of etcd, kube-apiserver and the CRDs,
	// not the builds. Default 60 s.
	StartTimeout time.Duration
	// KeepDir keeps the bed's temporary directory (logs, data, kubeconfig)
	// after Close. StartForTest sets it when the test failed.
	KeepDir bool
}

// Bed is a running test bed: etcd plus kube-apiserver with the CRDs
// established, and whatever target hosts and receivers were added. All
// methods are safe for concurrent use. Close tears everything down.
type Bed struct {
	opts   Options
	bins   *Bins
	dir    string
	runDir string

	// RestConfig authenticates as an admin (group system:masters).
	RestConfig *rest.Config
	// Kube and Dynamic are clients built from RestConfig.
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// Kubeconfig is the path of a kubeconfig file for RestConfig.
	Kubeconfig string
	// StartupDuration is the time from starting etcd until the API server
	// was ready and every CRD Established (binary builds not included).
	StartupDuration time.Duration

	etcd    *proc
	etcdURL string
	// apiserver is guarded by mu (StopAPIServer/StartAPIServer replace it).
	apiserver     *proc
	apiserverArgv []string
	ca            *certAuthority

	mu        sync.Mutex
	closed    bool
	closeDone chan struct{} // closed when the first Close finishes
	closers   []func()      // added resources, closed in reverse order
	loopbacks int           // last loopback host number handed out
}

// New builds or reuses the binaries and starts a bed. On error everything
// already started is torn down.
func New(ctx context.Context, opts Options) (_ *Bed, err error) {
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	if opts.CRDDir == "" {
		opts.CRDDir = filepath.Join(root, "deploy", "crds")
	}
	bins := opts.Bins
	if bins == nil {
		if bins, err = Binaries(ctx, opts.Logf); err != nil {
			return nil, err
		}
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	if err := checkNetns(ctx); err != nil {
		return nil, err
	}
	b := &Bed{opts: opts, bins: bins}
	if b.runDir, err = newRunDir(cache); err != nil {
		return nil, err
	}
	if b.dir, err = os.MkdirTemp("", "promshard-testbed-"); err != nil {
		return nil, fmt.Errorf("create temporary directory: %w", err)
	}
	registerBed(b)
	defer func() {
		if err != nil {
			b.opts.KeepDir = true
			err = errors.Join(err, fmt.Errorf("logs are in %s", b.dir))
			_ = b.Close()
		}
	}()
	if b.ca, err = newCertAuthority(); err != nil {
		return nil, err
	}
	start := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := b.startKube(startCtx); err != nil {
		return nil, err
	}
	b.StartupDuration = time.Since(start)
	opts.Logf.printf("testbed: bed up in %.2fs (API server ready, CRDs established)", b.StartupDuration.Seconds())
	return b, nil
}

// StartForTest starts a bed for t, fails the test with a clear message if it
// cannot, and closes it in t.Cleanup (keeping the logs when t failed).
// opts.Logf defaults to t.Logf.
func StartForTest(t testing.TB, opts Options) *Bed {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	b, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("start test bed: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b.mu.Lock()
			b.opts.KeepDir = true
			b.mu.Unlock()
			t.Logf("test bed logs kept in %s", b.dir)
		}
		if err := b.Close(); err != nil {
			t.Errorf("close test bed: %v", err)
		}
	})
	return b
}

// Dir is the bed's temporary directory: logs (*.log), data and kubeconfig.
func (b *Bed) Dir() string { return b.dir }

// EtcdURL is the client URL of the bed's etcd, e.g. for a KV store of
// another component (keep to a prefix of its own: the API server stores
// under /registry).
func (b *Bed) EtcdURL() string { return b.etcdURL }

// Bins returns the binaries the bed runs.
func (b *Bed) Bins() *Bins { return b.bins }

// CACertPEM returns the PEM CA certificate that signs the TLS certificates
// of targets served with TLS.
func (b *Bed) CACertPEM() []byte { return b.ca.certPEM }

// addCloser registers f to run on Close; it reports false (and does not
// register) if the bed is already closed.
func (b *Bed) addCloser(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.closers = append(b.closers, f)
	return true
}

// Close stops every receiver, target server and namespace, then
// kube-apiserver, then etcd, and removes the temporary directory unless
// KeepDir. It is idempotent.
func (b *Bed) Close() error {
	b.mu.Lock()
	if b.closed {
		// Another goroutine (e.g. the signal handler and a deferred Close)
		// is tearing down: wait for it so the process does not exit with
		// the bed half removed.
		done := b.closeDone
		b.mu.Unlock()
		<-done
		return nil
	}
	b.closed = true
	b.closeDone = make(chan struct{})
	defer close(b.closeDone)
	closers := b.closers
	b.closers = nil
	keep := b.opts.KeepDir
	b.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	b.mu.Lock()
	apiserver := b.apiserver
	b.mu.Unlock()
	apiserver.stop() // before etcd: see stopGrace
	b.etcd.stop()
	unregisterBed(b)
	var err error
	if b.runDir != "" {
		err = os.RemoveAll(b.runDir)
	}
	if !keep && b.dir != "" {
		err = errors.Join(err, os.RemoveAll(b.dir))
	}
	if err != nil {
		return fmt.Errorf("remove test bed directories: %w", err)
	}
	return nil
}

// freePort returns a TCP port on host that was free a moment ago.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
