"""Lag-driven autoscaler: Kafka consumer-group lag in, ``/system/scale-function`` calls out.

The scaling contract (labels and annotations) is ``f2lib.contracts.functions``, shared with
the KEDA generator; ``policy`` turns lag history into replicas (pure), ``lag``
reads Kafka, ``gateway`` talks to OpenFaaS, ``service`` runs the loop, ``keda`` writes the
same policy as KEDA ScaledObjects.
"""
