#!/usr/bin/env bash
# `make demo`: steprun installed the way an operator is installed, then every example run.
#
#   1. the local cluster (hack/cluster-up.sh; already running: left alone)
#   2. the operator image, built and imported into containerd (hack/images/build-operator-image.sh)
#   3. helm, built from its Go module (hack/install-helm.sh)
#   4. the chart, release "steprun" in steprun-system, watching only steprun-demo
#   5. with the local artifact store (hack/store-up.sh), the chart points at it and
#      examples/artifacts/ runs in order after the rest (a directory passed from build to test)
#   6. examples/*.yaml applied in steprun-demo (cancel-me cancelled once it runs, as its header
#      says), and examples/kueue/ (three steps sharing a one-CPU Kueue queue), then a table of
#      each example's outcome next to the outcome its header expects
#
# Idempotent: a re-run upgrades the release and runs the examples again from scratch.
# Exits non-zero when an example does not end the way its header says.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

RELEASE=${DEMO_RELEASE:-steprun}
NAMESPACE=${DEMO_OPERATOR_NAMESPACE:-steprun-system}
DEMO_NS=${DEMO_NAMESPACE:-steprun-demo}
EXAMPLES=("$REPO_DIR"/examples/*.yaml)
TERMINAL_TIMEOUT=${DEMO_TIMEOUT:-240}
export KUBECONFIG=$KUBECONFIG_OUT
started=$(date +%s)

"$HACK_DIR/cluster-up.sh"
k() { "$K8S_BIN/kubectl" "$@"; }
image=$("$HACK_DIR/images/build-operator-image.sh")
helm=$("$HACK_DIR/install-helm.sh")

k create namespace "$DEMO_NS" --dry-run=client -o yaml | k apply -f - >/dev/null

# A previous run's steps go first, with their Pods: a new StepRun of the same name must not find
# the old one's Pod in its way.
if [ -n "$(k get stepruns -n "$DEMO_NS" -o name 2>/dev/null)" ]; then
  log "deleting the previous run's StepRuns in $DEMO_NS"
  k delete stepruns --all -n "$DEMO_NS" --wait --timeout=120s >/dev/null
  k wait --for=delete pod -l steprun.dev/name -n "$DEMO_NS" --timeout=120s >/dev/null 2>&1 || true
fi

# The sandbox admission policy is cluster-scoped. If one of that name exists and belongs to no
# release of ours (applied from manifests/admission, or by another installation), it already
# guards sandbox Pods: leave it, and install the chart without its own copy.
policy=$RELEASE-sandbox-pods
admission=true
if k get validatingadmissionpolicy "$policy" >/dev/null 2>&1; then
  owner=$(k get validatingadmissionpolicy "$policy" \
    -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-namespace}/{.metadata.annotations.meta\.helm\.sh/release-name}')
  if [ "$owner" != "$NAMESPACE/$RELEASE" ]; then
    log "ValidatingAdmissionPolicy $policy exists outside this release: keeping it, installing without admission"
    admission=false
  fi
fi

# The local artifact store, when this cluster has one: its credentials go into a Secret of the
# release namespace (through files, never a command line) and the chart points at it.
store_env=$CLUSTER_DIR/store/store.env
artifact_values=()
if [ -f "$store_env" ]; then
  # shellcheck disable=SC1090
  . "$store_env"
  k create namespace "$NAMESPACE" --dry-run=client -o yaml | k apply -f - >/dev/null
  k -n "$NAMESPACE" create secret generic steprun-artifact-store \
    --from-file=accessKey=<(printf %s "$STORE_ACCESS_KEY") \
    --from-file=secretKey=<(printf %s "$STORE_SECRET_KEY") \
    --dry-run=client -o yaml | k apply -f - >/dev/null
  artifact_values=(--set "artifactRepository.endpoint=$STORE_ENDPOINT"
    --set "artifactRepository.bucket=$STORE_BUCKET" --set artifactRepository.keyPrefix=demo/
    --set artifactRepository.credentialsSecret=steprun-artifact-store)
fi

# A rebuilt image keeps its tag; its digest on the Pods makes an upgrade replace them.
digest=$(ctr -n k8s.io images ls "name==$image" | awk 'NR == 2 {print $3}')
log "installing the chart: release $RELEASE in $NAMESPACE, watching $DEMO_NS"
# --take-ownership: on a cluster the test suite has used, the cluster-scoped roles it applied
# from manifests/ (the same objects) would otherwise stop the install.
"$helm" upgrade --install "$RELEASE" "$REPO_DIR/helm/steprun" \
  --namespace "$NAMESPACE" --create-namespace --take-ownership \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" \
  --set-string "podAnnotations.steprun\.dev/image-digest=$digest" \
  --set "watchNamespaces={$DEMO_NS}" --set "engine.namespaces={$DEMO_NS}" \
  --set admission.enabled="$admission" "${artifact_values[@]}" \
  --wait --timeout 5m >/dev/null
k -n "$NAMESPACE" get pods -l "app.kubernetes.io/instance=$RELEASE" -o wide

expect_of() {  # FILE KEY : a value of the file's "# expect:" header line
  sed -n 's/^# expect://p' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

names=()
for file in "${EXAMPLES[@]}"; do
  # Each example holds one StepRun (and maybe a Secret it reads).
  names+=("$(k apply -n "$DEMO_NS" -f "$file" -o name | sed -n 's|^steprun\.steprun\.dev/||p')")
done
# Three steps behind a one-CPU Kueue queue: they run one at a time, the others wait Queued.
k apply -n "$DEMO_NS" -f "$REPO_DIR/examples/kueue/queue.yaml" >/dev/null
for file in "$REPO_DIR"/examples/kueue/step-*.yaml; do
  names+=("$(k apply -n "$DEMO_NS" -f "$file" -o name | sed -n 's|^steprun\.steprun\.dev/||p')")
  EXAMPLES+=("$file")
done
log "applied ${#names[@]} examples in $DEMO_NS: ${names[*]}"

phase_of() { k get steprun "$1" -n "$DEMO_NS" -o jsonpath='{.status.phase}' 2>/dev/null; }
is_terminal() { case $(phase_of "$1") in Succeeded|Failed|TimedOut|Cancelled|Rejected) return 0 ;; *) return 1 ;; esac; }

for i in "${!EXAMPLES[@]}"; do
  [ "$(expect_of "${EXAMPLES[$i]}" 'then')" = cancel ] || continue
  name=${names[$i]}
  deadline=$(( $(date +%s) + 90 ))
  until [ "$(phase_of "$name")" = Running ] || is_terminal "$name"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$name did not start running"
    sleep 1
  done
  log "cancelling $name"
  k patch steprun "$name" -n "$DEMO_NS" --type merge -p '{"spec":{"cancel":true}}' >/dev/null
done

deadline=$(( $(date +%s) + TERMINAL_TIMEOUT ))
for name in "${names[@]}"; do
  until is_terminal "$name"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$name is still $(phase_of "$name") after ${TERMINAL_TIMEOUT}s"
    sleep 1
  done
done

# The artifact examples depend on each other (each consumes the one before): one at a time.
if [ ${#artifact_values[@]} -gt 0 ]; then
  for file in "$REPO_DIR"/examples/artifacts/*.yaml; do
    name=$(k apply -n "$DEMO_NS" -f "$file" -o name | sed -n 's|^steprun\.steprun\.dev/||p')
    log "applied $name (artifacts)"
    deadline=$(( $(date +%s) + TERMINAL_TIMEOUT ))
    until is_terminal "$name"; do
      [ "$(date +%s)" -lt "$deadline" ] || die "$name is still $(phase_of "$name") after ${TERMINAL_TIMEOUT}s"
      sleep 1
    done
    EXAMPLES+=("$file")
    names+=("$name")
  done
fi

failures=0
echo
printf '%-20s %-10s %-18s %-5s %-9s %s\n' NAME PHASE REASON EXIT DURATION EXPECTED
for i in "${!EXAMPLES[@]}"; do
  name=${names[$i]}
  IFS='|' read -r phase reason code duration <<<"$(k get steprun "$name" -n "$DEMO_NS" \
    -o jsonpath='{.status.phase}|{.status.reason}|{.status.exitCode}|{.status.duration}')"
  want_phase=$(expect_of "${EXAMPLES[$i]}" phase)
  want_reason=$(expect_of "${EXAMPLES[$i]}" reason)
  want_code=$(expect_of "${EXAMPLES[$i]}" exitCode)
  verdict=ok
  if [ "$phase" != "$want_phase" ] || [ "$reason" != "$want_reason" ] \
    || { [ -n "$want_code" ] && [ "$code" != "$want_code" ]; }; then
    verdict="MISMATCH: want $want_phase/$want_reason${want_code:+ exit $want_code}"
    failures=$(( failures + 1 ))
  fi
  printf '%-20s %-10s %-18s %-5s %-9s %s\n' "$name" "$phase" "$reason" "${code:--}" "${duration:--}" "$verdict"
done
echo
k get stepruns -n "$DEMO_NS" -o wide
echo
log "demo done in $(( $(date +%s) - started ))s; the operator: kubectl -n $NAMESPACE logs $RELEASE-operator-0"
[ "$failures" = 0 ] || die "$failures example(s) did not end as their header expects"
