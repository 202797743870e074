#!/usr/bin/env bash
# Stops everything hack/cluster-up.sh started: step containers first (so no shim or container
# outlives the cluster), then the kubelet, containerd and the control plane, each by its pid.
# State (.cluster/: certificates, etcd data) is kept; `hack/cluster-down.sh --purge` removes it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [ "${CLUSTER:-local}" = kind ]; then
  kind delete cluster --name steprun
  exit 0
fi

stop_daemon kwok
stop_daemon kueue
stop_daemon s3-store
"$HACK_DIR/netpol-down.sh"
stop_daemon kube-proxy
stop_daemon kubelet
if is_running containerd containerd && command -v ctr >/dev/null; then
  for task in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do
    ctr -n k8s.io tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
  done
  sleep 1
  for task in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do
    ctr -n k8s.io tasks delete -f "$task" >/dev/null 2>&1 || true
  done
  ctr -n k8s.io containers ls -q 2>/dev/null | xargs -r ctr -n k8s.io containers rm >/dev/null 2>&1 || true
fi
stop_daemon containerd
# A shim whose containerd is gone would otherwise linger with its (already killed) container.
pkill -KILL -f 'containerd-shim-runc-v2 -namespace k8s.io' 2>/dev/null || true
stop_daemon kube-scheduler
stop_daemon kube-controller-manager
stop_daemon kube-apiserver
stop_daemon etcd
# Pod volume mounts (secrets, tokens) must not survive the kubelet.
grep -o ' /var/lib/kubelet/pods/[^ ]*' /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
grep -o ' /run/containerd/[^ ]*' /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
if [ "${1:-}" = --purge ]; then
  log "removing $CLUSTER_DIR and the kubelet's state"
  # /tmp/hostpath_pv: the directories of workspace volumes (the host-path provisioner).
  rm -rf "$CLUSTER_DIR" /var/lib/kubelet/pods /tmp/hostpath_pv
fi
log "cluster stopped"
