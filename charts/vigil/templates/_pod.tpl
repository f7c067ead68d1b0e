{{/* Volumes and mounts shared by the Deployment and the setup Job: all read-only but /tmp. */}}
{{- define "vigil.volumeMounts" -}}
- name: config
  mountPath: /etc/vigil/vigil.toml
  subPath: vigil.toml
  readOnly: true
{{- if .Values.rules }}
- name: rules
  mountPath: /etc/vigil/rules
  readOnly: true
{{- end }}
- name: tokens
  mountPath: {{ include "vigil.secretsRoot" . }}/tokens
  readOnly: true
{{- if ne .Values.elasticsearch.credentials.type "none" }}
- name: es-credentials
  mountPath: {{ include "vigil.secretsRoot" . }}/elasticsearch
  readOnly: true
{{- end }}
{{- if include "vigil.hasCa" . }}
- name: es-ca
  mountPath: {{ include "vigil.secretsRoot" . }}/ca
  readOnly: true
{{- end }}
{{- if ne .Values.models.source "image" }}
- name: models
  mountPath: /var/lib/vigil/models
  readOnly: true
  {{- if and (eq .Values.models.source "pvc") .Values.models.pvc.subPath }}
  subPath: {{ .Values.models.pvc.subPath }}
  {{- end }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: {{ include "vigil.secretsRoot" . }}/tls
  readOnly: true
{{- end }}
{{- if .Values.elasticsearch.clientCertificate.existingSecret }}
- name: es-client
  mountPath: {{ include "vigil.secretsRoot" . }}/es-client
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "vigil.volumes" -}}
- name: config
  configMap:
    name: {{ include "vigil.fullname" . }}
{{- if .Values.rules }}
- name: rules
  configMap:
    name: {{ include "vigil.fullname" . }}-rules
{{- end }}
- name: tokens
  secret:
    secretName: {{ include "vigil.tokensSecret" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.auth.key }}
        path: {{ .Values.auth.key }}
{{- $cred := .Values.elasticsearch.credentials }}
{{- if ne $cred.type "none" }}
- name: es-credentials
  secret:
    secretName: {{ include "vigil.esSecret" . }}
    defaultMode: 0440
    items:
      {{- if eq $cred.type "basic" }}
      - key: {{ $cred.passwordKey }}
        path: {{ $cred.passwordKey }}
      {{- else }}
      - key: {{ $cred.apiKeyKey }}
        path: {{ $cred.apiKeyKey }}
      {{- end }}
{{- end }}
{{- if include "vigil.hasCa" . }}
- name: es-ca
  secret:
    secretName: {{ include "vigil.caSecret" . }}
    defaultMode: 0444
    items:
      - key: {{ .Values.elasticsearch.ca.key }}
        path: {{ .Values.elasticsearch.ca.key }}
{{- end }}
{{- if eq .Values.models.source "pvc" }}
- name: models
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-models" (include "vigil.fullname" .)) .Values.models.pvc.existingClaim }}
    readOnly: true
{{- else if eq .Values.models.source "initContainer" }}
- name: models
  emptyDir:
    sizeLimit: {{ .Values.models.initContainer.sizeLimit }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "tls.existingSecret is required when tls.enabled" .Values.tls.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.tls.certKey }}
        path: {{ .Values.tls.certKey }}
      - key: {{ .Values.tls.keyKey }}
        path: {{ .Values.tls.keyKey }}
{{- end }}
{{- with .Values.elasticsearch.clientCertificate }}
{{- if .existingSecret }}
- name: es-client
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .certKey }}
        path: {{ .certKey }}
      - key: {{ .keyKey }}
        path: {{ .keyKey }}
{{- end }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{/* The initContainer that copies bundles into the models emptyDir (models.source=initContainer). */}}
{{- define "vigil.modelsInitContainer" -}}
{{- if eq .Values.models.source "initContainer" }}
- name: models
  image: {{ required "models.initContainer.image is required when models.source is initContainer" .Values.models.initContainer.image }}
  imagePullPolicy: {{ .Values.models.initContainer.pullPolicy }}
  command:
    {{- toYaml .Values.models.initContainer.command | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.setupJob.resources | nindent 4 }}
  volumeMounts:
    - name: models
      mountPath: /var/lib/vigil/models
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end }}
