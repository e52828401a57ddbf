#!/usr/bin/env bash
# Generates the prometheus-operator CRDs promshard watches from the Go types
# of github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
# (version pinned in e2e/tools/controller-gen/go.mod) with controller-gen.
#
# Usage: hack/gen-crds.sh [output-dir]   (default: deploy/crds)
# Keeps exactly six files, one per kind: servicemonitors, podmonitors,
# probes, scrapeconfigs, prometheusagents, prometheusrules.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/deploy/crds}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

apis=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
# v1beta1 needs controller-runtime and holds no kind promshard needs.
(cd "$root/e2e/tools/controller-gen" && GOWORK=off go tool controller-gen \
	crd:crdVersions=v1,allowDangerousTypes=true \
	"paths=$apis/v1" "paths=$apis/v1alpha1" \
	"output:crd:dir=$tmp")

for kind in servicemonitors podmonitors probes scrapeconfigs prometheusagents prometheusrules; do
	src="$tmp/monitoring.coreos.com_${kind}.yaml"
	if [[ ! -f "$src" ]]; then
		echo "gen-crds: controller-gen produced no CRD for $kind" >&2
		exit 1
	fi
	cp "$src" "$out/monitoring.coreos.com_${kind}.yaml"
done
# Drop files of other kinds left from earlier generations.
find "$out" -maxdepth 1 -name '*.yaml' ! -name 'monitoring.coreos.com_servicemonitors.yaml' \
	! -name 'monitoring.coreos.com_podmonitors.yaml' ! -name 'monitoring.coreos.com_probes.yaml' \
	! -name 'monitoring.coreos.com_scrapeconfigs.yaml' ! -name 'monitoring.coreos.com_prometheusagents.yaml' \
	! -name 'monitoring.coreos.com_prometheusrules.yaml' -delete
