{{/*
vigil.toml, the one place the configuration is rendered. The chart owns listen, auth, model paths
and Elasticsearch credentials (files mounted from Secrets); `config` in values.yaml supplies the rest.
*/}}
{{- define "vigil.config" -}}
{{- $c := .Values.config -}}
{{- $root := include "vigil.secretsRoot" . -}}
# Rendered by the vigil Helm chart ({{ include "vigil.chart" . }}); edit values.yaml, not this file.

[server]
listen = "0.0.0.0:9280"
max_body_bytes = {{ int64 $c.server.max_body_bytes }}
max_batch_docs = {{ int64 $c.server.max_batch_docs }}
max_concurrent_requests = {{ int64 $c.server.max_concurrent_requests }}
shutdown_timeout = "{{ max 1 (sub (int64 .Values.terminationGracePeriodSeconds) 5) }}s"
{{- if .Values.tls.enabled }}
tls_cert = "{{ $root }}/tls/{{ .Values.tls.certKey }}"
tls_key = "{{ $root }}/tls/{{ .Values.tls.keyKey }}"
{{- end }}

[auth]
tokens_file = "{{ $root }}/tokens/{{ .Values.auth.key }}"
required = true

[models]
paths = [{{ include "vigil.modelsPath" . | quote }}]
watch = {{ .Values.models.watch }}

[scoring]
explain = {{ $c.scoring.explain | quote }}
{{- if $c.scoring.threads }}
threads = {{ int64 $c.scoring.threads }}
{{- end }}

[elasticsearch]
url = {{ .Values.elasticsearch.url | quote }}
timeout_ms = {{ int64 .Values.elasticsearch.timeout_ms }}
{{- $cred := .Values.elasticsearch.credentials }}
{{- if eq $cred.type "basic" }}
username = {{ $cred.username | quote }}
password_file = "{{ $root }}/elasticsearch/{{ $cred.passwordKey }}"
{{- else if eq $cred.type "apiKey" }}
api_key_file = "{{ $root }}/elasticsearch/{{ $cred.apiKeyKey }}"
{{- end }}
{{- if include "vigil.hasCa" . }}
ca_file = "{{ $root }}/ca/{{ .Values.elasticsearch.ca.key }}"
{{- end }}
{{- with .Values.elasticsearch.clientCertificate }}
{{- if .existingSecret }}
client_cert = "{{ $root }}/es-client/{{ .certKey }}"
client_key = "{{ $root }}/es-client/{{ .keyKey }}"
{{- end }}
{{- end }}

[metrics]
enabled = {{ .Values.metrics.enabled }}
drift_window = {{ int64 .Values.metrics.driftWindow }}
{{- if and .Values.metrics.enabled .Values.metrics.port }}
listen = "0.0.0.0:{{ int64 .Values.metrics.port }}"
{{- end }}

[bulk]
on_scoring_failure = {{ $c.bulk.on_scoring_failure | quote }}
{{- range $c.routes }}

[[routes]]
model = {{ .model | quote }}
{{- with .indices }}
indices = {{ toJson . }}
{{- end }}
{{- with .when }}
when = { {{- $first := true }}{{ range $k, $v := . }}{{ if not $first }},{{ end }} {{ $k }} = {{ toJson $v }}{{ $first = false }}{{ end }} }
{{- end }}
{{- end }}
{{- end }}
