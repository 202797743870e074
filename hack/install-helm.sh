#!/usr/bin/env bash
# Builds helm from its official Go module (helm.sh/helm/v3) at the pinned HELM_VERSION and caches
# the binary under $STEPRUN_CACHE/helm/<version>/, so only the first run compiles anything.
# Prints the binary's path on stdout; everything else goes to stderr.
#
#   hack/install-helm.sh               # build (or reuse) the pinned version
#   HELM_VERSION=v3.19.4 hack/install-helm.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dir=$STEPRUN_CACHE/helm/$HELM_VERSION
binary=$dir/helm

built_ok() {
  [ -x "$binary" ] && "$binary" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"
}

if ! built_ok; then
  command -v go >/dev/null || die "helm is built from its Go module: install Go first"
  log "building helm $HELM_VERSION with $(go version | awk '{print $3}') (first time only)"
  started=$(date +%s)
  # The ldflags are those of helm's own Makefile. Without them `helm version` is vague and helm
  # assumes Kubernetes 1.20 wherever it cannot ask a cluster (`helm template`, `helm lint`), so a
  # chart's kubeVersion constraint would fail; helm derives that version from its client-go.
  gomod=$(cd / && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$gomod" ] || die "could not download helm.sh/helm/v3@$HELM_VERSION"
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")
  [ -n "$client_go" ] || die "helm $HELM_VERSION's go.mod names no k8s.io/client-go"
  k8s_minor=$(echo "$client_go" | cut -d. -f2)
  k8s_major=$(( $(echo "$client_go" | cut -d. -f1 | tr -d v) + 1 ))
  ldflags="-w -s"
  ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  mkdir -p "$dir"
  # CGO off: a static binary that does not depend on the host's libc.
  (cd / && GOBIN=$dir CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") >&2
  built_ok || die "the helm just built does not report version $HELM_VERSION"
  log "helm $HELM_VERSION built in $(( $(date +%s) - started ))s"
fi
echo "$binary"
