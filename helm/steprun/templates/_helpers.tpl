{{/* Base name of every object: the release name when it says steprun, else <release>-steprun. */}}
{{- define "steprun.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "steprun.operatorName" -}}
{{- printf "%s-operator" (include "steprun.fullname" .) -}}
{{- end -}}

{{- define "steprun.labels" -}}
app.kubernetes.io/name: steprun
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "steprun.selectorLabels" -}}
app.kubernetes.io/name: steprun
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The operator's identity as the API server sees it. */}}
{{- define "steprun.operatorUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace .Values.serviceAccount.name -}}
{{- end -}}

{{/* Peering is on with more than one replica; its name defaults to the base name. */}}
{{- define "steprun.peering" -}}
{{- if gt (int .Values.replicas) 1 -}}
{{- .Values.peering.name | default (include "steprun.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The identities allowed to create step Pods, as a CEL list: the operator's ServiceAccount
     plus admission.extraAllowedCreators. */}}
{{- define "steprun.allowedCreators" -}}
{{- $creators := list (include "steprun.operatorUser" .) -}}
{{- range .Values.admission.extraAllowedCreators }}{{ $creators = append $creators . }}{{ end -}}
{{- printf "['%s']" (join "', '" $creators) -}}
{{- end -}}

{{/* "true" when watchNamespaces names namespaces only (no glob patterns): the operator then
     gets its namespaced rights through a Role in each, not cluster-wide. */}}
{{- define "steprun.namespacedRbac" -}}
{{- $literal := gt (len .Values.watchNamespaces) 0 -}}
{{- range .Values.watchNamespaces -}}
{{- if regexMatch "[*?!, ]" . }}{{ $literal = false }}{{ end -}}
{{- end -}}
{{- if $literal }}true{{ end -}}
{{- end -}}

{{/* The operator's rules on namespaced objects, for its ClusterRole or its per-namespace Roles. */}}
{{- define "steprun.operatorNamespacedRules" -}}
# kopf watches StepRuns (list, watch); the reconciler re-reads one after a write conflict
# (get) and deletes it when ttlSecondsAfterFinished has passed (delete).
- apiGroups: [steprun.dev]
  resources: [stepruns]
  verbs: [get, list, watch, delete]
# The reconciler writes the outcome only through the status subresource (merge patch).
- apiGroups: [steprun.dev]
  resources: [stepruns/status]
  verbs: [patch]
# Step Pods: created per attempt, read back when the watch has not shown them yet, watched
# (kopf, by label), listed by StepRun uid and deleted on cancel, deleted on timeout and
# retry, patched to remove the step-tracking finalizer once the attempt's outcome is recorded.
- apiGroups: [""]
  resources: [pods]
  verbs: [create, get, list, watch, delete, patch]
# Archived logs: each finished attempt's log is streamed to the artifact repository.
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# The step's context: created per StepRun, read to adopt one left by an earlier run and to
# check its owner before deleting it when the step ends. Secrets are also read to copy the
# projected keys (and to redact their values from what the Pod reports).
- apiGroups: [""]
  resources: [configmaps, secrets]
  verbs: [create, get, delete]
# Workspaces: an existing claim is read before the Pod is created (get); a workflow run's
# claim (volumeClaimTemplate) is created by its first StepRun, and each later one adds
# itself to the claim's owners (patch).
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [create, get, patch]
# The egress policy of sandbox Pods: created, read to adopt an existing one; it goes with the
# StepRun through its owner reference. Listed to find other policies that would reopen it.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create, get, list]
# One Event per StepRun transition (create); the Warning events of a Pod that did not start in
# time are read (list) for the kubelet's mount failure of a workspace or of the step's context.
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
# Kueue: a StepRun labelled kueue.x-k8s.io/queue-name gets a Workload, created before anything
# else of it, watched (kopf, by label) for admission and eviction, read back when the watch
# has not shown it, deleted when the step ends.
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [create, get, list, watch, delete]
# After an eviction, once the step's Pod is gone, the Workload's admission is cleared so that
# Kueue queues it again (what Kueue's own integrations do).
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads/status]
  verbs: [patch]
# The step's LocalQueue is read to name its ClusterQueue in the step's status.
- apiGroups: [kueue.x-k8s.io]
  resources: [localqueues]
  verbs: [get]
{{- end -}}
