{{- /*
templates/keda/: the place for KEDA ScaledObjects (kafka trigger) on the function Deployments
in .Values.openfaas.functionNamespace, the alternative to the autoscaler selected by
.Values.keda.enabled (autoscaler.yaml refuses both at once).

The objects are generated from stack.yml, the one source of the lag target and replica bounds,
by `python -m infra.deploy.keda --bootstrap <Kafka as the KEDA operator reaches it>` into
infra/deploy/k8s/keda/ (kubectl apply -k infra/deploy/k8s/keda). With this chart the bootstrap is
kafka.<functionNamespace>.svc.cluster.local:9092 (the alias functions-namespace.yaml makes) or
<release>-kafka-kafka-bootstrap.<namespace>.svc.cluster.local:9092. To ship them with the
chart, copy them here wrapped in {{- if .Values.keda.enabled }} ... {{- end }}.
.Values.functions mirrors the same labels (a test keeps it equal to stack.yml).
*/ -}}
