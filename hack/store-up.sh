#!/usr/bin/env bash
# Starts the local cluster's artifact store: versitygw on the node's IP (Pods reach it there,
# and so do the operator and the tests on the host), serving $CLUSTER_DIR/store/data, with one
# bucket. Idempotent: a running store is left alone; credentials are made once and kept.
#
# Writes $CLUSTER_DIR/store/store.env (mode 600): STORE_ENDPOINT, STORE_BUCKET,
# STORE_ACCESS_KEY, STORE_SECRET_KEY. Tests and make demo read it; nothing else should.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

STORE_DIR=$CLUSTER_DIR/store
STORE_PORT=${STORE_PORT:-7070}
STORE_BUCKET=${STORE_BUCKET:-steprun}
[ -x "$(store_bin_dir)/versitygw" ] || "$HACK_DIR/build-store.sh"

mkdir -p "$STORE_DIR/data/$STORE_BUCKET"
chmod 700 "$STORE_DIR"
env_file=$STORE_DIR/store.env
if [ ! -f "$env_file" ]; then
  umask 077
  cat >"$env_file" <<ENV
STORE_ENDPOINT=http://$(node_ip):$STORE_PORT
STORE_BUCKET=$STORE_BUCKET
STORE_ACCESS_KEY=steprun$(openssl rand -hex 6)
STORE_SECRET_KEY=$(openssl rand -hex 24)
ENV
fi
# shellcheck disable=SC1090
. "$env_file"
# The credentials reach versitygw through its environment, never its command line (ps shows it).
ROOT_ACCESS_KEY=$STORE_ACCESS_KEY ROOT_SECRET_KEY=$STORE_SECRET_KEY \
  start_daemon s3-store "$(store_bin_dir)/versitygw" --port "${STORE_ENDPOINT#http://}" --quiet \
  posix "$STORE_DIR/data"
# Any HTTP answer (an unauthenticated request gets 403) means it serves.
wait_for s3-store 60 sh -c "curl -s -o /dev/null -w '%{http_code}' '$STORE_ENDPOINT/' | grep -qv '^000$'"
log "artifact store ready at $STORE_ENDPOINT (bucket $STORE_BUCKET; credentials in $env_file)"
