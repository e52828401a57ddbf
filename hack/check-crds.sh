#!/usr/bin/env bash
# Fails when deploy/crds differs from what hack/gen-crds.sh generates from the
# pinned prometheus-operator API module. CI runs it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$root/hack/gen-crds.sh" "$tmp"
if ! diff -ru "$root/deploy/crds" "$tmp"; then
	echo "check-crds: deploy/crds is out of date; run hack/gen-crds.sh (make crds) and commit the result" >&2
	exit 1
fi
echo "check-crds: deploy/crds is up to date"
