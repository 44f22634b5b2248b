{{/* Chart name, at most 63 characters. */}}
{{- define "nearcache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the injector's objects. */}}
{{- define "nearcache.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- printf "%s-injector" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s-injector" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nearcache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nearcache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nearcache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end }}

{{- define "nearcache.labels" -}}
helm.sh/chart: {{ include "nearcache.chart" . }}
{{ include "nearcache.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nearcache
{{- end }}

{{- define "nearcache.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nearcache.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image.repository:image.tag, the tag defaulting to the chart's appVersion. */}}
{{- define "nearcache.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString (.Values.image.tag | default .Chart.AppVersion)) }}
{{- end }}

{{/* Secret holding tls.crt, tls.key and ca.crt of the webhook. */}}
{{- define "nearcache.tlsSecretName" -}}
{{- printf "%s-tls" (include "nearcache.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nearcache.serviceHost" -}}
{{- printf "%s.%s.svc" (include "nearcache.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Namespaces the webhooks never see: the release namespace and webhook.excludeNamespaces. */}}
{{- define "nearcache.excludedNamespaces" -}}
{{- $names := list .Release.Namespace }}
{{- range .Values.webhook.excludeNamespaces }}
{{- if not (has . $names) }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- toYaml $names }}
{{- end }}

{{/*
A size or duration as the injector reads it: strings as given, numbers as whole numbers
(a YAML integer is a float to templates, and 134217728 would print as 1.34217728e+08).
*/}}
{{- define "nearcache.scalar" -}}
{{- if kindIs "string" . }}{{ quote . }}{{ else }}{{ int64 . | toString | quote }}{{ end }}
{{- end }}
