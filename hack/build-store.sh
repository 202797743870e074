#!/usr/bin/env bash
# Builds the local cluster's artifact store, versitygw (an S3-compatible gateway serving a
# directory), from its Go module and caches it per version, like hack/build-k8s.sh: only the
# first run pays (about 9 minutes cold on 2 cores, most of it module download; seconds after).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$HERE/versions.sh"

out=$(store_bin_dir)
if [ -x "$out/versitygw" ]; then
  echo "versitygw $VERSITYGW_VERSION cached in $out"
  exit 0
fi
echo "building versitygw $VERSITYGW_VERSION into $out"
mkdir -p "$out.partial"
CGO_ENABLED=0 GOBIN="$out.partial" go install -trimpath -ldflags '-s -w' \
  "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
rm -rf "$out" && mv "$out.partial" "$out"
"$out/versitygw" --version
