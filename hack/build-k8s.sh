#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl from the
# official k8s.io/kubernetes Go module and caches them per version, so only the first run pays
# for the compile. k8s.io/kubernetes requires its staging modules at v0.0.0 (resolved upstream by
# in-repo replace directives that do not apply to dependents), so a throwaway wrapper module
# replaces each one with the matching published v0.x release.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
. "$HERE/versions.sh"

out=$(k8s_bin_dir)
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
missing=0
for b in "${binaries[@]}"; do [ -x "$out/$b" ] || missing=1; done
if [ "$missing" = 0 ]; then
  echo "kubernetes $K8S_VERSION binaries cached in $out"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/steprun-k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
staging_version="v0.${K8S_VERSION#v1.}"
go mod init steprun.local/k8sbuild >/dev/null 2>&1
# The staging list comes from k8s.io/kubernetes's own go.mod so a version bump needs no edit here.
modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
staging=$(awk '/^replace|^\t*k8s.io\/[a-z0-9-]+ => \.\/staging/ {print}' "$modfile" | grep -o 'k8s.io/[a-z0-9-]* => ./staging' | awk '{print $1}' | sort -u)
if [ -z "$staging" ]; then echo "could not read the staging module list from $modfile" >&2; exit 1; fi
for m in $staging; do go mod edit -replace "$m=$m@$staging_version"; done
go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"

commit=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Origin",{}).get("Hash","0000000000000000000000000000000000000000"))')
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

echo "building kubernetes $K8S_VERSION (${binaries[*]}) into $out; a cold build takes about 10 minutes on 2 cores (module download included)"
mkdir -p "$out.partial"
pkgs=()
for b in "${binaries[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
# Static like upstream's release binaries; -mod=mod lets go fill go.sum for the wrapper module.
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out.partial/" "${pkgs[@]}"
rm -rf "$out" && mv "$out.partial" "$out"
"$out/kubectl" version --client
