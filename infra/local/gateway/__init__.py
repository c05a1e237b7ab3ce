"""The local gateway: OpenFaaS's REST API over function replicas on this box.

``core`` holds the functions and what can be done to them, ``api`` the HTTP routes faas-cli
uses, ``pool`` the replicas of one function, ``backends`` the ``ReplicaBackend`` seam and
process replicas, ``containers`` container replicas, ``secrets``/``logs``/``asyncq`` the
secrets, log and async-call parts of the API. ``python -m infra.local.gateway`` runs it.
"""
