#!/usr/bin/env bash
# Shows which local-cluster components run, and the node as the API server sees it.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy netpol s3-store kueue kwok; do
  if [ -f "$PIDS/$c.pid" ] && kill -0 "$(cat "$PIDS/$c.pid")" 2>/dev/null; then
    printf '%-24s running (pid %s)\n' "$c" "$(cat "$PIDS/$c.pid")"
  elif [ -f "$PIDS/$c.pid" ]; then
    printf '%-24s DEAD (see %s)\n' "$c" "$LOGS/$c.log"
  else
    printf '%-24s not started\n' "$c"
  fi
done
if [ -f "$KUBECONFIG_OUT" ] && kctl get --raw /readyz >/dev/null 2>&1; then
  kctl get nodes -o wide
  echo "KUBECONFIG=$KUBECONFIG_OUT"
fi
