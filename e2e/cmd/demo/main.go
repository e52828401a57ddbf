// Command demo runs promshard locally for a person to look at: a real etcd
// and kube-apiserver with the monitoring CRDs, a few dozen sample targets,
// the example objects of deploy/examples, a Prometheus receiver and three
// promshard replicas forming a cluster. It prints where to look and waits
// for Ctrl-C, which tears everything down.
//
//	make demo   (or: go run ./e2e/cmd/demo)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/promshard/promshard/e2e/testbed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("demo: "+format+"\n", args...)
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logf("building the test bed binaries (a cold kube-apiserver build takes ~9 minutes)")
	bins, err := testbed.Binaries(ctx, logf)
	if err != nil {
		return err
	}
	bin, err := testbed.BuildPromshard(ctx, logf)
	if err != nil {
		return err
	}
	bed, err := testbed.New(ctx, testbed.Options{Bins: bins, Logf: logf})
	if err != nil {
		return err
	}
	defer bed.Close()

	rcv, err := bed.StartReceiver(ctx, testbed.ReceiverOptions{})
	if err != nil {
		return err
	}
	if err := sampleTargets(ctx, bed); err != nil {
		return err
	}
	if err := applyExamples(ctx, bed, rcv.WriteURL()); err != nil {
		return err
	}
	var replicas []*testbed.Promshard
	for i := 1; i <= 3; i++ {
		args := []string{"--prometheus-agent=demo/promshard", "--log.level=info"}
		if i > 1 {
			args = append(args, "--cluster.join="+replicas[0].GossipAddr)
		}
		r, err := bed.StartPromshard(ctx, testbed.PromshardOptions{
			Binary: bin, Name: "promshard-" + strconv.Itoa(i-1), IP: "127.0.0." + strconv.Itoa(10+i), Gossip: true, Args: args,
		})
		if err != nil {
			return err
		}
		replicas = append(replicas, r)
	}

	q := url.QueryEscape(`count by (job) (up{namespace="demo"} == 1)`)
	fmt.Println()
	fmt.Println("promshard demo is running. Status pages of the replicas:")
	for _, r := range replicas {
		fmt.Printf("  %s/\n", r.WebURL)
	}
	fmt.Printf("Receiver (Prometheus HTTP API; no web UI in a module build):\n  %s/api/v1/query?query=%s\n", rcv.URL(), q)
	fmt.Printf("KUBECONFIG=%s\n", bed.Kubeconfig)
	fmt.Printf("Watch targets move: kill -9 %d   (replica %s; its targets reappear on the other pages within ~10 s)\n",
		replicas[1].PID(), "promshard-1")
	fmt.Printf("Logs: %s\n", bed.Dir())
	fmt.Println("Press Ctrl-C to stop and clean up.")

	<-ctx.Done()
	fmt.Println()
	logf("stopping")
	return nil
}

// sampleTargets creates three Services of targets in a network namespace and
// six worker pods on loopback addresses.
func sampleTargets(ctx context.Context, bed *testbed.Bed) error {
	if err := bed.CreateNamespace(ctx, "demo", map[string]string{"team": "demo"}); err != nil {
		return err
	}
	host, err := bed.Netns(ctx)
	if err != nil {
		return err
	}
	for _, svc := range []struct {
		name string
		n    int
	}{{"frontend", 8}, {"api", 10}, {"db", 6}} {
		ts, err := host.AddTargets(ctx, svc.name, svc.n, testbed.TargetOptions{Series: 5})
		if err != nil {
			return err
		}
		if err := bed.ApplyService(ctx, testbed.ServiceSpec{Namespace: "demo", Name: svc.name, Labels: map[string]string{"app": svc.name}, Targets: ts}); err != nil {
			return err
		}
	}
	lo, err := bed.Loopback(ctx)
	if err != nil {
		return err
	}
	for i := 0; i < 6; i++ {
		t, err := lo.AddTarget(ctx, fmt.Sprintf("worker-%d", i), testbed.TargetOptions{Series: 3})
		if err != nil {
			return err
		}
		if _, err := bed.CreatePod(ctx, testbed.PodSpec{Namespace: "demo", Name: fmt.Sprintf("worker-%d", i), Labels: map[string]string{"app": "worker"}, Target: t}); err != nil {
			return err
		}
	}
	logf("created 24 service targets and 6 worker pods in namespace demo")
	return nil
}

// applyExamples applies deploy/examples/*.yaml, pointing the
// PrometheusAgent's remote write at the receiver.
func applyExamples(ctx context.Context, bed *testbed.Bed, writeURL string) error {
	root, err := testbed.RepoRoot()
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(root, "deploy", "examples", "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(string(b)), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", f, err)
			}
			if obj == nil {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			if u.GetKind() == "PrometheusAgent" {
				if err := unstructured.SetNestedSlice(u.Object, []any{map[string]any{"url": writeURL}}, "spec", "remoteWrite"); err != nil {
					return err
				}
			}
			if _, err := bed.ApplyMonitoring(ctx, u); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			logf("applied %s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
		}
	}
	return nil
}
