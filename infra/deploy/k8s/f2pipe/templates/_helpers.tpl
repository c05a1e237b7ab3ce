{{/* Names, labels, images and shared addresses of the f2pipe chart. */}}

{{- define "f2pipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "f2pipe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "f2pipe.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "f2pipe.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>" */}}
{{- define "f2pipe.component" -}}
{{- printf "%s-%s" (include "f2pipe.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "f2pipe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "f2pipe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: f2pipe
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "f2pipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "f2pipe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* One of f2pipe's own images: <repository>/<target>:<tag> */}}
{{- define "f2pipe.image" -}}
{{- printf "%s/%s:%s" (.root.Values.image.repository | trimSuffix "/") .target .root.Values.image.tag -}}
{{- end -}}

{{/* A third-party image from {repository, tag} */}}
{{- define "f2pipe.thirdPartyImage" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{- define "f2pipe.kafkaCluster" -}}
{{- include "f2pipe.component" (dict "root" . "component" "kafka") -}}
{{- end -}}

{{- define "f2pipe.kafkaBootstrap" -}}
{{- printf "%s-kafka-bootstrap.%s.svc.cluster.local:9092" (include "f2pipe.kafkaCluster" .) .Release.Namespace -}}
{{- end -}}

{{- define "f2pipe.databaseHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "f2pipe.component" (dict "root" . "component" "timescaledb")) .Release.Namespace -}}
{{- end -}}

{{- define "f2pipe.minioHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "f2pipe.component" (dict "root" . "component" "minio")) .Release.Namespace -}}
{{- end -}}

{{- define "f2pipe.s3Endpoint" -}}
{{- if .Values.s3.endpoint -}}
{{- .Values.s3.endpoint -}}
{{- else if .Values.minio.enabled -}}
{{- printf "http://%s:9000" (include "f2pipe.minioHost" .) -}}
{{- else -}}
{{- fail "s3.endpoint is required when minio.enabled=false" -}}
{{- end -}}
{{- end -}}

{{- define "f2pipe.mqttHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "f2pipe.component" (dict "root" . "component" "mosquitto")) .Release.Namespace -}}
{{- end -}}

{{/* Secret names */}}
{{- define "f2pipe.secret.command" -}}{{ include "f2pipe.component" (dict "root" . "component" "command") }}{{- end -}}
{{- define "f2pipe.secret.database" -}}{{ include "f2pipe.component" (dict "root" . "component" "database") }}{{- end -}}
{{- define "f2pipe.secret.mqtt" -}}{{ include "f2pipe.component" (dict "root" . "component" "mqtt") }}{{- end -}}
{{- define "f2pipe.secret.gateway" -}}{{ include "f2pipe.component" (dict "root" . "component" "gateway") }}{{- end -}}
{{- define "f2pipe.secret.s3" -}}{{ include "f2pipe.component" (dict "root" . "component" "s3") }}{{- end -}}
{{- define "f2pipe.secret.pki" -}}{{ include "f2pipe.component" (dict "root" . "component" "pki") }}{{- end -}}
{{- define "f2pipe.secret.provision" -}}{{ include "f2pipe.component" (dict "root" . "component" "provision") }}{{- end -}}

{{/*
A value that must stay stable across upgrades: the given value, else the one stored in the
existing Secret (lookup; empty under `helm template`), else a new random one.
Call with (dict "root" $ "secret" name "key" key "value" given "namespace" ns).
*/}}
{{- define "f2pipe.stableSecret" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" (default .root.Release.Namespace .namespace) .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "f2pipe.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{/* Security context of f2pipe's own containers (uid 10001 in the images). */}}
{{- define "f2pipe.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{- define "f2pipe.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment of the f2pipe containers that talk to the gateway */}}
{{- define "f2pipe.gatewayEnv" -}}
- name: GATEWAY_URL
  value: {{ .Values.openfaas.gatewayUrl | quote }}
- name: GATEWAY_USERNAME
  value: {{ .Values.openfaas.basicAuth.user | quote }}
- name: KAFKA_BOOTSTRAP
  value: {{ include "f2pipe.kafkaBootstrap" . | quote }}
{{- end -}}
