#!/usr/bin/env bash
# Brings up a real single-node Kubernetes cluster on this machine, built from official sources:
# kube-* binaries from the k8s.io/kubernetes Go module (hack/build-k8s.sh), etcd, containerd,
# runc and the CNI plugins from Debian packages, images built locally and imported into
# containerd, a NetworkPolicy agent (kube-router's policy controller, hack/netpol-up.sh), an
# S3-compatible artifact store (hack/store-up.sh) and Kueue (hack/kueue-up.sh). Idempotent:
# components already running are left alone.
#
#   hack/cluster-up.sh            # the local cluster (needs root)
#   CLUSTER=kind hack/cluster-up.sh   # a kind cluster where kind and Docker exist
#   KWOK_NODES=N hack/cluster-up.sh   # also N fake nodes managed by kwok, for scale tests
#
# Writes .cluster/kubeconfig; logs in .cluster/logs/, pids in .cluster/pids/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CLUSTER=${CLUSTER:-local}
KWOK_NODES=${KWOK_NODES:-0}
started=$(date +%s)

if [ "$CLUSTER" = kind ]; then
  command -v kind >/dev/null && docker info >/dev/null 2>&1 || die "CLUSTER=kind needs kind and a running Docker engine"
  mkdir -p "$CLUSTER_DIR"
  kind get clusters 2>/dev/null | grep -qx steprun || kind create cluster --name steprun --image "kindest/node:$K8S_VERSION" --wait 120s
  kind get kubeconfig --name steprun >"$KUBECONFIG_OUT"
  IMPORT=none "$HACK_DIR/images/build-images.sh"
  for archive in "$CLUSTER_DIR"/images/*.tar; do kind load image-archive --name steprun "$archive"; done
  log "kind cluster ready: export KUBECONFIG=$KUBECONFIG_OUT"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "the local cluster runs etcd, containerd and a kubelet: run as root"

install_packages() {
  local need=()
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  command -v iptables >/dev/null || need+=(iptables)
  command -v openssl >/dev/null || need+=(openssl)
  command -v conntrack >/dev/null || need+=(conntrack)
  command -v ipset >/dev/null || need+=(ipset)
  [ -x /bin/busybox ] || need+=(busybox-static)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing Debian packages: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  # Debian's packages may have started their own daemons where an init system exists; ours are
  # configured by this script, so a packaged etcd on our port would be a conflict.
}

prepare_host() {
  # Pod volumes (and the kubelet's mount propagation) need a shared root mount.
  mount --make-rshared / 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  mkdir -p /etc/cni/net.d "$LOGS" "$PIDS" "$PKI"
}

make_pki() {
  local ip; ip=$(node_ip)
  if [ ! -f "$PKI/ca.crt" ]; then
    log "creating certificates in $PKI"
    openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -nodes -key "$PKI/ca.key" -subj "/CN=steprun-local-ca" -days 3650 \
      -out "$PKI/ca.crt" 2>/dev/null
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  local client="extendedKeyUsage=clientAuth"
  gen_cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth" \
    "subjectAltName=IP:127.0.0.1,IP:$ip,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  gen_cert admin "/O=system:masters/CN=steprun-admin" "$client"
  gen_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  gen_cert controller-manager "/CN=system:kube-controller-manager" "$client"
  gen_cert scheduler "/CN=system:kube-scheduler" "$client"
  gen_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
  gen_cert kubelet-serving "/CN=$NODE_NAME" "extendedKeyUsage=serverAuth" \
    "subjectAltName=IP:$ip,IP:127.0.0.1,DNS:$NODE_NAME"
  gen_cert kube-proxy "/CN=system:kube-proxy" "$client"
  gen_cert kwok "/O=system:masters/CN=kwok" "$client"
  write_kubeconfig "$KUBECONFIG_OUT" admin
  for c in controller-manager scheduler kubelet kube-proxy kwok; do write_kubeconfig "$CLUSTER_DIR/$c.kubeconfig" "$c"; done
}

start_etcd() {
  mkdir -p "$CLUSTER_DIR/etcd"
  start_daemon etcd etcd --name steprun --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster steprun=http://127.0.0.1:2380 --quota-backend-bytes 4294967296 \
    --snapshot-count 50000 --log-level warn
  wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

# WatchList=false: Debian's etcd (3.4) cannot answer progress requests, and with the gate on,
# the API server turns every watch from resourceVersion 0 or "" into a watch-list stream that it
# then refuses; clients such as kwok would relist in a loop instead of watching.
# PodLogsQuerySplitStreams (alpha, here and in the kubelet): a Pod's log can be read as stdout
# and stderr separately, which the TypeScript runner's onLog reports per line.
start_apiserver() {
  local ip; ip=$(node_ip)
  cat >"$CLUSTER_DIR/audit-policy.yaml" <<'AUDIT'
# Every write to what a step is made of, with who made it (user.username) and when, but never a
# body: tests prove from it that no Pod was ever created twice, even across operator restarts,
# and the benchmark (bench/) counts the API writes per step, split by client (the operator, the
# Job controller, the scheduler, the kubelet or kwok, the garbage collector). Reads (get, list)
# of the same objects are logged too, so the benchmark counts every client's reads per step as
# well. Nothing else (watches, leases, nodes) is logged, so the file stays small.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete]
  resources:
  - {group: "", resources: [pods, pods/status, pods/binding, configmaps, secrets, events]}
  - {group: steprun.dev, resources: [stepruns, stepruns/status]}
  - {group: batch, resources: [jobs, jobs/status]}
  - {group: networking.k8s.io, resources: [networkpolicies]}
  - {group: events.k8s.io, resources: [events]}
- level: Metadata
  verbs: [get, list]
  resources:
  - {group: "", resources: [pods, configmaps, secrets, events]}
  - {group: steprun.dev, resources: [stepruns]}
  - {group: batch, resources: [jobs]}
- level: None
AUDIT
  start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --advertise-address "$ip" --bind-address 0.0.0.0 --secure-port "$API_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --feature-gates=WatchList=false,PodLogsQuerySplitStreams=true \
    --audit-policy-file "$CLUSTER_DIR/audit-policy.yaml" \
    --audit-log-path "$LOGS/audit.log" --audit-log-maxsize 200 --audit-log-maxbackup 2 \
    --profiling=false --v=1
  wait_for kube-apiserver 120 kctl get --raw /readyz
}

start_controllers() {
  start_controller_manager
  start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --v=1
  wait_for kube-scheduler 60 curl -skf https://127.0.0.1:10259/healthz
}

start_containerd() {
  mkdir -p "$CLUSTER_DIR/containerd"
  cat >"$CLUSTER_DIR/containerd/config.toml" <<TOML
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_cdi = false
  # This VM withholds CAP_SYS_RESOURCE, so no process may lower an OOM score below its own;
  # the kubelet asks for negative scores (-998 for sandboxes), which runc would fail to set.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
TOML
  cat >/etc/cni/net.d/10-steprun.conflist <<CNI
{
  "cniVersion": "1.0.0",
  "name": "steprun",
  "plugins": [
    {"type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
  start_daemon containerd containerd --config "$CLUSTER_DIR/containerd/config.toml"
  wait_for containerd 60 ctr --address "$CONTAINERD_SOCK" version
}

start_kubelet() {
  local ip; ip=$(node_ip)
  mkdir -p "$CLUSTER_DIR/kubelet"
  cat >"$CLUSTER_DIR/kubelet/config.yaml" <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
failSwapOn: false
tlsCertFile: "$PKI/kubelet-serving.crt"
tlsPrivateKeyFile: "$PKI/kubelet-serving.key"
# containerd 1.6 cannot pin the sandbox image, so image GC must never run: the local images
# cannot be pulled back.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
maxPods: 250
serializeImagePulls: false
podPidsLimit: 4096
registerNode: true
nodeStatusReportFrequency: 1m
featureGates: {PodLogsQuerySplitStreams: true}
KCFG
  start_daemon kubelet "$K8S_BIN/kubelet" --config "$CLUSTER_DIR/kubelet/config.yaml" \
    --kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" --hostname-override "$NODE_NAME" \
    --node-ip "$ip" --root-dir /var/lib/kubelet --v=1
}

start_kube_proxy() {
  # Pods reach the API server through the "kubernetes" Service, which needs Service routing.
  start_daemon kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig "$CLUSTER_DIR/kube-proxy.kubeconfig" \
    --hostname-override "$NODE_NAME" --cluster-cidr "$POD_CIDR" --proxy-mode iptables \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 --v=1
  wait_for kube-proxy 60 curl -sf http://127.0.0.1:10256/healthz
}

wait_node_ready() {
  wait_for kubelet 120 kctl get node "$NODE_NAME"
  wait_for kubelet 120 kctl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
  wait_for kube-controller-manager 60 kctl -n default get serviceaccount default
}

# Workspaces (PersistentVolumeClaims) need a dynamic provisioner and a default StorageClass. The
# controller-manager's own host-path provisioner (--enable-hostpath-provisioner above) makes a
# directory under /tmp/hostpath_pv/ per claim and removes it when the claim goes (reclaim policy
# Delete). It suits one node only, and creates each directory root-owned with mode 0750, so only
# root steps can write to it; fsGroup does not apply to host paths.
# WaitForFirstConsumer: the claim is bound when its first Pod is scheduled, as with most real
# provisioners, so tests see the same order of events.
apply_storage_class() {
  kctl apply -f - >/dev/null <<'SC'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
SC
}

start_kwok() {
  [ "$KWOK_NODES" -gt 0 ] || return 0
  "$HACK_DIR/kwok-up.sh" "$KWOK_NODES"
}

install_packages
prepare_host
# The NetworkPolicy agent's cold build (a few minutes, mostly module download) overlaps the
# Kubernetes build and the steps after it; hack/netpol-up.sh waits for it.
netpol_build=
if [ ! -x "$(netpol_bin_dir)/kube-router" ]; then
  log "building the NetworkPolicy agent in the background (log: $LOGS/build-netpol.log)"
  "$HACK_DIR/build-netpol.sh" >"$LOGS/build-netpol.log" 2>&1 &
  netpol_build=$!
fi
# Kueue's manager compiles beside Kubernetes too (both cached per version): its module
# download and the compile overlap the Kubernetes build instead of following it.
kueue_build=
if [ ! -x "$(kueue_bin_dir)/kueue" ]; then
  log "building Kueue in the background (log: $LOGS/build-kueue.log)"
  "$HACK_DIR/build-kueue.sh" >"$LOGS/build-kueue.log" 2>&1 &
  kueue_build=$!
fi
[ -x "$K8S_BIN/kube-apiserver" ] || "$HACK_DIR/build-k8s.sh"
"$HACK_DIR/build-k8s.sh" >/dev/null
make_pki
start_etcd
start_apiserver
start_controllers
start_containerd
"$HACK_DIR/images/build-images.sh"
start_kubelet
wait_node_ready
apply_storage_class
start_kube_proxy
if [ -n "$netpol_build" ] && ! wait "$netpol_build"; then
  fail_component build-netpol "failed"
fi
"$HACK_DIR/netpol-up.sh"
"$HACK_DIR/store-up.sh"
if [ -n "$kueue_build" ] && ! wait "$kueue_build"; then
  fail_component build-kueue "failed"
fi
"$HACK_DIR/kueue-up.sh"
start_kwok
log "cluster ready in $(( $(date +%s) - started ))s: $(kctl get node "$NODE_NAME" --no-headers)"
log "use it with: export KUBECONFIG=$KUBECONFIG_OUT"
