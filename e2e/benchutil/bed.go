package benchutil

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/promshard/promshard/e2e/testbed"
)

// Logf prints a timestamped line to stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// Main runs a bench command's run function and exits 1 with its error.
func Main(name string, run func() error) {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// StartBed builds or reuses the binaries, builds promshard unless binary is
// given, and starts a test bed; it returns the bed and the promshard binary.
func StartBed(ctx context.Context, binary string) (*testbed.Bed, string, error) {
	bins, err := testbed.Binaries(ctx, Logf)
	if err != nil {
		return nil, "", err
	}
	if binary == "" {
		if binary, err = testbed.BuildPromshard(ctx, Logf); err != nil {
			return nil, "", err
		}
	}
	bed, err := testbed.New(ctx, testbed.Options{Bins: bins, Logf: Logf})
	return bed, binary, err
}

// get performs a GET of url with ctx.
func get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}
