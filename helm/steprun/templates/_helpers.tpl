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
