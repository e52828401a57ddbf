package main

import (
	"fmt"
	"io"

	"github.com/promshard/promshard/config"
	"github.com/promshard/promshard/discovery"
)

// Exit codes of `promshard render`.
const (
	renderOK       = 0 // every object accepted
	renderRejected = 1 // configuration printed, but some objects were rejected
	renderFatal    = 2 // nothing printed: unreadable manifests or impossible settings
)

// runRender implements `promshard render`: it reads the manifests (files or
// folders), translates them like the agent would (with the PrometheusAgent
// agent = "namespace/name", or flags-only settings from opts when agent is
// empty) and prints the Prometheus configuration to w. Secrets print as
// "<secret>" unless showSecrets. Each rejected object is reported on errw as
// `rejected <Kind> <ns>/<name>: <reason>`. It returns the exit code.
func runRender(w, errw io.Writer, manifests []string, agent string, showSecrets bool, opts config.Options) int {
	if len(manifests) == 0 {
		fmt.Fprintln(errw, "render: no --manifests given")
		return renderFatal
	}
	var (
		snap *config.Snapshot
		err  error
	)
	if agent != "" {
		snap, err = discovery.LoadManifestsForAgent(manifests, agent)
	} else {
		snap, err = discovery.LoadManifests(manifests)
	}
	if err != nil {
		fmt.Fprintf(errw, "render: %v\n", err)
		return renderFatal
	}
	cfg, results, err := config.Generate(snap, opts)
	if err != nil {
		fmt.Fprintf(errw, "render: %v\n", err)
		return renderFatal
	}
	if _, err := config.Check(cfg); err != nil {
		fmt.Fprintf(errw, "render: %v\n", err)
		return renderFatal
	}
	out, err := config.Marshal(cfg, showSecrets)
	if err != nil {
		fmt.Fprintf(errw, "render: %v\n", err)
		return renderFatal
	}
	if _, err := w.Write(out); err != nil {
		fmt.Fprintf(errw, "render: write: %v\n", err)
		return renderFatal
	}
	code := renderOK
	for _, r := range results {
		if !r.Accepted {
			fmt.Fprintf(errw, "rejected %s %s/%s: %s\n", r.Kind, r.Namespace, r.Name, r.Reason)
			code = renderRejected
		}
	}
	if snap.Agent != nil {
		if ignored := config.IgnoredFields(&snap.Agent.Spec); !ignored.Empty() {
			fmt.Fprintf(errw, "warning: %s\n", ignored)
		}
	}
	return code
}
