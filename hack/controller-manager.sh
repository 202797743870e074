#!/usr/bin/env bash
# Restarts the local cluster's kube-controller-manager with the default client limits or
# unthrottled, so one benchmark run can measure the Job controller both ways.
#
#   hack/controller-manager.sh default       # the component's defaults (QPS 20, burst 30, 5 Job workers)
#   hack/controller-manager.sh unthrottled   # QPS 1000, burst 2000, 50 Job workers
#   KCM_KUBE_API_QPS=.. KCM_KUBE_API_BURST=.. KCM_CONCURRENT_JOB_SYNCS=.. hack/controller-manager.sh custom
#
# Prints the running command line. Controllers resync from the API on start: nothing is lost,
# but hold the cluster lock, since Jobs and namespaces wait for the few seconds it is down.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case "${1:-}" in
  default) KCM_KUBE_API_QPS='' KCM_KUBE_API_BURST='' KCM_CONCURRENT_JOB_SYNCS='' ;;
  unthrottled) KCM_KUBE_API_QPS=1000 KCM_KUBE_API_BURST=2000 KCM_CONCURRENT_JOB_SYNCS=50 ;;
  custom) ;;
  *) die "usage: hack/controller-manager.sh default|unthrottled|custom" ;;
esac
[ -f "$PKI/ca.crt" ] || die "no local cluster in $CLUSTER_DIR: run hack/cluster-up.sh first"
stop_daemon kube-controller-manager
start_controller_manager
tr '\0' ' ' <"/proc/$(pid_of kube-controller-manager)/cmdline"; echo
