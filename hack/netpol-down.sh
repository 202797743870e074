#!/usr/bin/env bash
# Stops the NetworkPolicy agent and removes what it put into the host's filter table (its
# chains, the jumps to them, its ipsets): a stopped agent's rules would keep applying to
# whatever Pod later gets a confined Pod's IP.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

stop_daemon netpol
command -v iptables >/dev/null || exit 0
ours='^KUBE-(ROUTER-(INPUT|FORWARD|OUTPUT)|POD-FW-|NWPLCY-)'
for builtin in INPUT FORWARD OUTPUT; do
  jumps=$(iptables -w -t filter -S "$builtin" | grep -E -- "-j KUBE-ROUTER-$builtin\$" || true)
  while read -r rule; do
    [ -z "$rule" ] || eval "iptables -w -t filter ${rule/#-A/-D}"
  done <<<"$jumps"
done
chains=$(iptables -w -t filter -S | awk '$1 == "-N" {print $2}' | grep -E "$ours" || true)
for chain in $chains; do iptables -w -t filter -F "$chain"; done
for chain in $chains; do iptables -w -t filter -X "$chain"; done
if command -v ipset >/dev/null; then
  for set in $(ipset list -n 2>/dev/null | grep -E '^KUBE-(SRC|DST)-' || true); do
    ipset destroy "$set" 2>/dev/null || true
  done
fi
while ip rule del iif "$CNI_BRIDGE" to "$SERVICE_CIDR" prohibit 2>/dev/null; do :; done
