# Shared helpers of the local-cluster scripts. Sourced, not executed.
# shellcheck shell=bash
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=hack/versions.sh
. "$HACK_DIR/versions.sh"

CLUSTER_DIR=${CLUSTER_DIR:-$REPO_DIR/.cluster}
PKI=$CLUSTER_DIR/pki
LOGS=$CLUSTER_DIR/logs
PIDS=$CLUSTER_DIR/pids
KUBECONFIG_OUT=$CLUSTER_DIR/kubeconfig
K8S_BIN=$(k8s_bin_dir)
NODE_NAME=${NODE_NAME:-steprun-node}
# Pod and Service ranges come from 198.18.0.0/15 (reserved for benchmarking, RFC 2544) so
# nothing the cluster does ever looks like traffic to a real private network.
POD_CIDR=${POD_CIDR:-198.18.0.0/16}
SERVICE_CIDR=${SERVICE_CIDR:-198.19.0.0/16}
SERVICE_IP=${SERVICE_IP:-198.19.0.1}
API_PORT=${API_PORT:-6443}
# The Linux bridge the CNI plugin connects Pods to (hack/cluster-up.sh writes its config).
CNI_BRIDGE=steprun0
ETCD_PORT=${ETCD_PORT:-2379}
PAUSE_IMAGE=steprun.local/pause:3.10
STEP_IMAGE=steprun.local/step:1
ARTIFACTS_IMAGE=steprun.local/artifacts:1
CONTAINERD_SOCK=/run/containerd/containerd.sock

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

node_ip() {
  if [ -n "${NODE_IP:-}" ]; then echo "$NODE_IP"; return; fi
  # The hostname resolves to 127.0.0.1 on these VMs, so the kubelet must be told its real address.
  ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -n1
}

pid_of() { [ -f "$PIDS/$1.pid" ] && cat "$PIDS/$1.pid"; }

is_running() {
  local pid
  pid=$(pid_of "$1") || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # A recycled pid would belong to another program: check it is still ours.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# start_daemon NAME BINARY ARGS... : start in its own session, record its pid, log to $LOGS/NAME.log.
start_daemon() {
  local name=$1; shift
  if is_running "$name" "$1"; then log "$name already running (pid $(pid_of "$name"))"; return 0; fi
  mkdir -p "$LOGS" "$PIDS"
  log "starting $name"
  # The daemon inherits none of this shell's other file descriptors: one holding a lock (e.g.
  # `flock LOCK hack/cluster-up.sh`) would otherwise stay locked for the daemon's whole life.
  (
    for fd in $(ls /proc/$BASHPID/fd); do
      [ "$fd" -gt 2 ] && eval "exec $fd>&-"
    done
    exec setsid "$@"
  ) >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

stop_daemon() {
  local name=$1 pid i
  pid=$(pid_of "$name") || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && { log "$name did not stop on TERM; killing"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$PIDS/$name.pid"
}

# fail_component NAME WHY : name the component that failed and show the end of its log.
fail_component() {
  log "ERROR: $1 $2"
  if [ -f "$LOGS/$1.log" ]; then
    log "last lines of $LOGS/$1.log:"
    tail -n 40 "$LOGS/$1.log" >&2
  fi
  exit 1
}

# wait_for NAME TIMEOUT_SECONDS COMMAND... : poll COMMAND until it succeeds; explain failure by NAME.
wait_for() {
  local name=$1 timeout=$2 deadline; shift 2
  deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$(pid_of "$name")" ] && ! kill -0 "$(pid_of "$name")" 2>/dev/null; then
      fail_component "$name" "exited while starting"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || fail_component "$name" "not ready after ${timeout}s"
    sleep 0.5
  done
}

# gen_cert NAME SUBJECT EXTENSIONS... : a key and certificate signed by the cluster's CA, made once.
gen_cert() {
  local name=$1 subject=$2; shift 2
  [ -f "$PKI/$name.crt" ] && return 0
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  printf '%s\n' "$@" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 825 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# write_kubeconfig FILE CERT_NAME : a kubeconfig for the API server with that certificate.
write_kubeconfig() {
  cat >"$1" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: steprun-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: steprun-local
  context: {cluster: steprun-local, user: $2}
current-context: steprun-local
KCFG
  chmod 600 "$1"
}

kctl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" "$@"; }

# The controller-manager's client rate limit and Job workers. Unset, the component's defaults
# apply (--kube-api-qps 20, --kube-api-burst 30, --concurrent-job-syncs 5): at ~6.6 writes per
# Job that caps the Job controller near 3 Jobs/s, whatever CPU is free. The benchmark compares
# StepRuns with both the default and an unthrottled Job controller (hack/controller-manager.sh).
KCM_KUBE_API_QPS=${KCM_KUBE_API_QPS:-}
KCM_KUBE_API_BURST=${KCM_KUBE_API_BURST:-}
KCM_CONCURRENT_JOB_SYNCS=${KCM_CONCURRENT_JOB_SYNCS:-}

start_controller_manager() {
  local tuning=()
  [ -z "$KCM_KUBE_API_QPS" ] || tuning+=(--kube-api-qps "$KCM_KUBE_API_QPS")
  [ -z "$KCM_KUBE_API_BURST" ] || tuning+=(--kube-api-burst "$KCM_KUBE_API_BURST")
  [ -z "$KCM_CONCURRENT_JOB_SYNCS" ] || tuning+=(--concurrent-job-syncs "$KCM_CONCURRENT_JOB_SYNCS")
  start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" \
    --use-service-account-credentials \
    --root-ca-file "$PKI/ca.crt" \
    --service-account-private-key-file "$PKI/sa.key" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false --bind-address 127.0.0.1 --controllers '*' \
    --enable-hostpath-provisioner --v=1 "${tuning[@]}"
  wait_for kube-controller-manager 60 curl -skf https://127.0.0.1:10257/healthz
}
