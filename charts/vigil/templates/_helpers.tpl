{{/* Names and labels. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vigil.fullname" -}}
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

{{- define "vigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vigil.labels" -}}
helm.sh/chart: {{ include "vigil.chart" . }}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Secret names: the created one, or the existing one. */}}
{{- define "vigil.tokensSecret" -}}
{{- if .Values.auth.create }}{{ include "vigil.fullname" . }}-tokens{{ else }}{{ .Values.auth.existingSecret }}{{ end }}
{{- end }}

{{- define "vigil.esSecret" -}}
{{- if .Values.elasticsearch.credentials.create }}{{ include "vigil.fullname" . }}-elasticsearch{{ else }}{{ .Values.elasticsearch.credentials.existingSecret }}{{ end }}
{{- end }}

{{- define "vigil.caSecret" -}}
{{- if .Values.elasticsearch.ca.create }}{{ include "vigil.fullname" . }}-elasticsearch-ca{{ else }}{{ .Values.elasticsearch.ca.existingSecret }}{{ end }}
{{- end }}

{{- define "vigil.hasCa" -}}
{{- if or .Values.elasticsearch.ca.create .Values.elasticsearch.ca.existingSecret }}true{{ end }}
{{- end }}

{{- define "vigil.modelsPath" -}}
{{- if eq .Values.models.source "image" }}{{ .Values.models.image.path }}{{ else }}/var/lib/vigil/models{{ end }}
{{- end }}

{{/* Fixed paths inside the pod. */}}
{{- define "vigil.secretsRoot" -}}/var/run/vigil/secrets{{- end }}
