# Pinned versions of everything the local cluster is made of. Sourced by the hack/ scripts.
# shellcheck shell=bash
K8S_VERSION=${K8S_VERSION:-v1.34.12}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.19.5}
# The local cluster's S3-compatible artifact store (github.com/versity/versitygw, posix backend).
VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}
STEPRUN_CACHE=${STEPRUN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/steprun}
k8s_bin_dir() { echo "$STEPRUN_CACHE/k8s/$K8S_VERSION/bin"; }
# The monitoring.coreos.com CRDs (ServiceMonitor, PodMonitor, PrometheusRule) the chart's
# monitoring templates are applied against, read from this Go module's example/ directory.
PROMETHEUS_OPERATOR_VERSION=${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}
store_bin_dir() { echo "$STEPRUN_CACHE/versitygw/$VERSITYGW_VERSION/bin"; }
# The local cluster's NetworkPolicy agent: kube-router (github.com/cloudnativelabs/kube-router/v2)
# with only its network policy controller (iptables + ipset) running.
KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-v2.1.0}
netpol_bin_dir() { echo "$STEPRUN_CACHE/kube-router/$KUBE_ROUTER_VERSION/bin"; }
# Kueue (sigs.k8s.io/kueue): admission, quota and preemption of labelled StepRuns. Its manager is
# built from this Go module and its CRDs are applied from the module's config/components/crd.
KUEUE_VERSION=${KUEUE_VERSION:-v0.17.0}
kueue_bin_dir() { echo "$STEPRUN_CACHE/kueue/$KUEUE_VERSION/bin"; }
