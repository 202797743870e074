#!/usr/bin/env bash
# Prints the directory of the prometheus-operator CRDs (monitoring.coreos.com) of the pinned
# PROMETHEUS_OPERATOR_VERSION, read from that Go module as the Go module proxy serves it (the
# module cache keeps it after the first download). Nothing of it is copied into this project.
#
#   hack/prometheus-operator-crds.sh      # prints .../example/prometheus-operator-crd
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v go >/dev/null || die "the prometheus-operator CRDs come from its Go module: install Go first"
module=github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION
dir=$(cd / && GOFLAGS=-mod=mod go mod download -json "$module" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
crds=$dir/example/prometheus-operator-crd
[ -f "$crds/monitoring.coreos.com_servicemonitors.yaml" ] || die "no CRDs in $module ($crds)"
echo "$crds"
