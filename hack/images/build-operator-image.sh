#!/usr/bin/env bash
# Builds the operator image steprun.local/operator:<version> without Docker or a registry, and
# imports it into containerd's k8s.io namespace (skipped when containerd already has the digest).
#
#   hack/images/build-operator-image.sh              # build and import; prints the image ref
#   hack/images/build-operator-image.sh --no-import  # only write the OCI archive
#
# The image is a Debian bookworm minbase root filesystem (debootstrap from this machine's Debian
# mirror) holding python3 and a virtualenv at /opt/steprun with the project and its runtime
# dependencies, running as uid 65532. It is built in three stages, each cached under
# $STEPRUN_CACHE/operator-image/ so a rebuild only redoes what changed:
#   base  debootstrap + a non-root user + stripping          key: suite, mirror, packages
#   deps  + the venv with the dependencies' wheels           key: base + pinned dependencies
#   final + the project's wheel (always rebuilt: seconds)
# The dependencies are pinned to the versions installed in the development venv (.venv), so the
# image runs what the tests ran. The archive is deterministic for a given cache (see
# hack/oci_image.py): rebuilding an unchanged tree gives the same digest and no re-import.
# Needs root (debootstrap, chroot) and, the first time, the Debian mirror and PyPI.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

IMPORT=1
for arg in "$@"; do
  case $arg in
    --no-import) IMPORT=0 ;;
    *) die "unknown argument $arg (usage: $0 [--no-import])" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "the image is built with debootstrap and chroot: run as root"

VENV_PY=$REPO_DIR/.venv/bin/python
[ -x "$VENV_PY" ] || die "no development venv at $REPO_DIR/.venv (run: make venv)"
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
PREFIX=/opt/steprun
APP_UID=65532
# Bump when the way a stage is built changes, so cached stages are not reused.
BASE_REVISION=1
DEPS_REVISION=2
VERSION=$("$VENV_PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO_DIR/pyproject.toml")
IMAGE=${OPERATOR_IMAGE:-steprun.local/operator:$VERSION}
CACHE=$STEPRUN_CACHE/operator-image
ARCHIVE=${OPERATOR_ARCHIVE:-$CLUSTER_DIR/images/operator.tar}
ENTRYPOINT='["/opt/steprun/bin/python", "-m", "steprun.handlers.main"]'
started=$(date +%s)

# The Debian mirror this machine's apt uses (deb822 or one-line sources). There is no default:
# the machine's package sources are the only ones this project uses.
debian_mirror() {
  local uri apt=${APT_ETC:-/etc/apt}  # APT_ETC: another apt configuration (tests)
  uri=$(grep -hs -E '^URIs:' "$apt"/sources.list.d/*.sources "$apt"/sources.list 2>/dev/null \
    | awk '{for (i = 2; i <= NF; i++) print $i}' | grep -E '/debian/?$' | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hs -E '^deb ' "$apt"/sources.list "$apt"/sources.list.d/*.list 2>/dev/null \
    | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' | grep -E '/debian/?$' | head -n1 || true)
  [ -n "$uri" ] || die "no Debian mirror in this machine's apt sources ($apt/sources.list, $apt/sources.list.d/): configure apt (a 'deb <mirror>/debian ...' line or a deb822 URIs: entry) first"
  echo "$uri"
}

sha() { sha256sum | cut -c1-16; }

in_root() {  # ROOTFS COMMAND... : run a command inside the root filesystem
  local root=$1; shift
  chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

# Files nobody reads in a container: documentation, translations, package indexes, logs.
strip_rootfs() {
  local root=$1
  rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,linda,bug,common-licenses} \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/cache/ldconfig/* "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
  mkdir -p "$root/usr/share/doc" "$root/var/log"
}

build_base() {  # DIR
  local dir=$1 root=$1.tmp/rootfs mirror
  mirror=$(debian_mirror)
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
      || { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
  }
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  log "debootstrap $SUITE (minbase + $PACKAGES) from $mirror"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" \
    >"$dir.tmp/debootstrap.log" 2>&1 || { tail -n 30 "$dir.tmp/debootstrap.log" >&2; die "debootstrap failed"; }
  # The non-root identity the operator runs as (the chart's runAsUser).
  echo "steprun:x:$APP_UID:$APP_UID:steprun operator:/home/steprun:/usr/sbin/nologin" >>"$root/etc/passwd"
  echo "steprun:x:$APP_UID:" >>"$root/etc/group"
  mkdir -p "$root/home/steprun"
  chown "$APP_UID:$APP_UID" "$root/home/steprun"
  strip_rootfs "$root"
  mv "$root" "$dir"
  rm -rf "$dir.tmp"
}

# name==version of every runtime dependency of the project, as installed in the development venv
# (environment markers evaluated for this interpreter, extras of dependencies followed).
pinned_dependencies() {
  "$VENV_PY" - <<'PY'
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pins: dict[str, str] = {}
pending = [(req, frozenset()) for req in metadata.requires("steprun") or []]
while pending:
    text, extras = pending.pop()
    req = Requirement(text)
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
        continue
    name = canonicalize_name(req.name)
    if name in pins:
        continue
    dist = metadata.distribution(req.name)
    pins[name] = dist.version
    pending.extend((child, frozenset(req.extras)) for child in dist.requires or [])
for name in sorted(pins):
    print(f"{name}=={pins[name]}")
PY
}

build_deps() {  # BASE_DIR DIR PINS_FILE
  local base=$1 dir=$2 pins=$3 root=$2.tmp
  rm -rf "$root"
  cp -a "$base" "$root"
  mkdir -p "$CACHE/wheelhouse" "$root/tmp/wheelhouse"
  log "fetching wheels of $(wc -l <"$pins") pinned dependencies"
  # Wheels where PyPI has them, built here otherwise; same OS and Python minor as the image.
  "$VENV_PY" -m pip wheel -q --no-deps -r "$pins" -w "$CACHE/wheelhouse" >&2
  cp "$pins" "$root/tmp/wheelhouse/requirements.txt"
  cp "$CACHE"/wheelhouse/*.whl "$root/tmp/wheelhouse/"
  log "installing the dependencies into $PREFIX"
  in_root "$root" python3 -m venv "$PREFIX"
  in_root "$root" "$PREFIX/bin/pip" install -q --no-index --no-compile --disable-pip-version-check \
    --find-links /tmp/wheelhouse -r /tmp/wheelhouse/requirements.txt >&2
  # The image holds one Kubernetes client stack (kubernetes_asyncio); test suites go.
  local site=$root$PREFIX/lib/python3.11/site-packages
  [ -d "$site/kubernetes_asyncio" ] || die "kubernetes_asyncio is not where the image expects it ($site)"
  [ ! -d "$site/kubernetes" ] || die "the blocking kubernetes client is in the image: a runtime dependency pulls it in"
  find "$site" -depth -type d \( -name tests -o -name test \) -path "$site/*/*" -exec rm -rf {} +
  # Hash-based bytecode: no source timestamps inside, so the layer does not change with them.
  in_root "$root" "$PREFIX/bin/python" -m compileall -q --invalidation-mode unchecked-hash \
    "$PREFIX/lib" >/dev/null
  rm -rf "$root/tmp/wheelhouse" "$root/root/.cache"
  mv "$root" "$dir"
}

build_final() {  # DEPS_DIR ROOT WHEEL
  local deps=$1 root=$2 wheel=$3
  cp -a "$deps" "$root"
  mkdir -p "$root/tmp/dist"
  cp "$wheel" "$root/tmp/dist/"
  in_root "$root" "$PREFIX/bin/pip" install -q --no-index --no-deps --no-compile \
    --disable-pip-version-check "/tmp/dist/$(basename "$wheel")" >&2
  local site
  site=$(in_root "$root" "$PREFIX/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  in_root "$root" "$PREFIX/bin/python" -m compileall -q --invalidation-mode unchecked-hash \
    "$site/steprun" >/dev/null
  # Installers are not needed at run time; the dist-info of the project stays (its version).
  rm -rf "$root$site"/{pip,pip-*.dist-info,setuptools,setuptools-*.dist-info,_distutils_hack} \
    "$root$site/distutils-precedence.pth" "$root$PREFIX"/bin/pip* \
    "$root"/usr/share/python-wheels "$root/tmp/dist" "$root/root/.cache"
  # pip records where the wheel came from; a temporary path means nothing in the image.
  rm -f "$root$site"/steprun-*.dist-info/direct_url.json
  sed -i '/direct_url.json/d' "$root$site"/steprun-*.dist-info/RECORD
  in_root "$root" "$PREFIX/bin/python" -B -c 'import kubernetes_asyncio.client, steprun.client, steprun.handlers.main' \
    || die "the image cannot import the operator and its clients"
}

import_image() {  # NAME ARCHIVE DIGEST
  if ctr -n k8s.io images ls "name==$1" 2>/dev/null | grep -q "$3"; then
    log "image $1 already imported ($3)"
    return
  fi
  log "importing $1 ($3)"
  ctr -n k8s.io images import --no-unpack=false "$2" >/dev/null
  ctr -n k8s.io images ls "name==$1" | grep -q "$3" || die "import of $1 did not produce $3"
}

mkdir -p "$CACHE" "$(dirname "$ARCHIVE")"
# Concurrent builds (two test sessions, a demo) share the cache: one at a time.
exec 9>"$CACHE/.lock"
flock 9

base_key=$(printf '%s\n' "$BASE_REVISION" "$SUITE" "$PACKAGES" "$(debian_mirror)" "$APP_UID" | sha)
base_dir=$CACHE/base-$base_key
if [ -d "$base_dir" ]; then log "base rootfs cached ($base_dir)"; else build_base "$base_dir"; fi

work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
pinned_dependencies >"$work/requirements.txt"
deps_key=$(printf '%s\n' "$DEPS_REVISION" "$base_key" "$(cat "$work/requirements.txt")" | sha)
deps_dir=$CACHE/deps-$deps_key
if [ -d "$deps_dir" ]; then log "dependencies cached ($deps_dir)"; else build_deps "$base_dir" "$deps_dir" "$work/requirements.txt"; fi

log "building the steprun $VERSION wheel"
# From a copy of the sources the package needs, so the build leaves nothing in the work tree.
mkdir -p "$work/src" "$work/dist"
cp -r "$REPO_DIR/pyproject.toml" "$REPO_DIR/README.md" "$REPO_DIR/operator" "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
# The build backend's chatter goes to a log, shown only when the build fails.
"$VENV_PY" -m pip wheel -q --no-deps "$work/src" -w "$work/dist" >"$work/wheel.log" 2>&1 \
  || { cat "$work/wheel.log" >&2; die "building the steprun wheel failed"; }
wheel=$(ls "$work"/dist/steprun-*.whl)

build_final "$deps_dir" "$work/rootfs" "$wheel"
digest=$("$VENV_PY" "$HACK_DIR/oci_image.py" "$work/rootfs" "$ARCHIVE" --name "$IMAGE" \
  --entrypoint "$ENTRYPOINT" --user "$APP_UID:$APP_UID" --workdir /home/steprun \
  --env "PATH=$PREFIX/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --env PYTHONUNBUFFERED=1 --env PYTHONDONTWRITEBYTECODE=1 --env HOME=/home/steprun)
log "built $IMAGE $digest: $(du -sm "$work/rootfs" | cut -f1) MiB unpacked, archive $(du -m "$ARCHIVE" | cut -f1) MiB"
# Earlier dependency stages are dead weight once a newer one exists.
find "$CACHE" -maxdepth 1 -name 'deps-*' ! -name "deps-$deps_key" ! -name '*.tmp' -exec rm -rf {} +

[ "$IMPORT" = 1 ] && import_image "$IMAGE" "$ARCHIVE" "$digest"
log "operator image ready in $(( $(date +%s) - started ))s"
echo "$IMAGE"
