#!/usr/bin/env bash
# Builds the local cluster's NetworkPolicy agent, kube-router, from its Go module and caches it
# per version, like hack/build-store.sh. Only its network policy controller is used
# (hack/netpol-up.sh): this VM's kernel has no nftables queue support, which rules out the
# nfqueue-based agents, while iptables and ipset are built in.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$HERE/versions.sh"

out=$(netpol_bin_dir)
if [ -x "$out/kube-router" ]; then
  echo "kube-router $KUBE_ROUTER_VERSION cached in $out"
  exit 0
fi
echo "building kube-router $KUBE_ROUTER_VERSION into $out"
started=$(date +%s)
# A per-process directory: cluster-up starts this build in the background, and two builds at
# once (two cluster-ups) must not install into the same half-written directory.
partial="$out.partial.$$"
trap 'rm -rf "$partial"' EXIT
mkdir -p "$partial"
module=github.com/cloudnativelabs/kube-router/v2
CGO_ENABLED=0 GOBIN="$partial" go install -trimpath \
  -ldflags "-s -w -X $module/pkg/version.Version=$KUBE_ROUTER_VERSION" \
  "$module/cmd/kube-router@$KUBE_ROUTER_VERSION"
mkdir -p "$(dirname "$out")"
# The first finished build wins; a later one finds the directory and leaves it alone.
mv -T "$partial" "$out" 2>/dev/null || [ -x "$out/kube-router" ]
"$out/kube-router" --version
echo "built kube-router $KUBE_ROUTER_VERSION in $(( $(date +%s) - started ))s"
