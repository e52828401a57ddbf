// Command promshard is prometheus-operator and a sharded Prometheus agent in
// one process: it watches the monitoring CRDs, translates them in memory into
// Prometheus scrape configuration, scrapes the targets this replica owns and
// remote-writes the samples.
//
// This is the only package that wires the others together and the only one
// that exits the process.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
)

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// runMain parses args and executes the selected command; it returns the exit code.
func runMain(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New(filepath.Base(os.Args[0]), "Prometheus-operator and a sharded Prometheus agent in one process.")
	app.Version(version.Print("promshard"))
	app.HelpFlag.Short('h')
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	terminated := false
	app.Terminate(func(int) { terminated = true }) // --help and --version

	runCmd := app.Command("run", "Watch the monitoring CRDs, scrape the owned targets and remote-write them (default).").Default()
	rf := registerRunFlags(runCmd)

	renderCmd := app.Command("render", "Print the Prometheus configuration promshard would apply for a set of manifests.")
	var (
		manifests   = renderCmd.Flag("manifests", "YAML file or folder of Kubernetes objects (multi-document and List kinds too). Repeatable.").Required().Strings()
		renderAgent = renderCmd.Flag("prometheus-agent", "namespace/name of the PrometheusAgent among the manifests whose settings apply; empty uses the flags-only defaults.").String()
		showSecrets = renderCmd.Flag("show-secrets", "Print credentials instead of <secret>.").Bool()
		renderFiles = renderCmd.Flag("allow-file-access", "Accept file references (bearerTokenFile, tlsConfig.*File) in monitors.").Bool()
	)

	cmd, err := app.Parse(args)
	if terminated {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "promshard: error: %v\n", err)
		return 2
	}
	switch cmd {
	case renderCmd.FullCommand():
		opts := rf.configOptions()
		opts.AllowFileAccess = opts.AllowFileAccess || *renderFiles
		return runRender(stdout, stderr, *manifests, *renderAgent, *showSecrets, opts)
	case "", runCmd.FullCommand():
		return runAgent(rf, stderr)
	}
	return 0
}
