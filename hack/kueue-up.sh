#!/usr/bin/env bash
# Starts Kueue (sigs.k8s.io/kueue) for the local cluster: its CRDs applied from the pinned Go
# module, its manager a host process beside the control plane, and the webhooks of its own
# kinds (Workload, ClusterQueue, LocalQueue, ResourceFlavor, Cohort, ...) registered by URL to
# this host and served with a certificate of the cluster's CA. Idempotent: a running manager
# is left alone. Writes $CLUSTER_DIR/kueue/ (config, certificates); logs to $LOGS/kueue.log.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

KUEUE_DIR=$CLUSTER_DIR/kueue
KUEUE_WEBHOOK_PORT=${KUEUE_WEBHOOK_PORT:-9443}
KUEUE_HEALTH_ADDR=${KUEUE_HEALTH_ADDR:-127.0.0.1:8091}
KUEUE_METRICS_ADDR=${KUEUE_METRICS_ADDR:-127.0.0.1:8093}
# Kueue reads its metrics server's certificate from this fixed path whenever it does not manage
# certificates itself (it cannot here: its own manager signs for an in-cluster Service name).
KUEUE_METRICS_CERTS=/etc/kueue/metrics/certs
KUEUE_BIN=$(kueue_bin_dir)/kueue

[ -x "$KUEUE_BIN" ] || "$HACK_DIR/build-kueue.sh"
module_dir=$(go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
mkdir -p "$KUEUE_DIR/certs"

# The CRDs as released (server-side: the Workload CRD is too large for apply's annotation).
kctl apply --server-side --force-conflicts -f "$module_dir/config/components/crd/bases" >/dev/null
# The manager exits at once if a kind it indexes is not served yet.
kctl wait --for=condition=Established --timeout=60s -f "$module_dir/config/components/crd/bases" >/dev/null
kctl get namespace kueue-system >/dev/null 2>&1 || kctl create namespace kueue-system >/dev/null

serving_cert() {  # DIR : a certificate for 127.0.0.1 signed by the cluster's CA, made once
  local dir=$1
  [ -f "$dir/tls.crt" ] && openssl verify -CAfile "$PKI/ca.crt" "$dir/tls.crt" >/dev/null 2>&1 && return 0
  mkdir -p "$dir"
  openssl genrsa -out "$dir/tls.key" 2048 2>/dev/null
  openssl req -new -key "$dir/tls.key" -subj "/CN=kueue-webhook" -out "$dir/tls.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$dir/tls.ext"
  openssl x509 -req -in "$dir/tls.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 825 -sha256 -extfile "$dir/tls.ext" -out "$dir/tls.crt" 2>/dev/null
  rm -f "$dir/tls.csr" "$dir/tls.ext"
}
serving_cert "$KUEUE_DIR/certs"
serving_cert "$KUEUE_METRICS_CERTS"

# Only the Job integration is named because the list cannot be empty (empty means its
# default); it acts only on Jobs labelled with a queue. StepRuns are an external framework:
# steprun's operator is their integration (it creates, owns and follows their Workloads).
cat >"$KUEUE_DIR/config.yaml" <<CFG
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
manageJobsWithoutQueueName: false
health:
  healthProbeBindAddress: $KUEUE_HEALTH_ADDR
metrics:
  bindAddress: $KUEUE_METRICS_ADDR
webhook:
  host: 127.0.0.1
  port: $KUEUE_WEBHOOK_PORT
  certDir: $KUEUE_DIR/certs
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: false
integrations:
  frameworks: ["batch/job"]
  externalFrameworks: ["StepRun.v1alpha1.steprun.dev"]
featureGates:
  # The on-demand visibility API is an aggregated API server of its own; not needed here.
  VisibilityOnDemand: false
CFG

start_daemon kueue "$KUEUE_BIN" --config "$KUEUE_DIR/config.yaml" --kubeconfig "$KUBECONFIG_OUT"
wait_for kueue 120 curl -sf "http://$KUEUE_HEALTH_ADDR/readyz"

# The released webhook configurations, reduced to Kueue's own kinds (the Job frameworks'
# webhooks would intercept Pods and Deployments of the whole cluster) and pointed at this host.
ca_bundle=$(base64 -w0 <"$PKI/ca.crt")
kctl create --dry-run=client -o json -f "$module_dir/config/components/webhook/manifests.yaml" |
  python3 -c '
import json, sys
port, ca = sys.argv[1], sys.argv[2]
text, decoder, items = sys.stdin.read(), json.JSONDecoder(), []
while text.strip():  # kubectl prints one JSON document per object
    doc, end = decoder.raw_decode(text.strip())
    items += doc.get("items", [doc]) if doc.get("kind") == "List" else [doc]
    text = text.strip()[end:]
for item in items:
    item["metadata"]["name"] = "kueue-" + item["metadata"]["name"]
    kept = []
    for hook in item.get("webhooks", []):
        if all(g == "kueue.x-k8s.io" for r in hook.get("rules", []) for g in r.get("apiGroups", [])):
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca}
            kept.append(hook)
    item["webhooks"] = kept
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
' "$KUEUE_WEBHOOK_PORT" "$ca_bundle" | kctl apply -f - >/dev/null
wait_for kueue 60 curl -s --cacert "$PKI/ca.crt" -o /dev/null "https://127.0.0.1:$KUEUE_WEBHOOK_PORT/"
log "kueue $KUEUE_VERSION ready (webhooks at https://127.0.0.1:$KUEUE_WEBHOOK_PORT)"
