#!/usr/bin/env bash
# Adds N fake nodes to the running local cluster, simulated by kwok (sigs.k8s.io/kwok): Pods
# bound to them start, run for a while and succeed without any container, so scale tests need
# no real capacity. The real kubelet's node is never touched.
#
#   hack/kwok-up.sh N     # called by `KWOK_NODES=N hack/cluster-up.sh`, or alone on a running cluster
#
# Fake nodes are named steprun-kwok-<i>, annotated kwok.x-k8s.io/node=fake (what kwok manages),
# labelled type=kwok and tainted kwok.x-k8s.io/node=fake:NoSchedule: only Pods that tolerate the
# taint can land there (a toleration of every taint does too), and those that also select
# type=kwok land nowhere else. Pod lifecycle: hack/kwok/pod-stages.yaml; kwok's own settings:
# hack/kwok/kwok.yaml.
# Idempotent: a running kwok and existing nodes are kept; nodes beyond N are left alone.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

COUNT=${1:-}
[[ "$COUNT" =~ ^[1-9][0-9]*$ ]] || die "usage: hack/kwok-up.sh N (number of fake nodes, >= 1)"

KWOK_BIN_DIR=$STEPRUN_CACHE/kwok/$KWOK_VERSION
KWOK_BIN=$KWOK_BIN_DIR/kwok
# The cluster's own identity for kwok (cluster-up writes it); any admin kubeconfig otherwise.
KWOK_KUBECONFIG=${KWOK_KUBECONFIG:-$CLUSTER_DIR/kwok.kubeconfig}
[ -f "$KWOK_KUBECONFIG" ] || KWOK_KUBECONFIG=$KUBECONFIG_OUT
# Addresses that are never routed anywhere: fake Pods get theirs from the shared address space
# of RFC 6598, fake nodes one from TEST-NET-3 (RFC 5737). Nothing ever connects to them.
KWOK_POD_CIDR=${KWOK_POD_CIDR:-100.64.0.0/12}
KWOK_NODE_IP=${KWOK_NODE_IP:-203.0.113.1}
# Room per fake node: the scheduler must never be what limits a benchmark.
KWOK_NODE_PODS=${KWOK_NODE_PODS:-10000}

install_kwok() {
  [ -x "$KWOK_BIN" ] && return 0
  command -v go >/dev/null || die "building kwok $KWOK_VERSION needs Go (>= 1.26) on PATH"
  log "building kwok $KWOK_VERSION into $KWOK_BIN_DIR (first time only)"
  mkdir -p "$KWOK_BIN_DIR"
  GOBIN=$KWOK_BIN_DIR go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

start_kwok() {
  start_daemon kwok "$KWOK_BIN" \
    --kubeconfig "$KWOK_KUBECONFIG" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr "$KWOK_POD_CIDR" --node-ip "$KWOK_NODE_IP" \
    --config "$HACK_DIR/kwok/kwok.yaml" \
    --config "$HACK_DIR/kwok/node-stages.yaml" \
    --config "$HACK_DIR/kwok/pod-stages.yaml"
}

node_manifest() {  # NAME
  cat <<NODE
apiVersion: v1
kind: Node
metadata:
  name: $1
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    type: kwok
    kubernetes.io/hostname: $1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
spec:
  taints:
  - {key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}
status:
  capacity: {cpu: "1000", memory: 4Ti, pods: "$KWOK_NODE_PODS"}
  allocatable: {cpu: "1000", memory: 4Ti, pods: "$KWOK_NODE_PODS"}
NODE
}

create_nodes() {
  local i name
  for i in $(seq 0 $((COUNT - 1))); do
    name=steprun-kwok-$i
    # Created with its status (as a kubelet registers): an existing node is left as it is.
    kctl get node "$name" >/dev/null 2>&1 || node_manifest "$name" | kctl create -f - >/dev/null
  done
}

nodes_ready() {
  local i
  for i in $(seq 0 $((COUNT - 1))); do
    kctl wait --for=condition=Ready "node/steprun-kwok-$i" --timeout=1s || return 1
  done
}

kctl get --raw /readyz >/dev/null 2>&1 || die "no cluster answers at $KUBECONFIG_OUT: run hack/cluster-up.sh first"
install_kwok
start_kwok
create_nodes
wait_for kwok 120 nodes_ready
log "kwok ready: $COUNT fake node(s) (label type=kwok, taint kwok.x-k8s.io/node=fake:NoSchedule)"
