// Command targetserver serves many Prometheus metrics targets from one
// process, controlled through an HTTP API on a unix socket (see package
// github.com/promshard/promshard/e2e/targetserver). The e2e test bed runs it
// inside network namespaces and on loopback.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"

	"github.com/promshard/promshard/e2e/targetserver"
)

func main() {
	app := kingpin.New("targetserver", "Serves many Prometheus metrics targets for promshard's e2e tests.")
	socket := app.Flag("control.socket", "Path of the unix socket serving the control API.").Required().String()
	kingpin.MustParse(app.Parse(os.Args[1:]))

	logger := promslog.New(&promslog.Config{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *socket, targetserver.New(logger)); err != nil {
		fmt.Fprintln(os.Stderr, "targetserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, socket string, s *targetserver.Server) error {
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("listen on control socket: %w", err)
	}
	defer os.Remove(socket)
	return s.Serve(ctx, l)
}
