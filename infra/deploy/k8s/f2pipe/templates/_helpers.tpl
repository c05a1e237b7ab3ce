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

{{/* --- the functions (files/functions.yaml, generated from stack.yml) ------------------------ */}}

{{/* "kubernetes" or "openfaas" (fails on anything else) */}}
{{- define "f2pipe.runtime" -}}
{{- $runtime := .Values.functions.runtime -}}
{{- if not (has $runtime (list "kubernetes" "openfaas")) -}}
{{- fail (printf "functions.runtime must be kubernetes or openfaas, not %v" $runtime) -}}
{{- end -}}
{{- $runtime -}}
{{- end -}}

{{/* "true" when the chart runs the functions itself (no OpenFaaS), else empty */}}
{{- define "f2pipe.kubernetesFunctions" -}}
{{- if eq (include "f2pipe.runtime" .) "kubernetes" }}true{{ end -}}
{{- end -}}

{{/* The namespace of the functions: OpenFaaS's function namespace, or functions.namespace
(default the release's) when the chart runs them. */}}
{{- define "f2pipe.functionNamespace" -}}
{{- if include "f2pipe.kubernetesFunctions" . -}}
{{- default .Release.Namespace .Values.functions.namespace -}}
{{- else -}}
{{- .Values.openfaas.functionNamespace -}}
{{- end -}}
{{- end -}}

{{/* "true" when KEDA ScaledObjects are rendered: keda.enabled true, or "auto" in the
kubernetes runtime */}}
{{- define "f2pipe.kedaEnabled" -}}
{{- $enabled := toString .Values.keda.enabled -}}
{{- if eq $enabled "auto" -}}
{{- include "f2pipe.kubernetesFunctions" . -}}
{{- else if eq $enabled "true" -}}
true
{{- else if ne $enabled "false" -}}
{{- fail (printf "keda.enabled must be auto, true or false, not %v" $enabled) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the lag autoscaler runs: it scales through the OpenFaaS gateway only */}}
{{- define "f2pipe.autoscalerEnabled" -}}
{{- if and .Values.autoscaler.enabled (not (include "f2pipe.kubernetesFunctions" .)) }}true{{ end -}}
{{- end -}}

{{/* Replicas a function runs with when KEDA does not scale it, or the most KEDA may give it
(the connector's concurrency bound). Call with (dict "root" $ "fn" entry). */}}
{{- define "f2pipe.functionReplicas" -}}
{{- if and (include "f2pipe.kedaEnabled" .root) (hasKey .fn "lagTarget") -}}
{{- .fn.maxReplicas | int -}}
{{- else -}}
{{- .fn.minReplicas | int -}}
{{- end -}}
{{- end -}}

{{/* What stack.yml's ${VAR:-default} references expand to in the kubernetes runtime, as
faas-cli expands them from the shell: chart values, overridden by functions.stackEnv. */}}
{{- define "f2pipe.stackVariables" -}}
{{- $vars := dict
      "F2_REGISTRY" (.Values.image.repository | trimSuffix "/")
      "F2_TAG" (toString .Values.image.tag)
      "F2_REGISTRY_BUCKET" .Values.s3.bucket
      "F2_S3_ENDPOINT_URL" (include "f2pipe.s3Endpoint" .) -}}
{{- toYaml (merge (deepCopy (.Values.functions.stackEnv | default dict)) $vars) -}}
{{- end -}}

{{/* faas-cli's expansion of one stack.yml string: ${VAR} and ${VAR:-default} become the
variable's value when it is set and not empty, else the default (else ""). Call with
(dict "text" string "vars" map). */}}
{{- define "f2pipe.stackExpand" -}}
{{- $text := toString .text -}}
{{- range $name, $value := .vars -}}
{{- if $value -}}
{{- $text = regexReplaceAll (printf "\\$\\{%s(:-[^}]*)?\\}" $name) $text (toString $value | replace "$" "$$") -}}
{{- end -}}
{{- end -}}
{{- regexReplaceAll "\\$\\{[A-Za-z_][A-Za-z0-9_]*(?::-([^}]*))?\\}" $text "${1}" -}}
{{- end -}}

{{/* A function's pod labels. Call with (dict "root" $ "name" function). */}}
{{- define "f2pipe.functionSelectorLabels" -}}
{{- include "f2pipe.selectorLabels" (dict "root" .root "component" (printf "function-%s" .name)) }}
faas_function: {{ .name }}
{{- end -}}
