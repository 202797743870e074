#!/usr/bin/env bash
# Installs Prometheus and promtool from the Debian package `prometheus` (once) and prints the
# directory holding both binaries. The tests start their own Prometheus from it (nothing runs as
# a service: the package's own service is neither needed nor started here).
#
#   hack/install-prometheus.sh            # prints e.g. /usr/bin
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  [ "$(id -u)" = 0 ] || die "prometheus is installed with apt-get: run as root (or install the Debian package prometheus)"
  log "installing the Debian package prometheus (first time only)"
  export DEBIAN_FRONTEND=noninteractive
  # --no-install-recommends: not its node exporter or web assets, only the server and promtool.
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
  # The package starts its service where an init system runs it; the tests run their own.
  if command -v service >/dev/null; then service prometheus stop >/dev/null 2>&1 || true; fi
fi
command -v promtool >/dev/null || die "the prometheus package brought no promtool"
dirname "$(command -v promtool)"
