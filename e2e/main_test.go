//go:build e2e

// Package e2e holds promshard's end-to-end tests. They run on the real test
// bed of package testbed (etcd, kube-apiserver, targets in network
// namespaces, a Prometheus receiver) and need root on Linux with iproute2:
//
//	go test -tags e2e -count=1 -v ./e2e/...
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/promshard/promshard/e2e/testbed"
)

// bins are built (or found in the cache) once by TestMain; pass them in
// testbed.Options so each test's bed starts without checking the builds.
var bins *testbed.Bins

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	start := time.Now()
	var err error
	bins, err = testbed.Binaries(ctx, func(format string, args ...any) {
		fmt.Printf(format+"\n", args...)
	})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the test bed binaries failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("e2e: test bed binaries ready in %.1fs\n", time.Since(start).Seconds())
	os.Exit(m.Run())
}

// startBed starts a test bed for t with the prebuilt binaries and prints
// its start-up time.
func startBed(t *testing.T) *testbed.Bed {
	t.Helper()
	bed := testbed.StartForTest(t, testbed.Options{Bins: bins})
	t.Logf("test bed up in %.2fs (API server ready, CRDs established)", bed.StartupDuration.Seconds())
	fmt.Printf("e2e: %s: test bed up in %.2fs (API server ready, CRDs established)\n", t.Name(), bed.StartupDuration.Seconds())
	return bed
}
