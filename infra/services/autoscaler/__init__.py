"""Lag-driven autoscaler: Kafka consumer-group lag in, ``/system/scale-function`` calls out.

``spec`` reads a function's scaling contract from its labels and annotations (the one source
shared with the KEDA generator), ``policy`` turns lag history into replicas (pure), ``lag``
reads Kafka, ``gateway`` talks to OpenFaaS, ``service`` runs the loop, ``keda`` writes the
same policy as KEDA ScaledObjects.
"""
