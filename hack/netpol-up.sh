#!/usr/bin/env bash
# Starts the local cluster's NetworkPolicy agent: kube-router running only its network policy
# controller, as a host process beside kube-proxy. The bridge CNI connects Pods but enforces
# nothing; this agent turns each NetworkPolicy into iptables rules and ipsets for the Pods of this
# node, so sandbox steps' egress denial really refuses connections. Pods that no NetworkPolicy
# selects keep all their traffic. Idempotent: a running agent is left alone.
#
# Its identity (steprun-netpol, a client certificate of the cluster's CA) may only read what
# policies are made of: Pods, Namespaces, NetworkPolicies, and the Nodes, Services and
# Endpoint(Slice)s its informers list at start.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

NETPOL_HEALTH_PORT=${NETPOL_HEALTH_PORT:-20244}
SERVICE_RULE_PRIORITY=100
command -v ipset >/dev/null || die "the NetworkPolicy agent needs ipset (Debian package ipset)"
[ -x "$(netpol_bin_dir)/kube-router" ] || "$HACK_DIR/build-netpol.sh"

gen_cert netpol "/CN=steprun-netpol" "extendedKeyUsage=clientAuth"
write_kubeconfig "$CLUSTER_DIR/netpol.kubeconfig" netpol
kctl apply -f - >/dev/null <<'RBAC'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: steprun-netpol-agent
rules:
  # What a policy selects and where those Pods are.
  - apiGroups: [""]
    resources: [pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [list, watch]
  # Its own Node (its IP) at start; kube-router starts informers on these for all of its
  # controllers and waits for them to sync, although the policy controller alone never reads them.
  - apiGroups: [""]
    resources: [nodes]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [services, endpoints]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: steprun-netpol-agent
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: steprun-netpol-agent}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: steprun-netpol}
RBAC

# The agent accepts a Pod's permitted traffic first thing in FORWARD, ahead of kube-proxy's
# REJECT of a Service without endpoints; such a packet, never translated, would follow the
# default route off this machine. A Pod's packet still addressed to the Service range after
# kube-proxy's translation is refused here instead (ICMP prohibited, as fast as a REJECT).
ip rule show iif "$CNI_BRIDGE" to "$SERVICE_CIDR" | grep -q prohibit ||
  ip rule add iif "$CNI_BRIDGE" to "$SERVICE_CIDR" prohibit priority "$SERVICE_RULE_PRIORITY"

# Only the policy controller: the bridge CNI routes Pods and kube-proxy serves Services.
# --enable-cni=false: kube-router never touches the CNI configuration.
start_daemon netpol "$(netpol_bin_dir)/kube-router" \
  --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
  --kubeconfig "$CLUSTER_DIR/netpol.kubeconfig" --hostname-override "$NODE_NAME" \
  --service-cluster-ip-range "$SERVICE_CIDR" --health-port "$NETPOL_HEALTH_PORT" --v=1
wait_for netpol 120 curl -sf "http://127.0.0.1:$NETPOL_HEALTH_PORT/healthz"
# Healthy means its informers synced; the first sync has run once its top-level chains exist.
wait_for netpol 60 iptables -w -t filter -n -L KUBE-ROUTER-FORWARD
log "NetworkPolicy agent (kube-router $KUBE_ROUTER_VERSION) enforcing on $NODE_NAME"
