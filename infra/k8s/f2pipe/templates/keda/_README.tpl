{{- /*
templates/keda/: KEDA ScaledObjects (kafka trigger) for the function Deployments in
.Values.openfaas.functionNamespace, rendered only when .Values.keda.enabled is true (the
alternative to the autoscaler; autoscaler.yaml refuses both at once). They read the lag target
and replica bounds from .Values.functions (kept equal to stack.yml by
tests/integration/test_deploy_manifests.py) and the bootstrap address from
"f2pipe.kafkaBootstrap"; consumer groups are the connector's "f2-connector-<function>".
Files here are written by the autoscaling work (infra/autoscaler); wrap each in
{{- if .Values.keda.enabled }} ... {{- end }}.
*/ -}}
