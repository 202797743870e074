#!/usr/bin/env bash
# Builds Kueue's manager (sigs.k8s.io/kueue/cmd/kueue) from its Go module and caches it per
# version, like hack/build-k8s.sh: only the first run pays for the compile (33 minutes measured
# on 2 cores while Kubernetes compiled beside it, most of it waiting for the CPU). The module has
# no replace directives, so `go install module@version` builds it as released.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$HERE/versions.sh"

out=$(kueue_bin_dir)
if [ -x "$out/kueue" ]; then
  echo "kueue $KUEUE_VERSION cached in $out"
  exit 0
fi
echo "building kueue $KUEUE_VERSION into $out"
started=$(date +%s)
mkdir -p "$out.partial"
# Stamped like a release build, so its log says which version runs.
CGO_ENABLED=0 GOBIN="$out.partial" go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
  "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
rm -rf "$out" && mv "$out.partial" "$out"
echo "kueue $KUEUE_VERSION built in $(( $(date +%s) - started ))s"
