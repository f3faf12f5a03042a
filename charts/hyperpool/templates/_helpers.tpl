{{/* The chart's name, overridable. */}}
{{- define "hyperpool.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object's name: the release name, unless it already contains the
chart's name (so `helm install hyperpool charts/hyperpool` gives hyperpool-manager, as
config/default does).
*/}}
{{- define "hyperpool.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hyperpool.managerName" -}}
{{- printf "%s-manager" (include "hyperpool.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hyperpool.nodeAgentName" -}}
{{- printf "%s-node-agent" (include "hyperpool.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The manager's ServiceAccount. */}}
{{- define "hyperpool.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hyperpool.managerName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "hyperpool.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "hyperpool.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hyperpool
{{- end -}}

{{/* Selector labels of the manager's pods. */}}
{{- define "hyperpool.managerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "hyperpool.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end -}}

{{/* Selector labels of the node agent's pods. */}}
{{- define "hyperpool.nodeAgentSelectorLabels" -}}
app.kubernetes.io/name: {{ include "hyperpool.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-agent
{{- end -}}

{{/* An image reference; the tag defaults to the chart's appVersion. */}}
{{- define "hyperpool.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
The default quota as the manager's --default-quota flag takes it: key=value pairs, sorted.
*/}}
{{- define "hyperpool.defaultQuota" -}}
{{- $pairs := list -}}
{{- range $k, $v := . -}}
{{- $pairs = append $pairs (printf "%s=%v" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
