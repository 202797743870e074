#!/usr/bin/env bash
# Builds the local images (no registry, no Docker) and imports them into containerd's k8s.io
# namespace, where the kubelet finds them and therefore never tries to pull:
#   steprun.local/pause:3.10  the Pod sandbox image (containerd's sandbox_image)
#   steprun.local/step:1      busybox with sh: the step image of the tests and examples
#   steprun.local/artifacts:1 the artifact helper (helper/, Go, static), cached by source hash
# Each archive is deterministic; an image whose digest containerd already has is not re-imported.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

out=$CLUSTER_DIR/images
mkdir -p "$out"

import_image() {  # NAME ARCHIVE DIGEST
  # IMPORT=none only builds the archives (kind loads them with `kind load image-archive`).
  [ "${IMPORT:-containerd}" = none ] && return 0
  if ctr -n k8s.io images ls "name==$1" 2>/dev/null | grep -q "$3"; then
    log "image $1 already imported ($3)"
    return
  fi
  log "importing $1 ($3)"
  ctr -n k8s.io images import --no-unpack=false "$2" >/dev/null
  ctr -n k8s.io images ls "name==$1" | grep -q "$3" || die "import of $1 did not produce $3"
}

build_pause() {
  local root; root=$(mktemp -d)
  gcc -Os -static -s -o "$root/pause" "$HACK_DIR/images/pause.c"
  local digest
  digest=$(python3 "$HACK_DIR/oci_image.py" "$root" "$out/pause.tar" --name "$PAUSE_IMAGE" \
    --entrypoint '["/pause"]' --user 65535:65535)
  rm -rf "$root"
  import_image "$PAUSE_IMAGE" "$out/pause.tar" "$digest"
}

build_step() {
  local root; root=$(mktemp -d)
  mkdir -p "$root"/{bin,etc,tmp,root,workspace,home/step}
  chmod 1777 "$root/tmp" "$root/workspace"
  cp /bin/busybox "$root/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nstep:x:65532:65532:step:/home/step:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nstep:x:65532:\nnobody:x:65534:\n' >"$root/etc/group"
  chown 65532:65532 "$root/home/step"
  local digest
  digest=$(python3 "$HACK_DIR/oci_image.py" "$root" "$out/step.tar" --name "$STEP_IMAGE" \
    --env PATH=/bin --cmd '["/bin/sh"]')
  rm -rf "$root"
  import_image "$STEP_IMAGE" "$out/step.tar" "$digest"
}

if [ "${IMPORT:-containerd}" = none ]; then
  [ -x /bin/busybox ] || die "building the step image needs a static busybox at /bin/busybox (Debian: busybox-static)"
fi
[ -x /bin/busybox ] || die "busybox-static is not installed (hack/cluster-up.sh installs it)"
# The artifact helper: one static Go binary (helper/) on an otherwise empty image. Built from
# the Go module proxy the first time (about a minute), cached by the hash of its sources.
build_artifacts() {
  local hash bin root digest
  hash=$(cd "$REPO_DIR/helper" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
  bin=$STEPRUN_CACHE/helper/$hash/steprun-artifacts
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null || die "building the artifact helper needs Go (https://go.dev/dl)"
    log "building the artifact helper ($hash)"
    mkdir -p "$(dirname "$bin")"
    (cd "$REPO_DIR/helper" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$bin.partial" .)
    mv "$bin.partial" "$bin"
  fi
  root=$(mktemp -d)
  mkdir -p "$root/tmp"
  chmod 1777 "$root/tmp"
  cp "$bin" "$root/steprun-artifacts"
  digest=$(python3 "$HACK_DIR/oci_image.py" "$root" "$out/artifacts.tar" --name "$ARTIFACTS_IMAGE" \
    --entrypoint '["/steprun-artifacts"]' --user 65532:65532)
  rm -rf "$root"
  import_image "$ARTIFACTS_IMAGE" "$out/artifacts.tar" "$digest"
}

build_pause
build_step
build_artifacts
