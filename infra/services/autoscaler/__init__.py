"""Lag-driven autoscaler: Kafka consumer-group lag in, ``/system/scale-function`` calls out.

The scaling contract (labels and annotations) is ``f2lib.contracts.functions``, shared with
the KEDA generator; ``policy`` turns lag history into replicas (pure), ``lag`` reads Kafka,
``service`` runs the loop (the gateway through ``infra.services.kit.openfaas``);
``infra.deploy.keda`` writes the same policy as KEDA ScaledObjects.
"""
