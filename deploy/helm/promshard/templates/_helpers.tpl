{{/* Chart name, overridable. */}}
{{- define "promshard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of every object: the release name (with the chart name
appended unless it already contains it), overridable. */}}
{{- define "promshard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels the workload selects its pods by (immutable after install). */}}
{{- define "promshard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "promshard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object except managed-by. */}}
{{- define "promshard.baseLabels" -}}
{{ include "promshard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "promshard.labels" -}}
{{ include "promshard.baseLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "promshard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "promshard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "promshard.gossipService" -}}
{{- printf "%s-gossip" (include "promshard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "promshard.gossipSecret" -}}
{{- default (printf "%s-gossip-key" (include "promshard.fullname" .)) .Values.gossip.existingSecret }}
{{- end }}

{{/* namespace/name of the PrometheusAgent promshard reads. */}}
{{- define "promshard.prometheusAgent" -}}
{{- if .Values.prometheusAgent.create }}
{{- printf "%s/%s" .Release.Namespace (include "promshard.fullname" .) }}
{{- else }}
{{- default (printf "%s/%s" .Release.Namespace (include "promshard.fullname" .)) .Values.prometheusAgent.existing }}
{{- end }}
{{- end }}

{{/* The mode, validated. */}}
{{- define "promshard.mode" -}}
{{- if not (has .Values.mode (list "statefulset" "daemonset")) }}
{{- fail (printf "mode must be statefulset or daemonset, not %q" .Values.mode) }}
{{- end }}
{{- .Values.mode }}
{{- end }}

{{/* PromQL matchers of promshard's own series, as the ServiceMonitor
scrapes them (job = the web Service's name). */}}
{{- define "promshard.selfSelector" -}}
job="{{ include "promshard.fullname" . }}",namespace="{{ .Release.Namespace }}"
{{- end }}
